"""``smilebot bench``: what a press costs on this machine, stage by stage.

Three measurements, printed as tables of median and 95th percentile milliseconds:

- **stages** per TFLite runtime (ai-edge-litert, tflite-runtime) at 1, 2 and 4
  interpreter threads: grab (the frame source), preprocess, invoke, decode, NMS (from
  :class:`~smilebot.detector.Timings`) and the LED update (a mock PWMLED), over ``n``
  frames after a warm-up;
- **end to end**: the daemon started as ``smilebot run --simulate`` starts it
  (:func:`smilebot.app.serve`: mock pins, the frame folder as camera, the preferred
  runtime), with a fresh model store and capture log in a temporary folder; each press
  drives the mock button pin, and the figures are the daemon's own:
  press to LED with its split, the capture log's write per press, and the process's
  resident memory before and after;
- **trained vs random** (the seed's question: are trained ReLU nets, being sparser, faster
  on the device?): the shipped model and the same network with random weights, invoked
  at 1 thread on the same frames, interleaved; ops/s = 2 x MACs (:mod:`smilebot.opcount`)
  / the median invoke seconds.

:func:`measure` runs them all and returns a :class:`Report`, whose
:meth:`~Report.figures` are the results store's ``{"name", "value", "unit"}`` figures
(:mod:`smilebot.provenance` stamps them). Run on a Pi it is the device's latency table; on
a laptop, the simulation's. Not the job of this module: desktop benchmarks
(``smilebot_tools.bench``) or accuracy.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smilebot.app import Hooks, serve
from smilebot.camera import FolderSource, FrameSource
from smilebot.config import Config
from smilebot.daemon import STAGES, Daemon, PressResult
from smilebot.detector import Detector
from smilebot.hardware import Led, Pattern, Trigger, use_mock_pins
from smilebot.opcount import macs
from smilebot.runtime import load_interpreter
from smilebot.systemd import Notifier

STAGE_NAMES = ("grab", "preprocess", "invoke", "decode", "nms", "led", "total")
TRAINED, RANDOM = "trained", "random"


@dataclass(frozen=True)
class Summary:
    """Median and 95th percentile of one stage, milliseconds."""

    median: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(float(np.median(values)), float(np.percentile(values, 95)))


def rss_mb() -> float:
    """This process's resident set size in MiB (from /proc; 0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stages(
    model: Path,
    source: FrameSource,
    led: Led,
    threads: int,
    n: int,
    warmup: int = 5,
    runtime: str | None = None,
) -> dict[str, Summary]:
    """Per-stage latency of ``n`` frames from ``source`` at ``threads`` interpreter threads,
    with ``runtime`` (None: the preferred one)."""
    detector = Detector.load(model, num_threads=threads, runtime=runtime)
    samples: dict[str, list[float]] = {name: [] for name in STAGE_NAMES}
    for i in range(warmup + n):
        start = time.perf_counter()
        frame = source.grab(5.0)
        grabbed = time.perf_counter()
        timings = detector.detect(frame.image, frame.color).timings
        shown = time.perf_counter()
        led.show(Pattern.SMILE if i % 2 else Pattern.OFF)
        done = time.perf_counter()
        if i < warmup:
            continue
        samples["grab"].append((grabbed - start) * 1e3)
        samples["preprocess"].append(timings.preprocess_ms)
        samples["invoke"].append(timings.invoke_ms)
        samples["decode"].append(timings.decode_ms)
        samples["nms"].append(timings.nms_ms)
        samples["led"].append((done - shown) * 1e3)
        samples["total"].append((done - start) * 1e3)
    return {name: Summary.of(values) for name, values in samples.items()}


@dataclass(frozen=True)
class EndToEnd:
    """The daemon's own figures over ``presses`` presses (ms, MiB)."""

    presses: int
    stored: int
    to_led: Summary
    split: dict[str, Summary]
    log_write: Summary
    rss_before_mb: float
    rss_after_mb: float


def end_to_end(config: Config, presses: int) -> EndToEnd:
    """Start the real daemon (:func:`smilebot.app.serve` on mock pins) with ``config``, a
    fresh model store (seeded with ``config.model.seed``) and capture log in a temporary
    folder; press the mock nose ``presses`` times, then stop it. The figures are the
    daemon's own (:class:`~smilebot.daemon.PressResult`)."""
    results: list[PressResult] = []
    answered = threading.Event()
    rss: dict[str, float] = {}
    problems: list[str] = []

    def report(result: PressResult) -> None:
        results.append(result)
        answered.set()

    def press_all(trigger: Trigger, stop: threading.Event) -> None:
        try:
            rss["before"] = rss_mb()
            gap_s = config.trigger.bounce_ms / 1e3 + 0.01  # or the debounce drops the press
            for _ in range(presses):
                time.sleep(gap_s)
                answered.clear()
                trigger.press(0.001)
                if not answered.wait(30.0):
                    problems.append("the daemon did not answer a press within 30 s")
                    return
            rss["after"] = rss_mb()
        finally:
            stop.set()

    def started(trigger: Trigger, _daemon: Daemon, stop: threading.Event) -> None:
        threading.Thread(target=press_all, args=(trigger, stop), name="bench-nose").start()

    with tempfile.TemporaryDirectory(prefix="smilebot-bench-") as tmp:
        config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, dir=f"{tmp}/models"),
            captures=dataclasses.replace(config.captures, folder=f"{tmp}/captures"),
        )
        hooks = Hooks(simulate=True, report=report, started=started)
        code = serve(config, hooks, notifier=Notifier({}), handle_signals=False)
    if code or problems:
        raise RuntimeError(problems[0] if problems else f"the daemon exited with {code}")
    rss_before, rss_after = rss["before"], rss["after"]
    split = {
        stage: Summary.of([r.latency_ms[stage] for r in results if stage in r.latency_ms])
        for stage in STAGES[:-1]
    }
    return EndToEnd(
        presses=len(results),
        stored=sum(r.seq is not None for r in results),
        to_led=Summary.of([r.latency_ms["to_led"] for r in results if "to_led" in r.latency_ms]),
        split=split,
        log_write=Summary.of([r.latency_ms["log"] for r in results if "log" in r.latency_ms]),
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
    )


def format_stages(table: dict[int, dict[str, Summary]]) -> str:
    """Rows: stages; columns: median / p95 per thread count."""
    threads = sorted(table)
    header = "stage (ms)   " + "".join(
        f"{f'{t} thread' + ('s' if t > 1 else ''):>18}" for t in threads
    )
    sub = " " * 13 + "".join(f"{'median':>9}{'p95':>9}" for _ in threads)
    rows = [header, sub]
    for name in STAGE_NAMES:
        cells = "".join(f"{table[t][name].median:9.2f}{table[t][name].p95:9.2f}" for t in threads)
        rows.append(f"{name:<13}{cells}")
    return "\n".join(rows)


def format_end_to_end(e2e: EndToEnd) -> str:
    """The end-to-end figures as a few lines."""
    lines = [
        f"end to end, {e2e.presses} presses through the daemon on mock pins "
        f"({e2e.stored} captures stored):",
        f"  press to LED   median {e2e.to_led.median:7.2f} ms   p95 {e2e.to_led.p95:7.2f} ms",
    ]
    for stage, s in e2e.split.items():
        lines.append(f"    {stage:<12} median {s.median:7.2f} ms   p95 {s.p95:7.2f} ms")
    lines.append(
        f"  capture write  median {e2e.log_write.median:7.2f} ms   p95 {e2e.log_write.p95:7.2f} ms"
        " (after the LED)"
    )
    lines.append(f"  RSS {e2e.rss_before_mb:.1f} MiB before, {e2e.rss_after_mb:.1f} MiB after")
    return "\n".join(lines)


@dataclass(frozen=True)
class OpsRate:
    """One model's arithmetic rate: ``macs`` per invoke and the invoke latency (ms)."""

    macs: int
    invoke: Summary

    @property
    def ops_per_s(self) -> float:
        """Operations per second of the median invoke; ops = 2 x MACs (multiply + add)."""
        return 2 * self.macs / (self.invoke.median / 1e3)


def ops_rates(
    models: dict[str, Path],
    source: FrameSource,
    n: int,
    runtime: str | None = None,
    warmup: int = 5,
) -> dict[str, OpsRate]:
    """Each of ``models`` (label -> path) at 1 thread with ``runtime``: its MACs and its
    invoke latency on the same ``n`` frames, the models taking turns on every frame so that
    a shared machine's drift falls on all of them alike."""
    detectors = {
        label: Detector.load(path, num_threads=1, runtime=runtime) for label, path in models.items()
    }
    samples: dict[str, list[float]] = {label: [] for label in models}
    for i in range(warmup + n):
        frame = source.grab(5.0)
        order = list(detectors) if i % 2 else list(reversed(detectors))
        for label in order:
            invoke_ms = detectors[label].detect(frame.image, frame.color).timings.invoke_ms
            if i >= warmup:
                samples[label].append(invoke_ms)
    counts = {label: macs(load_interpreter(path, 1, runtime)[0]) for label, path in models.items()}
    return {label: OpsRate(counts[label], Summary.of(samples[label])) for label in models}


@dataclass
class Report:
    """Everything :func:`measure` found. ``stages``: runtime -> threads -> stage ->
    :class:`Summary`; ``ops``: runtime -> ``"trained"``/``"random"`` -> :class:`OpsRate`
    (empty when not compared); ``end_to_end``: None when skipped."""

    stages: dict[str, dict[int, dict[str, Summary]]] = field(default_factory=dict)
    end_to_end: EndToEnd | None = None
    ops: dict[str, dict[str, OpsRate]] = field(default_factory=dict)

    def figures(self, prefix: str) -> list[dict]:
        """Every figure as ``{"name", "value", "unit"}``, names starting with ``prefix``."""
        out = []
        for runtime, table in self.stages.items():
            for threads, row in table.items():
                for stage, s in row.items():
                    name = f"{prefix}.stages.{runtime}.{threads}_threads.{stage}"
                    out += _summary_figures(name, s)
        if self.end_to_end is not None:
            e2e = self.end_to_end
            out += _summary_figures(f"{prefix}.e2e.press_to_led", e2e.to_led)
            for stage, s in e2e.split.items():
                out += _summary_figures(f"{prefix}.e2e.split.{stage}", s)
            out += _summary_figures(f"{prefix}.e2e.capture_write", e2e.log_write)
            out.append(_figure(f"{prefix}.e2e.presses", e2e.presses, "presses"))
            out.append(_figure(f"{prefix}.rss.before_presses", e2e.rss_before_mb, "MiB"))
            out.append(_figure(f"{prefix}.rss.after_presses", e2e.rss_after_mb, "MiB"))
        for runtime, rates in self.ops.items():
            for label, rate in rates.items():
                name = f"{prefix}.ops.{runtime}.{label}"
                out.append(_figure(f"{name}.macs", rate.macs, "MAC"))
                out += _summary_figures(f"{name}.invoke_1_thread", rate.invoke)
                out.append(_figure(f"{name}.ops_per_s", rate.ops_per_s, "op/s"))
            ratio = rates[TRAINED].ops_per_s / rates[RANDOM].ops_per_s
            out.append(_figure(f"{prefix}.ops.{runtime}.trained_over_random", ratio, "x"))
        return out


def _figure(name: str, value: float, unit: str) -> dict:
    return {"name": name, "value": float(value), "unit": unit}


def _summary_figures(name: str, s: Summary) -> list[dict]:
    return [_figure(f"{name}.median", s.median, "ms"), _figure(f"{name}.p95", s.p95, "ms")]


def measure(
    model: Path,
    source: FolderSource,
    config: Config,
    *,
    runtimes: Sequence[str],
    threads: Sequence[int] = (1, 2, 4),
    n: int = 100,
    presses: int = 100,
    random_model: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Report:
    """The stage table per runtime and thread count, the end-to-end presses (0: skipped)
    and, given ``random_model``, trained vs random per runtime; each table is passed to
    ``echo`` as it is done."""
    report = Report()
    use_mock_pins()
    led = Led(config.led)
    try:
        for runtime in runtimes:
            table = {t: stages(model, source, led, t, n, runtime=runtime) for t in threads}
            report.stages[runtime] = table
            echo(f"{runtime}:\n{format_stages(table)}")
    finally:
        led.close()
    if random_model is not None:
        for runtime in runtimes:
            models = {TRAINED: model, RANDOM: random_model}
            report.ops[runtime] = ops_rates(models, source, n, runtime=runtime)
        echo(format_ops(report.ops))
    if presses:
        seeded = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, seed=str(model)),
            camera=dataclasses.replace(config.camera, source="folder", folder=str(source.folder)),
        )
        report.end_to_end = end_to_end(seeded, presses)
        echo(format_end_to_end(report.end_to_end))
    return report


def format_ops(ops: dict[str, dict[str, OpsRate]]) -> str:
    """Trained vs random weights: MACs, median invoke at 1 thread, ops/s, per runtime."""
    rows = [
        "trained vs random weights, 1 thread (ops = 2 x MACs):",
        f"{'runtime':<16}{'weights':<9}{'MACs':>12}{'invoke ms':>11}{'Gop/s':>9}",
    ]
    for runtime, rates in ops.items():
        for label, rate in rates.items():
            rows.append(
                f"{runtime:<16}{label:<9}{rate.macs:>12,}{rate.invoke.median:>11.3f}"
                f"{rate.ops_per_s / 1e9:>9.2f}"
            )
        ratio = rates[TRAINED].ops_per_s / rates[RANDOM].ops_per_s
        rows.append(f"{runtime:<16}trained/random ops/s {ratio:.3f}")
    return "\n".join(rows)
