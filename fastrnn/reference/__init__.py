"""Plain-NumPy implementations of every cell: the tests' oracle, the benchmarks' baseline."""

from .elman import elman_backward, elman_forward
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward

__all__ = ["elman_forward", "elman_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward"]
