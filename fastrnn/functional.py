"""Functional API: validate, convert, allocate, call the kernels.

Arrays in, arrays out, with PyTorch's equations, shapes and weight layouts:
``x`` (T, B, I), states (B, H), ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), biases (G*H,),
G = 1 for the Elman cell.

dtype rules: float32 in gives float32 out, float64 gives float64; int and bool arrays
count as float64, float16 as float32; mixed dtypes follow NumPy's promotion. Inputs
are never modified; non-contiguous, Fortran-ordered, byte-swapped or read-only arrays
are copied once. T = 0 or B = 0 give empty outputs (and zero gradients); sizes I and
H must be at least 1.
"""

from dataclasses import dataclass

import numpy as np

from . import _validation as v
from ._blas_threads import single_threaded_blas
from .kernels import elman as _elman
from .kernels.activations import ACTIVATIONS

__all__ = ["elman_forward", "elman_backward", "ElmanCache", "ElmanGrads"]


# --------------------------------------------------------------------------------------
# shared by every cell


@dataclass(frozen=True)
class _Inputs:
    """Validated arguments of a cell's forward, as kernel-ready arrays."""

    dtype: np.dtype
    x: np.ndarray  # (T, B, I)
    h0: np.ndarray  # (B, H)
    w_ih: np.ndarray  # (G*H, I)
    w_hh: np.ndarray  # (G*H, H)
    b_ih: np.ndarray  # (G*H,) or None
    b_hh: np.ndarray  # (G*H,) or None

    @property
    def shape(self):
        """(T, B, I, H)."""
        T, B, I = self.x.shape
        return T, B, I, self.h0.shape[1]


def _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates):
    x = v.to_array(fn, "x", x)
    w_ih = v.to_array(fn, "w_ih", w_ih)
    w_hh = v.to_array(fn, "w_hh", w_hh)
    v.check_ndim(fn, "x", x, "(T, B, I)")
    T, B, I = x.shape
    v.check_positive_size(fn, "input size I", I, f"x.shape = {x.shape}")
    v.check_ndim(fn, "w_ih", w_ih, "(G*H, I)" if gates > 1 else "(H, I)")
    GH = w_ih.shape[0]
    if GH % gates:
        raise ValueError(f"{fn}: w_ih must have shape ({gates}*H, I) (gates stacked on the first "
                         f"axis), got {w_ih.shape}: {GH} rows is not a multiple of {gates}")
    H = GH // gates
    v.check_positive_size(fn, "hidden size H", H, f"w_ih.shape = {w_ih.shape}")
    g = f"{gates}*H" if gates > 1 else "H"
    v.check_shape(fn, "w_ih", w_ih, f"({g}, I)", (GH, I))
    v.check_shape(fn, "w_hh", w_hh, f"({g}, H)", (GH, H))
    if h0 is not None:
        h0 = v.to_array(fn, "h0", h0)
        v.check_shape(fn, "h0", h0, "(B, H)", (B, H))
    if (b_ih is None) != (b_hh is None):
        given, missing = ("b_ih", "b_hh") if b_hh is None else ("b_hh", "b_ih")
        raise ValueError(f"{fn}: b_ih and b_hh must both be given or both be None, "
                         f"got {given} but {missing} is None")
    if b_ih is not None:
        b_ih = v.to_array(fn, "b_ih", b_ih)
        b_hh = v.to_array(fn, "b_hh", b_hh)
        v.check_shape(fn, "b_ih", b_ih, f"({g},)", (GH,))
        v.check_shape(fn, "b_hh", b_hh, f"({g},)", (GH,))
    dtype = v.working_dtype(x, h0, w_ih, w_hh, b_ih, b_hh)
    conv = lambda a: None if a is None else v.for_kernel(a, dtype)  # noqa: E731
    h0 = np.zeros((B, H), dtype) if h0 is None else conv(h0)
    return _Inputs(dtype, conv(x), h0, conv(w_ih), conv(w_hh), conv(b_ih), conv(b_hh))


def _summed_bias(inp):
    # kernels take one bias vector b_ih + b_hh (zeros without bias)
    GH = inp.w_ih.shape[0]
    if inp.b_ih is None:
        return np.zeros(GH, inp.dtype)
    return inp.b_ih + inp.b_hh


def _check_grad_arg(fn, name, value, layout, shape, dtype):
    """An incoming gradient: None (zeros) or an array of exactly ``shape``."""
    if value is None:
        return np.zeros(shape, dtype)
    a = v.to_array(fn, name, value)
    v.check_shape(fn, name, a, layout, shape)
    return v.for_kernel(a, dtype)


def _check_cache(fn, cache, cls):
    if not isinstance(cache, cls):
        raise TypeError(f"{fn}: cache must be the {cls.__name__} returned by the forward "
                        f"call with cache=True, got {type(cache).__name__}")


# --------------------------------------------------------------------------------------
# Elman


@dataclass(frozen=True)
class ElmanCache:
    """What ``elman_backward`` needs from ``elman_forward``: references to the
    (converted) inputs and to ``out``. Modifying ``out`` in place before calling
    backward changes the gradient: copy it first."""

    inputs: _Inputs
    out: np.ndarray  # (T, B, H)
    nonlinearity: str


@dataclass(frozen=True)
class ElmanGrads:
    """Gradients returned by ``elman_backward`` (bias entries None without bias).

    Shapes: dx (T, B, I), dh0 (B, H), dw_ih (H, I), dw_hh (H, H), db_ih and db_hh (H,).
    """

    dx: np.ndarray
    dh0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray


def elman_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", cache=True):
    """Elman RNN over a sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Parameters
    ----------
    x : array_like, (T, B, I)
        Inputs, time first.
    h0 : array_like, (B, H), or None
        Initial state; None means zeros.
    w_ih : array_like, (H, I)
    w_hh : array_like, (H, H)
    b_ih, b_hh : array_like, (H,), or both None
        Biases (PyTorch keeps two; only their sum matters to the forward).
    nonlinearity : {"tanh", "relu", "sigmoid", "identity"}
    cache : bool
        Keep what backward needs and return it; with False the third result is None.

    Returns
    -------
    out : ndarray, (T, B, H)
        h_t for every step.
    h_n : ndarray, (B, H)
        The last state (``h0`` when T = 0).
    cache : ElmanCache or None
        Pass to ``elman_backward``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    >>> w_ih = rng.standard_normal((4, 3)).astype(np.float32)
    >>> w_hh = 0.5 * rng.standard_normal((4, 4)).astype(np.float32)
    >>> out, h_n, cache = fastrnn.elman_forward(x, None, w_ih, w_hh)
    >>> out.shape, h_n.shape, out.dtype
    ((5, 2, 4), (2, 4), dtype('float32'))
    >>> bool(np.array_equal(out[-1], h_n))
    True
    """
    fn = "elman_forward"
    inp = _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates=1)
    v.check_choice(fn, "nonlinearity", nonlinearity, ACTIVATIONS)
    v.check_flag(fn, "cache", cache)
    T, B, I, H = inp.shape
    out = np.empty((T, B, H), inp.dtype)
    if T == 0 or B == 0:
        h_n = inp.h0.copy()
    else:
        h_n = np.empty((B, H), inp.dtype)
        with single_threaded_blas():
            _elman.elman_project(out, inp.x, inp.w_ih)
            _elman.elman_recurrence(out, h_n, inp.h0, inp.w_hh, _summed_bias(inp),
                                    ACTIVATIONS[nonlinearity])
    return out, h_n, (ElmanCache(inp, out, nonlinearity) if cache else None)


def elman_backward(cache, dout, dh_n=None, truncate=None):
    """Backpropagation through time for ``elman_forward``.

    Computes the gradient of ``sum(out * dout) + sum(h_n * dh_n)`` with respect to
    the inputs, the initial state and every parameter.

    Parameters
    ----------
    cache : ElmanCache
        From ``elman_forward(..., cache=True)``.
    dout : array_like, (T, B, H), or None
        Gradient on ``out``; None means zeros (a loss on ``h_n`` only).
    dh_n : array_like, (B, H), or None
        Gradient on ``h_n``; None means zeros.
    truncate : int >= 1 or None
        None: full BPTT. k: the gradient entering at step t (from ``dout[t]``, or
        from ``dh_n`` at the last step) flows back through steps t, ..., t-k+1 only;
        the state before that window is a constant for it. k >= T equals full BPTT.

    Returns
    -------
    ElmanGrads
        ``dx, dh0, dw_ih, dw_hh, db_ih, db_hh`` (the bias ones None without bias).

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))
    >>> w_ih, w_hh = rng.standard_normal((4, 3)), 0.5 * rng.standard_normal((4, 4))
    >>> out, h_n, cache = fastrnn.elman_forward(x, None, w_ih, w_hh, np.zeros(4), np.zeros(4))
    >>> g = fastrnn.elman_backward(cache, np.ones_like(out), truncate=3)
    >>> g.dx.shape, g.dw_hh.shape, g.db_ih.shape
    ((6, 2, 3), (4, 4), (4,))
    """
    fn = "elman_backward"
    _check_cache(fn, cache, ElmanCache)
    inp = cache.inputs
    T, B, I, H = inp.shape
    dout = _check_grad_arg(fn, "dout", dout, "(T, B, H)", (T, B, H), inp.dtype)
    dh_n = _check_grad_arg(fn, "dh_n", dh_n, "(B, H)", (B, H), inp.dtype)
    k = v.check_truncate(fn, truncate)
    dx = np.zeros((T, B, I), inp.dtype)
    dh0 = np.zeros((B, H), inp.dtype)
    dw_ih = np.zeros((H, I), inp.dtype)
    dw_hh = np.zeros((H, H), inp.dtype)
    db = np.zeros(H, inp.dtype)
    if T == 0:
        dh0[...] = dh_n  # h_n is h0
    elif B > 0:
        act = ACTIVATIONS[cache.nonlinearity]
        da = np.empty((T, B, H), inp.dtype)
        with single_threaded_blas():
            if k is None or k >= T:
                _elman.elman_backward_recurrence(da, dh0, dout, dh_n, cache.out, inp.w_hh, act)
            else:
                _elman.elman_truncated_recurrence(da, dh0, dout, dh_n, cache.out, inp.w_hh, act, k)
            _elman.elman_weight_grads(dx, dw_ih, dw_hh, db, da, inp.x, inp.h0, inp.w_ih, cache.out)
    has_bias = inp.b_ih is not None
    return ElmanGrads(dx, dh0, dw_ih, dw_hh, db if has_bias else None,
                      db.copy() if has_bias else None)
