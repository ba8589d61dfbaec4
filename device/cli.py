"""``smilebot``: the device command line.

Subcommands: ``run`` (the daemon; ``--simulate`` on any laptop), ``check-config``
(validate the TOML config; exit 78 with a one-line error), ``detect`` (run a model on image
files), ``bench`` (per-stage latency on this machine), ``captures`` (list, show, delete,
export the capture log) and ``anchors`` (an anchor spec and its count arithmetic).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from smilebot import __version__
from smilebot.anchors import DEFAULT_SPEC, AnchorSpec
from smilebot.capture_log import Capture, CaptureLog, CaptureLogError
from smilebot.config import DEFAULT_PATH as DEFAULT_CONFIG
from smilebot.config import EX_CONFIG, Config, ConfigError
from smilebot.config import load as load_config
from smilebot.detector import SHIPPED_MODEL, Detections, Detector, ModelError
from smilebot.runtime import RUNTIME_NAMES, RuntimeMissingError


def _load_spec(path: Path | None) -> AnchorSpec:
    """The default spec, or one read from a JSON file (a spec, or a sidecar's ``anchors``)."""
    if path is None:
        return DEFAULT_SPEC
    data = json.loads(path.read_text())
    return AnchorSpec.from_dict(data.get("anchors", data) if isinstance(data, dict) else data)


def _anchors(args: argparse.Namespace) -> int:
    """``smilebot anchors``: 0, or 1 for an unreadable spec."""
    try:
        spec = _load_spec(args.spec)
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        print(f"smilebot: {args.spec}: {err}", file=sys.stderr)
        return 1
    print(f"input {spec.input_width} x {spec.input_height}")
    print(spec.arithmetic())
    return 0


def _detect(args: argparse.Namespace) -> int:
    """``smilebot detect``: 0, 1 if any image could not be read, 2 for no usable model."""
    import cv2  # OpenCV (the device extra) reads the images; only this command needs it

    if args.model is None and not SHIPPED_MODEL.exists():
        print(
            f"smilebot: no model at {SHIPPED_MODEL}; build one with `make convert` "
            "or pass --model PATH",
            file=sys.stderr,
        )
        return 2
    try:
        detector = Detector.load(args.model or SHIPPED_MODEL, num_threads=args.threads)
    except (ModelError, RuntimeMissingError) as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if frame is None:
            reason = "cannot decode the image" if path.is_file() else "not a file"
            print(f"smilebot: {path}: {reason}", file=sys.stderr)
            failed += 1
            continue
        detections = detector.detect(frame, color="bgr")
        print(_as_json(path, detections) if args.json else _as_text(path, detections))
    return 1 if failed else 0


def _as_text(path: Path, detections: Detections) -> str:
    """``IMAGE: N faces`` and one indented line per face (pixels of the image)."""
    n = len(detections.faces)
    lines = [f"{path}: {n} face{'' if n == 1 else 's'}"]
    for face in detections.faces:
        box = ", ".join(f"{v:.1f}" for v in face.box)
        lines.append(f"  box=({box}) score={face.score:.2f} smile={face.smile:.2f}")
    return "\n".join(lines)


def _as_json(path: Path, detections: Detections) -> str:
    """One JSON object: image, faces (box in pixels, score, smile), total latency in ms."""
    faces = [
        {
            "box": [round(v, 1) for v in face.box],
            "score": round(face.score, 4),
            "smile": round(face.smile, 4),
        }
        for face in detections.faces
    ]
    return json.dumps(
        {"image": str(path), "faces": faces, "latency_ms": round(detections.timings.total_ms, 2)}
    )


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return EX_CONFIG
    print(f"{args.config}: ok")
    if args.show:
        print(json.dumps(config.to_dict(), indent=1))
    return 0


def _config_or_exit(path: Path | None, default_if_missing: bool) -> Config | int:
    """The config at ``path`` (default path if None), or EX_CONFIG after printing why.

    With ``default_if_missing``, a missing *default* file gives the defaults.
    """
    if path is None and default_if_missing and not DEFAULT_CONFIG.exists():
        return Config()
    try:
        return load_config(path or DEFAULT_CONFIG)
    except ConfigError as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return EX_CONFIG


class _JournalFormatter(logging.Formatter):
    """Plain lines; under systemd (JOURNAL_STREAM set), with the ``<N>`` syslog priority
    prefix journald reads, so ``journalctl -p err`` finds the errors.
    """

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
    }

    def __init__(self) -> None:
        self.journal = "JOURNAL_STREAM" in os.environ
        fmt = "%(message)s" if self.journal else "%(asctime)s %(levelname)s %(message)s"
        super().__init__(fmt, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            return f"<{self.PRIORITY.get(record.levelno, 2)}>{text}"
        return text


def _setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _run(args: argparse.Namespace) -> int:
    """``smilebot run``: the daemon's exit code (0 stopped, 69/70 failures, 78 config)."""
    from smilebot.app import serve
    from smilebot.simulation import SimOptions, run_simulation

    if not args.simulate:
        _setup_logging(logging.DEBUG if args.verbose else logging.INFO)
        config = _config_or_exit(args.config, default_if_missing=False)
        return config if isinstance(config, int) else serve(config)
    _setup_logging(logging.DEBUG if args.verbose else logging.WARNING)
    config = _config_or_exit(args.config, default_if_missing=True)
    if isinstance(config, int):
        return config
    options = SimOptions(
        state=args.state,
        frames=args.frames,
        webcam=not args.no_webcam,
        auto_press=args.auto_press,
        presses=args.presses,
        model=args.model,
    )
    try:
        return run_simulation(config, options)
    except FileNotFoundError as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace) -> int:
    """``smilebot bench``: 0, or 2 when a model, the frames or a runtime cannot be used."""
    from smilebot.bench import measure
    from smilebot.camera import CameraError, FolderSource
    from smilebot.provenance import write_figures
    from smilebot.runtime import available_runtimes
    from smilebot.simulation import find_shipped

    config = _config_or_exit(args.config, default_if_missing=True)
    if isinstance(config, int):
        return config
    runtimes = args.runtime or available_runtimes()
    if not runtimes:
        print("smilebot: no TFLite runtime: pip install ai-edge-litert", file=sys.stderr)
        return 2
    try:
        model = args.model or find_shipped("models/smilebot.tflite")
        random_model = args.compare_random
        if random_model == _BESIDE_THE_MODEL:
            random_model = model.with_name(f"{model.stem}-random{model.suffix}")
        if random_model is not None and not random_model.exists():
            raise FileNotFoundError(
                f"{random_model}: no such model; make it with "
                f"`smilebot-tools convert --random-weights {random_model}`"
            )
        frames = args.frames or find_shipped("samples")
        source = FolderSource(frames, config.camera.width, config.camera.height)
    except (FileNotFoundError, CameraError) as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return 2
    try:
        print(f"model {model}, frames {source.label} ({frames}), {args.n} frames per row")
        report = measure(
            model,
            source,
            config,
            runtimes=runtimes,
            threads=args.threads,
            n=args.n,
            presses=args.presses,
            random_model=random_model,
        )
    except (ModelError, RuntimeMissingError) as err:
        print(f"smilebot: {err}", file=sys.stderr)
        return 2
    finally:
        source.close()
    if args.json is not None:
        figures = report.figures("device")
        write_figures(figures, args.json)
        print(f"wrote {len(figures)} figures to {args.json}")
    return 0


# `--compare-random` with no path: the model's name with -random, beside it.
_BESIDE_THE_MODEL = Path("<beside the model>")


def _captures_folder(args: argparse.Namespace) -> Path | int:
    if args.folder is not None:
        return args.folder
    config = _config_or_exit(args.config, default_if_missing=True)
    return config if isinstance(config, int) else Path(config.captures.folder)


def _captures(args: argparse.Namespace) -> int:
    """``smilebot captures``: 0; 1 when a capture is missing; 2 when the log cannot be used."""
    folder = _captures_folder(args)
    if isinstance(folder, int):
        return folder
    try:
        if args.action == "delete":
            with CaptureLog.open(folder) as log:
                missing = [seq for seq in args.seq if not log.delete(seq)]
            for seq in missing:
                print(f"smilebot: {folder}: no capture {seq}", file=sys.stderr)
            print(f"deleted {len(args.seq) - len(missing)} capture(s)")
            return 1 if missing else 0
        log = CaptureLog.reader(folder)
    except CaptureLogError as err:
        hint = (
            " (stop the daemon first: sudo systemctl stop smilebot)"
            if "another" in str(err)
            else ""
        )
        print(f"smilebot: {err}{hint}", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            stats = log.stats()
            print(f"{stats.count} captures, {stats.bytes / 1e6:.1f} MB in {folder}")
            for capture in log.list(limit=args.limit, offset=max(0, stats.count - args.limit)):
                print(_capture_line(capture))
            return 0
        if args.action == "show":
            capture = log.get(args.seq[0])
            if capture is None:
                print(f"smilebot: {folder}: no capture {args.seq[0]}", file=sys.stderr)
                return 1
            print(json.dumps(_capture_dict(capture), indent=1))
            return 0
        return _export(log, args.out)
    finally:
        log.close()


def _capture_dict(capture: Capture) -> dict:
    record = {k: getattr(capture, k) for k in Capture.__dataclass_fields__}
    record["image"] = str(capture.image) if capture.image else None
    record["iso_time"] = datetime.fromtimestamp(capture.time, UTC).isoformat()
    return record


def _capture_line(capture: Capture) -> str:
    when = datetime.fromtimestamp(capture.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
    to_led = capture.latency_ms.get("to_led")
    latency = f"{to_led:7.1f} ms" if to_led is not None else "      -   "
    image = capture.image.name if capture.image else "(no image)"
    return (
        f"{capture.seq:8d}  {when}  {capture.trigger:<9} {capture.decision:<8} "
        f"{len(capture.detections)} face(s) {latency}  {image}"
    )


def _export(log: CaptureLog, out: Path) -> int:
    """Copy every image and write ``captures.jsonl`` (one record per line) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with (out / "captures.jsonl").open("w") as jsonl:
        offset = 0
        while batch := log.list(limit=500, offset=offset):
            for capture in batch:
                record = _capture_dict(capture)
                if capture.image is not None and capture.image.exists():
                    shutil.copy2(capture.image, out / capture.image.name)
                    record["image"] = capture.image.name
                jsonl.write(json.dumps(record) + "\n")
                n += 1
            offset += len(batch)
    print(f"exported {n} captures to {out} (captures.jsonl + images)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smilebot", description="The Smiling Bot v2.")
    parser.add_argument("--version", action="version", version=f"smilebot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    anchors = commands.add_parser("anchors", help="print an anchor spec and its anchor count")
    anchors.add_argument("--spec", type=Path, help="JSON anchor spec or model sidecar")
    anchors.set_defaults(run=_anchors)

    detect = commands.add_parser("detect", help="find faces and smiles in image files")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    detect.add_argument(
        "--model",
        type=Path,
        help="the .tflite model, its .json sidecar beside it (default: models/smilebot.tflite)",
    )
    detect.add_argument("--json", action="store_true", help="print one JSON object per image")
    detect.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads")
    detect.set_defaults(run=_detect)

    run = commands.add_parser("run", help="run the daemon (or --simulate it on any laptop)")
    run.add_argument("--config", type=Path, help=f"TOML config [{DEFAULT_CONFIG}]")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sim = run.add_argument_group("simulation (no Pi needed)")
    sim.add_argument(
        "--simulate", action="store_true", help="mock pins, Enter = nose, LED in the terminal"
    )
    sim.add_argument("--frames", type=Path, help="image folder to use as the camera")
    sim.add_argument("--no-webcam", action="store_true", help="never use the webcam")
    sim.add_argument(
        "--auto-press", type=_positive_float, metavar="SECONDS", help="press every SECONDS"
    )
    sim.add_argument("--presses", type=_positive_int, help="stop after this many presses")
    sim.add_argument("--state", type=Path, default=Path(".smilebot-sim"), help="[%(default)s]")
    sim.add_argument("--model", type=Path, help="seed model [models/smilebot.tflite]")
    run.set_defaults(run=_run)

    bench = commands.add_parser("bench", help="per-stage latency on this machine")
    bench.add_argument("--model", type=Path, help="[models/smilebot.tflite]")
    bench.add_argument("--frames", type=Path, help="image folder [samples/]")
    bench.add_argument("--config", type=Path, help="for the frame size and pins")
    bench.add_argument("--threads", type=_positive_int, nargs="+", default=[1, 2, 4])
    bench.add_argument("-n", type=_positive_int, default=100, help="frames per row [100]")
    bench.add_argument(
        "--presses", type=int, default=100, help="end-to-end presses, 0 to skip [100]"
    )
    bench.add_argument(
        "--runtime",
        nargs="+",
        choices=RUNTIME_NAMES,
        help="TFLite runtimes to compare [every installed one]",
    )
    bench.add_argument(
        "--compare-random",
        type=Path,
        nargs="?",
        const=_BESIDE_THE_MODEL,
        metavar="PATH",
        help="ops/s of the model vs the same network with random weights "
        "[MODEL-random.tflite beside the model]",
    )
    bench.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    bench.set_defaults(run=_bench)

    captures = commands.add_parser("captures", help="list, show, delete or export captures")
    captures.add_argument("--config", type=Path, help="read [captures] folder from it")
    captures.add_argument("--folder", type=Path, help="the capture folder itself")
    actions = captures.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the newest captures, one line each")
    listing.add_argument("--limit", type=_positive_int, default=20, help="[%(default)s]")
    show = actions.add_parser("show", help="one capture's record as JSON")
    show.add_argument("seq", type=int, nargs=1)
    delete = actions.add_parser("delete", help="delete captures (row and image) by number")
    delete.add_argument("seq", type=int, nargs="+")
    export = actions.add_parser("export", help="copy images + captures.jsonl to a folder")
    export.add_argument("out", type=Path)
    captures.set_defaults(run=_captures)

    check = commands.add_parser("check-config", help="validate the config file; exit 78 if bad")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="[%(default)s]")
    check.add_argument("--show", action="store_true", help="print the config with defaults")
    check.set_defaults(run=_check_config)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
