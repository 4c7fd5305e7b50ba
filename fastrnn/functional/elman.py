"""Functional API of the Elman RNN (tanh, relu, sigmoid, identity):
forward and backward (the conventions: ``fastrnn.functional``)."""

from dataclasses import dataclass

import numpy as np

from .. import _validation as v
from .._threads import kernel_launch
from ..kernels import elman as _elman
from ..kernels.activations import ACTIVATIONS
from ._common import (_Inputs, _check_inputs, _empty, _scratch, _summed_bias, _out_buffer,
                      _out_chunk, _chunks, _lengths_in, _sum_ages, _packed_weights,
                      _project, _input_and_weight_grads, _ages_through, _fingerprint,
                      _start_backward)


@dataclass(frozen=True)
class ElmanCache:
    """What ``elman_backward`` needs from ``elman_forward``: references to the
    (converted) inputs and to ``out``, and their checksums: backward refuses a cache
    whose arrays were modified in place since the forward."""

    inputs: _Inputs
    out: np.ndarray  # (T, B, H)
    nonlinearity: str
    fingerprint: tuple = ()  # checksums of the inputs and out (see _fingerprint)


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


def elman_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", cache=True,
                  lengths=None, keep_out=True):
    """Elman RNN over a sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Parameters
    ----------
    x : array_like, (T, B, I)
        Inputs, time first.
    h0 : array_like, (B, H), or None
        Initial state; None means zeros.
    w_ih : array_like or PackedWeight, (H, I)
    w_hh : array_like or PackedWeight, (H, H)
        A ``PackedWeight`` (``pack_weight``) skips packing the matrix on every call.
    b_ih, b_hh : array_like, (H,), or both None
        Biases (PyTorch keeps two; only their sum matters to the forward).
    nonlinearity : {"tanh", "relu", "sigmoid", "identity"}
    cache : bool
        Keep what backward needs and return it; with False the third result is None.
    lengths : array_like of int, (B,), or None
        Length of each sequence (1..T), as PyTorch's packed sequences: steps at and past
        a sequence's length are padding, their outputs are 0 and ``h_n`` is the state at
        the sequence's last real step. None: every sequence has T steps.
    keep_out : bool
        False (with ``cache=False``): stream through the sequence in chunks and return
        None for ``out``, in O(B H) memory beyond the inputs, for runs of millions of
        steps where only ``h_n`` matters.

    Returns
    -------
    out : ndarray, (T, B, H), or None with ``keep_out=False``
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
    inp = _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates=1, lengths=lengths)
    v.check_choice(fn, "nonlinearity", nonlinearity, ACTIVATIONS)
    v.check_flag(fn, "cache", cache)
    T, B, I, H, _ = inp.shape
    out = _out_buffer(fn, inp, keep_out, cache, H, 1)
    h_n = inp.h0.copy()
    b, act = _summed_bias(inp), ACTIVATIONS[nonlinearity]
    w_ih_p, w_hh_p, known = _packed_weights(inp, summed=cache)
    with kernel_launch() as serial:
        for t0, t1 in _chunks(T, out.shape[0]) if B else ():
            h = h_n.copy()  # the state carried into this chunk
            o = _out_chunk(out, inp.x.shape[0], t0, t1)
            _project(o, inp.x[t0:t1], w_ih_p, serial)  # the recurrence runs in place in out
            _elman.elman_recurrence(o, h_n, h, w_hh_p, b, act, _lengths_in(inp, t0, t1), serial)
    if not keep_out:
        return None, h_n, None
    return out, h_n, (ElmanCache(inp, out, nonlinearity, _fingerprint(inp, out, known))
                      if cache else None)


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
    inp, dout, dh_n, _, k, packs = _start_backward("elman_backward", cache, ElmanCache, dout,
                                                   dh_n,
                                            truncate)
    T, B, _, H, _ = inp.shape
    return _elman_run_backward(cache, dout.reshape(T, 1, B, H), dh_n, k, False, packs)[0]


def _elman_run_backward(cache, dout, dh_n, k, want_ages, packs):
    """Backward from checked arguments, dout (T, A, B, H) by age, and the weights packed
    by ``_check_unmodified``; returns the gradients and, with ``want_ages`` and
    truncation, dL/dx by age (T, k, B, I) for a stack."""
    inp = cache.inputs
    T, B, I, H, _ = inp.shape
    w_ih_p, w_hh_p, _ = packs
    new = np.empty if T and B else np.zeros  # the kernels write every entry
    dx = _empty((T, B, I), inp.dtype) if T and B else np.zeros((T, B, I), inp.dtype)
    dh0 = new((B, H), inp.dtype)
    dw_ih = new((H, I), inp.dtype)
    dw_hh = new((H, H), inp.dtype)
    db = new(H, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n  # h_n is h0
    elif B > 0:
        act = ACTIVATIONS[cache.nonlinearity]
        da = _scratch("da", (T, B, H), inp.dtype)
        with kernel_launch() as serial:
            if k is None or k >= T:
                _elman.elman_backward_recurrence(da, dh0, _sum_ages(dout), dh_n, cache.out,
                                                 w_hh_p, act, inp.lengths, serial)
            else:
                da_ages = _empty((T if want_ages else 0, k, B, H), inp.dtype)
                _elman.elman_truncated_recurrence(da, da_ages, dh0, dout, dh_n, cache.out,
                                                  w_hh_p, act, k, inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(da_ages, inp.w_ih, w_ih_p, serial)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db, np.empty_like(db), da, da, H, inp,
                                    cache.out, w_ih_p, serial)
    has_bias = inp.b_ih is not None
    return ElmanGrads(dx, dh0, dw_ih, dw_hh, db if has_bias else None,
                      db.copy() if has_bias else None), dx_ages
