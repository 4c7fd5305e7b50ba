"""Plain-NumPy implementations of every cell: the tests' oracle, the benchmarks' baseline."""

from .elman import elman_backward, elman_forward

__all__ = ["elman_forward", "elman_backward"]
