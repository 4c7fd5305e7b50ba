"""What every cell's functional API shares: argument checks and conversion, the
temporaries kept per thread, chunks of steps, the whole-sequence products around the
recurrence, and the checks that a cache is still valid."""

import dataclasses
import math
import threading
from dataclasses import dataclass

import numpy as np

from .. import _validation as v
from ..kernels import grads as _grads
from ..kernels import linalg as _linalg
from ..kernels import parallel as _parallel
from ..kernels import tiles as _tiles
from .packed import PackedWeight, unpack


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
    packed: tuple = (None, None, None)  # tiles.pack_t of w_ih, w_hh, w_hr if prepacked

    @property
    def shape(self):
        """(T, B, I, H, P): P is the size of h (H, or the LSTM projection size)."""
        T, B, I = self.x.shape
        return T, B, I, self.w_ih.shape[0] // self.gates, self.h0.shape[1]


def _check_inputs(fn, x, h0, w_ih, w_hh, b_ih, b_hh, gates, c0=None, w_hr=None, lstm=False,
                  lengths=None):
    """Check and convert a cell's forward arguments (G = ``gates``; ``lstm``: also c0 and
    the optional projection w_hr; ``lengths``: one per sequence, or None)."""
    inp = _ready_inputs(x, h0, w_ih, w_hh, b_ih, b_hh, gates, c0, w_hr, lstm, lengths)
    if inp is not None:
        return inp
    x = v.to_array(fn, "x", x)
    w_ih, p_ih = unpack(fn, "w_ih", w_ih)  # p_*: packed by pack_weight, or None
    w_hh, p_hh = unpack(fn, "w_hh", w_hh)
    p_hr = None
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
    if w_ih.shape[1] != I:  # name both sides: either may be the wrong one
        raise ValueError(f"{fn}: w_ih must have shape ({g}, I) = {(GH, I)}, got {w_ih.shape} "
                         f"(I = {I} from x.shape = {x.shape})")
    P, p = H, "H"
    if w_hr is not None:
        w_hr, p_hr = unpack(fn, "w_hr", w_hr)
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
    weights = [conv(w_ih), conv(w_hh), conv(w_hr)]
    # a packed weight serves if it needed no conversion (its dtype is the working one)
    packed = tuple(p if p is not None and k is w else None
                   for p, k, w in zip((p_ih, p_hh, p_hr), weights, (w_ih, w_hh, w_hr)))
    return _Inputs(dtype, gates, x, h0, weights[0], weights[1], conv(b_ih), conv(b_hh),
                   c0, weights[2], lengths, ragged, packed)


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _ready(a, dtype, shape):
    # a is an ndarray the kernels take as it is: dtype, C-contiguous, aligned, writeable
    return (type(a) is np.ndarray and a.dtype == dtype and a.flags.carray
            and a.shape == shape)


def _ready_inputs(x, h0, w_ih, w_hh, b_ih, b_hh, gates, c0, w_hr, lstm, lengths):
    """``_check_inputs``'s result for the common case, checked in a few comparisons
    (the whole checks took 5.4 us, half the cost of a one-step call): every array
    already a C-contiguous ndarray of one kernel dtype and of the right shape, no
    lengths, no projection. None for anything else, which the whole checks then take
    (and explain, if wrong)."""
    if lengths is not None or w_hr is not None or type(x) is not np.ndarray or x.ndim != 3:
        return None
    p_ih = p_hh = None
    if isinstance(w_ih, PackedWeight):
        w_ih, p_ih = w_ih._array, w_ih._packed
    if isinstance(w_hh, PackedWeight):
        w_hh, p_hh = w_hh._array, w_hh._packed
    dtype = x.dtype
    T, B, I = x.shape
    if (dtype not in _KERNEL_DTYPES or not x.flags.carray or min(T, B, I) < 1
            or type(w_ih) is not np.ndarray or w_ih.ndim != 2):
        return None
    GH = w_ih.shape[0]
    H = GH // gates
    if (H < 1 or GH != gates * H or not _ready(w_ih, dtype, (GH, I))
            or not _ready(w_hh, dtype, (GH, H))
            or not (h0 is None or _ready(h0, dtype, (B, H)))
            or not (c0 is None or lstm and _ready(c0, dtype, (B, H)))
            or not (b_ih is None and b_hh is None
                    or _ready(b_ih, dtype, (GH,)) and _ready(b_hh, dtype, (GH,)))):
        return None
    if h0 is None:
        h0 = np.zeros((B, H), dtype)
    if lstm and c0 is None:
        c0 = np.zeros((B, H), dtype)
    return _Inputs(dtype, gates, x, h0, w_ih, w_hh, b_ih, b_hh, c0, None,
                   _full_lengths(B, T), False, (p_ih, p_hh, None))


#: Arrays of at least this many bytes are made by ``_empty`` from recycled blocks
#: (glibc reuses freed blocks below 32 MB itself, and returns larger ones to the
#: operating system when they are freed).
RECYCLE_MIN_BYTES = 32 << 20

#: Bytes of idle blocks kept for reuse, at most (all threads together).
RECYCLE_IDLE_MAX_BYTES = 1 << 30

_idle = []  # blocks (uint8 arrays) that no array refers to any more, oldest first
_idle_lock = threading.RLock()  # (re-entrant: a block can come back while it is held)


def _give_back(mem, idle=_idle, lock=_idle_lock):
    # a block no array refers to any more: kept for reuse while the idle ones fit in
    # RECYCLE_IDLE_MAX_BYTES, else freed
    with lock:
        if sum(m.nbytes for m in idle) + mem.nbytes <= RECYCLE_IDLE_MAX_BYTES:
            idle.append(mem)


class _Block:
    """Owner of a recycled block: the base of the array ``_empty`` makes of it, and so
    of every view of that array; when the last one goes, the block goes back to the
    idle ones."""

    __slots__ = ("mem", "__array_interface__")

    def __init__(self, mem, shape, dtype):
        self.mem = mem
        self.__array_interface__ = dict(version=3, shape=shape, typestr=dtype.str,
                                        data=(mem.ctypes.data, False))

    def __del__(self, give_back=_give_back):
        give_back(self.mem)


def _empty(shape, dtype):
    """``np.empty(shape, dtype)`` for results and temporaries that grow with T.

    Memory fresh from the operating system costs a page fault and the zeroing of each
    page on first touch, and glibc takes blocks over 32 MB from the system and returns
    them on every call: an LSTM (100, 256, 128, 512) forward with a cache (314 MB of
    gates, cell states and out) spent 100 of its 370 ms so, its backward 20 of 560
    (medians, 1 thread). So an array of RECYCLE_MIN_BYTES or more is made from a block
    that an earlier call's arrays left (no array refers to it any more), of at least
    its size and at most twice it, or from a new block; up to RECYCLE_IDLE_MAX_BYTES of
    blocks wait for reuse, the rest go back to the system at once.
    """
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    if n < RECYCLE_MIN_BYTES:
        return np.empty(shape, dtype)
    mem = None
    with _idle_lock:
        fits = [i for i, m in enumerate(_idle) if n <= m.nbytes <= 2 * n]
        if fits:
            mem = _idle.pop(min(fits, key=lambda i: _idle[i].nbytes))
    if mem is None:
        mem = np.empty(n, np.uint8)
    return np.asarray(_Block(mem, tuple(shape), dtype))


#: Largest scratch buffer (bytes) kept for reuse by the next call on the same thread.
SCRATCH_MAX_BYTES = 32 << 20

#: Smaller temporaries are allocated per call.
SCRATCH_MIN_BYTES = 1 << 16

_scratch_buffers = threading.local()


def _scratch(name, shape, dtype):
    """An uninitialised array for a temporary that no result refers to (``name``: which
    one), reused by the next call on the same Python thread.

    Memory fresh from the operating system costs a page fault per page on first touch,
    and glibc returns freed blocks of a few MB to it at once: a training step at the
    small size allocated its gradient buffer anew each call (LSTM (100, 32, 64, 128)
    forward + backward 12.4 -> 10.2 ms with it reused, medians). Larger temporaries
    are made per call (``_empty``: from recycled blocks) and not kept, so a thread
    keeps at most SCRATCH_MAX_BYTES per name. Temporaries under
    SCRATCH_MIN_BYTES come from the allocator's free lists, already touched: they are
    allocated per call too (0.14 us; the lookup took 0.75).
    """
    n = math.prod(shape) * np.dtype(dtype).itemsize  # (np.prod of a tuple: 2 us)
    if n > SCRATCH_MAX_BYTES or n < SCRATCH_MIN_BYTES:
        return _empty(shape, dtype)
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
        return _empty((T, B, width), inp.dtype)
    if cache:
        raise ValueError(f"{fn}: keep_out=False needs cache=False (backward needs out)")
    steps = _chunk_steps(dataclasses.replace(inp, gates=gates), False)
    return _scratch("out", (steps, B, width), inp.dtype)


def _out_chunk(out, T, t0, t1):
    # this chunk's steps of out (T, B, .), or of a one-chunk buffer when out is not kept
    return out[t0:t1] if out.shape[0] == T else out[: t1 - t0]


def _chunks(T, steps):
    if steps >= T > 0:
        return [(0, T)]
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


def _checkpointed_backward(cache, dout, finals, segment_cache, run_backward, packs):
    """Backward from a checkpointed cache: segment by segment, the last first. Each
    segment's forward is recomputed from its saved start state, and the ordinary backward
    runs on it with the gradient carried out of the later segment as its final-state
    gradient; dx is filled in place and the weight gradients are summed over segments.
    Memory: one segment's gates and gradients instead of the whole sequence's. ``packs``:
    the weights packed for backward (``_check_unmodified``), shared by all segments."""
    inp = cache.inputs
    T, B, I = inp.x.shape
    dx = _empty((T, B, I), inp.dtype)
    segments = _chunks(T, cache.checkpoint)
    sums = {}
    for i in range(len(segments) - 1, -1, -1):
        t0, t1 = segments[i]
        g = run_backward(segment_cache(cache, i, t0, t1), dout[t0:t1], *finals, None, False,
                         packs)[0]
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


def _packed_weights(inp, summed=False):
    """W_ih and W_hh packed for the tiles (tiles.pack_t), once per call (a forward runs
    as one projection and one recurrence per chunk of steps), or by pack_weight; and,
    with ``summed``, the checksums of those packed here, taken while packing (name ->
    checksum, for ``_fingerprint``)."""
    packs, known = [], {}
    for name, w, p in (("w_ih", inp.w_ih, inp.packed[0]), ("w_hh", inp.w_hh, inp.packed[1])):
        if p is None:
            p, s = _tiles.pack_t_and_sum(w, summed)
            if summed:
                known[name] = int(s)
        packs.append(p)
    return packs[0], packs[1], known


def _project(gates, x, w_ih_p, serial):
    # gates[t] = x[t] W_ih^T for all steps: one (T*B, I) x (I, G*H) product; w_ih_p is
    # tiles.pack_t(W_ih)
    T, B, I = x.shape
    _parallel.par_matmul(gates.reshape(T * B, gates.shape[2]), x.reshape(T * B, I), w_ih_p,
                         serial)


def _input_and_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, da_x, da_h, shared, inp, out,
                            w_ih_p, serial):
    """The whole-sequence products of backward, after the recurrence:
    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh  ->  dx_t = da_t W_ih,
    dW_ih = sum_t da_t^T x_t, dW_hh = sum_t da_h_t^T h_{t-1} (h_{-1} = h0),
    db_ih = sum da_t, db_hh = sum da_h_t (da_h differs from da_x only for the GRU, in
    the columns from ``shared`` on). w_ih_p = tiles.pack(W_ih) (``_check_unmodified``)."""
    T, B, I = inp.x.shape
    G = da_x.shape[2]
    TB = T * B
    da2 = da_x.reshape(TB, G)
    _parallel.par_matmul(dx.reshape(TB, I), da2, w_ih_p, serial)
    h_prev = out.reshape(TB, out.shape[2])[: TB - B]
    if inp.ragged:
        # a row's first padding step has da = 0 but h_{t-1} = its last real state, which
        # may be inf (relu, identity): 0 * inf would make dW_hh NaN. Zero it in a copy.
        rows = np.nonzero(inp.lengths < T)[0]
        h_prev = h_prev.copy()
        h_prev[(inp.lengths[rows] - 1) * B + rows] = 0
    _grads.linear_grads(dw_ih, dw_hh, db_ih, db_hh, da2, da_h.reshape(TB, G), shared,
                        inp.x.reshape(TB, I), inp.h0, h_prev, serial)


def _ages_through(da_ages, w_ih, w_ih_p, serial):
    # per-age gradient on the input x: da_ages (T, k, B, G) @ W_ih (G, I) -> (T, k, B, I);
    # w_ih_p = tiles.pack(W_ih)
    T, k, B, G = da_ages.shape
    dx = _empty((T, k, B, w_ih.shape[1]), da_ages.dtype)
    _parallel.par_matmul(dx.reshape(T * k * B, -1), da_ages.reshape(T * k * B, G), w_ih_p,
                         serial)
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
    return int(_linalg.bits_sum(a.reshape(-1)))


def _fingerprint(inp, out, known=None):
    """Checksums of everything a backward reads that the caller can reach: the
    inputs (or fastrnn's converted copies of them) and ``out``. ``known``: name ->
    checksum already taken (while packing a weight: reading a large matrix from memory
    once more cost 1-2% of an LSTM training step)."""
    known = known or {}
    return tuple(known[n] if n in known else _checksum(out if n == "out" else getattr(inp, n))
                 for n in _FINGERPRINTED)


_FINGERPRINTED = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "out")


def _check_cache(fn, cache, cls):
    if not isinstance(cache, cls):
        raise TypeError(f"{fn}: cache must be the {cls.__name__} returned by the forward "
                        f"call with cache=True, got {type(cache).__name__}")
    return _check_unmodified(fn, cache)


def _check_unmodified(fn, cache):
    """The arrays a cache refers to must be as the forward left them. Returns the
    weights packed for backward (tiles.pack of W_ih, W_hh and W_hr, or None without a
    projection), whose checksums are taken while packing them."""
    inp = cache.inputs
    packs, known = [], {}
    for name in ("w_ih", "w_hh", "w_hr"):
        w = getattr(inp, name)
        p = None
        if w is not None:
            p, s = _tiles.pack_and_sum(w, True)
            known[name] = int(s)
        packs.append(p)
    now = _fingerprint(inp, cache.out, known)
    if now != cache.fingerprint:
        changed = [n for n, a, b in zip(_FINGERPRINTED, now, cache.fingerprint) if a != b]
        raise ValueError(f"{fn}: {', '.join(changed)} changed after the forward call that made "
                         f"this cache (modified in place?); the gradient would be wrong: run "
                         f"the forward again, or copy arrays before modifying them")
    return tuple(packs)


def _check_no_truncation(fn, cache, k):
    if cache.checkpoint and k is not None and k < cache.inputs.x.shape[0]:
        raise ValueError(f"{fn}: truncate={k} needs a cache with every step (this one was made "
                         f"with checkpoint={cache.checkpoint}): checkpointed caches support full "
                         f"BPTT only")


def _start_backward(fn, cache, cls, dout, dh_n, truncate, dc_n=None, lstm=False):
    """The checks every backward shares; returns (inputs, dout, dh_n, dc_n, k, packs),
    packs as ``_check_unmodified``'s."""
    packs = _check_cache(fn, cache, cls)
    inp = cache.inputs
    T, B, I, H, P = inp.shape
    p = "P" if inp.w_hr is not None else "H"
    dout = _check_grad_arg(fn, "dout", dout, f"(T, B, {p})", (T, B, P), inp.dtype)
    dh_n = _check_grad_arg(fn, "dh_n", dh_n, f"(B, {p})", (B, P), inp.dtype)
    if lstm:
        dc_n = _check_grad_arg(fn, "dc_n", dc_n, "(B, H)", (B, H), inp.dtype)
    return inp, dout, dh_n, dc_n, v.check_truncate(fn, truncate), packs
