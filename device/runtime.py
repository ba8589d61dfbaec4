"""The TFLite runtime: ai-edge-litert when installed, else tflite-runtime, or one forced.

:func:`load_interpreter` opens a ``.tflite`` file with the first runtime that imports
(ai-edge-litert has XNNPACK int8 kernels, many times faster than tflite-runtime 2.14 on
int8 convolutions; tflite-runtime is the fallback for systems without a LiteRT wheel), or
with the one named by ``runtime=``, allocates its tensors and says which runtime it used.
:func:`available_runtimes` lists the runtimes that import here.

Not the job of this module: checking that a model is the right one (detector.py does that
against the model's sidecar), or running it. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# (name as pip spells it, package to import); with no runtime named, the first that imports.
RUNTIMES = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"))
RUNTIME_NAMES = tuple(name for name, _ in RUNTIMES)


class RuntimeMissingError(ImportError):
    """No (or not the named) TFLite runtime can be imported; the message says how to
    install one."""


@dataclass(frozen=True)
class Runtime:
    """Which runtime runs a model: ``name`` as pip spells it, and its ``version``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def load_interpreter(
    model_path: Path, num_threads: int = 1, runtime: str | None = None
) -> tuple[Any, Runtime]:
    """Open ``model_path`` with ``num_threads`` CPU threads and allocate its tensors.

    ``runtime``: None takes ai-edge-litert, else tflite-runtime; ``"ai-edge-litert"`` or
    ``"tflite-runtime"`` forces that one. Returns the interpreter (the runtimes'
    ``Interpreter`` classes share one API) and the :class:`Runtime` used. Raises
    :class:`RuntimeMissingError` when no runtime (or not the forced one, or no runtime of
    that name) imports, and the runtime's own ``ValueError`` when the file is not a TFLite
    model.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    interpreter_class, found = _import_runtime(runtime)
    interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    logger.debug("opened %s with %s, %d threads", model_path, found, num_threads)
    return interpreter, found


def available_runtimes() -> list[str]:
    """The runtimes that import here, by pip name, in order of preference."""
    available = []
    for name in RUNTIME_NAMES:
        try:
            _import_runtime(name)
        except RuntimeMissingError:
            continue
        available.append(name)
    return available


def _import_runtime(runtime: str | None) -> tuple[type, Runtime]:
    """The ``Interpreter`` class and :class:`Runtime` of ``runtime``, or of the first
    importable one when ``runtime`` is None."""
    if runtime is not None and runtime not in RUNTIME_NAMES:
        raise RuntimeMissingError(
            f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIME_NAMES)}"
        )
    for name, package in RUNTIMES:
        if runtime is not None and name != runtime:
            continue
        try:
            module = importlib.import_module(f"{package}.interpreter")
        except ImportError:
            logger.debug("%s is not importable", name)
            continue
        version = getattr(importlib.import_module(package), "__version__", "unknown")
        return module.Interpreter, Runtime(name, str(version))
    if runtime is not None:
        raise RuntimeMissingError(f"runtime {runtime} is not installed: pip install {runtime}")
    raise RuntimeMissingError(
        "no TFLite runtime: pip install ai-edge-litert (or, where it has no wheel, "
        "pip install tflite-runtime)"
    )
