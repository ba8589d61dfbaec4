"""Tests of smilebot.config: defaults, round trip, and one-line errors for bad files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from smilebot.config import (
    EX_CONFIG,
    CapturesConfig,
    Config,
    ConfigError,
    TriggerConfig,
    load,
    parse,
)

FULL = """\
[trigger]
mode = "both"
button_pin = 5
bounce_ms = 20
pull_up = false
proximity = "digital"
echo_pin = 6
trigger_pin = 13
digital_pin = 19
threshold_m = 0.4
rearm_m = 1.0

[camera]
source = "folder"
width = 320
height = 240
device = 1
folder = "/srv/frames"
timeout_s = 5.0
open_retries = 2
retry_s = 0.5

[model]
dir = "/opt/models"
seed = "/opt/smilebot.tflite"
threads = 4
validate_timeout_s = 10.0
rollback_after = 5
face_threshold = 0.6
smile_threshold = 0.7

[decision]
main_face = "centre"
smile_on_s = 1.5
smile_hysteresis = 0.1

[led]
pin = 12
active_high = false

[captures]
folder = "/srv/captures"
max_bytes = 1000000
max_count = 50
max_age_days = 7
min_free_mb = 100
privacy = true
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smilebot.toml"
    path.write_text(text)
    return path


def test_ex_config_is_78() -> None:
    assert EX_CONFIG == 78


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load(_write(tmp_path, ""))
    assert config == Config()
    assert config.trigger == TriggerConfig()
    assert config.trigger.mode == "button"
    assert config.trigger.rearm_m == 0.8
    assert config.camera.source == "picamera2"
    assert config.model.threads == 1
    assert config.model.face_threshold is None
    assert config.captures == CapturesConfig()
    assert config.captures.max_bytes == 1 << 30
    assert "face_threshold" not in config.to_dict()["model"]


def test_full_file_round_trips(tmp_path: Path) -> None:
    config = load(_write(tmp_path, FULL))
    assert config.to_dict() == tomllib.loads(FULL)
    assert parse(config.to_dict()) == config
    assert config.model.smile_threshold == 0.7
    with pytest.raises(AttributeError):
        config.led.pin = 3  # type: ignore[misc]


def test_int_accepted_for_float(tmp_path: Path) -> None:
    config = load(_write(tmp_path, "[trigger]\nthreshold_m = 1\nrearm_m = 2\n"))
    assert config.trigger.rearm_m == 2.0
    assert isinstance(config.trigger.rearm_m, float)


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("[lights]\npin = 3\n", "lights", '{"pin": 3}'),
        ("[led]\ncolour = 'red'\n", "led.colour", '"red"'),
        ("[trigger]\nbounce_ms = 'fast'\n", "trigger.bounce_ms", '"fast"'),
        ("[trigger]\npull_up = 1\n", "trigger.pull_up", "1"),
        ("[led]\npin = true\n", "led.pin", "true"),
        ("[camera]\nwidth = 6.5\n", "camera.width", "6.5"),
        ("[model]\nthreads = 8\n", "model.threads", "8"),
        ("[model]\nsmile_threshold = 1.5\n", "model.smile_threshold", "1.5"),
        ("[trigger]\nbutton_pin = -1\n", "trigger.button_pin", "-1"),
        ("[trigger]\nmode = 'sometimes'\n", "trigger.mode", '"sometimes"'),
        ("[decision]\nmain_face = 'center'\n", "decision.main_face", '"center"'),
        ("[camera]\nsource = 'folder'\n", "camera.folder", '""'),
        ("[trigger]\nthreshold_m = 0.8\nrearm_m = 0.8\n", "trigger.rearm_m", "0.8"),
        ("[trigger]\nrearm_m = 0.3\n", "trigger.rearm_m", "0.3"),
        ("led = 3\n", "led", "3"),
    ],
)
def test_bad_values_name_file_key_and_value(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: ")
    assert f"got {value}" in message
    assert info.value.key == key


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert "No such file" in message


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '[trigger]\nmode = "button"\nbounce_ms 50\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert "line 3" in message
