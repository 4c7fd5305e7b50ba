"""Functional API: validate, convert, allocate, call the kernels.

Arrays in, arrays out, with PyTorch's equations, shapes and weight layouts:
``x`` (T, B, I), states (B, H), ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), biases (G*H,),
with G = 1 (Elman), 4 (LSTM: gates i, f, g, o) or 3 (GRU: gates r, z, n).

dtype rules: float32 in gives float32 out, float64 gives float64; int and bool arrays
count as float64, float16 as float32; mixed dtypes follow NumPy's promotion. Inputs
are never modified; non-contiguous, Fortran-ordered, byte-swapped or read-only arrays
are copied once. T = 0 or B = 0 give empty outputs (and zero gradients); sizes I and
H must be at least 1.

One module per cell (``elman``, ``lstm``, ``gru``), on what they share (``_common``).
"""

from .elman import ElmanCache, ElmanGrads, elman_backward, elman_forward
from .gru import GRUCache, GRUGrads, gru_backward, gru_forward
from .lstm import LSTMCache, LSTMGrads, lstm_backward, lstm_forward
from .packed import PackedWeight, pack_weight

__all__ = [
    "elman_forward", "elman_backward", "ElmanCache", "ElmanGrads",
    "lstm_forward", "lstm_backward", "LSTMCache", "LSTMGrads",
    "gru_forward", "gru_backward", "GRUCache", "GRUGrads",
    "pack_weight", "PackedWeight",
]
