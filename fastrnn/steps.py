"""Weights for the one-step kernels (``fastrnn.kernels.*_step``).

The step kernels run inside a user's own ``@njit`` loop, millions of times, so they
take the weights transposed (rows of W^T contiguous: a step is a few vectorised axpy
passes) and the summed bias. ``step_weights`` makes those arrays once from
PyTorch-layout weights; ``step_weights_from`` from a fastrnn layer or a state dict
with PyTorch's names (``weight_ih_l0``, ...).
"""

from collections import namedtuple

import numpy as np

from . import _validation as v

__all__ = ["StepWeights", "step_weights", "step_weights_from"]

StepWeights = namedtuple("StepWeights", ["w_ih_t", "w_hh_t", "b", "b_ih", "b_hh", "w_hr_t"])
StepWeights.__doc__ = """Arrays for the step kernels (all C-contiguous, one dtype).

w_ih_t (I, G*H) = W_ih^T; w_hh_t (P, G*H) = W_hh^T; b (G*H,) = b_ih + b_hh (Elman,
LSTM); b_ih, b_hh (G*H,) separately (GRU); w_hr_t (H, P) = W_hr^T, or (0, 0) without
LSTM projections. Biases are zeros for a cell without them."""


def _aligned(a, dtype, boundary=64):
    """A C-contiguous copy of ``a`` starting on a ``boundary``-byte boundary: the step
    kernels load whole vectors of its rows, and a vector that straddles two cache lines
    costs two loads (a 32 x 128 float32 product took 71 ns misaligned, measured)."""
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(a.size + boundary // itemsize, dtype)
    skip = (-buf.ctypes.data) % boundary // itemsize
    out = buf[skip : skip + a.size].reshape(a.shape)
    out[...] = a
    return out


def step_weights(w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, dtype=None):
    """Step-kernel arrays from PyTorch-layout weights.

    Parameters
    ----------
    w_ih : array_like, (G*H, I)
    w_hh : array_like, (G*H, P)
    b_ih, b_hh : array_like, (G*H,), or both None
    w_hr : array_like, (P, H), or None
        LSTM projections.
    dtype : float32, float64 or None
        None: NumPy's promotion of the inputs (float32 stays float32).

    Returns
    -------
    StepWeights

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> w = fastrnn.step_weights(np.ones((16, 3), np.float32), np.ones((16, 4), np.float32))
    >>> w.w_ih_t.shape, w.w_hh_t.shape, w.b.shape, w.w_hr_t.shape, w.b.dtype
    ((3, 16), (4, 16), (16,), (0, 0), dtype('float32'))
    """
    fn = "step_weights"
    w_ih = v.to_array(fn, "w_ih", w_ih)
    w_hh = v.to_array(fn, "w_hh", w_hh)
    v.check_ndim(fn, "w_ih", w_ih, "(G*H, I)")
    GH = w_ih.shape[0]
    v.check_ndim(fn, "w_hh", w_hh, "(G*H, P)")
    v.check_shape(fn, "w_hh", w_hh, "(G*H, P)", (GH, w_hh.shape[1]))
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{fn}: b_ih and b_hh must both be given or both be None")
    if b_ih is not None:
        b_ih = v.to_array(fn, "b_ih", b_ih)
        b_hh = v.to_array(fn, "b_hh", b_hh)
        v.check_shape(fn, "b_ih", b_ih, "(G*H,)", (GH,))
        v.check_shape(fn, "b_hh", b_hh, "(G*H,)", (GH,))
    if w_hr is not None:
        w_hr = v.to_array(fn, "w_hr", w_hr)
        v.check_shape(fn, "w_hr", w_hr, "(P, H)", (w_hh.shape[1], GH // 4))
    if dtype is None:
        dt = v.working_dtype(w_ih, w_hh, b_ih, b_hh, w_hr)
    else:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype!r}")
    t = lambda a: _aligned(a.T, dt)  # noqa: E731
    zeros = np.zeros(GH, dt)
    b_ih = zeros if b_ih is None else np.ascontiguousarray(b_ih, dtype=dt)
    b_hh = zeros.copy() if b_hh is None else np.ascontiguousarray(b_hh, dtype=dt)
    w_hr_t = np.zeros((0, 0), dt) if w_hr is None else t(w_hr)
    return StepWeights(t(w_ih), t(w_hh), b_ih + b_hh, b_ih, b_hh, w_hr_t)


def step_weights_from(source, layer=0, reverse=False, dtype=None):
    """Step-kernel arrays for one layer (and direction) of a fastrnn ``RNN``/``LSTM``/
    ``GRU``, or of a state dict with PyTorch's names, for example
    ``{n: p.detach().numpy() for n, p in torch_module.named_parameters()}``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> lstm = fastrnn.LSTM(3, 8, num_layers=2, seed=0)
    >>> w = fastrnn.step_weights_from(lstm, layer=1)
    >>> w.w_ih_t.shape, w.w_hh_t.shape
    ((8, 32), (8, 32))
    """
    fn = "step_weights_from"
    params = source.state_dict() if hasattr(source, "state_dict") else source
    if not hasattr(params, "keys"):
        raise TypeError(f"{fn}: source must be a fastrnn layer or a dict of PyTorch-named "
                        f"arrays, got {type(source).__name__}")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    name = f"weight_ih{suffix}"
    if name not in params:
        raise ValueError(f"{fn}: no {name} in the source (layers/directions present: "
                         f"{sorted(k[len('weight_ih'):] for k in params if k.startswith('weight_ih'))})")
    get = lambda n: params.get(n + suffix)  # noqa: E731
    if dtype is None and hasattr(source, "dtype") and hasattr(source, "state_dict"):
        dtype = source.dtype
    return step_weights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                        get("weight_hr"), dtype)
