"""``smilebot``: the device command line.

Subcommands so far: ``anchors`` (show an anchor spec and its count arithmetic).
The daemon (``run``), ``detect``, ``check-config``, ``bench`` and ``captures`` join
it with the issues that build them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from smilebot import __version__
from smilebot.anchors import DEFAULT_SPEC, AnchorSpec


def _load_spec(path: Path | None) -> AnchorSpec:
    """The default spec, or one read from a JSON file (a spec, or a sidecar's ``anchors``)."""
    if path is None:
        return DEFAULT_SPEC
    data = json.loads(path.read_text())
    return AnchorSpec.from_dict(data.get("anchors", data) if isinstance(data, dict) else data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smilebot", description="The Smiling Bot v2.")
    parser.add_argument("--version", action="version", version=f"smilebot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    anchors = commands.add_parser("anchors", help="print an anchor spec and its anchor count")
    anchors.add_argument("--spec", type=Path, help="JSON anchor spec or model sidecar")
    args = parser.parse_args(argv)

    try:
        spec = _load_spec(args.spec)
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        print(f"smilebot: {args.spec}: {err}", file=sys.stderr)
        return 1
    print(f"input {spec.input_width} x {spec.input_height}")
    print(spec.arithmetic())
    return 0


if __name__ == "__main__":
    sys.exit(main())
