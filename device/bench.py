"""``smilebot bench``: what a press costs on this machine, stage by stage.

Two measurements, both printed as tables of median and 95th percentile milliseconds:

- **stages** at 1, 2 and 4 interpreter threads: grab (the frame source), preprocess,
  invoke, decode+NMS (from :class:`~smilebot.detector.Timings`) and the LED update (a
  mock PWMLED), over ``n`` frames after a warm-up;
- **end to end**: the real :class:`~smilebot.daemon.Daemon` on mock pins, a fresh model
  store and capture log in a temporary folder; each press drives the mock button pin,
  and the figures are the daemon's own: press to LED with its split, the capture log's
  write per press, and the process's resident memory before and after.

Run on a Pi it is the device's latency table; on a laptop, the simulation's. Not the job
of this module: desktop benchmarks (``smilebot_tools.bench``) or accuracy.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smilebot.app import retention
from smilebot.camera import FrameSource
from smilebot.capture_log import CaptureLog
from smilebot.config import Config
from smilebot.daemon import STAGES, Daemon, PressResult
from smilebot.detector import Detector
from smilebot.hardware import Led, Pattern, Trigger, use_mock_pins
from smilebot.model_store import ModelStore

STAGE_NAMES = ("grab", "preprocess", "invoke", "decode_nms", "led", "total")


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
    model: Path, source: FrameSource, led: Led, threads: int, n: int, warmup: int = 5
) -> dict[str, Summary]:
    """Per-stage latency of ``n`` frames from ``source`` at ``threads`` interpreter threads."""
    detector = Detector.load(model, num_threads=threads)
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
        samples["decode_nms"].append(timings.decode_nms_ms)
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


def end_to_end(config: Config, source: FrameSource, presses: int) -> EndToEnd:
    """Press the mock nose ``presses`` times through the real daemon; see the module doc."""
    use_mock_pins()
    results: list[PressResult] = []
    answered = threading.Event()

    def report(result: PressResult) -> None:
        results.append(result)
        answered.set()

    with tempfile.TemporaryDirectory(prefix="smilebot-bench-") as tmp:
        config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, dir=f"{tmp}/models"),
            captures=dataclasses.replace(config.captures, folder=f"{tmp}/captures"),
        )
        m = config.model
        store = ModelStore.open(Path(m.dir), threads=m.threads, seed=Path(m.seed), settle_s=0.0)
        log = CaptureLog.open(Path(config.captures.folder), retention(config))
        led = Led(config.led)
        daemon = Daemon(config, camera=source, store=store, log=log, led=led, report=report)
        trigger = Trigger(config.trigger, daemon.press)
        stop = threading.Event()
        loop = threading.Thread(target=daemon.run, args=(stop,), name="bench-daemon")
        loop.start()
        try:
            rss_before = rss_mb()
            gap_s = config.trigger.bounce_ms / 1e3 + 0.01  # or the debounce drops the press
            for _ in range(presses):
                time.sleep(gap_s)
                answered.clear()
                trigger.press(0.001)
                if not answered.wait(30.0):
                    raise RuntimeError("the daemon did not answer a press within 30 s")
            rss_after = rss_mb()
        finally:
            stop.set()
            loop.join()
            trigger.close()
            led.close()
            log.close()
            store.close()
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
