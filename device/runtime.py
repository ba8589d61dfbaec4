"""The TFLite runtime: ai-edge-litert when installed, else tflite-runtime.

:func:`load_interpreter` opens a ``.tflite`` file with the first runtime that imports
(ai-edge-litert has XNNPACK int8 kernels, many times faster than tflite-runtime 2.14 on
int8 convolutions; tflite-runtime is the fallback for systems without a LiteRT wheel),
allocates its tensors and says which runtime it used.

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

# (name as pip spells it, package to import); the first one that imports is used.
RUNTIMES = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"))


class RuntimeMissingError(ImportError):
    """No TFLite runtime can be imported; the message says how to install one."""


@dataclass(frozen=True)
class Runtime:
    """Which runtime runs a model: ``name`` as pip spells it, and its ``version``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def load_interpreter(model_path: Path, num_threads: int = 1) -> tuple[Any, Runtime]:
    """Open ``model_path`` with ``num_threads`` CPU threads and allocate its tensors.

    Returns the interpreter (ai-edge-litert's or tflite-runtime's ``Interpreter``, which
    share one API) and the :class:`Runtime` used. Raises :class:`RuntimeMissingError` when
    neither runtime imports, and the runtime's own ``ValueError`` when the file is not a
    TFLite model.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    interpreter_class, runtime = _import_runtime()
    interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    logger.debug("opened %s with %s, %d threads", model_path, runtime, num_threads)
    return interpreter, runtime


def _import_runtime() -> tuple[type, Runtime]:
    """The first importable runtime's ``Interpreter`` class and its :class:`Runtime`."""
    for name, package in RUNTIMES:
        try:
            module = importlib.import_module(f"{package}.interpreter")
        except ImportError:
            logger.debug("%s is not importable", name)
            continue
        version = getattr(importlib.import_module(package), "__version__", "unknown")
        return module.Interpreter, Runtime(name, str(version))
    raise RuntimeMissingError(
        "no TFLite runtime: pip install ai-edge-litert (or, where it has no wheel, "
        "pip install tflite-runtime)"
    )
