"""Wall-clock timing done the way benchmarks should be: warm-up, repeats, medians."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Timing:
    """Latency of one call over ``repeats`` runs after ``warmup`` discarded ones."""

    median_ms: float
    p90_ms: float
    min_ms: float
    repeats: int
    warmup: int
    # CPU time of the process per call: on a loaded machine it leaves out the time the
    # process waited for a core (with one thread, the time the work itself took)
    cpu_median_ms: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def time_calls(call: Callable[[], object], *, repeats: int = 50, warmup: int = 10) -> Timing:
    """Time ``call`` ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    samples, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    samples.sort()
    p90 = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
    return Timing(statistics.median(samples), p90, samples[0], repeats, warmup,
                  statistics.median(cpu))
