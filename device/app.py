"""Starting and stopping the daemon: checks, the parts in order, READY=1, signals, teardown.

:func:`serve` opens the parts in this order, and only then tells systemd ``READY=1``:

1. refuse to run as root (the unit runs it as user ``smilebot``; the simulation may run
   as anyone) or in a working directory it cannot write (lgpio needs it);
2. the pin factory: on a Pi, a fallback to a non-native factory is an error
   (:func:`smilebot.hardware.check_pin_factory`); the simulation uses mock pins;
3. the capture log (crash recovery runs here), then the model store (the current model,
   else the last good one), then the camera (bounded retries while busy);
4. the LED and the trigger.

Any failure is one error line on stderr (journald keeps it) and a non-zero exit before
READY=1 (:data:`EX_UNAVAILABLE`), so systemd sees a failed start and restarts it.
SIGTERM and SIGINT set the stop event: the in-flight press is finished, ``STOPPING=1``
is sent, the LED is switched off and every part closed, exit 0. A hung camera at run
time exits :data:`EX_SOFTWARE`.

Not the job of this module: what happens per press (:mod:`smilebot.daemon`), the
simulation's keyboard and terminal (:mod:`smilebot.simulation`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from smilebot.camera import CameraError, open_source
from smilebot.capture_log import CaptureLog, CaptureLogError, Retention
from smilebot.config import Config
from smilebot.daemon import Daemon, FatalError, PressResult
from smilebot.detector import ModelError
from smilebot.hardware import HardwareError, Led, Pattern, Trigger, check_pin_factory, use_mock_pins
from smilebot.model_store import ModelStore, ModelStoreError
from smilebot.runtime import RuntimeMissingError
from smilebot.systemd import Notifier

logger = logging.getLogger(__name__)

EX_UNAVAILABLE = 69  # sysexits.h: a part (camera, pins, model, log) could not be opened
EX_SOFTWARE = 70  # sysexits.h: the daemon failed at run time (a hung camera)


@dataclass
class Hooks:
    """What the simulation adds to a plain run; every field is optional."""

    simulate: bool = False  # mock pins, running as root allowed
    led_observer: Callable[[Pattern], None] | None = None
    report: Callable[[PressResult], None] | None = None
    # Called once everything is up, before the main loop: the simulation starts its
    # keyboard and auto-press threads here.
    started: Callable[[Trigger, Daemon, threading.Event], None] | None = None


def retention(config: Config) -> Retention:
    """The capture log's :class:`Retention` from ``[captures]`` (0 means no limit)."""
    c = config.captures
    return Retention(
        max_bytes=c.max_bytes or None,
        max_count=c.max_count or None,
        max_age_days=c.max_age_days or None,
        min_free_bytes=c.min_free_mb * 1024 * 1024,
        privacy=c.privacy,
    )


def serve(
    config: Config,
    hooks: Hooks | None = None,
    *,
    stop: threading.Event | None = None,
    notifier: Notifier | None = None,
    euid: Callable[[], int] = os.geteuid,
    handle_signals: bool = True,
) -> int:
    """Run the daemon until stopped; returns the exit code (see the module docstring)."""
    hooks = hooks or Hooks()
    stop = stop or threading.Event()
    notifier = notifier or Notifier()
    if euid() == 0 and not hooks.simulate:
        logger.error(
            "refusing to run as root: run it as the smilebot user (systemd/smilebot.service)"
        )
        return EX_UNAVAILABLE
    if not hooks.simulate and not os.access(Path.cwd(), os.W_OK):
        logger.error(
            "cannot start: the working directory %s is not writable (lgpio makes its "
            "notification FIFO there; the unit sets WorkingDirectory=/var/lib/smilebot)",
            Path.cwd(),
        )
        return EX_UNAVAILABLE
    with ExitStack() as parts:
        if handle_signals:
            _stop_on_signals(stop, parts)
        try:
            daemon, trigger = _open_parts(config, hooks, notifier, parts)
        except (
            CaptureLogError,
            ModelStoreError,
            ModelError,
            RuntimeMissingError,
            CameraError,
            HardwareError,
        ) as err:
            logger.error("cannot start: %s", err)
            return EX_UNAVAILABLE
        parts.callback(daemon.led.show, Pattern.OFF)  # runs first at exit: LED off
        parts.callback(notifier.stopping)
        if hooks.started is not None:
            hooks.started(trigger, daemon, stop)
        notifier.ready()
        notifier.status("ready: waiting for a press")
        logger.info(
            "ready: model %s, camera %s, trigger %s",
            daemon.store.version,
            daemon.camera.label,
            config.trigger.mode,
        )
        try:
            daemon.run(stop)
        except FatalError as err:
            logger.error("stopping: %s", err)
            return EX_SOFTWARE
        c = daemon.counters
        logger.info(
            "stopped: %d presses served, %d failed, %d dropped, %d captures stored",
            c.served,
            c.failed,
            c.dropped,
            c.stored,
        )
    return 0


def _open_parts(
    config: Config, hooks: Hooks, notifier: Notifier, parts: ExitStack
) -> tuple[Daemon, Trigger]:
    """Open every part in the documented order; each is closed by ``parts`` at exit."""
    if hooks.simulate:
        use_mock_pins()
    else:
        check_pin_factory()
    log = parts.enter_context(CaptureLog.open(Path(config.captures.folder), retention(config)))
    model = config.model
    store = ModelStore.open(
        Path(model.dir),
        threads=model.threads,
        seed=Path(model.seed) if model.seed else None,
        validate_timeout_s=model.validate_timeout_s,
        rollback_after=model.rollback_after,
    )
    parts.callback(store.close)
    notifier.status("opening the camera")
    camera = open_source(config.camera)
    parts.callback(camera.close)
    led = Led(config.led, on_change=hooks.led_observer)
    parts.callback(led.close)
    daemon = Daemon(
        config,
        camera=camera,
        store=store,
        log=log,
        led=led,
        notifier=notifier,
        report=hooks.report,
    )
    trigger = Trigger(config.trigger, daemon.press)
    parts.callback(trigger.close)
    return daemon, trigger


def _stop_on_signals(stop: threading.Event, parts: ExitStack) -> None:
    """SIGTERM and SIGINT set ``stop`` until ``parts`` closes, then the old handlers are back
    (only the main thread may install handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        logger.info("%s: finishing the current press, then stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        parts.callback(signal.signal, signum, signal.signal(signum, handler))
