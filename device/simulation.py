"""The daemon in simulation, on any laptop: no Pi, no camera needed.

The same :func:`smilebot.app.serve` runs with gpiozero's mock pins. The Enter key presses
the nose (``q`` then Enter, Ctrl-C or Ctrl-D stop), or ``--auto-press SECONDS`` presses it
on a timer (the default when stdin is not a terminal). Frames come from the webcam when
one answers, else from a folder of images (by default ``samples/``: public-domain photos).
The LED is drawn in the terminal and each press prints what the bot saw and decided.

Everything the daemon writes (model store, capture log) goes under one state folder,
``.smilebot-sim/`` by default; the store is seeded with the shipped ``models/smilebot.tflite``.

Not the job of this module: anything that differs from the real daemon beyond pins,
input keys and terminal output: that is the point of a simulation.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from smilebot.app import Hooks, serve
from smilebot.camera import webcam_available
from smilebot.config import Config
from smilebot.daemon import Daemon, PressResult
from smilebot.hardware import TerminalLed, Trigger

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent  # a checkout: device/ sits at its top
DEFAULT_STATE = Path(".smilebot-sim")


@dataclass(frozen=True)
class SimOptions:
    """How to simulate. ``auto_press``: seconds between presses (None: the Enter key)."""

    state: Path = DEFAULT_STATE
    frames: Path | None = None  # an image folder; None: webcam if present, else samples/
    webcam: bool = True
    auto_press: float | None = None
    presses: int | None = None  # stop after this many served presses
    model: Path | None = None  # the seed model; None: models/smilebot.tflite


def find_shipped(name: str) -> Path:
    """``name`` (e.g. "samples", "models/smilebot.tflite") in the working directory or the
    checkout this package runs from; ``FileNotFoundError`` naming both places if absent.
    """
    for base in (Path.cwd(), REPO):
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"{name}: not found in {Path.cwd()} or {REPO}")


def simulation_config(base: Config, options: SimOptions) -> Config:
    """``base`` with the camera, model store and capture log of the simulation."""
    if options.frames is not None:
        camera = dataclasses.replace(base.camera, source="folder", folder=str(options.frames))
    elif options.webcam and webcam_available(base.camera.device):
        camera = dataclasses.replace(base.camera, source="opencv")
    else:
        camera = dataclasses.replace(
            base.camera, source="folder", folder=str(find_shipped("samples"))
        )
    seed = options.model or find_shipped("models/smilebot.tflite")
    state = options.state
    return dataclasses.replace(
        base,
        camera=camera,
        model=dataclasses.replace(base.model, dir=str(state / "models"), seed=str(seed)),
        captures=dataclasses.replace(base.captures, folder=str(state / "captures")),
    )


def describe(result: PressResult) -> str:
    """What the bot saw and decided, for a person watching the terminal."""
    width, height = result.frame_size
    seen = f"sees {result.source} ({width}x{height})"
    if result.decision is None:
        return f"{seen}: error: {result.error}"
    faces = "; ".join(
        f"face at ({f.box[0]:.0f},{f.box[1]:.0f})-({f.box[2]:.0f},{f.box[3]:.0f}) "
        f"score {f.score:.2f} smile {f.smile:.2f}"
        for f in result.faces
    )
    answer = result.decision.outcome.name.replace("_", " ")
    stored = f"capture #{result.seq}" if result.seq is not None else "not stored"
    return (
        f"{seen}: {faces or 'no face'} -> {answer} "
        f"({result.latency_ms['to_led']:.1f} ms to LED; {stored})"
    )


def run_simulation(
    base: Config,
    options: SimOptions,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the daemon in simulation until stopped; returns its exit code.

    ``stdin`` (the Enter key) and ``out`` (what the bot sees, the LED) default to the
    process's standard input and output.
    """
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    config = simulation_config(base, options)
    auto = options.auto_press
    if auto is None and not stdin.isatty():
        auto = 2.0
        print("stdin is not a terminal: pressing the nose every 2 s (--auto-press)", file=out)
    served = 0

    def report(result: PressResult) -> None:
        nonlocal served
        served += 1
        print(describe(result), file=out, flush=True)

    def started(trigger: Trigger, daemon: Daemon, stop: threading.Event) -> None:
        print(
            f"smilebot simulation: model {daemon.store.version}, frames from "
            f"{daemon.camera.label}, captures in {config.captures.folder}",
            file=out,
        )
        if auto is None:
            print("press Enter to press the nose; q + Enter or Ctrl-C to stop", file=out)
            target = _keyboard
            args: tuple = (stdin, trigger, stop)
        else:
            print(f"pressing the nose every {auto:g} s; Ctrl-C to stop", file=out)
            target = _auto_press
            args = (auto, trigger, stop)
        threading.Thread(target=target, args=args, name="sim-nose", daemon=True).start()
        if options.presses is not None:
            threading.Thread(
                target=_stop_after,
                args=(options.presses, lambda: served, stop),
                name="sim-count",
                daemon=True,
            ).start()

    hooks = Hooks(simulate=True, led_observer=TerminalLed(out), report=report, started=started)
    return serve(config, hooks)


def _keyboard(stdin: TextIO, trigger: Trigger, stop: threading.Event) -> None:
    """Each Enter presses the nose; "q" or end of input stops the daemon."""
    for line in stdin:
        if stop.is_set():
            return
        if line.strip().lower() in ("q", "quit"):
            break
        trigger.press()
    stop.set()


def _auto_press(every_s: float, trigger: Trigger, stop: threading.Event) -> None:
    """Press the nose every ``every_s`` seconds until stopped."""
    while not stop.wait(every_s):
        trigger.press()


def _stop_after(n: int, served: Callable[[], int], stop: threading.Event) -> None:
    """Set ``stop`` once ``served()`` reaches ``n``."""
    while not stop.wait(0.05):
        if served() >= n:
            stop.set()
