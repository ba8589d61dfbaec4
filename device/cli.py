"""``smilebot``: the device command line.

Subcommands so far: ``anchors`` (show an anchor spec and its count arithmetic),
``detect`` (run a model on image files and print the faces it finds) and
``check-config`` (validate the daemon's TOML config; exit 78 with a one-line error). The
daemon (``run``), ``bench`` and ``captures`` join it with the issue that builds them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from smilebot import __version__
from smilebot.anchors import DEFAULT_SPEC, AnchorSpec
from smilebot.config import DEFAULT_PATH as DEFAULT_CONFIG
from smilebot.config import EX_CONFIG, ConfigError
from smilebot.config import load as load_config
from smilebot.detector import Detections, Detector, ModelError
from smilebot.runtime import RuntimeMissingError

# The model `make convert` writes, in the repository this package is run from.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "smilebot.tflite"


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

    if args.model is None and not DEFAULT_MODEL.exists():
        print(
            f"smilebot: no model at {DEFAULT_MODEL}; build one with `make convert` "
            "or pass --model PATH",
            file=sys.stderr,
        )
        return 2
    try:
        detector = Detector.load(args.model or DEFAULT_MODEL, num_threads=args.threads)
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
    print(json.dumps(config.to_dict(), indent=1))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
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

    check = commands.add_parser("check-config", help="validate the config file; exit 78 if bad")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="[%(default)s]")
    check.set_defaults(run=_check_config)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
