"""The daemon's main loop: one press at a time, frame -> model -> decision -> LED -> log.

Presses arrive from GPIO callback threads through :meth:`Daemon.press`, which only takes
a note: a press that comes while another is waiting or being served is dropped and
counted (never a second concurrent capture). The main loop (:meth:`Daemon.run`) serves
each press with :meth:`Daemon.serve`:

1. LED "thinking"; grab the latest frame (with the camera's timeout);
2. the model (:class:`~smilebot.detector.Detector` of the model store);
3. the decision (:class:`~smilebot.decision.Decider`), then the LED shows it;
4. the capture (JPEG + record, or the record alone in privacy mode) goes to the capture
   log *after* the LED, so disk latency never delays the answer;
5. one log line per press (journald collects stderr): result and latency per stage.

Between presses the loop pings systemd's watchdog (from this thread only, so a hung loop
stops the pings) and lets the model store poll its drop folder. A camera error shows the
error pattern and the next press is served; a camera that hangs past its timeout is fatal
(:class:`FatalError`): the daemon exits non-zero and systemd restarts it. Inference
errors count towards the model store's rollback.

Not the job of this module: opening the camera, the pins, the model store or the log,
signals or READY=1 (:mod:`smilebot.app`); the simulation's keyboard (:mod:`smilebot.simulation`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from smilebot.camera import CameraError, CameraTimeout, Frame, FrameSource
from smilebot.capture_log import CaptureLog, CaptureLogError
from smilebot.config import Config
from smilebot.decision import Decider, Decision, Outcome
from smilebot.detector import Detector, Face
from smilebot.hardware import Led, Pattern
from smilebot.model_store import ModelStore, Swap
from smilebot.systemd import Notifier

logger = logging.getLogger(__name__)

IDLE_TICK_S = 0.1  # how often an idle loop wakes to ping the watchdog and poll the store
PURGE_EVERY_S = 3600.0  # how often the capture log's retention runs without any press
LED_PATTERNS = {
    Outcome.SMILE: Pattern.SMILE,
    Outcome.NO_SMILE: Pattern.OFF,
    Outcome.NO_FACE: Pattern.NO_FACE,
}
STAGES = ("wait", "grab", "preprocess", "invoke", "decode", "nms", "decide", "led", "to_led")


class FatalError(Exception):
    """The daemon cannot go on (a hung camera): exit non-zero, systemd restarts it."""


@dataclass(frozen=True)
class Press:
    """A press accepted from ``trigger`` ("button", "proximity", ...) at monotonic ``time`` s."""

    trigger: str
    time: float


@dataclass(frozen=True)
class PressResult:
    """What one press gave: the decision (None when the capture failed) and its cost.

    ``latency_ms`` has the :data:`STAGES` in milliseconds ("to_led" runs from the press
    to the LED showing the answer) and "log", the capture log's write; ``seq`` is the
    capture's sequence number, None when nothing was stored.
    """

    press: Press
    seq: int | None
    source: str
    frame_size: tuple[int, int]
    faces: tuple[Face, ...]
    decision: Decision | None
    model_version: str
    latency_ms: dict[str, float]
    error: str | None = None

    def line(self) -> str:
        """The journal line, e.g. ``press #12 button: SMILE (smile 0.91, threshold 0.74, 1 face);
        2.2 ms to LED (grab 0.3 ...); log 2.1 ms; model 095d930ab5f6``."""
        ms = self.latency_ms
        if self.decision is None:
            head = f"ERROR ({self.error})"
        else:
            face, n = self.decision.face, len(self.faces)
            faces = f"{n} face{'s' if n != 1 else ''}"
            head = self.decision.outcome.name.replace("_", " ")
            if face is not None:
                head += (
                    f" (smile {face.smile:.2f}, threshold {self.decision.threshold:.2f}, {faces})"
                )
            if self.error:
                head += f", not stored: {self.error}"
        stages = " ".join(f"{k} {ms[k]:.1f}" for k in STAGES[1:-1] if k in ms)
        seq = f"#{self.seq}" if self.seq is not None else "-"
        to_led = f"{ms['to_led']:.1f} ms to LED" if "to_led" in ms else "no answer"
        return (
            f"press {seq} {self.press.trigger}: {head}; {to_led} ({stages}); "
            f"log {ms.get('log', 0.0):.1f} ms; model {self.model_version}"
        )


@dataclass
class Counters:
    """Presses accepted, dropped (busy) and served, captures stored or not."""

    accepted: int = 0
    dropped: int = 0
    served: int = 0
    failed: int = 0
    stored: int = 0
    not_stored: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Daemon:
    """Serves presses one at a time; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        camera: FrameSource,
        store: ModelStore,
        log: CaptureLog | None,
        led: Led,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[PressResult], None] | None = None,
    ) -> None:
        self.config = config
        self.camera = camera
        self.store = store
        self.log = log
        self.led = led
        self.notifier = notifier or Notifier({})
        self.counters = Counters()
        self._clock = clock
        self._report = report
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: Press | None = None
        self._busy = False
        self._next_ping = float("-inf")
        self._next_purge = float("-inf")
        decision = config.decision
        self.decider = Decider(
            0.5,
            hysteresis=decision.smile_hysteresis,
            rule=decision.main_face,
            smile_on_s=decision.smile_on_s,
        )
        self._use(store.detector)

    # ------------------------------------------------------------ from GPIO threads

    def press(self, trigger: str) -> bool:
        """Note a press (thread-safe, cheap); False when it was dropped because busy."""
        with self._lock:
            if self._busy or self._pending is not None:
                self.counters.dropped += 1
                logger.debug("press from %s dropped: a capture is in flight", trigger)
                return False
            self._pending = Press(trigger, self._clock())
            self.counters.accepted += 1
        self._wake.set()
        return True

    # ------------------------------------------------------------ the main loop

    def run(self, stop: threading.Event) -> None:
        """Serve presses until ``stop`` is set; raises :class:`FatalError` on a hung camera.

        An in-flight press is always finished (every stage is bounded by a timeout)
        before ``stop`` is looked at again.
        """
        while not stop.is_set():
            self.tick()
            self._wake.wait(IDLE_TICK_S)
            with self._lock:
                press, self._pending = self._pending, None
                self._busy = press is not None
                self._wake.clear()
            if press is None:
                continue
            try:
                self.serve(press)
            finally:
                with self._lock:
                    self._busy = False

    def tick(self) -> None:
        """Between presses: ping the watchdog when due, let the model store poll, and
        apply the capture log's retention at start and hourly (old captures go even when
        nobody presses the nose).
        """
        interval = self.notifier.watchdog_interval
        now = self._clock()
        if interval is not None and now >= self._next_ping:
            self.notifier.watchdog()
            # Twice per half-period: pings at least 4x per WATCHDOG_USEC while healthy.
            self._next_ping = now + interval / 2
        if self.log is not None and now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            try:
                if pruned := self.log.purge():
                    logger.info("retention: %d old capture(s) removed", pruned)
            except (CaptureLogError, OSError) as err:
                logger.error("retention failed: %s", err)
        swap = self.store.poll()
        if swap is not None:
            self._swapped(swap)

    def serve(self, press: Press) -> PressResult:
        """One press, start to end; the result is logged and passed to ``report``."""
        clock = self._clock
        ms: dict[str, float] = {}
        started = clock()
        ms["wait"] = (started - press.time) * 1e3
        self.led.show(Pattern.THINKING)
        detector = self.store.detector
        try:
            frame = self.camera.grab(self.config.camera.timeout_s)
        except CameraTimeout as err:
            self.led.show(Pattern.ERROR)
            raise FatalError(f"camera {self.camera.label} hangs: {err}") from err
        except CameraError as err:
            return self._failed(press, detector, ms, f"camera: {err}")
        grabbed = clock()
        ms["grab"] = (grabbed - started) * 1e3
        try:
            detections = detector.detect(frame.image, frame.color)
        except ValueError as err:  # a frame preprocess refuses: not the model's fault
            return self._failed(press, detector, ms, f"bad frame: {err}", frame)
        except Exception as err:  # a failing model: counts towards rollback, keep serving
            swap = self.store.inference_failed(err)
            if swap is not None:
                self._swapped(swap)
            return self._failed(press, detector, ms, f"inference: {err}", frame)
        self.store.inference_ok()
        timings = detections.timings
        ms["preprocess"] = timings.preprocess_ms
        ms["invoke"] = timings.invoke_ms
        ms["decode"] = timings.decode_ms
        ms["nms"] = timings.nms_ms
        detected = clock()
        height, width = frame.image.shape[:2]
        decision = self.decider.decide(detections.faces, width, height, detected)
        decided = clock()
        ms["decide"] = (decided - detected) * 1e3
        smile_s = self.config.decision.smile_on_s
        self.led.show(LED_PATTERNS[decision.outcome], smile_s)
        shown = clock()
        ms["led"] = (shown - decided) * 1e3
        ms["to_led"] = (shown - press.time) * 1e3
        seq, error = self._store(press, detector, detections.faces, decision, ms, frame)
        ms["log"] = (clock() - shown) * 1e3
        self.counters.served += 1
        key = decision.outcome.value
        self.counters.outcomes[key] = self.counters.outcomes.get(key, 0) + 1
        result = PressResult(
            press=press,
            seq=seq,
            source=frame.label,
            frame_size=(width, height),
            faces=detections.faces,
            decision=decision,
            model_version=detector.version,
            latency_ms=ms,
            error=error,
        )
        self._finish(result)
        return result

    # ------------------------------------------------------------ helpers

    def _store(
        self,
        press: Press,
        detector: Detector,
        faces: tuple[Face, ...],
        decision: Decision,
        ms: dict[str, float],
        frame: Frame,
    ) -> tuple[int | None, str | None]:
        """Write the capture; (seq, None), or (None, why) when it was not stored."""
        if self.log is None:
            return None, None
        try:
            seq = self.log.add(
                trigger=press.trigger,
                model_version=detector.version,
                detections=[
                    {"box": list(f.box), "score": f.score, "smile": f.smile} for f in faces
                ],
                decision=decision.outcome.value,
                latency_ms={k: round(v, 3) for k, v in ms.items()},
                frame=None if self.log.retention.privacy else frame.log_image(),
            )
        except (CaptureLogError, OSError, ValueError) as err:
            self.counters.not_stored += 1
            logger.error("capture not stored: %s", err)
            return None, str(err)
        self.counters.stored += 1
        return seq, None

    def _failed(
        self,
        press: Press,
        detector: Detector,
        ms: dict[str, float],
        error: str,
        frame: Frame | None = None,
    ) -> PressResult:
        """The error pattern and an error line; nothing is stored for a failed capture."""
        self.led.show(Pattern.ERROR)
        self.counters.failed += 1
        size = (0, 0) if frame is None else (frame.image.shape[1], frame.image.shape[0])
        result = PressResult(
            press=press,
            seq=None,
            source=self.camera.label if frame is None else frame.label,
            frame_size=size,
            faces=(),
            decision=None,
            model_version=detector.version,
            latency_ms=ms,
            error=error,
        )
        self._finish(result)
        return result

    def _finish(self, result: PressResult) -> None:
        line = result.line()
        (logger.error if result.decision is None else logger.info)("%s", line)
        c = self.counters
        self.notifier.status(
            f"{c.served} served, {c.failed} failed, {c.dropped} dropped; last: "
            + ("error" if result.decision is None else result.decision.outcome.value)
        )
        if self._report is not None:
            self._report(result)

    def _swapped(self, swap: Swap) -> None:
        logger.warning(
            "model %s -> %s (%s)", swap.old_version or "none", swap.new_version, swap.reason
        )
        self._use(self.store.detector)

    def _use(self, detector: Detector) -> None:
        """Apply the config's threshold overrides to a newly served detector."""
        model = self.config.model
        thresholds = detector.sidecar.thresholds
        if model.face_threshold is not None:
            thresholds = replace(thresholds, face=model.face_threshold)
        detector.thresholds = thresholds
        self.decider.smile_threshold = (
            thresholds.smile if model.smile_threshold is None else model.smile_threshold
        )
