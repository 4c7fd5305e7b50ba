"""How kernels split their work across threads.

All parallelism inside fastrnn is its own (``prange``); BLAS runs single-threaded
inside each chunk (see ``fastrnn._blas_threads``). Results are bit-identical for any
thread count: a chunk that sums over rows (the weight gradients) has a size that depends
on the problem shape only, never on the number of threads, and its partial results are
summed afterwards in a fixed order; a chunk of whole rows (the recurrence, the
whole-sequence products with a weight matrix) may take any size, because every row's
result is computed the same way whichever rows share its chunk (``tiles.matmul``). No
chunk ``+=``s into memory another chunk writes.

- The recurrence splits the batch, one chunk per thread: rows are independent through
  the whole sequence, so each chunk of rows runs its own time loop (one parallel
  region per call, no synchronisation per step). The fewer the chunks, the more rows
  each step's product gets per pass over the weights (the weights stream from L3 at
  the large sizes).
- A whole-sequence product with a weight matrix (the input projection, dx) splits
  its rows into blocks; the weight gradients (BLAS GEMMs) are two tasks, the input
  term and the hidden term, and long sequences split their inner dimension T*B into
  parts whose partial products are then summed.

Every parallel kernel takes a last argument ``serial``: True runs the same chunks one
after the other on the calling thread, without entering Numba's threading layer (the
functional layer uses it where a parallel launch is unsafe: a child forked from a
process that used GNU OpenMP, or a second concurrent launch on the workqueue layer).
Results are bit-identical either way. A kernel with a single chunk runs it serially
too: a parallel region costs 2-3 us to enter, as much as a tiny forward's kernels.

BLAS packs every operand it is given, so a split of a GEMM duplicates the packing of
the operand all chunks share; chunks are kept large enough to make that negligible,
and problems too small to gain are not split at all.
"""

import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit, jit_inline, jit_parallel
from .blas import gemm
from .linalg import add_into, copy_into
from .tiles import MR, _address, matmul

#: At most this many chunks per parallel loop (enough for 16 cores).
MAX_CHUNKS = 16

#: Multiply-adds below which a chunk is not worth a thread (~10-20 us of work).
MIN_WORK = 1 << 20

#: Smallest row block of a split whole-sequence product.
MIN_BLOCK = 64

#: Fewest rows of T*B per part of a weight-gradient GEMM split over its inner
#: dimension. Splitting costs a pass over the partial products and GEMMs over shorter
#: inner sizes: parts of 1600-6400 rows cost 0-6% (medium and large_batch sizes), parts
#: of 200-400 rows 20-60% (deepbench), measured at 1 thread.
MIN_PART_ROWS = 1024

#: Largest total size (elements) of the partial products of a split inner dimension.
MAX_PARTIALS = 1 << 22


@jit
def chunk_size(n, min_size):
    """Items per chunk when ``n`` items are split into at most MAX_CHUNKS chunks of at
    least ``min_size`` items (the last chunk may be smaller)."""
    return max(1, min_size, (n + MAX_CHUNKS - 1) // MAX_CHUNKS)


@jit
def n_chunks(n, size):
    """Chunks of ``size`` items that cover ``n`` items."""
    return (n + size - 1) // size


@jit
def _n_parts(n, min_size, work):
    # how many parts to split n items into, given the multiply-adds of all of them
    return max(1, min(MAX_CHUNKS, n // max(1, min_size), work // MIN_WORK))


#: Fewest rows per chunk of the recurrence: two register tiles of ``tiles.matmul``.
CHUNK_ROWS = 2 * MR


def _start_threads():
    # registers the threading layer's C functions as symbols (idempotent)
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()


@intrinsic
def _num_threads(typingctx):
    # numba.get_num_threads() as a call of the threading layer's C function by its
    # symbol, as Numba's own parallel kernels call it (int, read as intp as Numba does).
    # Numba's jitted get_num_threads calls it through a ctypes pointer instead, a
    # "dynamic global" that makes a function uncacheable. The symbol exists once Numba
    # has started its threads: now, and in a process that loads the code from the cache,
    # before linking it (the library's reload hook, inherited by every caller).
    _start_threads()

    def codegen(context, builder, sig, args):
        context.active_code_library._reload_init.add(_start_threads)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []),
                                            "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen


@jit_inline
def batch_chunk(B, serial):
    """Rows per chunk of the recurrence for a batch of ``B`` rows: one chunk per thread.

    The serial path and a single thread run all rows as one chunk: each step's product
    then passes over the packed weights once for the whole batch (16-row chunks passed
    over them B / 16 times: LSTM (100, 256, 128, 512) forward recurrence 285 -> 251 ms
    at 1 thread, whose 4 MB of W_hh stream from L3). With several threads, batches of
    fewer than MR / 2 rows, which ``tiles.matmul`` runs one row at a time anyway, split
    into single rows; larger ones into at most MAX_CHUNKS chunks of at least CHUNK_ROWS
    rows, whole register tiles. The split never changes a result (rows are independent).
    """
    threads = 1 if serial else min(MAX_CHUNKS, _num_threads())
    if threads <= 1:
        return max(1, B)
    if B < MR // 2:
        return 1
    size = max(CHUNK_ROWS, -(-B // threads))
    return -(-size // MR) * MR


@jit_parallel
def par_matmul(c, a, mp, serial):
    """``c = a @ m`` for ``mp = tiles.pack(m)`` (or ``tiles.pack_t(w)`` for m = w^T), split
    over blocks of rows.

    c (M, N), a (M, K): C-contiguous; mp (P, K, NR). Each row's sum is the same in any
    block (``tiles.matmul``), so the blocks only decide the threads' shares of the work.
    ``serial``: run every block on the calling thread (same results, no parallel region).
    """
    M = c.shape[0]
    parts = _n_parts(M, MIN_BLOCK, M * c.shape[1] * a.shape[1])
    size = -(-M // parts)
    size = -(-size // MR) * MR  # whole register tiles
    if serial or n_chunks(M, size) == 1:
        for i in range(n_chunks(M, size)):
            r0 = i * size
            matmul(c, r0, a, r0, min(M, r0 + size) - r0, mp, False)
    else:
        for i in prange(n_chunks(M, size)):
            r0 = i * size
            matmul(c, r0, a, r0, min(M, r0 + size) - r0, mp, False)


@jit
def _grad_task(dw, db, da, x_head, x_tail, k0, k1, sums):
    # dw = da[k0:k1]^T x[k0:k1] and (with sums) db = column sums of da[k0:k1], both
    # overwritten, where x = [x_head; x_tail] by rows (x_head may have 0 rows)
    B = x_head.shape[0]
    acc = False
    if k0 < B:
        e = min(k1, B)
        gemm(dw, da[k0:e], x_head[k0:e], True, False, False)
        acc = True
    if k1 > B:
        s = max(k0, B)
        gemm(dw, da[s:k1], x_tail[s - B:k1 - B], True, False, acc)
    if sums:
        _column_sums(db, da, k0, k1)


@jit
def _column_sums(dst, a, k0, k1):
    # dst[j] = a[k0, j] + a[k0 + 1, j] + ... + a[k1 - 1, j], in k order
    copy_into(dst, a[k0])
    for k in range(k0 + 1, k1):
        add_into(dst, a[k])


@jit
def _sum_parts(dst, parts):
    # dst = parts[0] + parts[1] + ... in part order
    copy_into(dst, parts[0])
    for p in range(1, parts.shape[0]):
        add_into(dst, parts[p])


@jit
def grad_parts(K, M, N, Q):
    """Parts of the inner dimension K = T*B that ``linear_grads`` splits into: a power of
    two, with parts of at least MIN_PART_ROWS rows and partial products within
    MAX_PARTIALS elements (1 when K is short: then nothing is split)."""
    P = 1
    while (P < MAX_CHUNKS // 2 and K >= 2 * P * MIN_PART_ROWS
           and 2 * P * M * (N + Q + 2) <= MAX_PARTIALS):
        P *= 2
    return P


@jit
def _task(t, px, ph, pbx, pbh, da_x, da_h, x, h_head, h_tail, ksize, h_sums):
    # task 2q: the x-term of part q, task 2q + 1 its h-term
    K = da_x.shape[0]
    q = t // 2
    k0, k1 = q * ksize, min(K, (q + 1) * ksize)
    if t % 2 == 0:
        _grad_task(px[q], pbx[q], da_x, x[:0], x, k0, k1, True)
    else:
        _grad_task(ph[q], pbh[q], da_h, h_head, h_tail, k0, k1, h_sums)


@jit_parallel
def linear_grads(dw_x, dw_h, db_x, db_h, da_x, da_h, x, h_head, h_tail, serial):
    """Weight and bias gradients of ``a = x W_x^T + b_x + h_prev W_h^T + b_h`` over
    all K = T*B rows, where ``h_prev = [h_head; h_tail]`` (h0, then h_0..h_{T-2}):

        dw_x = da_x^T x,  dw_h = da_h^T h_prev,  db_x = sum(da_x),  db_h = sum(da_h)

    dw_x (M, N), dw_h (M, Q), db_x, db_h (M,) written; da_x, da_h (K, M); x (K, N);
    h_head (B, Q); h_tail (K - B, Q); all C-contiguous, K >= 1. (da_h differs from
    da_x where the hidden term is gated, as in the GRU's candidate; where it is the
    same array, db_h is a copy of db_x.)

    Tasks: the x-term and the h-term of each of P = ``grad_parts`` parts of K, each one
    whole GEMM over all M rows (splitting M repacks the other operand for every block:
    8 blocks of deepbench's 1760 rows took 1.3x as long as one GEMM, measured); the
    partial results are then summed in part order on the calling thread (at most
    MAX_PARTIALS elements: ~2 ms against the GEMMs' 0.5 s at large_batch; a second
    parallel loop for it cost 1.4 s of compilation). ``serial``: run every task on the
    calling thread (same results).
    """
    K, M = da_x.shape
    N = x.shape[1]
    Q = h_head.shape[1]
    P = grad_parts(K, M, N, Q)
    ksize = -(-K // P)
    P = n_chunks(K, ksize)
    h_sums = _address(da_h) != _address(da_x)
    if P == 1:  # the tasks write the results directly
        px = dw_x.reshape((1, M, N))
        ph = dw_h.reshape((1, M, Q))
        pbx = db_x.reshape((1, M))
        pbh = db_h.reshape((1, M))
    else:
        px = np.empty((P, M, N), dw_x.dtype)
        ph = np.empty((P, M, Q), dw_h.dtype)
        pbx = np.empty((P, M), db_x.dtype)
        pbh = np.empty((P, M), db_h.dtype)
    if serial:
        for t in range(2 * P):
            _task(t, px, ph, pbx, pbh, da_x, da_h, x, h_head, h_tail, ksize, h_sums)
    else:
        for t in prange(2 * P):
            _task(t, px, ph, pbx, pbh, da_x, da_h, x, h_head, h_tail, ksize, h_sums)
    if P > 1:
        _sum_partials(dw_x, dw_h, db_x, db_h, px, ph, pbx, pbh, h_sums)
    if not h_sums:
        copy_into(db_h, db_x)


@jit
def _sum_partials(dw_x, dw_h, db_x, db_h, px, ph, pbx, pbh, h_sums):
    # the results from the parts' partial products, in part order
    M = dw_x.shape[0]
    for m in range(M):
        _sum_parts(dw_x[m], px[:, m])
        _sum_parts(dw_h[m], ph[:, m])
    _sum_parts(db_x, pbx)
    if h_sums:
        _sum_parts(db_h, pbh)
