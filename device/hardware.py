"""The GPIO seam: the nose button, the proximity sensor and the LED, through gpiozero.

:class:`Trigger` calls ``on_press(source)`` (``"button"`` or ``"proximity"``) once per press or
per approach; :class:`Led` shows a :class:`Pattern`; :func:`check_pin_factory` refuses a Pi on
which gpiozero fell back to a lesser pin factory (RELIABILITY item 18); :func:`use_mock_pins`
puts gpiozero on its own mock pins for the simulation and the tests, where :meth:`Trigger.press`
presses the nose and :class:`TerminalLed` draws the LED. A pin that cannot be opened raises
:class:`HardwareError`, one line naming the config key and the pin, e.g.
``trigger.button_pin 17: GPIO busy (GPIOPinInUse: pin GPIO17 is already in use by ...)``.

Not the job of this module: deciding what to show (:mod:`smilebot.decision`), queueing presses
or dropping those that come during a capture (the daemon: ``on_press`` must only queue), or
reading the config file (:mod:`smilebot.config`). Times are seconds, distances metres.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from gpiozero import PWMLED, Button, Device, DigitalInputDevice, DistanceSensor
from gpiozero.exc import (
    GPIOPinInUse,
    NativePinFactoryFallback,
    PinFactoryFallback,
    PWMSoftwareFallback,
)
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin
from gpiozero.pins.native import NativeFactory

from smilebot.config import LedConfig, TriggerConfig

logger = logging.getLogger(__name__)

DISTANCE_POLL_S = 0.06  # how often the proximity thread reads the DistanceSensor
DISTANCE_RANGE = 1.5  # the DistanceSensor measures up to this many times rearm_m

_T = TypeVar("_T")


class HardwareError(Exception):
    """A pin that cannot be opened or a bad pin factory; ``str()`` is one line."""


def use_mock_pins() -> None:
    """Put gpiozero on mock pins (PWM-capable, so that a PWMLED works): simulation and tests."""
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)


def check_pin_factory(model_path: Path = Path("/proc/device-tree/model")) -> None:
    """On a Raspberry Pi, raise :class:`HardwareError` unless gpiozero drives real pins.

    Call it before any device is made: it creates gpiozero's default pin factory and fails if
    gpiozero warned that it fell back from its preferred factory, found none, or ended on a
    mock or the pure-Python native factory. Off a Pi (``model_path`` missing or not naming a
    Raspberry Pi) it does nothing.
    """
    try:
        model = model_path.read_bytes().decode(errors="replace").strip("\x00\n ")
    except FileNotFoundError:
        return
    except OSError as e:
        raise HardwareError(f"{model_path}: cannot read the board model ({e})") from e
    if "Raspberry Pi" not in model:
        return
    failure: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Device.ensure_pin_factory()
        except Exception as e:  # BadPinFactory, or what a named factory raises when it fails
            failure = e
    fallbacks = [
        str(w.message)
        for w in caught
        if issubclass(w.category, (PinFactoryFallback, NativePinFactoryFallback))
    ]
    if failure is not None or fallbacks:
        what = "no GPIO pin factory works" if failure else "gpiozero fell back from its pin factory"
        raise HardwareError(f"{model}: {what}: {'; '.join(fallbacks) or failure}") from failure
    factory = Device.pin_factory
    if isinstance(factory, (MockFactory, NativeFactory)):
        raise HardwareError(
            f"{model}: gpiozero pin factory {type(factory).__name__} does not drive the real pins"
            " (unset GPIOZERO_PIN_FACTORY or install lgpio)"
        )


def _open(what: str, make: Callable[[], _T]) -> _T:
    """``make()``, with any failure turned into a HardwareError naming ``what`` (key and pin)."""
    try:
        return make()
    except Exception as e:  # gpiozero, lgpio and the OS each raise their own kinds
        busy = isinstance(e, GPIOPinInUse) or "busy" in str(e).lower()
        reason = "GPIO busy" if busy else "cannot open"
        raise HardwareError(f"{what}: {reason} ({type(e).__name__}: {e})") from e


class Pattern(enum.Enum):
    """What the LED says."""

    OFF = "off"
    THINKING = "thinking"  # a soft, fast pulse, until the next show()
    SMILE = "smile"  # fully on (for ``seconds`` if given)
    NO_FACE = "no_face"  # two short dim blinks, then off
    ERROR = "error"  # fast full blinks for 2 s, then off


_Steps = Sequence[tuple[float, float]]  # (LED value 0..1, seconds to hold it)

THINKING_LOW, THINKING_HIGH = 0.05, 0.5  # the soft pulse stays between these values
THINKING_PERIOD_S = 0.6
THINKING_FPS = 25
NO_FACE_LEVEL = 0.25  # the dim blinks' value
NO_FACE_BLINK_S = 0.15
ERROR_BLINK_S = 0.1  # on and off times; 10 blinks = 2 s


def _thinking_steps() -> _Steps:
    """One period of a triangle wave between THINKING_LOW and THINKING_HIGH."""
    n = round(THINKING_PERIOD_S * THINKING_FPS)
    span = THINKING_HIGH - THINKING_LOW
    return [(THINKING_LOW + span * (1 - abs(1 - 2 * i / n)), 1 / THINKING_FPS) for i in range(n)]


def _script(pattern: Pattern, seconds: float | None) -> float | tuple[_Steps, bool]:
    """A steady value, or (steps, repeat); steps that do not repeat end with the LED off."""
    if pattern is Pattern.OFF:
        return 0.0
    if pattern is Pattern.SMILE:
        return 1.0 if seconds is None else ([(1.0, seconds)], False)
    if pattern is Pattern.THINKING:
        return _thinking_steps(), True
    if pattern is Pattern.NO_FACE:
        blink = [(NO_FACE_LEVEL, NO_FACE_BLINK_S), (0.0, NO_FACE_BLINK_S)]
        return blink * 2, False
    return [(1.0, ERROR_BLINK_S), (0.0, ERROR_BLINK_S)] * 10, False  # Pattern.ERROR


class Led:
    """The nose LED on a PWM pin, showing one :class:`Pattern` at a time.

    Timed patterns play in a thread of their own; a new :meth:`show` stops the previous one
    before it returns. When a pattern ends by itself (SMILE with ``seconds``, NO_FACE, ERROR)
    the LED is off, :attr:`pattern` becomes OFF and ``on_change(Pattern.OFF)`` is called.
    After :meth:`close`, :meth:`show` does nothing.
    """

    def __init__(
        self, config: LedConfig, on_change: Callable[[Pattern], None] | None = None
    ) -> None:
        self._led = _open(
            f"led.pin {config.pin}",
            lambda: PWMLED(config.pin, active_high=config.active_high, initial_value=0),
        )
        self._on_change = on_change
        self._pattern = Pattern.OFF
        self._lock = threading.Lock()  # guards _pattern, _stop, _closed and each LED write
        self._stop: threading.Event | None = None
        self._player: threading.Thread | None = None
        self._closed = False

    @property
    def pattern(self) -> Pattern:
        """The pattern showing now (OFF once a timed pattern has ended)."""
        return self._pattern

    def show(self, pattern: Pattern, seconds: float | None = None) -> None:
        """Show ``pattern``, replacing the one showing; ``seconds`` times SMILE only (>= 0)."""
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"LED seconds must be >= 0 or None, got {seconds!r}")
        script = _script(pattern, seconds)
        with self._lock:
            if self._closed:
                return
            old = self._cancel()
            self._pattern = pattern
            if isinstance(script, float):
                self._led.value = script
            else:
                steps, repeat = script
                self._stop = threading.Event()
                self._player = threading.Thread(
                    target=self._play,
                    args=(steps, repeat, self._stop),
                    name=f"led-{pattern.value}",
                    daemon=True,
                )
                self._player.start()
        if old is not None:
            old.join()  # outside the lock: the old player may be waiting for it to stop
        if self._on_change is not None:
            self._on_change(pattern)

    def close(self) -> None:
        """Stop the pattern, turn the LED off and release the pin; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            old = self._cancel()
            self._pattern = Pattern.OFF
        if old is not None:
            old.join()
        self._led.off()
        self._led.close()

    def _cancel(self) -> threading.Thread | None:
        """Under the lock: stop the playing pattern (no write after this); returns its thread."""
        old = self._player
        if self._stop is not None:
            self._stop.set()
        self._stop = self._player = None
        return old

    def _play(self, steps: _Steps, repeat: bool, stop: threading.Event) -> None:
        for value, seconds in itertools.cycle(steps) if repeat else steps:
            with self._lock:
                if stop.is_set():
                    return
                self._led.value = value
            if stop.wait(seconds):
                return
        with self._lock:
            if stop.is_set():
                return
            self._led.value = 0.0
            self._pattern = Pattern.OFF
            self._stop = self._player = None  # ended: nothing for the next show() to stop
        if self._on_change is not None:
            self._on_change(Pattern.OFF)


class ProximityLatch:
    """Turns distance readings into one event per approach, with hysteresis.

    Fires when a reading is under ``threshold_m`` while armed, then stays quiet until a reading
    is over ``rearm_m`` (someone stepped back). Starts armed. None and NaN readings (no echo)
    are ignored. One thread calls :meth:`update`.
    """

    def __init__(self, threshold_m: float, rearm_m: float) -> None:
        if not 0 < threshold_m < rearm_m:
            raise ValueError(
                f"proximity needs 0 < threshold_m < rearm_m, got {threshold_m} and {rearm_m}"
            )
        self.threshold_m = threshold_m
        self.rearm_m = rearm_m
        self._armed = True

    @property
    def armed(self) -> bool:
        return self._armed

    def update(self, distance_m: float | None) -> bool:
        """Feed one reading (metres); True exactly when it fires."""
        if distance_m is None or math.isnan(distance_m):
            return False
        if self._armed and distance_m < self.threshold_m:
            self._armed = False
            return True
        if not self._armed and distance_m > self.rearm_m:
            self._armed = True
            logger.debug("proximity: re-armed at %.2f m", distance_m)
        return False


class Trigger:
    """The nose button and/or the proximity sensor; calls ``on_press(source)`` per press.

    ``source`` is ``"button"`` or ``"proximity"``. ``on_press`` runs on gpiozero's or this
    class's threads and must be cheap. Bounce: gpiozero gets ``bounce_time`` (lgpio drops edges
    shorter than it) and, as mock pins filter nothing, a press within ``bounce_ms`` of the last
    accepted one from the same source is dropped here too. A digital proximity sensor fires on
    its rising edge, a DistanceSensor through a :class:`ProximityLatch`.
    """

    def __init__(self, config: TriggerConfig, on_press: Callable[[str], None]) -> None:
        self._on_press = on_press
        self._button_active_high = not config.pull_up
        self._bounce_s = config.bounce_ms / 1000
        self._last_press: dict[str, float] = {}
        self._lock = threading.Lock()
        self._button: Button | None = None
        self._digital: DigitalInputDevice | None = None
        self._sensor: DistanceSensor | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        try:
            if config.mode in ("button", "both"):
                self._open_button(config)
            if config.mode in ("proximity", "both"):
                if config.proximity == "digital":
                    self._open_digital(config)
                else:
                    self._open_distance(config)
        except BaseException:
            self.close()
            raise

    def _open_button(self, config: TriggerConfig) -> None:
        self._button = _open(
            f"trigger.button_pin {config.button_pin}",
            lambda: Button(
                config.button_pin,
                pull_up=config.pull_up,
                bounce_time=self._bounce_s or None,
            ),
        )
        self._button.when_pressed = lambda: self._fire("button")

    def _open_digital(self, config: TriggerConfig) -> None:
        self._digital = _open(
            f"trigger.digital_pin {config.digital_pin}",
            lambda: DigitalInputDevice(config.digital_pin, bounce_time=self._bounce_s or None),
        )
        self._digital.when_activated = lambda: self._fire("proximity")

    def _open_distance(self, config: TriggerConfig) -> None:
        latch = ProximityLatch(config.threshold_m, config.rearm_m)

        def make() -> DistanceSensor:
            with warnings.catch_warnings():  # "use pigpio for accuracy": ours is coarse enough
                warnings.simplefilter("ignore", PWMSoftwareFallback)
                return DistanceSensor(
                    echo=config.echo_pin,
                    trigger=config.trigger_pin,
                    max_distance=config.rearm_m * DISTANCE_RANGE,
                    threshold_distance=config.threshold_m,
                    partial=True,  # never block the watcher; see _distance_m
                )

        self._sensor = _open(
            f"trigger.echo_pin {config.echo_pin}, trigger.trigger_pin {config.trigger_pin}", make
        )
        self._watcher = threading.Thread(
            target=self._watch, args=(self._sensor, latch), name="proximity", daemon=True
        )
        self._watcher.start()

    def _watch(self, sensor: DistanceSensor, latch: ProximityLatch) -> None:
        while not self._stop.wait(DISTANCE_POLL_S):
            if latch.update(_distance_m(sensor)):
                self._fire("proximity")

    def _fire(self, source: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_press.get(source)
            if last is not None and now - last < self._bounce_s:
                return
            self._last_press[source] = now
        logger.debug("press: %s", source)
        try:
            self._on_press(source)
        except Exception:  # keep the button and the watcher alive for the next press
            logger.exception("on_press(%r) failed", source)

    def press(self, seconds: float = 0.05) -> None:
        """Simulation only (mock pins): press the button for ``seconds`` and release it.

        With no button, someone walks up to the digital proximity sensor and away.
        """
        device = self._button or self._digital
        if device is None:
            raise HardwareError("trigger.press(): no button or digital proximity pin to drive")
        pin = device.pin
        if not isinstance(pin, MockPin):
            raise HardwareError(f"trigger.press(): {pin} is not a mock pin (simulation only)")
        active_high = self._button_active_high if device is self._button else True
        _drive(pin, active_high)
        time.sleep(seconds)
        _drive(pin, not active_high)

    def close(self) -> None:
        """Stop the watcher and release every pin; idempotent."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        for device in (self._button, self._digital, self._sensor):
            if device is not None:
                device.close()
        self._button = self._digital = self._sensor = None


def _distance_m(sensor: DistanceSensor) -> float | None:
    """The median distance (metres), or None before the first echo.

    With ``partial=True`` gpiozero reads exactly 0.0 while it has no sample; a real echo is never
    0 (the HC-SR04 cannot see closer than 2 cm).
    """
    distance = sensor.distance
    return None if distance == 0.0 else distance


def _drive(pin: MockPin, high: bool) -> None:
    if high:
        pin.drive_high()
    else:
        pin.drive_low()


_ART = {  # pattern -> (face, ANSI SGR colour)
    Pattern.OFF: ("( -_- )", "2"),  # faint
    Pattern.THINKING: ("( o_o )", "33"),  # yellow
    Pattern.SMILE: ("( ^_^ )", "32"),  # green
    Pattern.NO_FACE: ("( ?_? )", "36"),  # cyan
    Pattern.ERROR: ("( x_x )", "31"),  # red
}


class TerminalLed:
    """Draws the LED in a terminal, one line per change: pass it as ``Led(on_change=...)``."""

    def __init__(self, stream: TextIO = sys.stdout, color: bool | None = None) -> None:
        self.stream = stream
        self.color = stream.isatty() if color is None else color

    def __call__(self, pattern: Pattern) -> None:
        face, sgr = _ART[pattern]
        line = f"LED {face} {pattern.name}"
        if self.color:
            line = f"\x1b[{sgr}m{line}\x1b[0m"
        self.stream.write(line + "\n")
        self.stream.flush()
