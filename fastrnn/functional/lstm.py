"""Functional API of the LSTM (with PyTorch's optional projection, proj_size):
forward and backward (the conventions: ``fastrnn.functional``)."""

from dataclasses import dataclass

import numpy as np

from .. import _validation as v
from .._threads import kernel_launch
from ..kernels import grads as _grads
from ..kernels import lstm as _lstm
from ..kernels import tiles as _tiles
from ._common import (_Inputs, _check_inputs, _empty, _scratch, _summed_bias,
                      _chunk_steps, _out_buffer, _out_chunk, _chunks, _lengths_in,
                      _checkpoint_steps, _checkpointed_backward, _segment_inputs,
                      _sum_ages, _packed_weights, _project, _input_and_weight_grads,
                      _ages_through, _fingerprint, _check_no_truncation, _start_backward)


@dataclass(frozen=True)
class LSTMCache:
    """What ``lstm_backward`` needs from ``lstm_forward``: the (converted) inputs,
    ``out``, the gate activations (T, B, 4H) and the cell states (T, B, H)."""

    inputs: _Inputs
    out: np.ndarray  # (T, B, P)
    gates: np.ndarray  # (T, B, 4H): i, f, g, o; None when checkpointed
    cs: np.ndarray  # (T, B, H); checkpointed: (segments, B, H), c at each segment's start
    fingerprint: tuple = ()
    checkpoint: int = 0  # segment length of a checkpointed cache; 0: every step kept


@dataclass(frozen=True)
class LSTMGrads:
    """Gradients returned by ``lstm_backward`` (bias entries None without bias,
    ``dw_hr`` None without projections).

    Shapes: dx (T, B, I), dh0 (B, P), dc0 (B, H), dw_ih (4H, I), dw_hh (4H, P),
    db_ih and db_hh (4H,), dw_hr (P, H).
    """

    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray
    dw_hr: np.ndarray


def _no_projection(inp):
    # the kernels take a (0, 0) w_hr for "no projection"
    return inp.w_hr if inp.w_hr is not None else np.zeros((0, 0), inp.dtype)


_NO_PROJECTION_PACKED = {}  # dtype -> tiles.pack_t of a (0, 0) array (no elements to write)


def _packed_projection(inp):
    # tiles.pack_t(w_hr) (or pack_weight's), or the packed "no projection" (one per
    # dtype: a call saved)
    if inp.w_hr is not None:
        return _tiles.pack_t_and_sum(inp.w_hr, False)[0] if inp.packed[2] is None else inp.packed[2]
    if inp.dtype not in _NO_PROJECTION_PACKED:
        _NO_PROJECTION_PACKED[inp.dtype] = _tiles.pack_t_and_sum(np.zeros((0, 0), inp.dtype),
                                                                 False)[0]
    return _NO_PROJECTION_PACKED[inp.dtype]


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, cache=True,
                 lengths=None, checkpoint=None, keep_out=True):
    """LSTM over a sequence, with PyTorch's equations and gate order i, f, g, o::

        i, f, g, o = sigma, sigma, tanh, sigma  of  W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)        (with w_hr: h_t = W_hr (o * tanh(c_t)), PyTorch's proj_size)

    Parameters
    ----------
    x : array_like, (T, B, I)
    h0 : array_like, (B, P), or None
        Initial hidden state (zeros if None); P = H, or the projection size.
    c0 : array_like, (B, H), or None
        Initial cell state (zeros if None).
    w_ih : array_like or PackedWeight, (4H, I)
    w_hh : array_like or PackedWeight, (4H, P)
        A ``PackedWeight`` (``pack_weight``) skips packing the matrix on every call.
    b_ih, b_hh : array_like, (4H,), or both None
    w_hr : array_like or PackedWeight, (P, H), or None
        Projection (PyTorch's ``weight_hr_l0``).
    cache : bool
        Keep what backward needs (gates and cell states) and return it.
    lengths : array_like of int, (B,), or None
        As ``elman_forward``: per-sequence lengths, padding outputs 0, final states at
        each sequence's last real step.
    checkpoint : int >= 1, "sqrt" or None
        With ``cache=True``, keep the gates and cell states of no step, only the cell
        state at the start of every segment of ``checkpoint`` steps ("sqrt": ceil(sqrt(T))
        steps); backward recomputes each segment's forward. The cache then takes O(T/k)
        states instead of 5 T B H values and backward one segment's buffers instead of the
        whole sequence's, for about one more forward pass of time. Full sequences only (no
        ``lengths`` shorter than T), and full BPTT only.
    keep_out : bool
        As ``elman_forward``: False (with ``cache=False``) returns None for ``out`` and
        runs in O(B H) memory beyond the inputs.

    Returns
    -------
    out : ndarray, (T, B, P), or None with ``keep_out=False``
    h_n : ndarray, (B, P)
    c_n : ndarray, (B, H)
    cache : LSTMCache or None

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 2, 3))
    >>> w_ih, w_hh = 0.3 * rng.standard_normal((16, 3)), 0.3 * rng.standard_normal((16, 4))
    >>> out, h_n, c_n, cache = fastrnn.lstm_forward(x, None, None, w_ih, w_hh)
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 4), (2, 4), (2, 4))
    """
    fn = "lstm_forward"
    inp = _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates=4, c0=c0, w_hr=w_hr, lstm=True,
                        lengths=lengths)
    v.check_flag(fn, "cache", cache)
    ck = _checkpoint_steps(fn, checkpoint, cache, inp)
    T, B, I, H, P = inp.shape
    out = _out_buffer(fn, inp, keep_out, cache, P, 4)
    steps = ck or _chunk_steps(inp, cache)
    chunks = _chunks(T, steps) if B else []
    every = cache and not ck  # the cache keeps every step's gates and cell state
    shape = (steps, B, 4 * H)
    gates = _empty(shape, inp.dtype) if every else _scratch("gates", shape, inp.dtype)
    cs = _empty((T if every else 0, B, H), inp.dtype)
    starts = np.empty((len(chunks) if ck else 0, B, H), inp.dtype)  # checkpointed c
    h_n, c_n = inp.h0.copy(), inp.c0.copy()
    known = _lstm_run_forward(out, h_n, c_n, gates, cs, starts, inp, chunks, cache)
    if not cache:
        return out if keep_out else None, h_n, c_n, None
    return out, h_n, c_n, LSTMCache(inp, out, None if ck else gates, starts if ck else cs,
                                    _fingerprint(inp, out, known), ck)


def _lstm_run_forward(out, h_n, c_n, gates, cs, starts, inp, chunks, summed=False):
    """The forward in chunks of steps; h_n, c_n hold the initial state on entry. cs (T, B, H)
    or (0, B, H); starts (len(chunks), B, H) gets each chunk's initial c, or is (0, B, H).
    Returns the weights' checksums taken while packing them (``summed``)."""
    b = _summed_bias(inp)
    w_ih_p, w_hh_p, known = _packed_weights(inp, summed)
    w_hr_p = _packed_projection(inp)
    with kernel_launch() as serial:
        for i, (t0, t1) in enumerate(chunks):
            h, c = h_n.copy(), c_n.copy()  # the state carried into this chunk
            if starts.shape[0]:
                starts[i] = c
            _project(gates[: t1 - t0], inp.x[t0:t1], w_ih_p, serial)
            _lstm.lstm_recurrence(_out_chunk(out, inp.x.shape[0], t0, t1), h_n, c_n,
                                  gates[: t1 - t0],
                                  cs[t0:t1] if cs.shape[0] else cs, h, c, w_hh_p, b, w_hr_p,
                                  _lengths_in(inp, t0, t1), serial)
    return known


def _lstm_segment(cache, i, t0, t1):
    # the cache of steps t0..t1-1 of a checkpointed forward, recomputed
    seg = _segment_inputs(cache, t0, t1, c0=cache.cs[i])
    n, B, P = t1 - t0, seg.h0.shape[0], seg.h0.shape[1]
    H = seg.c0.shape[1]
    out, gates, cs = (np.empty((n, B, m), seg.dtype) for m in (P, 4 * H, H))
    _lstm_run_forward(out, seg.h0.copy(), seg.c0.copy(), gates, cs, cs[:0], seg, [(0, n)])
    return LSTMCache(seg, out, gates, cs)


def lstm_backward(cache, dout, dh_n=None, dc_n=None, truncate=None):
    """Backpropagation through time for ``lstm_forward``.

    Computes the gradient of ``sum(out * dout) + sum(h_n * dh_n) + sum(c_n * dc_n)``.

    Parameters
    ----------
    cache : LSTMCache
    dout : array_like, (T, B, P), or None (zeros)
    dh_n : array_like, (B, P), or None (zeros)
    dc_n : array_like, (B, H), or None (zeros)
    truncate : int >= 1 or None
        As ``elman_backward``: the gradient entering at step t flows back through steps
        t..t-k+1 only, in both h and c.

    Returns
    -------
    LSTMGrads
        ``dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))
    >>> w_ih, w_hh = 0.3 * rng.standard_normal((16, 3)), 0.3 * rng.standard_normal((16, 2))
    >>> w_hr = 0.5 * rng.standard_normal((2, 4))           # projection: P = 2, H = 4
    >>> out, h_n, c_n, cache = fastrnn.lstm_forward(x, None, None, w_ih, w_hh, w_hr=w_hr)
    >>> g = fastrnn.lstm_backward(cache, np.ones_like(out), truncate=3)
    >>> g.dw_hh.shape, g.dw_hr.shape, g.dc0.shape, g.db_ih is None
    ((16, 2), (2, 4), (2, 4), True)
    """
    inp, dout, dh_n, dc_n, k, packs = _start_backward("lstm_backward", cache, LSTMCache, dout,
                                                      dh_n, truncate, dc_n, lstm=True)
    _check_no_truncation("lstm_backward", cache, k)
    T, B, _, _, P = inp.shape
    return _lstm_run_backward(cache, dout.reshape(T, 1, B, P), dh_n, dc_n, k, False, packs)[0]


def _lstm_run_backward(cache, dout, dh_n, dc_n, k, want_ages, packs):
    """As ``_elman_run_backward``, for the LSTM."""
    inp = cache.inputs
    T, B, I, H, P = inp.shape
    if cache.checkpoint and T and B:
        return _checkpointed_backward(cache, dout, (dh_n, dc_n), _lstm_segment,
                                      _lstm_run_backward, packs)
    w_ih_p, w_hh_p, w_hr_p = packs
    if w_hr_p is None:  # (tiles.pack of a (0, 0) matrix is tiles.pack_t's)
        w_hr_p = _packed_projection(inp)
    new = np.empty if T and B else np.zeros  # the kernels write every entry
    dx = _empty((T, B, I), inp.dtype) if T and B else np.zeros((T, B, I), inp.dtype)
    dh0 = new((B, P), inp.dtype)
    dc0 = new((B, H), inp.dtype)
    dw_ih = new((4 * H, I), inp.dtype)
    dw_hh = new((4 * H, P), inp.dtype)
    db = new(4 * H, inp.dtype)
    dw_hr = new(_no_projection(inp).shape, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n
        dc0[...] = dc_n
    elif B > 0:
        da = _scratch("da", (T, B, 4 * H), inp.dtype)
        n = T if inp.w_hr is not None else 0
        dhs = _empty((n, B, P), inp.dtype)
        ms = _empty((n, B, H), inp.dtype)
        rest = (dh_n, dc_n, cache.gates, cache.cs, inp.c0, w_hh_p, w_hr_p)
        with kernel_launch() as serial:
            if k is None or k >= T:
                _lstm.lstm_backward_recurrence(da, dhs, ms, dh0, dc0, _sum_ages(dout), *rest,
                                               inp.lengths, serial)
            else:
                da_ages = _empty((T if want_ages else 0, k, B, 4 * H), inp.dtype)
                _lstm.lstm_truncated_recurrence(da, da_ages, dhs, ms, dh0, dc0, dout, *rest, k,
                                                inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(da_ages, inp.w_ih, w_ih_p, serial)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db, np.empty_like(db), da, da, 4 * H,
                                    inp, cache.out, w_ih_p, serial)
            if inp.w_hr is not None:  # h_t = W_hr m_t  ->  dW_hr = sum_t dh_t^T m_t
                TB = T * B
                none = np.empty((TB, 0), inp.dtype)  # (no hidden term: zero-width h_prev)
                _grads.linear_grads(dw_hr, np.empty((P, 0), inp.dtype), np.empty(P, inp.dtype),
                                    np.empty(P, inp.dtype), dhs.reshape(TB, P),
                                    dhs.reshape(TB, P), P, ms.reshape(TB, H), none[:B],
                                    none[B:], serial)
    has_bias = inp.b_ih is not None
    return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db if has_bias else None,
                     db.copy() if has_bias else None,
                     dw_hr if inp.w_hr is not None else None), dx_ages
