"""fastrnn: Numba-compiled CPU kernels for recurrent neural networks.

PyTorch's equations, shapes and parameter names over NumPy arrays, float32 and
float64, with full and truncated backpropagation through time.

Layers of the package (each calls only the one below):

- ``fastrnn.kernels``: ``@njit`` kernels over C-contiguous arrays (callable from
  your own Numba code; no validation).
- ``fastrnn.reference``: plain-NumPy implementations of the same maths.
- ``fastrnn.functional``: validated functions, re-exported here.
"""

from .functional import (ElmanCache, ElmanGrads, GRUCache, GRUGrads, LSTMCache, LSTMGrads,
                         PackedWeight, elman_backward, elman_forward, gru_backward,
                         gru_forward, lstm_backward, lstm_forward, pack_weight)

from .layers import GRU, LSTM, RNN, LayerCache, LayerGrads
from .steps import StepWeights, step_weights, step_weights_from

__version__ = "0.1.0"

__all__ = [
    "elman_forward", "elman_backward", "ElmanCache", "ElmanGrads",
    "lstm_forward", "lstm_backward", "LSTMCache", "LSTMGrads",
    "gru_forward", "gru_backward", "GRUCache", "GRUGrads",
    "pack_weight", "PackedWeight",
    "RNN", "LSTM", "GRU", "LayerCache", "LayerGrads",
    "step_weights", "step_weights_from", "StepWeights",
    "__version__",
]
