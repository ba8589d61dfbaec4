"""Tests of the results store (smilebot_tools.results over smilebot.provenance) and of
``smilebot-tools bench-compare`` on hand-written runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smilebot.provenance import git_commit, machine_info, stamp, write_figures
from smilebot_tools import cli as tools_cli
from smilebot_tools.results import compare, newest_runs, read_run, write_run

MACHINE_A = {"host": "pi", "cpu": "Cortex-A76", "cores": 4, "numpy": "1.24.4"}
MACHINE_B = {"host": "laptop", "cpu": "EPYC", "cores": 2, "numpy": "2.4.6"}


def _run(path: Path, commit: str, machine: dict, figures: list[tuple]) -> Path:
    records = [
        {"name": n, "value": v, "unit": u, "commit": commit, "machine": machine}
        for n, v, u in figures
    ]
    path.write_text(json.dumps({"created": "20260101T000000Z", "figures": records}))
    return path


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    a = _run(
        tmp_path / "20260101T000000Z-aaa.json",
        "aaa",
        MACHINE_A,
        [("invoke", 2.0, "ms"), ("speedup", 40.0, "x"), ("gone", 1.0, "ms"), ("zero", 0.0, "ms")],
    )
    b = _run(
        tmp_path / "20260102T000000Z-bbb.json",
        "bbb",
        MACHINE_B,
        [("invoke", 0.5, "ms"), ("speedup", 50.0, "x"), ("zero", 3.0, "ms"), ("new", 7.0, "MiB")],
    )
    return a, b


def test_written_records_carry_commit_and_machine(tmp_path):
    path = write_run([{"name": "nms.greedy_1000", "value": 1.5, "unit": "ms"}], tmp_path)
    (record,) = read_run(path)
    assert record["name"] == "nms.greedy_1000" and record["value"] == 1.5
    assert record["commit"] == git_commit() and record["commit"] in path.name.replace("_", "+")
    machine = record["machine"]
    assert machine == machine_info()
    assert machine["cores"] >= 1 and machine["numpy"] and "ai-edge-litert" in machine["runtimes"]


def test_a_merged_figure_keeps_the_commit_and_machine_it_was_measured_on(tmp_path):
    theirs = {"name": "device.invoke", "value": 3.0, "unit": "ms"}
    theirs |= {"commit": "abc123", "machine": MACHINE_A}
    ours = {"name": "nms.greedy_1000", "value": 1.5, "unit": "ms"}
    merged, local = read_run(write_figures([theirs, ours], tmp_path / "run.json"))
    assert (merged["commit"], merged["machine"]) == ("abc123", MACHINE_A)
    assert local["machine"]["host"] == machine_info()["host"] and local["commit"] == git_commit()


def test_a_figure_without_a_unit_is_refused_by_name():
    with pytest.raises(ValueError, match="figure 'x' has no 'unit'"):
        stamp([{"name": "x", "value": 1.0}])


def test_a_file_that_is_not_a_run_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"figures": [{"name": "x", "value": 1}]}')
    with pytest.raises(ValueError, match=r"bad\.json: figure 'x' has no 'unit'"):
        read_run(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json: not a results file"):
        read_run(bad)


def test_compare_sets_two_runs_side_by_side(two_runs):
    a, b = two_runs
    lines = compare(read_run(a), read_run(b)).splitlines()
    assert lines[0] == "A: commit aaa on pi (Cortex-A76, 4 cores, numpy 1.24.4)"
    assert lines[1] == "B: commit bbb on laptop (EPYC, 2 cores, numpy 2.4.6)"
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert list(rows) == ["invoke", "speedup", "gone", "zero", "new"]  # A's order, then B's
    assert rows["invoke"] == ["invoke", "2", "0.5", "0.250", "ms"]
    assert rows["speedup"] == ["speedup", "40", "50", "1.250", "x"]
    assert rows["gone"] == ["gone", "1", "-", "-", "ms", "only", "A"]
    assert rows["zero"] == ["zero", "0", "3", "-", "ms"]  # no ratio to a zero
    assert rows["new"] == ["new", "-", "7", "-", "MiB", "only", "B"]


def test_compare_gives_no_ratio_across_units(tmp_path):
    a = read_run(_run(tmp_path / "a.json", "a", MACHINE_A, [("rss", 80.0, "MiB")]))
    b = read_run(_run(tmp_path / "b.json", "b", MACHINE_A, [("rss", 80000.0, "KiB")]))
    (row,) = compare(a, b).splitlines()[3:]
    assert row.split() == ["rss", "80", "8e+04", "-", "MiB", "vs", "KiB"]


def test_newest_runs_are_the_last_two_by_name(tmp_path, two_runs):
    older = _run(tmp_path / "20251231T000000Z-zzz.json", "zzz", MACHINE_A, [])
    (tmp_path / ".device.json").write_text("{}")  # a run in the making is not a run
    assert newest_runs(tmp_path) == list(two_runs)
    assert older not in newest_runs(tmp_path)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    _run(lonely / "20260101T000000Z-aaa.json", "aaa", MACHINE_A, [])
    with pytest.raises(ValueError, match=r"lonely: 1 results file\(s\), need 2"):
        newest_runs(lonely)


def test_bench_compare_command(two_runs, capsys):
    a, b = two_runs
    assert tools_cli.main(["bench-compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"A = {a}\nB = {b}\nA: commit aaa")
    assert "0.250" in out and "only B" in out
    assert tools_cli.main(["bench-compare", "--results", str(a.parent)]) == 0  # the two newest
    assert capsys.readouterr().out == out
    assert tools_cli.main(["bench-compare", str(a)]) == 2
    assert "two run files or none" in capsys.readouterr().err


def test_bench_merges_a_device_run_into_its_own(tmp_path, two_runs, capsys):
    a, _ = two_runs
    results = tmp_path / "results"
    assert (
        tools_cli.main(["bench", "preprocess", "--results", str(results), "--merge", str(a)]) == 0
    )
    (path,) = results.glob("*.json")
    figures = {f["name"]: f for f in read_run(path)}
    assert figures["invoke"]["commit"] == "aaa" and figures["invoke"]["value"] == 2.0
    assert figures["preprocess.640x480"]["commit"] == git_commit()
    assert "(4 merged)" in capsys.readouterr().out
