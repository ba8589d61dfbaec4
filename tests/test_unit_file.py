"""Tests of the files that install the daemon: systemd/smilebot.service, smilebot.toml and
sysusers.conf (RELIABILITY.md item 20).

The unit is read with a small parser that keeps repeated keys (systemd allows them; the last
empty assignment resets a list). Where systemd's own tools are installed, the unit is also
checked by ``systemd-analyze verify`` and scored by ``systemd-analyze security --offline``,
and the sysusers snippet is applied by ``systemd-sysusers --root`` to a scratch root; where
they are not, those tests skip. None of them needs systemd running as PID 1.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from smilebot import config

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "smilebot.service"
TOML = SYSTEMD / "smilebot.toml"
SYSUSERS = SYSTEMD / "sysusers.conf"

EXECUTABLE = "/opt/smilebot/venv/bin/smilebot"
CONFIG_PATH = "/etc/smilebot/smilebot.toml"
STATE_DIR = Path("/var/lib/smilebot")
SHIPPED_MODEL = "/opt/smilebot/models/smilebot.tflite"
MAX_EXPOSURE = 3.0

# Device groups from /proc/devices that the daemon needs: lgpio opens /dev/gpiochip*; libcamera
# opens /dev/video* and /dev/v4l-subdev* (both "video4linux"), /dev/media* and /dev/dma_heap/*.
ALLOWED_DEVICES = {"char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"}

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value in order, as systemd reads them.

    Comments start a line with ``#`` or ``;``; a trailing backslash continues a line; an empty
    assignment (``Key=``) resets the list, so ``[""]`` means "explicitly empty".
    """
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical.append(line[:-1])
            continue
        line = " ".join([*logical, line]).strip()
        logical = []
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"assignment before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        key, value = key.strip(), value.strip()
        values = section.setdefault(key, [])
        if not value or values == [""]:
            values.clear()
        values.append(value)
    return unit


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(unit: Unit, section: str, key: str) -> str:
    """The single value of ``key``; fails when it is missing or given more than once."""
    values = unit.get(section, {}).get(key)
    assert values is not None, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is given {len(values)} times: {values}"
    return values[0]


def words(unit: Unit, section: str, key: str) -> list[str]:
    """All space-separated words of a list setting, across repeated assignments."""
    return [w for value in unit.get(section, {}).get(key, []) for w in value.split()]


# -- the parser itself -------------------------------------------------------------------


def test_parser_keeps_repeats_resets_and_continuations() -> None:
    text = (
        "# comment\n[Service]\nDeviceAllow=char-a rw\n; other comment\nDeviceAllow=char-b r\n"
        "SystemCallFilter=@system-service\nSystemCallFilter=\nSystemCallFilter=@basic-io\n"
        "ExecStart=/bin/true \\\n  --flag\nCapabilityBoundingSet=\n[Install]\nWantedBy=x.target\n"
    )
    parsed = parse_unit(text)
    assert parsed["Service"]["DeviceAllow"] == ["char-a rw", "char-b r"]
    assert parsed["Service"]["SystemCallFilter"] == ["@basic-io"]
    assert parsed["Service"]["ExecStart"] == ["/bin/true  --flag"]
    assert parsed["Service"]["CapabilityBoundingSet"] == [""]
    assert parsed["Install"]["WantedBy"] == ["x.target"]


# -- what the daemon and systemd must agree on ---------------------------------------------


def test_notify_service_with_a_watchdog(unit: Unit) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    watchdog = int(one(unit, "Service", "WatchdogSec"))
    assert watchdog == 10
    # The start timeout covers camera retries and the model load; the stop timeout leaves
    # room for the capture in flight. Both are plain seconds here.
    assert int(one(unit, "Service", "TimeoutStartSec")) == 60
    assert int(one(unit, "Service", "TimeoutStopSec")) == 10
    assert "KillSignal" not in unit["Service"]  # SIGTERM, which the daemon handles


def test_exec_lines_name_the_venv_command_and_the_default_config(unit: Unit) -> None:
    assert str(config.DEFAULT_PATH) == CONFIG_PATH
    assert one(unit, "Service", "ExecStart") == f"{EXECUTABLE} run --config {CONFIG_PATH}"
    pre = one(unit, "Service", "ExecStartPre")
    assert pre.lstrip("-") == f"{EXECUTABLE} check-config --config {CONFIG_PATH}"


def test_a_config_error_is_not_restarted(unit: Unit) -> None:
    """78 (EX_CONFIG) from `smilebot run` stops the unit for good; crashes restart it.

    systemd.service(5): RestartPreventExitStatus= "has no effect on processes configured via
    ExecStartPre=". A check-config that fails the start would be retried until the start
    limit, so it must be "-"-prefixed and leave the verdict to `smilebot run`.
    """
    assert one(unit, "Service", "Restart") == "on-failure"
    assert int(one(unit, "Service", "RestartSec")) == 2
    assert str(config.EX_CONFIG) in words(unit, "Service", "RestartPreventExitStatus")
    for pre in unit["Service"].get("ExecStartPre", []):
        if "check-config" in pre:
            assert pre.startswith("-"), f"a failing ExecStartPre= is restarted: {pre}"


def test_a_crash_loop_hits_the_start_limit(unit: Unit) -> None:
    # StartLimit*= belong to [Unit]; in [Service] they are ignored (with a warning).
    assert "StartLimitIntervalSec" not in unit["Service"]
    assert "StartLimitBurst" not in unit["Service"]
    interval = int(one(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(one(unit, "Unit", "StartLimitBurst"))
    restart_sec = int(one(unit, "Service", "RestartSec"))
    assert 1 < burst <= 10
    # The burst must be reachable within the interval, or the limit never trips.
    assert burst * restart_sec < interval


def test_runs_as_the_smilebot_user_with_gpio_and_video(unit: Unit) -> None:
    user = one(unit, "Service", "User")
    assert user == "smilebot"
    assert user not in {"root", "0"}
    assert one(unit, "Service", "Group") == "smilebot"
    assert sorted(words(unit, "Service", "SupplementaryGroups")) == ["gpio", "video"]
    assert "DynamicUser" not in unit["Service"]  # sysusers.conf makes a static user


def test_state_and_config_directories(unit: Unit) -> None:
    assert one(unit, "Service", "StateDirectory") == "smilebot"
    assert one(unit, "Service", "StateDirectoryMode") == "0750"
    assert one(unit, "Service", "ConfigurationDirectory") == "smilebot"
    assert one(unit, "Service", "UMask") == "0027"
    assert Path(one(unit, "Service", "WorkingDirectory")) == STATE_DIR


def test_the_example_config_writes_only_inside_the_state_directory() -> None:
    """ProtectSystem=strict leaves only StateDirectory= writable."""
    cfg = config.load(TOML)
    for path in (cfg.model.dir, cfg.captures.folder):
        assert Path(path).is_relative_to(STATE_DIR), path
    assert not Path(cfg.model.seed).is_relative_to(STATE_DIR)  # read-only, shipped in /opt


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateNetwork": "yes",
    "RestrictAddressFamilies": "AF_UNIX",
    "DevicePolicy": "closed",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


@pytest.mark.parametrize(("key", "value"), HARDENING.items())
def test_hardening(unit: Unit, key: str, value: str) -> None:
    assert one(unit, "Service", key) == value


def test_system_call_filter(unit: Unit) -> None:
    filters = unit["Service"]["SystemCallFilter"]
    assert filters[0] == "@system-service"
    denied = [w for f in filters if f.startswith("~") for w in f[1:].split()]
    assert {"@privileged", "@resources"} <= set(denied)


def test_only_the_needed_devices(unit: Unit) -> None:
    entries = [value.split() for value in unit["Service"]["DeviceAllow"]]
    for entry in entries:
        assert len(entry) == 2, entry
        specifier, access = entry
        assert specifier in ALLOWED_DEVICES, f"DeviceAllow={specifier} is not needed"
        assert set(access) <= {"r", "w"}, f"{specifier}: no mknod ('m') for the daemon"
    assert {specifier for specifier, _ in entries} == ALLOWED_DEVICES


def test_memory_is_bounded(unit: Unit) -> None:
    match = re.fullmatch(r"(\d+)M", one(unit, "Service", "MemoryMax"))
    assert match, "MemoryMax= in megabytes"
    assert 150 <= int(match[1]) <= 512


def test_enabled_at_boot(unit: Unit) -> None:
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


# -- the example config -------------------------------------------------------------------


def test_example_config_is_the_defaults_but_the_shipped_seed_model() -> None:
    loaded = config.load(TOML).to_dict()
    expected = config.Config().to_dict()
    assert expected["model"]["seed"] == ""  # so the override below is a real difference
    expected["model"]["seed"] = SHIPPED_MODEL
    assert loaded == expected
    # The Pi values the install guide relies on, spelled out.
    assert loaded["camera"]["source"] == "picamera2"
    assert loaded["model"]["dir"] == "/var/lib/smilebot/models"
    assert loaded["captures"]["folder"] == "/var/lib/smilebot/captures"


def test_example_config_lists_every_key_with_a_comment() -> None:
    text = TOML.read_text()
    data = tomllib.loads(text)
    for section in dataclasses.fields(config.Config):
        keys = dataclasses.fields(section.default_factory)  # type: ignore[arg-type]
        for key in keys:
            optional = key.metadata["rule"].optional
            if optional:  # TOML has no null: an unset optional key is shown commented out
                assert key.name not in data[section.name]
                pattern = rf"^# {key.name} = \S+ +# \S"
            else:
                assert key.name in data[section.name], f"{section.name}.{key.name}"
                pattern = rf"^{key.name} = .+ +# \S"
            assert re.search(pattern, text, re.MULTILINE), f"{section.name}.{key.name} comment"
    assert set(data) == {f.name for f in dataclasses.fields(config.Config)}


# -- the system user ----------------------------------------------------------------------


def sysusers_lines() -> list[list[str]]:
    lines = SYSUSERS.read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_sysusers_declares_the_user_and_its_groups() -> None:
    lines = sysusers_lines()
    users = [line for line in lines if line[0] == "u"]
    assert [line[1] for line in users] == ["smilebot"]
    assert users[0][-1] == str(STATE_DIR)  # home: the state directory, no /home
    members = {(line[1], line[2]) for line in lines if line[0] == "m"}
    assert members == {("smilebot", "gpio"), ("smilebot", "video")}


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_applies_to_a_pi_like_root(tmp_path: Path) -> None:
    # Raspberry Pi OS already has video (44) and gpio; their ids must be kept.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:pi\ngpio:x:993:pi\n")
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = [row.split(":") for row in (etc / "passwd").read_text().splitlines()]
    _, _, uid, gid, _, home, shell = next(row for row in passwd if row[0] == "smilebot")
    assert 0 < int(uid) < 1000  # a system user
    assert home == str(STATE_DIR)
    assert shell.endswith("nologin")
    groups = {row.split(":")[0]: row.split(":") for row in (etc / "group").read_text().splitlines()}
    assert groups["video"][2] == "44" and groups["gpio"][2] == "993"
    assert set(groups["video"][3].split(",")) == {"pi", "smilebot"}
    assert set(groups["gpio"][3].split(",")) == {"pi", "smilebot"}
    assert groups["smilebot"][2] == gid


# -- systemd's own checks -----------------------------------------------------------------

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze on this machine"
)


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on a copy of the unit whose Exec paths point at a stub.

    verify checks that every Exec*= program exists and is executable, and the venv is not
    installed here; only that path changes in the copy. It runs a test manager on its own,
    so systemd need not be PID 1, nor the caller root.
    """
    stub = tmp_path / "bin" / "smilebot"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(unit_text.replace(EXECUTABLE, str(stub)))
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert text.count(EXECUTABLE) == 2  # ExecStartPre and ExecStart, both replaced
    result = verify(text, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify exits 0 on unknown keys and bad values, but warns about them: none allowed.
    assert UNIT.name not in output, output


@needs_analyze
def test_systemd_analyze_verify_catches_a_bad_value(tmp_path: Path) -> None:
    """The check above can fail: a typo in the unit shows up in verify's output."""
    result = verify(UNIT.read_text().replace("Type=notify", "Type=notfy"), tmp_path)
    assert UNIT.name in result.stdout + result.stderr


@needs_analyze
def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0"},
    )
    if result.returncode != 0 and "--offline" in result.stderr:
        pytest.skip(f"systemd-analyze security --offline unsupported: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout
