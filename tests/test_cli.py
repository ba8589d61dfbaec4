import json

import numpy as np
import pytest

from smilebot import cli as device_cli
from smilebot.anchors import DEFAULT_SPEC


def test_device_anchors_prints_the_arithmetic(tmp_path, capsys):
    assert device_cli.main(["anchors"]) == 0
    assert "total 1170" in capsys.readouterr().out
    sidecar = tmp_path / "model.json"
    sidecar.write_text(json.dumps({"anchors": DEFAULT_SPEC.to_dict() | {"input_width": 96}}))
    assert device_cli.main(["anchors", "--spec", str(sidecar)]) == 0
    assert "input 96 x 144" in capsys.readouterr().out


def test_device_anchors_bad_spec_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"input_width": 10, "strides": [8]}')
    assert device_cli.main(["anchors", "--spec", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.json" in err and "'strides'" in err


def test_tools_bench_rejects_unknown_names(capsys):
    tools_cli = pytest.importorskip("smilebot_tools.cli")
    with pytest.raises(SystemExit) as exit_info:
        tools_cli.main(["bench", "matchin"])
    assert exit_info.value.code == 2 and "'matchin'" in capsys.readouterr().err


def test_tools_kindle_writes_a_manifest(tmp_path, monkeypatch, capsys):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("pandas")
    from smilebot_tools import cli as tools_cli
    from smilebot_tools import manifest
    from tests.fakes import use_stand_in_teachers

    use_stand_in_teachers(monkeypatch, p_fer=0.9, p_facex=0.8)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.jpg"), np.full((60, 80, 3), 100, np.uint8))
    (images / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "labels.csv"
    assert tools_cli.main(["kindle", str(images), "--out", str(out), "--workers", "1"]) == 0
    rows = manifest.load(out)
    assert rows["image"].tolist() == ["a.jpg"] and rows["smile"].tolist() == [1]
    assert "skipped" in capsys.readouterr().out and out.with_suffix(".png").exists()
    assert tools_cli.main(["kindle", str(tmp_path / "nope"), "--out", str(out)]) == 1


def test_check_config_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[camera]\nsource = "folder"\nfolder = "/srv/frames"\n')
    assert device_cli.main(["check-config", "--config", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"  # one journal line at each start
    assert device_cli.main(["check-config", "--config", str(good), "--show"]) == 0
    assert '"folder": "/srv/frames"' in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[trigger]\nbounce_ms = "fast"\n')
    assert device_cli.main(["check-config", "--config", str(bad)]) == 78
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.toml" in err and "trigger.bounce_ms" in err
