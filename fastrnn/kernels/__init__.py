"""Numba kernels (layer 1). Arrays must be C-contiguous, of one float dtype, with the
documented shapes: kernels do not check (use ``fastrnn.functional`` for that).

Activation codes for the Elman kernels: ``TANH``, ``RELU``, ``SIGMOID``, ``IDENTITY``.

One-step kernels for a user's own ``@njit`` loop (simulations): ``elman_step``,
``lstm_step``, ``gru_step`` and their ``*_step_backward``; they take transposed weights
(``fastrnn.step_weights`` makes them from PyTorch-layout weights, a layer or a state
dict) and allocate nothing.

``compile_shared()``: before loading a cached ``@njit`` function of your own that calls
the whole-sequence kernels (see docs/kernels.md).
"""

from ._symbols import compile_shared
from .activations import IDENTITY, RELU, SIGMOID, TANH
from .elman import (elman_backward, elman_backward_recurrence, elman_forward, elman_project,
                    elman_recurrence, elman_step, elman_step_backward, elman_truncated_recurrence,
                    elman_weight_grads)
from .gru import (gru_backward, gru_backward_recurrence, gru_forward, gru_project,
                  gru_recurrence, gru_step, gru_step_backward, gru_truncated_recurrence,
                  gru_weight_grads)
from .lstm import (lstm_backward, lstm_backward_recurrence, lstm_forward, lstm_project,
                   lstm_recurrence, lstm_step, lstm_step_backward, lstm_truncated_recurrence,
                   lstm_weight_grads)

__all__ = [
    "TANH", "RELU", "SIGMOID", "IDENTITY", "compile_shared",
    "elman_step", "elman_step_backward", "lstm_step", "lstm_step_backward",
    "gru_step", "gru_step_backward",
    "elman_forward", "elman_backward", "elman_project", "elman_recurrence",
    "elman_backward_recurrence", "elman_truncated_recurrence", "elman_weight_grads",
    "lstm_forward", "lstm_backward", "lstm_project", "lstm_recurrence",
    "lstm_backward_recurrence", "lstm_truncated_recurrence", "lstm_weight_grads",
    "gru_forward", "gru_backward", "gru_project", "gru_recurrence",
    "gru_backward_recurrence", "gru_truncated_recurrence", "gru_weight_grads",
]
