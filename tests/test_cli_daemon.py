"""Tests of the daemon's commands: ``smilebot run``, ``bench`` and ``captures``."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from pathlib import Path

import pytest

from smilebot.capture_log import CaptureLog
from smilebot.cli import main
from smilebot.config import EX_CONFIG, Config
from smilebot.simulation import SimOptions, run_simulation
from tests.daemon_parts import MODEL, SAMPLES

pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert.interpreter")


def test_run_with_a_bad_config_exits_78_with_one_line(tmp_path: Path, capsys) -> None:
    config = tmp_path / "smilebot.toml"
    config.write_text('[decision]\nmain_face = "loudest"\n')
    assert main(["run", "--config", str(config)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f'smilebot: {config}: decision.main_face: expected one of "largest", "centre", '
        'got "loudest"'
    ]
    assert main(["run", "--config", str(tmp_path / "absent.toml")]) == EX_CONFIG


def test_run_simulate_serves_presses_and_stops(tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    code = main(
        [
            "run",
            "--simulate",
            "--no-webcam",
            "--frames",
            str(SAMPLES),
            "--auto-press",
            "0.1",
            "--presses",
            "3",
            "--state",
            str(state),
            "--model",
            str(MODEL),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("sees folder:") >= 3
    assert "LED (" in out
    with CaptureLog.open(state / "captures") as log:
        assert log.stats().count >= 3


@pytest.fixture
def captures(tmp_path: Path) -> Path:
    folder = tmp_path / "captures"
    with CaptureLog.open(folder) as log:
        for i in range(3):
            log.add(
                trigger="button",
                model_version="abc",
                detections=[{"box": [1, 2, 3, 4], "score": 0.9, "smile": 0.1 * i}],
                decision="smile" if i else "no_smile",
                latency_ms={"to_led": 2.5},
                jpeg=b"\xff\xd8" + bytes([i]) * 10 + b"\xff\xd9",
                time=1_700_000_000.0 + i,
            )
    return folder


def test_captures_list_show_export_delete(captures: Path, tmp_path: Path, capsys) -> None:
    base = ["captures", "--folder", str(captures)]
    assert main([*base, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("3 captures")
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert "2023-11-14 22:13:21" in lines[2] and "00000002.jpg" in lines[2]

    assert main([*base, "show", "2"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["seq"] == 2 and record["decision"] == "smile"
    assert main([*base, "show", "9"]) == 1

    out = tmp_path / "export"
    assert main([*base, "export", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "captures.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert (out / rows[0]["image"]).read_bytes() == (captures / "00000001.jpg").read_bytes()

    assert main([*base, "delete", "2", "7"]) == 1  # 7 does not exist
    assert "no capture 7" in capsys.readouterr().err
    with CaptureLog.open(captures) as log:
        assert [c.seq for c in log.list()] == [1, 3]
    assert not (captures / "00000002.jpg").exists()


def test_captures_delete_while_the_daemon_holds_the_log(captures: Path, capsys) -> None:
    with CaptureLog.open(captures):
        assert main(["captures", "--folder", str(captures), "delete", "1"]) == 2
        assert "stop the daemon first" in capsys.readouterr().err
        assert main(["captures", "--folder", str(captures), "list"]) == 0  # reading works


def test_captures_without_a_log(tmp_path: Path, capsys) -> None:
    assert main(["captures", "--folder", str(tmp_path), "list"]) == 2
    assert "no capture log" in capsys.readouterr().err


def test_bench_prints_the_stage_table_and_end_to_end(capsys) -> None:
    code = main(["bench", "-n", "3", "--threads", "1", "2", "--presses", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    for stage in ("grab", "preprocess", "invoke", "decode", "nms", "led", "total"):
        assert any(line.startswith(stage) for line in out.splitlines()), stage
    assert "1 thread" in out and "2 threads" in out
    assert "3 presses through the daemon" in out and "3 captures stored" in out
    assert "press to LED" in out and "RSS" in out


def test_bench_without_frames_says_so(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--frames", str(tmp_path / "none"), "--presses", "0"]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


class Keyboard(io.TextIOBase):
    """A terminal whose lines the test types one at a time (None ends the input)."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()

    def isatty(self) -> bool:
        return True

    def __iter__(self):
        while (line := self.lines.get()) is not None:
            yield line


def test_simulation_enter_presses_the_nose_and_q_stops(tmp_path: Path) -> None:
    keys, out = Keyboard(), io.StringIO()
    options = SimOptions(state=tmp_path / "state", frames=SAMPLES, webcam=False, model=MODEL)
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(run_simulation(Config(), options, stdin=keys, out=out))
    )
    thread.start()
    try:
        for n in (1, 2):
            keys.lines.put("\n")
            deadline = time.monotonic() + 20
            while out.getvalue().count("sees ") < n:
                assert time.monotonic() < deadline, out.getvalue()
                time.sleep(0.01)
            time.sleep(0.06)  # past the button's debounce
        keys.lines.put("q\n")
        thread.join(20)
    finally:
        keys.lines.put(None)
    assert codes == [0]
    text = out.getvalue()
    assert "press Enter to press the nose" in text
    assert text.count("sees folder:") == 2
    assert text.rstrip().splitlines()[-1].startswith("LED") and "OFF" in text.splitlines()[-1]
