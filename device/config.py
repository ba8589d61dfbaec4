"""The daemon's configuration: one TOML file, validated at start.

The default path is :data:`DEFAULT_PATH` (``/etc/smilebot/smilebot.toml``); :func:`load` takes
another. Every key is optional and an empty file is a valid config. Unknown sections and keys,
wrong types and out-of-range values are rejected with :class:`ConfigError`, whose message is one
line naming the file, the dotted key and the bad value, e.g.
``/etc/smilebot/smilebot.toml: trigger.bounce_ms: expected an integer >= 0, got "fast"``.
The caller prints it and exits with :data:`EX_CONFIG` (78). Integers are accepted where a float
is expected; booleans are never numbers. Pins are BCM numbers 0..27.

Sections, keys and defaults::

    [trigger]
    mode = "button"        # "button" | "proximity" | "both"
    button_pin = 17
    bounce_ms = 50         # >= 0
    pull_up = true
    proximity = "distance" # "distance" (HC-SR04 DistanceSensor) | "digital" (IR/PIR on/off)
    echo_pin = 24
    trigger_pin = 23
    digital_pin = 27
    threshold_m = 0.5      # > 0; a DistanceSensor fires when someone comes closer than this,
                           # once per approach
    rearm_m = 0.8          # must be > threshold_m: they must step back past this to re-arm

    [camera]
    source = "picamera2"   # "picamera2" | "opencv" | "folder"
    width = 640            # >= 1
    height = 480           # >= 1
    device = 0             # opencv camera index, >= 0
    folder = ""            # images to replay; required non-empty when source = "folder"
    timeout_s = 2.0        # > 0: a grab that takes longer is a hung camera
    open_retries = 5       # >= 0: attempts after the first when the camera is busy at start
    retry_s = 1.0          # >= 0: seconds between those attempts

    [model]
    dir = "/var/lib/smilebot/models"   # non-empty: the model store (see smilebot.model_store);
                           # new models are dropped into <dir>/incoming/ (make deploy)
    seed = ""              # a .tflite (its .json beside it) installed when the store is empty
    threads = 1            # 1..4
    validate_timeout_s = 30.0  # > 0: a dropped model's check in a child process
    rollback_after = 3     # >= 1: consecutive inference errors that roll back to the last model
    # face_threshold = 0.5   optional, 0..1; overrides the model sidecar's (unset: sidecar's)
    # smile_threshold = 0.5  optional, 0..1; overrides the model sidecar's (unset: sidecar's)

    [decision]
    main_face = "largest"  # "largest" | "centre"
    smile_on_s = 3.0       # >= 0: how long the LED smiles
    smile_hysteresis = 0.05  # 0..1: while the LED smiles, the threshold is this much lower

    [led]
    pin = 18
    active_high = true

    [captures]
    folder = "/var/lib/smilebot/captures"   # non-empty
    max_bytes = 1073741824 # 1 GiB, >= 0
    max_count = 10000      # >= 0
    max_age_days = 30      # >= 0
    min_free_mb = 200      # >= 0
    privacy = false

:meth:`Config.to_dict` returns the nested sections as plain dicts, leaving out unset optional
keys (TOML has no null), so that it can be written back as TOML and parses to an equal Config.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/etc/smilebot/smilebot.toml")
EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(ValueError):
    """A bad config file; ``str()`` is one line naming the file, the dotted key and the value."""

    def __init__(self, source: str | Path, key: str | None, message: str) -> None:
        text = f"{source}: {key}: {message}" if key else f"{source}: {message}"
        super().__init__(" ".join(text.split()))
        self.source = str(source)
        self.key = key


@dataclass(frozen=True)
class _Rule:
    kind: type  # int, float, bool or str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    optional: bool = False

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        text = what[self.kind]
        if self.nonempty:
            text = "a non-empty string"
        if self.lo is not None and self.hi is not None:
            text += f" in {self.lo}..{self.hi}"
        elif self.lo is not None:
            text += f" {'>' if self.lo_open else '>='} {self.lo}"
        return text

    def check(self, value: Any) -> Any | None:
        """The value converted to :attr:`kind`, or None when it breaks the rule."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            return None
        if self.choices and value not in self.choices:
            return None
        if self.nonempty and not value:
            return None
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return None
        if self.hi is not None and value > self.hi:
            return None
        return value


def _key(default: Any, kind: type, **rule: Any) -> Any:
    return field(default=default, metadata={"rule": _Rule(kind, **rule)})


def _pin(default: int) -> Any:
    return _key(default, int, lo=0, hi=27)


@dataclass(frozen=True)
class TriggerConfig:
    mode: str = _key("button", str, choices=("button", "proximity", "both"))
    button_pin: int = _pin(17)
    bounce_ms: int = _key(50, int, lo=0)
    pull_up: bool = _key(True, bool)
    proximity: str = _key("distance", str, choices=("distance", "digital"))
    echo_pin: int = _pin(24)
    trigger_pin: int = _pin(23)
    digital_pin: int = _pin(27)
    threshold_m: float = _key(0.5, float, lo=0, lo_open=True)
    rearm_m: float = _key(0.8, float, lo=0, lo_open=True)


@dataclass(frozen=True)
class CameraConfig:
    source: str = _key("picamera2", str, choices=("picamera2", "opencv", "folder"))
    width: int = _key(640, int, lo=1)
    height: int = _key(480, int, lo=1)
    device: int = _key(0, int, lo=0)
    folder: str = _key("", str)
    timeout_s: float = _key(2.0, float, lo=0, lo_open=True)
    open_retries: int = _key(5, int, lo=0)
    retry_s: float = _key(1.0, float, lo=0)


@dataclass(frozen=True)
class ModelConfig:
    dir: str = _key("/var/lib/smilebot/models", str, nonempty=True)
    seed: str = _key("", str)
    threads: int = _key(1, int, lo=1, hi=4)
    validate_timeout_s: float = _key(30.0, float, lo=0, lo_open=True)
    rollback_after: int = _key(3, int, lo=1)
    face_threshold: float | None = _key(None, float, lo=0, hi=1, optional=True)
    smile_threshold: float | None = _key(None, float, lo=0, hi=1, optional=True)


@dataclass(frozen=True)
class DecisionConfig:
    main_face: str = _key("largest", str, choices=("largest", "centre"))
    smile_on_s: float = _key(3.0, float, lo=0)
    smile_hysteresis: float = _key(0.05, float, lo=0, hi=1)


@dataclass(frozen=True)
class LedConfig:
    pin: int = _pin(18)
    active_high: bool = _key(True, bool)


@dataclass(frozen=True)
class CapturesConfig:
    folder: str = _key("/var/lib/smilebot/captures", str, nonempty=True)
    max_bytes: int = _key(1 << 30, int, lo=0)
    max_count: int = _key(10000, int, lo=0)
    max_age_days: int = _key(30, int, lo=0)
    min_free_mb: int = _key(200, int, lo=0)
    privacy: bool = _key(False, bool)


@dataclass(frozen=True)
class Config:
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    led: LedConfig = field(default_factory=LedConfig)
    captures: CapturesConfig = field(default_factory=CapturesConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dicts, unset optional keys left out; :func:`parse` takes it back."""
        return {
            f.name: {
                k: v for k, v in dataclasses.asdict(getattr(self, f.name)).items() if v is not None
            }
            for f in dataclasses.fields(self)
        }


_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def _show(value: Any) -> str:
    """A value as TOML would spell it, on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, default=str)


def parse(data: dict[str, Any], source: str | Path = "<config>") -> Config:
    """Validates a parsed TOML document; ``source`` names it in errors."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name not in _SECTIONS:
            raise ConfigError(
                source, name, f"unknown section (known: {', '.join(_SECTIONS)}), got {_show(table)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(source, name, f"expected a table [{name}], got {_show(table)}")
        fields = {f.name: f.metadata["rule"] for f in dataclasses.fields(_SECTIONS[name])}
        values: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{name}.{key}"
            rule = fields.get(key)
            if rule is None:
                known = ", ".join(fields)
                raise ConfigError(
                    source, dotted, f"unknown key (known: {known}), got {_show(value)}"
                )
            checked = rule.check(value)
            if checked is None:
                raise ConfigError(source, dotted, f"expected {rule.describe()}, got {_show(value)}")
            values[key] = checked
        sections[name] = _SECTIONS[name](**values)
    config = Config(**sections)
    trigger, camera = config.trigger, config.camera
    if trigger.rearm_m <= trigger.threshold_m:
        raise ConfigError(
            source,
            "trigger.rearm_m",
            f"expected a number > trigger.threshold_m ({trigger.threshold_m}), "
            f"got {_show(trigger.rearm_m)}",
        )
    if camera.source == "folder" and not camera.folder:
        raise ConfigError(
            source,
            "camera.folder",
            'expected a non-empty string when camera.source = "folder", '
            f"got {_show(camera.folder)}",
        )
    return config


def load(path: str | Path = DEFAULT_PATH) -> Config:
    """Reads and validates the TOML file at ``path``; raises :class:`ConfigError`."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read config: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"TOML syntax error: {exc}") from exc
    return parse(data, path)
