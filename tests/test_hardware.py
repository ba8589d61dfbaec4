"""The GPIO seam on gpiozero's own mock pins (MockPWMPin for the LED, MockTriggerPin for the
HC-SR04): presses, bounce, proximity, LED patterns as value traces, pin factory checks."""

import importlib.util
import io
import itertools
import logging
import math
import threading
import time

import pytest
from gpiozero import Button, Device
from gpiozero.pins.mock import MockPin, MockTriggerPin

from smilebot.config import LedConfig, TriggerConfig
from smilebot.hardware import (
    ERROR_BLINK_S,
    NO_FACE_LEVEL,
    THINKING_HIGH,
    THINKING_LOW,
    HardwareError,
    Led,
    Pattern,
    ProximityLatch,
    TerminalLed,
    Trigger,
    check_pin_factory,
    use_mock_pins,
)

SPEED_OF_SOUND = 343.26  # m/s, as gpiozero's DistanceSensor assumes


@pytest.fixture
def pins():
    saved = Device.pin_factory
    use_mock_pins()
    factory = Device.pin_factory
    yield factory
    factory.reset()
    Device.pin_factory = saved


@pytest.fixture
def no_factory(monkeypatch):
    """No pin factory yet, so that check_pin_factory makes gpiozero's default one."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    saved = Device.pin_factory
    Device.pin_factory = None
    yield
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = saved


@pytest.fixture
def opened(request):
    """opened(thing) closes the Trigger or Led after the test, even when it fails."""

    def register(thing):
        request.addfinalizer(thing.close)
        return thing

    return register


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def trace(pin):
    """The values a mock pin went through since its states were last cleared."""
    return [s.state for s in pin.states]


# ------------------------------------------------------------------ the button


def test_a_press_calls_on_press_once(pins, opened):
    presses = []
    opened(Trigger(TriggerConfig(), presses.append))
    pin = pins.pin(17)
    pin.drive_low()
    pin.drive_high()
    assert presses == ["button"]


@pytest.mark.parametrize(("bounce_ms", "expected"), [(50, 1), (0, 3)])
def test_five_bounce_toggles_within_10ms_are_one_press(pins, opened, bounce_ms, expected):
    presses = []
    opened(Trigger(TriggerConfig(bounce_ms=bounce_ms), presses.append))
    pin = pins.pin(17)
    started = time.monotonic()
    for level in (0, 1, 0, 1, 0):  # low is pressed (pull_up)
        pin.drive_high() if level else pin.drive_low()
    assert time.monotonic() - started < 0.04  # ~0.1 ms, but inside the 50 ms bounce even if stalled
    pin.drive_high()
    assert presses == ["button"] * expected  # bounce_ms = 0: only the mock's lack of filtering


def test_a_press_after_the_bounce_time_counts(pins, opened):
    presses = []
    opened(Trigger(TriggerConfig(bounce_ms=20), presses.append))
    pin = pins.pin(17)
    pin.drive_low()
    pin.drive_high()
    time.sleep(0.1)  # well past 20 ms
    pin.drive_low()
    pin.drive_high()
    assert presses == ["button", "button"]


@pytest.mark.parametrize("pull_up", [True, False])
def test_press_drives_the_mock_button_and_releases_it(pins, opened, pull_up):
    presses = []
    trigger = opened(Trigger(TriggerConfig(pull_up=pull_up), presses.append))
    trigger.press(0.01)
    assert presses == ["button"]
    assert trace(pins.pin(17))[-3:] == [pull_up, not pull_up, pull_up]


def test_a_failing_on_press_is_logged_and_the_next_press_served(pins, opened, caplog):
    presses = []

    def on_press(source):
        presses.append(source)
        if len(presses) == 1:
            raise RuntimeError("queue broke")

    trigger = opened(Trigger(TriggerConfig(bounce_ms=0), on_press))
    trigger.press(0.0)
    trigger.press(0.0)
    assert presses == ["button", "button"]
    assert "on_press('button') failed" in caplog.text


# --------------------------------------------------------------- proximity


def test_latch_fires_once_per_approach():
    latch = ProximityLatch(threshold_m=0.5, rearm_m=0.8)
    walk_up = [2.0, 1.2, 0.5, 0.49, 0.3]  # 0.5 is not closer than 0.5
    assert [latch.update(d) for d in walk_up] == [False, False, False, True, False]
    hover = [0.45, 0.55, 0.49, 0.7, 0.8, 0.3]  # 0.8 is not past the re-arm distance
    assert not any(latch.update(d) for d in hover)
    assert not latch.armed
    assert [latch.update(d) for d in (0.81, 0.6, 0.4)] == [False, False, True]


def test_latch_ignores_missing_readings():
    latch = ProximityLatch(threshold_m=0.5, rearm_m=0.8)
    assert not latch.update(None)
    assert not latch.update(math.nan)
    assert latch.armed
    assert latch.update(0.2)
    assert not latch.update(None)
    assert not latch.update(math.nan)
    assert not latch.armed
    assert not latch.update(0.2)


def test_latch_needs_threshold_below_rearm():
    with pytest.raises(ValueError, match="threshold_m < rearm_m"):
        ProximityLatch(threshold_m=0.8, rearm_m=0.8)


def echo_s(distance_m):
    return 2 * distance_m / SPEED_OF_SOUND


def test_distance_sensor_presses_once_per_approach(pins, opened, caplog):
    caplog.set_level(logging.DEBUG, logger="smilebot.hardware")
    pins.pin_class = MockPin  # the echo and trigger pins are plain, not PWM
    echo = pins.pin(24)
    sensor = pins.pin(23, pin_class=MockTriggerPin, echo_pin=echo, echo_time=echo_s(4.0))
    presses = []
    # Wide margins: a loaded machine stretches the mock's echo by a few ms (~0.5 m).
    config = TriggerConfig(mode="proximity", threshold_m=1.0, rearm_m=3.0)
    opened(Trigger(config, presses.append))
    sensor.echo_time = echo_s(0.05)  # walk up
    assert wait_for(lambda: presses == ["proximity"])
    time.sleep(0.5)  # stand there: about 8 more readings
    assert presses == ["proximity"]
    sensor.echo_time = echo_s(4.0)  # step back
    assert wait_for(lambda: "re-armed" in caplog.text)
    assert presses == ["proximity"]
    sensor.echo_time = echo_s(0.05)  # come again
    assert wait_for(lambda: presses == ["proximity", "proximity"])


def test_digital_proximity_presses_on_each_arrival(pins, opened):
    presses = []
    config = TriggerConfig(mode="proximity", proximity="digital", bounce_ms=0)
    trigger = opened(Trigger(config, presses.append))
    pin = pins.pin(27)
    pin.drive_high()
    pin.drive_low()
    pin.drive_high()
    assert presses == ["proximity", "proximity"]
    pin.drive_low()
    trigger.press(0.0)  # no button: press() walks up to the sensor
    assert presses == ["proximity"] * 3


def test_both_modes_report_their_source(pins, opened):
    presses = []
    opened(Trigger(TriggerConfig(mode="both", proximity="digital"), presses.append))
    pins.pin(17).drive_low()
    pins.pin(27).drive_high()
    assert presses == ["button", "proximity"]


def test_close_stops_the_proximity_thread(pins):
    pins.pin_class = MockPin
    pins.pin(23, pin_class=MockTriggerPin, echo_pin=pins.pin(24), echo_time=echo_s(2.0))
    trigger = Trigger(TriggerConfig(mode="proximity"), lambda source: None)
    assert any(t.name == "proximity" for t in threading.enumerate())
    trigger.close()
    trigger.close()
    assert not any(t.name == "proximity" for t in threading.enumerate())


# ------------------------------------------------------------- pins in use


def test_a_pin_in_use_names_the_key(pins, opened):
    config = TriggerConfig(mode="both", proximity="digital", digital_pin=17)
    with pytest.raises(HardwareError, match=r"^trigger\.digital_pin 17: GPIO busy \(GPIOPinInUse"):
        Trigger(config, lambda source: None)
    button = opened(Button(17))  # the failed Trigger released the button it had opened
    with pytest.raises(HardwareError, match=r"^led\.pin 17: GPIO busy"):
        Led(LedConfig(pin=17))
    button.close()


# --------------------------------------------------------------------- LED


@pytest.fixture
def led_pin(pins):
    return pins.pin(18)


def led_threads():
    return [t for t in threading.enumerate() if t.name.startswith("led-")]


def test_smile_for_seconds_holds_on_then_turns_off(led_pin, opened):
    shown = []
    led = opened(Led(LedConfig(), on_change=shown.append))
    led_pin.clear_states()
    led.show(Pattern.SMILE, 0.3)
    assert led.pattern is Pattern.SMILE
    assert wait_for(lambda: led.pattern is Pattern.OFF)
    assert trace(led_pin) == [0.0, 1.0, 0.0]
    assert led_pin.states[-1].timestamp >= 0.29  # how long it stayed at 1.0
    assert shown == [Pattern.SMILE, Pattern.OFF]


def test_smile_without_seconds_stays_on(led_pin, opened):
    led = opened(Led(LedConfig()))
    led.show(Pattern.SMILE)
    time.sleep(0.2)
    assert led_pin.state == 1.0
    assert led.pattern is Pattern.SMILE


def test_thinking_pulses_softly_until_the_next_show(led_pin, opened):
    led = opened(Led(LedConfig()))
    led_pin.clear_states()
    led.show(Pattern.THINKING)
    assert wait_for(lambda: len(trace(led_pin)) >= 20)  # more than one 0.6 s period
    values = trace(led_pin)[1:]
    assert all(THINKING_LOW <= v <= THINKING_HIGH for v in values)
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert min(steps) < 0 < max(steps)  # it pulses: up and down
    led.show(Pattern.OFF)
    settled = trace(led_pin)
    time.sleep(0.2)  # five pulse steps
    assert trace(led_pin) == settled
    assert settled[-1] == 0.0


def test_no_face_is_two_dim_blinks(led_pin, opened):
    led = opened(Led(LedConfig()))
    led_pin.clear_states()
    led.show(Pattern.NO_FACE, 3.0)  # seconds time only SMILE
    assert wait_for(lambda: led.pattern is Pattern.OFF, timeout=5)
    assert trace(led_pin) == [0.0, NO_FACE_LEVEL, 0.0, NO_FACE_LEVEL, 0.0]
    assert 0 < NO_FACE_LEVEL < 0.5


def test_error_is_fast_full_blinks_for_two_seconds(led_pin, opened):
    led = opened(Led(LedConfig()))
    led_pin.clear_states()
    led.show(Pattern.ERROR)
    assert wait_for(lambda: led.pattern is Pattern.OFF)
    assert trace(led_pin) == [0.0] + [1.0, 0.0] * 10
    on_times = [s.timestamp for s in led_pin.states[2::2]]
    assert all(t >= ERROR_BLINK_S * 0.9 for t in on_times)
    assert sum(s.timestamp for s in led_pin.states[1:]) >= 1.9


def test_a_new_show_cancels_the_old_pattern(led_pin, opened):
    shown = []
    led = opened(Led(LedConfig(), on_change=shown.append))
    led.show(Pattern.ERROR)
    assert wait_for(lambda: led_pin.state == 1.0)
    led.show(Pattern.SMILE)
    settled = trace(led_pin)
    time.sleep(0.3)  # an ERROR blink would have turned it off by now
    assert trace(led_pin) == settled
    assert led_pin.state == 1.0
    assert shown == [Pattern.ERROR, Pattern.SMILE]
    assert led_threads() == []


def test_active_low_led_inverts_the_pin(led_pin, opened):
    led = opened(Led(LedConfig(active_high=False)))
    led.show(Pattern.SMILE)
    assert led_pin.state == 0.0
    led.show(Pattern.OFF)
    assert led_pin.state == 1.0


def test_close_turns_off_and_releases_the_pin(led_pin, opened):
    shown = []
    led = Led(LedConfig(), on_change=shown.append)
    led.show(Pattern.THINKING)
    assert wait_for(lambda: led_pin.state > 0)
    led.close()
    assert led_pin.state == 0.0
    assert led.pattern is Pattern.OFF
    assert led_threads() == []
    led.show(Pattern.SMILE)  # after close: nothing
    led.close()
    assert led_pin.state == 0.0
    assert shown == [Pattern.THINKING]
    opened(Led(LedConfig()))  # the pin is free again


def test_show_rejects_negative_seconds(pins, opened):
    led = opened(Led(LedConfig()))
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        led.show(Pattern.SMILE, -1.0)


# ------------------------------------------------------------ terminal LED


def test_terminal_led_plain_lines_differ_per_pattern():
    out = io.StringIO()
    draw = TerminalLed(out)  # a StringIO is no terminal: no colour
    for pattern in Pattern:
        draw(pattern)
    lines = out.getvalue().splitlines()
    assert lines[list(Pattern).index(Pattern.SMILE)] == "LED ( ^_^ ) SMILE"
    assert len(set(lines)) == len(Pattern)
    assert all(line.startswith("LED (") and "\x1b" not in line for line in lines)
    assert [line.split()[-1] for line in lines] == [p.name for p in Pattern]


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_led_colours_a_terminal():
    out = FakeTty()
    TerminalLed(out)(Pattern.SMILE)
    TerminalLed(out, color=False)(Pattern.ERROR)
    assert out.getvalue() == "\x1b[32mLED ( ^_^ ) SMILE\x1b[0m\nLED ( x_x ) ERROR\n"


def test_terminal_led_draws_what_the_led_shows(pins, opened):
    out = io.StringIO()
    led = opened(Led(LedConfig(), on_change=TerminalLed(out, color=True)))
    led.show(Pattern.NO_FACE)
    assert wait_for(lambda: led.pattern is Pattern.OFF, timeout=5)
    assert out.getvalue() == "\x1b[36mLED ( ?_? ) NO_FACE\x1b[0m\n\x1b[2mLED ( -_- ) OFF\x1b[0m\n"


# ------------------------------------------------------------- pin factory

PI_MODEL = b"Raspberry Pi 4 Model B Rev 1.4\x00"


def test_check_pin_factory_refuses_mock_pins_on_a_pi(pins, tmp_path):
    model = tmp_path / "model"
    model.write_bytes(PI_MODEL)
    with pytest.raises(HardwareError, match=r"^Raspberry Pi 4 Model B Rev 1\.4: .*MockFactory"):
        check_pin_factory(model)


def test_check_pin_factory_refuses_mock_pins_chosen_by_the_environment(
    no_factory, tmp_path, monkeypatch
):
    model = tmp_path / "model"
    model.write_bytes(PI_MODEL)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    with pytest.raises(HardwareError, match="MockFactory does not drive the real pins"):
        check_pin_factory(model)


@pytest.mark.skipif(
    importlib.util.find_spec("lgpio") is not None, reason="lgpio loads here: no fallback"
)
def test_check_pin_factory_reports_the_fallbacks(no_factory, tmp_path):
    model = tmp_path / "model"
    model.write_bytes(PI_MODEL)
    with pytest.raises(HardwareError, match="Falling back from lgpio") as raised:
        check_pin_factory(model)
    assert "\n" not in str(raised.value)


def test_check_pin_factory_does_nothing_off_a_pi(no_factory, tmp_path):
    check_pin_factory(tmp_path / "missing")
    other = tmp_path / "model"
    other.write_bytes(b"Generic x86 board\x00")
    check_pin_factory(other)
    assert Device.pin_factory is None  # it did not even try to make one
