"""Functional API of the GRU:
forward and backward (the conventions: ``fastrnn.functional``)."""

from dataclasses import dataclass

import numpy as np

from .. import _validation as v
from .._threads import kernel_launch
from ..kernels import gru as _gru
from ._common import (_Inputs, _check_inputs, _empty, _scratch, _chunk_steps, _out_buffer,
                      _out_chunk, _chunks, _lengths_in, _checkpoint_steps,
                      _checkpointed_backward, _segment_inputs, _sum_ages, _packed_weights,
                      _project, _input_and_weight_grads, _ages_through, _fingerprint,
                      _check_no_truncation, _start_backward)


@dataclass(frozen=True)
class GRUCache:
    """What ``gru_backward`` needs from ``gru_forward``: the (converted) inputs, ``out``,
    the gate values r, z, n (T, B, 3H) and gh_n = W_hn h_{t-1} + b_hn (T, B, H)."""

    inputs: _Inputs
    out: np.ndarray  # (T, B, H)
    gates: np.ndarray  # (T, B, 3H): r, z, n; None when checkpointed
    ghn: np.ndarray  # (T, B, H); None when checkpointed
    fingerprint: tuple = ()
    checkpoint: int = 0  # segment length of a checkpointed cache; 0: every step kept


@dataclass(frozen=True)
class GRUGrads:
    """Gradients returned by ``gru_backward`` (bias entries None without bias).

    Shapes: dx (T, B, I), dh0 (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih, db_hh (3H,).
    """

    dx: np.ndarray
    dh0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, cache=True, lengths=None,
                checkpoint=None, keep_out=True):
    """GRU over a sequence, with PyTorch's equations and gate order r, z, n::

        r = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    ``b_hn`` sits inside ``r *``, as in PyTorch (the paper puts ``r`` before ``W_hn``).

    Parameters
    ----------
    x : array_like, (T, B, I)
    h0 : array_like, (B, H), or None (zeros)
    w_ih : array_like or PackedWeight, (3H, I)
    w_hh : array_like or PackedWeight, (3H, H)
        A ``PackedWeight`` (``pack_weight``) skips packing the matrix on every call.
    b_ih, b_hh : array_like, (3H,), or both None
    cache : bool
    lengths : array_like of int, (B,), or None
        As ``elman_forward``.
    checkpoint : int >= 1, "sqrt" or None
        As ``lstm_forward``: the cache keeps no gates (4 T B H values); backward
        recomputes each segment of ``checkpoint`` steps from ``out`` at its start.
    keep_out : bool
        As ``elman_forward``: False (with ``cache=False``) returns None for ``out``.

    Returns
    -------
    out : ndarray, (T, B, H), or None with ``keep_out=False``
    h_n : ndarray, (B, H)
    cache : GRUCache or None

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    >>> w_ih = (0.3 * rng.standard_normal((12, 3))).astype(np.float32)
    >>> w_hh = (0.3 * rng.standard_normal((12, 4))).astype(np.float32)
    >>> out, h_n, cache = fastrnn.gru_forward(x, None, w_ih, w_hh)
    >>> out.shape, out.dtype
    ((5, 2, 4), dtype('float32'))
    """
    fn = "gru_forward"
    inp = _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates=3, lengths=lengths)
    v.check_flag(fn, "cache", cache)
    ck = _checkpoint_steps(fn, checkpoint, cache, inp)
    T, B, I, H, _ = inp.shape
    out = _out_buffer(fn, inp, keep_out, cache, H, 3)
    steps = ck or _chunk_steps(inp, cache)
    every = cache and not ck  # the cache keeps every step's gates
    shape = (steps, B, 3 * H)
    gates = _empty(shape, inp.dtype) if every else _scratch("gates", shape, inp.dtype)
    ghn = _empty((T if every else 0, B, H), inp.dtype)
    h_n = inp.h0.copy()
    known = _gru_run_forward(out, h_n, gates, ghn, inp, _chunks(T, steps) if B else [], cache)
    if not cache:
        return out if keep_out else None, h_n, None
    return out, h_n, GRUCache(inp, out, None if ck else gates, None if ck else ghn,
                              _fingerprint(inp, out, known), ck)


def _gru_run_forward(out, h_n, gates, ghn, inp, chunks, summed=False):
    """The forward in chunks of steps; h_n holds the initial state on entry; ghn (T, B, H)
    or (0, B, H). Returns the weights' checksums taken while packing them (``summed``)."""
    H = out.shape[2]
    b_ih, b_hh = inp.b_ih, inp.b_hh
    if b_ih is None:
        b_ih = b_hh = np.zeros(3 * H, inp.dtype)
    w_ih_p, w_hh_p, known = _packed_weights(inp, summed)
    with kernel_launch() as serial:
        for t0, t1 in chunks:
            h = h_n.copy()
            _project(gates[: t1 - t0], inp.x[t0:t1], w_ih_p, serial)
            _gru.gru_recurrence(_out_chunk(out, inp.x.shape[0], t0, t1), h_n, gates[: t1 - t0],
                                ghn[t0:t1] if ghn.shape[0] else ghn, h, w_hh_p, b_ih, b_hh,
                                _lengths_in(inp, t0, t1), serial)
    return known


def _gru_segment(cache, i, t0, t1):
    # the cache of steps t0..t1-1 of a checkpointed forward, recomputed
    seg = _segment_inputs(cache, t0, t1)
    n, (B, H) = t1 - t0, seg.h0.shape
    out, gates, ghn = (np.empty((n, B, m), seg.dtype) for m in (H, 3 * H, H))
    _gru_run_forward(out, seg.h0.copy(), gates, ghn, seg, [(0, n)])
    return GRUCache(seg, out, gates, ghn)


def gru_backward(cache, dout, dh_n=None, truncate=None):
    """Backpropagation through time for ``gru_forward``.

    Computes the gradient of ``sum(out * dout) + sum(h_n * dh_n)``.

    Parameters
    ----------
    cache : GRUCache
    dout : array_like, (T, B, H), or None (zeros)
    dh_n : array_like, (B, H), or None (zeros)
    truncate : int >= 1 or None
        As ``elman_backward``.

    Returns
    -------
    GRUGrads
        ``dx, dh0, dw_ih, dw_hh, db_ih, db_hh``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))
    >>> w_ih, w_hh = 0.3 * rng.standard_normal((12, 3)), 0.3 * rng.standard_normal((12, 4))
    >>> b = np.zeros(12)
    >>> out, h_n, cache = fastrnn.gru_forward(x, None, w_ih, w_hh, b, b)
    >>> g = fastrnn.gru_backward(cache, None, dh_n=np.ones_like(h_n))
    >>> g.dx.shape, g.db_hh.shape
    ((6, 2, 3), (12,))
    """
    inp, dout, dh_n, _, k, packs = _start_backward("gru_backward", cache, GRUCache, dout, dh_n,
                                                   truncate)
    _check_no_truncation("gru_backward", cache, k)
    T, B, _, H, _ = inp.shape
    return _gru_run_backward(cache, dout.reshape(T, 1, B, H), dh_n, k, False, packs)[0]


def _gru_run_backward(cache, dout, dh_n, k, want_ages, packs):
    """As ``_elman_run_backward``, for the GRU."""
    inp = cache.inputs
    T, B, I, H, _ = inp.shape
    if cache.checkpoint and T and B:
        return _checkpointed_backward(cache, dout, (dh_n,), _gru_segment, _gru_run_backward,
                                      packs)
    w_ih_p, w_hh_p, _ = packs
    new = np.empty if T and B else np.zeros  # the kernels write every entry
    dx = _empty((T, B, I), inp.dtype) if T and B else np.zeros((T, B, I), inp.dtype)
    dh0 = new((B, H), inp.dtype)
    dw_ih = new((3 * H, I), inp.dtype)
    dw_hh = new((3 * H, H), inp.dtype)
    db_ih = new(3 * H, inp.dtype)
    db_hh = new(3 * H, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n
    elif B > 0:
        dgi = _scratch("da", (T, B, 3 * H), inp.dtype)
        dgh = _scratch("da_h", (T, B, 3 * H), inp.dtype)
        rest = (dh_n, cache.gates, cache.ghn, inp.h0, cache.out, w_hh_p)
        with kernel_launch() as serial:
            if k is None or k >= T:
                _gru.gru_backward_recurrence(dgi, dgh, dh0, _sum_ages(dout), *rest, inp.lengths,
                                             serial)
            else:
                dgi_ages = _empty((T if want_ages else 0, k, B, 3 * H), inp.dtype)
                _gru.gru_truncated_recurrence(dgi, dgi_ages, dgh, dh0, dout, *rest, k,
                                              inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(dgi_ages, inp.w_ih, w_ih_p, serial)
            # (dgh equals dgi in the reset and update gates' columns)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, dgi, dgh, 2 * H, inp,
                                    cache.out, w_ih_p, serial)
    has_bias = inp.b_ih is not None
    return GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih if has_bias else None,
                    db_hh if has_bias else None), dx_ages
