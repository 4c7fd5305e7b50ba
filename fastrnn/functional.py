"""Functional API: validate, convert, allocate, call the kernels.

Arrays in, arrays out, with PyTorch's equations, shapes and weight layouts:
``x`` (T, B, I), states (B, H), ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), biases (G*H,),
with G = 1 (Elman), 4 (LSTM: gates i, f, g, o) or 3 (GRU: gates r, z, n).

dtype rules: float32 in gives float32 out, float64 gives float64; int and bool arrays
count as float64, float16 as float32; mixed dtypes follow NumPy's promotion. Inputs
are never modified; non-contiguous, Fortran-ordered, byte-swapped or read-only arrays
are copied once. T = 0 or B = 0 give empty outputs (and zero gradients); sizes I and
H must be at least 1.
"""

import dataclasses
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import _validation as v

from ._blas_threads import single_threaded_blas
from ._threads import kernel_launch
from .kernels import elman as _elman
from .kernels import gru as _gru
from .kernels import lstm as _lstm
from .kernels import linalg as _linalg
from .kernels import parallel as _parallel
from .kernels import tiles as _tiles
from .kernels.activations import ACTIVATIONS

__all__ = [
    "elman_forward", "elman_backward", "ElmanCache", "ElmanGrads",
    "lstm_forward", "lstm_backward", "LSTMCache", "LSTMGrads",
    "gru_forward", "gru_backward", "GRUCache", "GRUGrads",
]


# --------------------------------------------------------------------------------------
# shared by every cell


@dataclass  # not frozen: a frozen dataclass's __init__ took 2 us, a tiny forward's kernels 10
class _Inputs:
    """Validated arguments of a cell's forward, as kernel-ready arrays of one dtype."""

    dtype: np.dtype
    gates: int  # G: 1 (Elman), 3 (GRU), 4 (LSTM)
    x: np.ndarray  # (T, B, I)
    h0: np.ndarray  # (B, P)
    w_ih: np.ndarray  # (G*H, I)
    w_hh: np.ndarray  # (G*H, P)
    b_ih: np.ndarray  # (G*H,) or None
    b_hh: np.ndarray  # (G*H,) or None
    c0: np.ndarray = None  # (B, H), LSTM only
    w_hr: np.ndarray = None  # (P, H), LSTM with projections only
    lengths: np.ndarray = None  # (B,) int64 in 1..T; all T when no lengths were given
    ragged: bool = False  # some sequence is shorter than T

    @property
    def shape(self):
        """(T, B, I, H, P): P is the size of h (H, or the LSTM projection size)."""
        T, B, I = self.x.shape
        return T, B, I, self.w_ih.shape[0] // self.gates, self.h0.shape[1]


def _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates, c0=None, w_hr=None, lstm=False,
                  lengths=None):
    """Check and convert a cell's forward arguments (G = ``gates``; ``lstm``: also c0 and
    the optional projection w_hr; ``lengths``: one per sequence, or None)."""
    x = v.to_array(fn, "x", x)
    w_ih = v.to_array(fn, "w_ih", w_ih)
    w_hh = v.to_array(fn, "w_hh", w_hh)
    v.check_ndim(fn, "x", x, "(T, B, I)")
    T, B, I = x.shape
    v.check_positive_size(fn, "input size I", I, f"x.shape = {x.shape}")
    g = f"{gates}*H" if gates > 1 else "H"
    v.check_ndim(fn, "w_ih", w_ih, f"({g}, I)")
    GH = w_ih.shape[0]
    if GH % gates:
        raise ValueError(f"{fn}: w_ih must have shape ({g}, I) (gates stacked on the first "
                         f"axis), got {w_ih.shape}: {GH} rows is not a multiple of {gates}")
    H = GH // gates
    v.check_positive_size(fn, "hidden size H", H, f"w_ih.shape = {w_ih.shape}")
    v.check_shape(fn, "w_ih", w_ih, f"({g}, I)", (GH, I))
    P, p = H, "H"
    if w_hr is not None:
        w_hr = v.to_array(fn, "w_hr", w_hr)
        v.check_ndim(fn, "w_hr", w_hr, "(P, H)")
        P, p = w_hr.shape[0], "P"
        v.check_positive_size(fn, "projection size P", P, f"w_hr.shape = {w_hr.shape}")
        v.check_shape(fn, "w_hr", w_hr, "(P, H)", (P, H))
    v.check_shape(fn, "w_hh", w_hh, f"({g}, {p})", (GH, P))
    if h0 is not None:
        h0 = v.to_array(fn, "h0", h0)
        v.check_shape(fn, "h0", h0, f"(B, {p})", (B, P))
    if c0 is not None:
        c0 = v.to_array(fn, "c0", c0)
        v.check_shape(fn, "c0", c0, "(B, H)", (B, H))
    if (b_ih is None) != (b_hh is None):
        given, missing = ("b_ih", "b_hh") if b_hh is None else ("b_hh", "b_ih")
        raise ValueError(f"{fn}: b_ih and b_hh must both be given or both be None, "
                         f"got {given} but {missing} is None")
    if b_ih is not None:
        b_ih = v.to_array(fn, "b_ih", b_ih)
        b_hh = v.to_array(fn, "b_hh", b_hh)
        v.check_shape(fn, "b_ih", b_ih, f"({g},)", (GH,))
        v.check_shape(fn, "b_hh", b_hh, f"({g},)", (GH,))
    lengths = v.check_lengths(fn, lengths, T, B)
    dtype = v.working_dtype(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    conv = lambda a: None if a is None else v.for_kernel(a, dtype)  # noqa: E731
    h0 = np.zeros((B, P), dtype) if h0 is None else conv(h0)
    if lstm:
        c0 = np.zeros((B, H), dtype) if c0 is None else conv(c0)
    x = conv(x)
    ragged = lengths is not None and B > 0 and lengths.min() < T
    if lengths is None:
        lengths = _full_lengths(B, T)
    elif ragged:
        # padding values are never used; zero them so that no NaN or inf the caller
        # left there can reach a gradient (0 * inf)
        x = x.copy()
        x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    return _Inputs(dtype, gates, x, h0, conv(w_ih), conv(w_hh), conv(b_ih), conv(b_hh),
                   c0, conv(w_hr), lengths, ragged)


#: Largest scratch buffer (bytes) kept for reuse by the next call on the same thread.
SCRATCH_MAX_BYTES = 32 << 20

_scratch_buffers = threading.local()


def _scratch(name, shape, dtype):
    """An uninitialised array for a temporary that no result refers to (``name``: which
    one), reused by the next call on the same Python thread.

    Memory fresh from the operating system costs a page fault per page on first touch,
    and glibc returns freed blocks of a few MB to it at once: a training step at the
    small size allocated its gradient buffer anew each call (LSTM (100, 32, 64, 128)
    forward + backward 12.4 -> 10.2 ms with it reused, medians). Larger temporaries
    are allocated per call (the first touch is then a small part of the work) and not
    kept, so a thread keeps at most SCRATCH_MAX_BYTES per name.
    """
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if n > SCRATCH_MAX_BYTES:
        return np.empty(shape, dtype)
    buffers = _scratch_buffers.__dict__
    buf = buffers.get(name)
    if buf is None or buf.nbytes < n:
        buf = buffers[name] = np.empty(n, np.uint8)
    return buf[:n].view(dtype).reshape(shape)


def _full_lengths(B, T):
    # lengths (B,) all T (np.full takes 1 us, twice this)
    a = np.empty(B, np.int64)
    a.fill(T)
    return a


def _summed_bias(inp):
    # kernels take one bias vector b_ih + b_hh (zeros without bias)
    GH = inp.w_ih.shape[0]
    if inp.b_ih is None:
        return np.zeros(GH, inp.dtype)
    return inp.b_ih + inp.b_hh


@contextmanager
def _launch(blas=True):
    """Around every group of kernel calls: BLAS single-threaded (our threads do the
    parallel work) and the threading-layer policy; yields the kernels' ``serial``.
    ``blas=False`` for kernels that call no BLAS (the forward passes): setting and
    restoring OpenBLAS's thread count takes ~5 us, as long as a tiny forward's kernels."""
    with single_threaded_blas(blas), kernel_launch() as serial:
        yield serial


#: Gate-buffer elements per chunk of steps on the inference path (cache=False): a
#: forward of any length then needs O(B * H) memory beyond its inputs and outputs.
STREAM_ELEMENTS = 1 << 20


def _chunk_steps(inp, cache):
    """Steps per chunk: all of them when training (backward needs every step's gates),
    else as many as fit STREAM_ELEMENTS (whole sequences only, with lengths)."""
    T, B, _, H, _ = inp.shape
    if cache or T == 0:
        return T
    if inp.ragged:  # a chunk's lengths must stay >= 1
        return T
    return max(1, min(T, STREAM_ELEMENTS // max(1, B * inp.gates * H)))


def _out_buffer(fn, inp, keep_out, cache, width, gates):
    """``out`` (T, B, width), or with ``keep_out=False`` a buffer for one chunk of steps."""
    v.check_flag(fn, "keep_out", keep_out)
    T, B = inp.x.shape[:2]
    if keep_out:
        return np.empty((T, B, width), inp.dtype)
    if cache:
        raise ValueError(f"{fn}: keep_out=False needs cache=False (backward needs out)")
    steps = _chunk_steps(dataclasses.replace(inp, gates=gates), False)
    return _scratch("out", (steps, B, width), inp.dtype)


def _out_chunk(out, T, t0, t1):
    # this chunk's steps of out (T, B, .), or of a one-chunk buffer when out is not kept
    return out[t0:t1] if out.shape[0] == T else out[: t1 - t0]


def _chunks(T, steps):
    return [(t0, min(T, t0 + steps)) for t0 in range(0, T, steps)] if steps else []


def _lengths_in(inp, t0, t1):
    return inp.lengths if (t0, t1) == (0, inp.x.shape[0]) else _full_lengths(inp.x.shape[1],
                                                                             t1 - t0)


def _checkpoint_steps(fn, checkpoint, cache, inp):
    """Segment length of a checkpointed cache (0: every step kept)."""
    T, B = inp.x.shape[:2]
    k = v.check_checkpoint(fn, checkpoint, T)
    if not cache or not k or B == 0:
        return 0
    if inp.ragged:
        raise ValueError(f"{fn}: checkpoint needs full-length sequences (lengths all equal to "
                         f"T = {T}), got lengths from {inp.lengths.min()}")
    return k


def _checkpointed_backward(cache, dout, finals, segment_cache, run_backward):
    """Backward from a checkpointed cache: segment by segment, the last first. Each
    segment's forward is recomputed from its saved start state, and the ordinary backward
    runs on it with the gradient carried out of the later segment as its final-state
    gradient; dx is filled in place and the weight gradients are summed over segments.
    Memory: one segment's gates and gradients instead of the whole sequence's."""
    inp = cache.inputs
    T, B, I = inp.x.shape
    dx = np.empty((T, B, I), inp.dtype)
    segments = _chunks(T, cache.checkpoint)
    sums = {}
    for i in range(len(segments) - 1, -1, -1):
        t0, t1 = segments[i]
        g = run_backward(segment_cache(cache, i, t0, t1), dout[t0:t1], *finals, None, False)[0]
        dx[t0:t1] = g.dx
        finals = (g.dh0, g.dc0) if hasattr(g, "dc0") else (g.dh0,)
        for f in dataclasses.fields(g):
            value = getattr(g, f.name)
            if f.name.startswith("dw") or f.name.startswith("db"):
                sums[f.name] = value if value is None or f.name not in sums else sums[f.name] + value
    starts = dict(dh0=finals[0], dc0=finals[1]) if len(finals) == 2 else dict(dh0=finals[0])
    return dataclasses.replace(g, dx=dx, **starts, **sums), None


def _segment_inputs(cache, t0, t1, c0=None):
    # the inputs of steps t0..t1-1, starting from the state the forward carried in
    inp = cache.inputs
    return dataclasses.replace(inp, x=inp.x[t0:t1], h0=inp.h0 if t0 == 0 else cache.out[t0 - 1],
                               c0=c0, lengths=_full_lengths(inp.x.shape[1], t1 - t0))


def _no_ages(k, B, G, dtype):
    # the truncated kernels' per-age output, when nobody needs it
    return np.empty((0, k, B, G), dtype)


def _sum_ages(dout):
    # (T, A, B, P) by age -> (T, B, P): full BPTT does not care how old a gradient is
    return dout[:, 0] if dout.shape[1] == 1 else np.ascontiguousarray(dout.sum(axis=1))


def _packed_weights(inp):
    # W_ih and W_hh packed for the tiles (tiles.pack_t), once per call: a forward runs
    # as one projection and one recurrence per chunk of steps
    return _tiles.pack_t(inp.w_ih), _tiles.pack_t(inp.w_hh)


def _project(gates, x, w_ih_p, serial):
    # gates[t] = x[t] W_ih^T for all steps: one (T*B, I) x (I, G*H) product; w_ih_p is
    # tiles.pack_t(W_ih)
    T, B, I = x.shape
    _parallel.par_matmul(gates.reshape(T * B, gates.shape[2]), x.reshape(T * B, I), w_ih_p,
                         serial)


def _input_and_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, da_x, da_h, inp, out, serial):
    """The whole-sequence products of backward, after the recurrence:
    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh  ->  dx_t = da_t W_ih,
    dW_ih = sum_t da_t^T x_t, dW_hh = sum_t da_h_t^T h_{t-1} (h_{-1} = h0),
    db_ih = sum da_t, db_hh = sum da_h_t (da_h differs from da_x only for the GRU)."""
    T, B, I = inp.x.shape
    G = da_x.shape[2]
    TB = T * B
    da2 = da_x.reshape(TB, G)
    _parallel.par_matmul(dx.reshape(TB, I), da2, _tiles.pack(inp.w_ih), serial)
    _parallel.linear_grads(dw_ih, dw_hh, db_ih, db_hh, da2, da_h.reshape(TB, G),
                           inp.x.reshape(TB, I), inp.h0,
                           out.reshape(TB, out.shape[2])[: TB - B], serial)


def _ages_through(da_ages, w_ih, serial):
    # per-age gradient on the input x: da_ages (T, k, B, G) @ W_ih (G, I) -> (T, k, B, I)
    T, k, B, G = da_ages.shape
    dx = np.empty((T, k, B, w_ih.shape[1]), da_ages.dtype)
    _parallel.par_matmul(dx.reshape(T * k * B, -1), da_ages.reshape(T * k * B, G),
                         _tiles.pack(w_ih), serial)
    return dx


def _check_grad_arg(fn, name, value, layout, shape, dtype):
    """An incoming gradient: None (zeros) or an array of exactly ``shape``."""
    if value is None:
        return np.zeros(shape, dtype)
    a = v.to_array(fn, name, value)
    v.check_shape(fn, name, a, layout, shape)
    return v.for_kernel(a, dtype)


def _checksum(a):
    """A cheap fingerprint of an array's bits: their sum as unsigned integers (any
    change to any element changes it, short of changes that cancel exactly)."""
    if a is None or a.size == 0:
        return 0
    return int(_linalg.bits_sum(a.reshape(-1).view(np.uint32 if a.itemsize == 4 else np.uint64)))


def _fingerprint(inp, out):
    """Checksums of everything a backward reads that the caller can reach: the
    inputs (or fastrnn's converted copies of them) and ``out``."""
    return tuple(_checksum(a) for a in (inp.x, inp.h0, inp.c0, inp.w_ih, inp.w_hh, inp.b_ih,
                                        inp.b_hh, inp.w_hr, out))


_FINGERPRINTED = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "out")


def _check_cache(fn, cache, cls):
    if not isinstance(cache, cls):
        raise TypeError(f"{fn}: cache must be the {cls.__name__} returned by the forward "
                        f"call with cache=True, got {type(cache).__name__}")
    _check_unmodified(fn, cache)


def _check_unmodified(fn, cache):
    """The arrays a cache refers to must be as the forward left them."""
    now = _fingerprint(cache.inputs, cache.out)
    if now != cache.fingerprint:
        changed = [n for n, a, b in zip(_FINGERPRINTED, now, cache.fingerprint) if a != b]
        raise ValueError(f"{fn}: {', '.join(changed)} changed after the forward call that made "
                         f"this cache (modified in place?); the gradient would be wrong: run "
                         f"the forward again, or copy arrays before modifying them")


def _check_no_truncation(fn, cache, k):
    if cache.checkpoint and k is not None and k < cache.inputs.x.shape[0]:
        raise ValueError(f"{fn}: truncate={k} needs a cache with every step (this one was made "
                         f"with checkpoint={cache.checkpoint}): checkpointed caches support full "
                         f"BPTT only")


def _start_backward(fn, cache, cls, dout, dh_n, truncate, dc_n=None, lstm=False):
    """The checks every backward shares; returns (inputs, dout, dh_n, dc_n, k)."""
    _check_cache(fn, cache, cls)
    inp = cache.inputs
    T, B, I, H, P = inp.shape
    p = "P" if inp.w_hr is not None else "H"
    dout = _check_grad_arg(fn, "dout", dout, f"(T, B, {p})", (T, B, P), inp.dtype)
    dh_n = _check_grad_arg(fn, "dh_n", dh_n, f"(B, {p})", (B, P), inp.dtype)
    if lstm:
        dc_n = _check_grad_arg(fn, "dc_n", dc_n, "(B, H)", (B, H), inp.dtype)
    return inp, dout, dh_n, dc_n, v.check_truncate(fn, truncate)


# --------------------------------------------------------------------------------------
# Elman


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
    w_ih : array_like, (H, I)
    w_hh : array_like, (H, H)
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
    w_ih_p, w_hh_p = _packed_weights(inp)
    with _launch(blas=False) as serial:
        for t0, t1 in _chunks(T, out.shape[0]) if B else ():
            h = h_n.copy()  # the state carried into this chunk
            o = _out_chunk(out, inp.x.shape[0], t0, t1)
            _project(o, inp.x[t0:t1], w_ih_p, serial)  # the recurrence runs in place in out
            _elman.elman_recurrence(o, h_n, h, w_hh_p, b, act, _lengths_in(inp, t0, t1), serial)
    if not keep_out:
        return None, h_n, None
    return out, h_n, (ElmanCache(inp, out, nonlinearity, _fingerprint(inp, out)) if cache else None)


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
    inp, dout, dh_n, _, k = _start_backward("elman_backward", cache, ElmanCache, dout, dh_n,
                                            truncate)
    T, B, _, H, _ = inp.shape
    return _elman_run_backward(cache, dout.reshape(T, 1, B, H), dh_n, k, False)[0]


def _elman_run_backward(cache, dout, dh_n, k, want_ages):
    """Backward from checked arguments, dout (T, A, B, H) by age; returns the gradients
    and, with ``want_ages`` and truncation, dL/dx by age (T, k, B, I) for a stack."""
    inp = cache.inputs
    T, B, I, H, _ = inp.shape
    dx = np.zeros((T, B, I), inp.dtype)
    dh0 = np.zeros((B, H), inp.dtype)
    dw_ih = np.zeros((H, I), inp.dtype)
    dw_hh = np.zeros((H, H), inp.dtype)
    db = np.zeros(H, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n  # h_n is h0
    elif B > 0:
        act = ACTIVATIONS[cache.nonlinearity]
        da = _scratch("da", (T, B, H), inp.dtype)
        with _launch() as serial:
            if k is None or k >= T:
                _elman.elman_backward_recurrence(da, dh0, _sum_ages(dout), dh_n, cache.out,
                                                 inp.w_hh, act, inp.lengths, serial)
            else:
                da_ages = np.empty((T if want_ages else 0, k, B, H), inp.dtype)
                _elman.elman_truncated_recurrence(da, da_ages, dh0, dout, dh_n, cache.out,
                                                  inp.w_hh, act, k, inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(da_ages, inp.w_ih, serial)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db, np.empty_like(db), da, da, inp,
                                    cache.out, serial)
    has_bias = inp.b_ih is not None
    return ElmanGrads(dx, dh0, dw_ih, dw_hh, db if has_bias else None,
                      db.copy() if has_bias else None), dx_ages


# --------------------------------------------------------------------------------------
# LSTM


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
    # tiles.pack_t(w_hr), or the packed "no projection" (one per dtype: a call saved)
    if inp.w_hr is not None:
        return _tiles.pack_t(inp.w_hr)
    if inp.dtype not in _NO_PROJECTION_PACKED:
        _NO_PROJECTION_PACKED[inp.dtype] = _tiles.pack_t(np.zeros((0, 0), inp.dtype))
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
    w_ih : array_like, (4H, I)
    w_hh : array_like, (4H, P)
    b_ih, b_hh : array_like, (4H,), or both None
    w_hr : array_like, (P, H), or None
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
    gates = np.empty(shape, inp.dtype) if every else _scratch("gates", shape, inp.dtype)
    cs = np.empty((T if every else 0, B, H), inp.dtype)
    starts = np.empty((len(chunks) if ck else 0, B, H), inp.dtype)  # checkpointed c
    h_n, c_n = inp.h0.copy(), inp.c0.copy()
    _lstm_run_forward(out, h_n, c_n, gates, cs, starts, inp, chunks)
    if not cache:
        return out if keep_out else None, h_n, c_n, None
    return out, h_n, c_n, LSTMCache(inp, out, None if ck else gates, starts if ck else cs,
                                    _fingerprint(inp, out), ck)


def _lstm_run_forward(out, h_n, c_n, gates, cs, starts, inp, chunks):
    """The forward in chunks of steps; h_n, c_n hold the initial state on entry. cs (T, B, H)
    or (0, B, H); starts (len(chunks), B, H) gets each chunk's initial c, or is (0, B, H)."""
    b = _summed_bias(inp)
    w_ih_p, w_hh_p = _packed_weights(inp)
    w_hr_p = _packed_projection(inp)
    with _launch(blas=False) as serial:
        for i, (t0, t1) in enumerate(chunks):
            h, c = h_n.copy(), c_n.copy()  # the state carried into this chunk
            if starts.shape[0]:
                starts[i] = c
            _project(gates[: t1 - t0], inp.x[t0:t1], w_ih_p, serial)
            _lstm.lstm_recurrence(_out_chunk(out, inp.x.shape[0], t0, t1), h_n, c_n,
                                  gates[: t1 - t0],
                                  cs[t0:t1] if cs.shape[0] else cs, h, c, w_hh_p, b, w_hr_p,
                                  _lengths_in(inp, t0, t1), serial)


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
    inp, dout, dh_n, dc_n, k = _start_backward("lstm_backward", cache, LSTMCache, dout, dh_n,
                                               truncate, dc_n, lstm=True)
    _check_no_truncation("lstm_backward", cache, k)
    T, B, _, _, P = inp.shape
    return _lstm_run_backward(cache, dout.reshape(T, 1, B, P), dh_n, dc_n, k, False)[0]


def _lstm_run_backward(cache, dout, dh_n, dc_n, k, want_ages):
    """As ``_elman_run_backward``, for the LSTM."""
    inp = cache.inputs
    T, B, I, H, P = inp.shape
    if cache.checkpoint and T and B:
        return _checkpointed_backward(cache, dout, (dh_n, dc_n), _lstm_segment,
                                      _lstm_run_backward)
    dx = np.zeros((T, B, I), inp.dtype)
    dh0 = np.zeros((B, P), inp.dtype)
    dc0 = np.zeros((B, H), inp.dtype)
    dw_ih = np.zeros((4 * H, I), inp.dtype)
    dw_hh = np.zeros((4 * H, P), inp.dtype)
    db = np.zeros(4 * H, inp.dtype)
    w_hr = _no_projection(inp)
    dw_hr = np.zeros(w_hr.shape, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n
        dc0[...] = dc_n
    elif B > 0:
        da = _scratch("da", (T, B, 4 * H), inp.dtype)
        n = T if inp.w_hr is not None else 0
        dhs = np.empty((n, B, P), inp.dtype)
        ms = np.empty((n, B, H), inp.dtype)
        rest = (dh_n, dc_n, cache.gates, cache.cs, inp.c0, inp.w_hh, w_hr)
        with _launch() as serial:
            if k is None or k >= T:
                _lstm.lstm_backward_recurrence(da, dhs, ms, dh0, dc0, _sum_ages(dout), *rest,
                                               inp.lengths, serial)
            else:
                da_ages = np.empty((T if want_ages else 0, k, B, 4 * H), inp.dtype)
                _lstm.lstm_truncated_recurrence(da, da_ages, dhs, ms, dh0, dc0, dout, *rest, k,
                                                inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(da_ages, inp.w_ih, serial)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db, np.empty_like(db), da, da, inp,
                                    cache.out, serial)
            if inp.w_hr is not None:  # h_t = W_hr m_t  ->  dW_hr = sum_t dh_t^T m_t
                TB = T * B
                none = np.empty((TB, 0), inp.dtype)  # (no hidden term: zero-width h_prev)
                _parallel.linear_grads(dw_hr, np.empty((P, 0), inp.dtype), np.empty(P, inp.dtype),
                                       np.empty(P, inp.dtype), dhs.reshape(TB, P),
                                       dhs.reshape(TB, P), ms.reshape(TB, H), none[:B], none[B:],
                                       serial)
    has_bias = inp.b_ih is not None
    return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db if has_bias else None,
                     db.copy() if has_bias else None,
                     dw_hr if inp.w_hr is not None else None), dx_ages


# --------------------------------------------------------------------------------------
# GRU


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
    w_ih : array_like, (3H, I)
    w_hh : array_like, (3H, H)
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
    gates = np.empty(shape, inp.dtype) if every else _scratch("gates", shape, inp.dtype)
    ghn = np.empty((T if every else 0, B, H), inp.dtype)
    h_n = inp.h0.copy()
    _gru_run_forward(out, h_n, gates, ghn, inp, _chunks(T, steps) if B else [])
    if not cache:
        return out if keep_out else None, h_n, None
    return out, h_n, GRUCache(inp, out, None if ck else gates, None if ck else ghn,
                              _fingerprint(inp, out), ck)


def _gru_run_forward(out, h_n, gates, ghn, inp, chunks):
    """The forward in chunks of steps; h_n holds the initial state on entry; ghn (T, B, H)
    or (0, B, H)."""
    H = out.shape[2]
    zeros = np.zeros(3 * H, inp.dtype)
    b_ih = zeros if inp.b_ih is None else inp.b_ih
    b_hh = zeros if inp.b_hh is None else inp.b_hh
    w_ih_p, w_hh_p = _packed_weights(inp)
    with _launch(blas=False) as serial:
        for t0, t1 in chunks:
            h = h_n.copy()
            _project(gates[: t1 - t0], inp.x[t0:t1], w_ih_p, serial)
            _gru.gru_recurrence(_out_chunk(out, inp.x.shape[0], t0, t1), h_n, gates[: t1 - t0],
                                ghn[t0:t1] if ghn.shape[0] else ghn, h, w_hh_p, b_ih, b_hh,
                                _lengths_in(inp, t0, t1), serial)


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
    inp, dout, dh_n, _, k = _start_backward("gru_backward", cache, GRUCache, dout, dh_n,
                                            truncate)
    _check_no_truncation("gru_backward", cache, k)
    T, B, _, H, _ = inp.shape
    return _gru_run_backward(cache, dout.reshape(T, 1, B, H), dh_n, k, False)[0]


def _gru_run_backward(cache, dout, dh_n, k, want_ages):
    """As ``_elman_run_backward``, for the GRU."""
    inp = cache.inputs
    T, B, I, H, _ = inp.shape
    if cache.checkpoint and T and B:
        return _checkpointed_backward(cache, dout, (dh_n,), _gru_segment, _gru_run_backward)
    dx = np.zeros((T, B, I), inp.dtype)
    dh0 = np.zeros((B, H), inp.dtype)
    dw_ih = np.zeros((3 * H, I), inp.dtype)
    dw_hh = np.zeros((3 * H, H), inp.dtype)
    db_ih = np.zeros(3 * H, inp.dtype)
    db_hh = np.zeros(3 * H, inp.dtype)
    dx_ages = None
    if T == 0:
        dh0[...] = dh_n
    elif B > 0:
        dgi = _scratch("da", (T, B, 3 * H), inp.dtype)
        dgh = _scratch("da_h", (T, B, 3 * H), inp.dtype)
        rest = (dh_n, cache.gates, cache.ghn, inp.h0, cache.out, inp.w_hh)
        with _launch() as serial:
            if k is None or k >= T:
                _gru.gru_backward_recurrence(dgi, dgh, dh0, _sum_ages(dout), *rest, inp.lengths,
                                             serial)
            else:
                dgi_ages = np.empty((T if want_ages else 0, k, B, 3 * H), inp.dtype)
                _gru.gru_truncated_recurrence(dgi, dgi_ages, dgh, dh0, dout, *rest, k,
                                              inp.lengths, serial)
                if want_ages:
                    dx_ages = _ages_through(dgi_ages, inp.w_ih, serial)
            _input_and_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, dgi, dgh, inp, cache.out,
                                    serial)
    has_bias = inp.b_ih is not None
    return GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih if has_bias else None,
                    db_hh if has_bias else None), dx_ages
