"""Wall-clock timing (warm-up, repeats, medians): the device runtime's, shared."""
from grw_edge_runtime.timing import Timing, time_calls

__all__ = ["Timing", "time_calls"]
