"""Numba kernels (layer 1). Arrays must be C-contiguous, of one float dtype, with the
documented shapes: kernels do not check (use ``fastrnn.functional`` for that).

Activation codes for the Elman kernels: ``TANH``, ``RELU``, ``SIGMOID``, ``IDENTITY``.
"""

from .activations import IDENTITY, RELU, SIGMOID, TANH
from .elman import (elman_backward, elman_backward_recurrence, elman_forward, elman_project,
                    elman_recurrence, elman_truncated_recurrence, elman_weight_grads)

__all__ = [
    "TANH", "RELU", "SIGMOID", "IDENTITY",
    "elman_forward", "elman_backward", "elman_project", "elman_recurrence",
    "elman_backward_recurrence", "elman_truncated_recurrence", "elman_weight_grads",
]
