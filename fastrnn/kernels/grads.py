"""The weight and bias gradients of a linear map over a whole sequence, on the
register tiles of ``tiles.matmul``.

For ``a = x W_x^T + h_prev W_h^T + b`` over all K = T*B rows, ``dW_x = da^T x`` and
``dW_h = da^T h_prev``: products with a long inner dimension K. Each runs in one of two
forms, by shape:

- transposed (K >= N + Q: the sequence is longer than the gradients are wide): the
  product ``[x, h_prev]^T da`` ((N + Q) x K times K x M), then its result transposed
  into dW. ``da`` is the packed operand (a copy of row blocks, one pass) and ``x`` and
  ``h_prev`` the rows, transposed a block of K at a time in registers, so that both
  terms share one packing of ``da`` and the bias sums ride along with it. Against the
  two GEMMs in SciPy's OpenBLAS it replaced (1 thread, the bench's shapes): LSTM small
  3.15 -> 2.62 ms, medium 15.1 -> 13.9, large_batch 290 -> 270, Elman large_batch
  75 -> 70, tiny 0.106 -> 0.062, float64 LSTM small 8.1 -> 5.9 (measured).
- direct (K < N + Q): ``da^T [x, h_prev]``, the columns of ``da`` transposed a block of
  K at a time (the bias sums ride along) and ``x``, ``h_prev`` packed: no result to
  transpose. That pass over the (N + Q) x M result cost more than the rest of the
  packing where K is short: deepbench LSTM (K = 400, M = 2048, N = Q = 512) 7.5 -> 7.0
  ms, GRU 5.6 -> 5.2, Elman (K = 800) 42.7 -> 42.0 (measured, 1 thread). Where K is
  long it loses (transposing ``da`` costs more than packing it; GRU small 2.5 -> 3.1
  ms), and with N or Q under a panel's width it multiplies the panels' zero columns
  (tiny 0.067 -> 0.10).

Both keep BLAS and its thread pool out of the kernels.

Summation order, either form: every entry is ``s_0 + s_1 + ...``, left to right, where
s_b sums ``x[k, n] da[k, m]`` over the b-th block of KC rows in k order from 0, one fused
multiply-add each (``tiles``; so both forms give the same bits), and a bias entry
likewise the sum of its blocks' sums, each ``da[k0, m] + da[k0 + 1, m] + ...``: in
float32 at T*B = 25600 rows, 10-20x less error than one chain over all rows (LSTM,
measured). Threads split the columns of ``da`` (blocks of whole panels), which never
changes a sum: results are the same for any number of threads.

Dimension key: K = rows (T*B), M = columns of ``da`` (gate units), N and Q = columns
of ``x`` and ``h_prev``.
"""

import numpy as np
from numba import prange
from numba.core import types

from .._config import jit, jit_parallel
from ._symbols import compiled_once
from .linalg import copy_into
from .parallel import MAX_CHUNKS, MIN_PARALLEL_WORK, MIN_WORK, _num_threads, balance
from .tiles import (KC, VECTOR_BYTES, _aligned_panels, _bool, _data, _int, _transpose_block,
                    matmul, panel_width)


@jit
def _transpose_into(at, r0, c0, src, s0, kc, j0, j1, sums):
    # at[r0 + n - j0, c0 + k] = src[s0 + k, n] for j0 <= n < j1, k < kc (at, src
    # C-contiguous), and with a non-empty ``sums`` sums[n] += the same entries, in k
    # order. W x W blocks transposed in registers, TRANSPOSE_ROWS rows of src at a
    # time (those rows of the columns stay in L2: a strip of W columns down a few
    # thousand rows evicted each line before the next strip used the rest of it), the
    # edges element by element
    M = src.shape[1]
    ld = at.shape[1]
    W = VECTOR_BYTES // src.itemsize
    pa, ps, pu = _data(at), _data(src), _data(sums)
    add = sums.shape[0] > 0
    nf = j0 + (j1 - j0) // W * W
    kf = kc // W * W
    for kb in range(0, kf, TRANSPOSE_ROWS):
        for n0 in range(j0, nf, W):
            for k in range(kb, min(kf, kb + TRANSPOSE_ROWS), W):
                _transpose_block(pa, (r0 + n0 - j0) * ld + c0 + k, ld, ps, (s0 + k) * M + n0,
                                 M)
                if add:
                    for i in range(W):
                        o = (s0 + k + i) * M + n0
                        for j in range(W):
                            pu[n0 + j] += ps[o + j]
    for n0 in range(j0, nf, W):
        for k in range(kf, kc):
            for i in range(W):
                v = ps[(s0 + k) * M + n0 + i]
                pa[(r0 + n0 - j0 + i) * ld + c0 + k] = v
                if add:
                    pu[n0 + i] += v
    for n in range(nf, j1):
        for k in range(kc):
            v = ps[(s0 + k) * M + n]
            pa[(r0 + n - j0) * ld + c0 + k] = v
            if add:
                pu[n] += v


#: Rows of src per pass of ``_transpose_into``.
TRANSPOSE_ROWS = 64


@jit
def _pack_columns(mp, sums, da, k0, kc, j0, j1, first):
    # mp[p, k, :] = da[k0 + k, j0 + p*NR : j0 + (p+1)*NR] for k < kc (the last panel's
    # columns past j1 stay as they are: zeros); sums[j] += each packed entry, in k order
    # (sums start from the first row where ``first``). Rows by pointer and offset (views
    # of them cost reference counts), PACK_PANELS panels at a time k by k: each sum is a
    # chain through memory (load, add, store, load ...), and one panel's two chains
    # alone made the packing latency-bound (1.7x slower than a plain copy).
    NR = mp.shape[2]
    KP = mp.shape[1]
    M = da.shape[1]
    n = j1 - j0
    pm, pd, ps = _data(mp), _data(da), _data(sums)
    P = mp.shape[0]
    for g in range(0, P, PACK_PANELS):
        for k in range(kc):
            for p in range(g, min(P, g + PACK_PANELS)):
                w = min(NR, n - p * NR)
                src = (k0 + k) * M + j0 + p * NR
                dst = (p * KP + k) * NR
                if first and k == 0:
                    for j in range(w):
                        v = pd[src + j]
                        pm[dst + j] = v
                        ps[p * NR + j] = v
                else:
                    for j in range(w):
                        v = pd[src + j]
                        pm[dst + j] = v
                        ps[p * NR + j] += v


#: Panels packed side by side (``_pack_columns``): their sums' chains overlap.
PACK_PANELS = 8


@jit
def _add_block(total, block, j0, j1, first):
    # the bias sums over blocks of rows, as the tiles sum the weights' entries: total[j]
    # = block[j] for the first block, then total[j] + block[j], for j0 <= j < j1
    for j in range(j0, j1):
        total[j] = block[j] if first else total[j] + block[j]


def _array(dtype, ndim):
    return types.Array(dtype, ndim, "C")


_GRAD_SIGNATURES = {dt: types.void(*([_array(dt, 2)] * 2), _array(dt, 1),
                                   *([_array(dt, 2)] * 5),
                                   _array(dt, 3), _array(dt, 1), _array(dt, 2), _array(dt, 1),
                                   types.intp, types.intp)
                    for dt in (types.float32, types.float64)}


def _grad_columns(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, mp, at, c, sums,
                  j0, j1):
    """Columns j0..j1-1 of da (K, M): dw_a[j0:j1] = da[:, j0:j1]^T a (Na columns),
    dw_b[j0:j1] = da[:, j0:j1]^T b (Nb, may be 0) and db[j0:j1] = column sums, where
    a = [a_head; a_tail] and b = [b_head; b_tail] by rows (K rows each). Scratch (from
    ``_scratch``): mp (panels of j1 - j0 columns, KC, NR), at (R * KC,), c (R, j1 - j0),
    sums (2 * (j1 - j0): the running bias sums, then the block's), R = Na + Nb."""
    K = da.shape[0]
    Na = a_head.shape[1]
    R = c.shape[0]
    # the block's rows of the four sources (a's from row 0 of the transposed block, b's
    # from row Na), from one call site: every call site of a transpose is its own
    # unrolled copy (with six, 3.4 s of compilation per dtype; with two, ~1.1 s)
    srcs = (a_head, a_tail, b_head, b_tail)
    no_sums = np.empty(0, da.dtype)
    n = j1 - j0
    total, block = sums[:n], sums[n:]
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        _pack_columns(mp, block, da, k0, kc, j0, j1, _bool(True))
        _add_block(total, block, _int(0), n, k0 == 0)
        a = at[: R * kc].reshape((R, kc))  # (the rows' block, row stride kc)
        for q in range(4):
            src = srcs[q]
            s = 0 if q % 2 == 0 else srcs[q - 1].shape[0]  # a tail follows its head
            lo = max(k0, s)
            hi = min(k0 + kc, s + src.shape[0])
            if lo < hi:
                _transpose_into(a, 0 if q < 2 else Na, lo - k0, src, lo - s, hi - lo, _int(0),
                                src.shape[1], no_sums)
        matmul(c, 0, a, 0, R, mp, k0 > 0)
    # dw_a[j0 + m, n] = c[n, m], dw_b[j0 + m, n] = c[Na + n, m]
    outs = (dw_a, dw_b)
    for q in range(2):
        _transpose_into(outs[q], j0, _int(0), c, q * Na, outs[q].shape[1], _int(0), c.shape[1],
                        no_sums)
    copy_into(db[j0:j1], total)


#: Version of the signatures of ``_grad_columns`` and ``_grad_rows``, in their symbols:
#: bump it when one changes.
_GRAD_ABI = 2

_grad_columns_call = compiled_once("fastrnn_grads_columns_{}_v%d" % _GRAD_ABI,
                                   _GRAD_SIGNATURES)(_grad_columns)


@jit
def _scratch(da, R, j0, j1):
    # the buffers of _grad_columns for columns j0..j1-1 and R rows
    NR = panel_width(da.itemsize)
    n = j1 - j0
    return (_aligned_panels(-(-n // NR), _int(KC), NR, n, da), np.empty(R * KC, da.dtype),
            np.empty((R, n), da.dtype), np.empty(2 * n, da.dtype))


@jit
def _pack_rows(mp, head, tail, k0, kc):
    # mp[p, k, :] = row k0 + k of [head; tail], columns p*NR .. (p+1)*NR, for k < kc:
    # ``tiles.pack`` of a block of rows (the last panel's columns past N stay as they
    # are: zeros)
    P, KP, NR = mp.shape
    N = head.shape[1]
    Pf = N // NR
    pm, ph, pt = _data(mp), _data(head), _data(tail)
    for k in range(kc):
        r = k0 + k
        ps, o = (ph, r * N) if r < head.shape[0] else (pt, (r - head.shape[0]) * N)
        for p in range(Pf):
            d = (p * KP + k) * NR
            for j in range(NR):
                pm[d + j] = ps[o + p * NR + j]
        if Pf < P:
            d = (Pf * KP + k) * NR
            for j in range(N - Pf * NR):
                pm[d + j] = ps[o + Pf * NR + j]


def _grad_rows(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, ap, bp, at, block, j0,
               j1):
    """``_grad_columns`` in the direct form: rows j0..j1-1 of dw_a and dw_b are the
    products of da[:, j0:j1]^T (transposed a block of KC rows at a time, the sums of
    db riding along) with the packed a and b. Scratch (from ``_row_scratch``): ap, bp
    (panels of Na and Nb columns, KC, NR), at ((j1 - j0) * KC,), block (j1,): the
    block's bias sums in block[j0:j1]."""
    K = da.shape[0]
    n = j1 - j0
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        _pack_rows(ap, a_head, a_tail, k0, kc)
        _pack_rows(bp, b_head, b_tail, k0, kc)
        a = at[: n * kc].reshape((n, kc))
        for j in range(j0, j1):
            block[j] = -0.0  # -0.0 + v is v, bit for bit: a sum starts from the first row
        _transpose_into(a, _int(0), _int(0), da, k0, kc, j0, j1, block)
        _add_block(db, block, j0, j1, k0 == 0)
        matmul(dw_a, j0, a, 0, n, ap, k0 > 0)
        matmul(dw_b, j0, a, 0, n, bp, k0 > 0)


_ROW_SIGNATURES = {dt: types.void(*([_array(dt, 2)] * 2), _array(dt, 1),
                                  *([_array(dt, 2)] * 5), *([_array(dt, 3)] * 2),
                                  _array(dt, 1), _array(dt, 1), types.intp, types.intp)
                   for dt in (types.float32, types.float64)}

_grad_rows_call = compiled_once("fastrnn_grads_rows_{}_v%d" % _GRAD_ABI,
                                _ROW_SIGNATURES)(_grad_rows)


@jit
def _row_scratch(da, Na, Nb, j0, j1):
    # the buffers of _grad_rows for columns j0..j1-1 of da, Na and Nb columns of a, b
    NR = panel_width(da.itemsize)
    return (_aligned_panels(-(-Na // NR), _int(KC), NR, Na, da),
            _aligned_panels(-(-Nb // NR), _int(KC), NR, Nb, da),
            np.empty((j1 - j0) * KC, da.dtype), np.empty(j1, da.dtype))


@jit
def _columns(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, j0, j1):
    # dw_a, dw_b, db for columns j0..j1-1 of da, in the form for the shape (see above):
    # direct where the result (Na + Nb rows) outgrows da's K
    Na, Nb = a_head.shape[1], b_head.shape[1]
    if da.shape[0] < Na + Nb:
        ap, bp, at, block = _row_scratch(da, Na, Nb, j0, j1)
        _grad_rows_call(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, ap, bp, at,
                        block, j0, j1)
    else:
        mp, at, c, sums = _scratch(da, Na + Nb, j0, j1)
        _grad_columns_call(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, mp, at, c,
                           sums, j0, j1)


@jit
def column_blocks(M, R, K, itemsize, serial):
    """Columns per task when the M columns of ``da`` are split among the threads: whole
    panels, at least MIN_WORK multiply-adds per task (R rows of the result, K inner);
    all M in one block serially, with one thread or below MIN_PARALLEL_WORK in all.
    Each task transposes (or packs) all R x K rows for itself, a pass as costly as ~20
    of its columns' products."""
    NR = panel_width(itemsize)
    panels = -(-M // NR)
    threads = 1 if serial else min(MAX_CHUNKS, _num_threads())
    work = M * R * K
    parts = 1 if work < MIN_PARALLEL_WORK else max(1, min(threads, panels, work // MIN_WORK))
    return max(1, -(-panels // parts)) * NR  # (M = 0: any size, no block)


@jit_parallel
def linear_grads(dw_x, dw_h, db_x, db_h, da_x, da_h, shared, x, h_head, h_tail, serial):
    """Weight and bias gradients of ``a = x W_x^T + b_x + h_prev W_h^T + b_h`` over
    all K = T*B rows, where ``h_prev = [h_head; h_tail]`` (h0, then h_0..h_{T-2}):

        dw_x = da_x^T x,  dw_h = da_h^T h_prev,  db_x = sum(da_x),  db_h = sum(da_h)

    dw_x (M, N), dw_h (M, Q), db_x, db_h (M,) written; da_x, da_h (K, M); x (K, N);
    h_head (B, Q); h_tail (K - B, Q); all C-contiguous, K >= 1. ``shared``: the
    number of leading columns in which da_h equals da_x (M when da_h is da_x; the
    GRU's hidden term differs in its candidate's columns only): there both terms share
    one packing (or transposition) of da_x and db_h is a copy of db_x; da_h's own
    columns are read from ``shared`` on.

    Tasks: blocks of the shared columns (``column_blocks``), then for each block of the
    others its x-term and its h-term, dealt to the threads by cost (``balance``).
    ``serial``: run every task on the calling thread (same results).
    """
    K, M = da_x.shape
    N = x.shape[1]
    Q = h_head.shape[1]
    size1 = column_blocks(shared, N + Q, K, x.itemsize, serial)
    size2 = column_blocks(M - shared, max(N, Q), 2 * K, x.itemsize, serial)
    n1 = -(-shared // size1)
    n_tasks = n1 + 2 * (-(-(M - shared) // size2))
    workers = task_workers(n_tasks, K * M * (N + Q), serial)
    if workers <= 1:
        for t in range(n_tasks):
            _task(t, n1, size1, size2, shared, dw_x, dw_h, db_x, db_h, da_x, da_h, x,
                  h_head, h_tail)
        return
    # the tasks differ in cost (the GRU's: 2:1 between its shared blocks and its
    # candidate's h-terms, 4:1 between those and its x-terms): dealt out by cost
    cost = np.empty(n_tasks, np.int64)
    for t in range(n_tasks):
        j0, j1, term = _task_columns(t, n1, size1, size2, shared, M)
        rows = N + Q if term == 0 else (N if term == 1 else Q)
        cost[t] = rows * (j1 - j0 + TRANSPOSE_COLUMNS)
    order, starts = balance(cost, workers)
    for w in prange(workers):
        for i in range(starts[w], starts[w + 1]):
            _task(order[i], n1, size1, size2, shared, dw_x, dw_h, db_x, db_h, da_x, da_h, x,
                  h_head, h_tail)


@jit
def task_workers(n_tasks, work, serial):
    """Threads for ``n_tasks`` tasks of ``work`` multiply-adds in all: the calling
    thread alone below MIN_PARALLEL_WORK, as ``column_blocks`` decides for each part
    (the GRU's parts are 3 tasks however small: its tiny training entered a parallel
    region that the policy keeps out, 0.31 against 0.33 ms at a quiet moment)."""
    if serial or work < MIN_PARALLEL_WORK:
        return 1
    return min(n_tasks, MAX_CHUNKS, _num_threads())


#: A task's transposition of its R x K rows costs about as much as this many of its
#: columns' products (R x K multiply-adds each): the fixed part of a task's cost.
TRANSPOSE_COLUMNS = 20


@jit
def _task_columns(t, n1, size1, size2, shared, M):
    # task t's columns j0..j1-1 and term: 0 both (t < n1: a block of the shared
    # columns), then for each block of the other columns 1 its x-term, 2 its h-term
    if t < n1:
        j0 = t * size1
        return j0, min(shared, j0 + size1), 0
    u = t - n1
    j0 = shared + u // 2 * size2
    return j0, min(M, j0 + size2), 1 + u % 2


@jit
def _task(t, n1, size1, size2, shared, dw_x, dw_h, db_x, db_h, da_x, da_h, x, h_head,
          h_tail):
    M = da_x.shape[1]
    j0, j1, term = _task_columns(t, n1, size1, size2, shared, M)
    x_head = np.empty((0, x.shape[1]), x.dtype)  # (x has no head rows)
    if term == 0:
        _columns(dw_x, dw_h, db_x, da_x, x_head, x, h_head, h_tail, j0, j1)
        copy_into(db_h[j0:j1], db_x[j0:j1])
        return
    none = np.empty((0, 0), x.dtype)  # (a term without a second operand)
    no_dw = np.empty((M, 0), x.dtype)
    if term == 1:
        _columns(dw_x, no_dw, db_x, da_x, x_head, x, none, none, j0, j1)
    else:
        _columns(dw_h, no_dw, db_h, da_h, h_head, h_tail, none, none, j0, j1)
