"""How kernels split their work across threads.

All parallelism inside fastrnn is its own (``prange``); BLAS runs single-threaded
inside each chunk (see ``fastrnn._blas_threads``). Work is split into chunks whose
number and size depend on the problem shape only, never on the number of threads,
and every chunk is computed by the same code whichever thread runs it: results are
bit-identical for any thread count. Reductions across chunks (partial weight
gradients) are summed afterwards in a fixed order; no chunk ``+=``s into memory
another chunk writes.

- The recurrence splits the batch: rows are independent through the whole sequence,
  so each chunk of rows runs its own time loop (one parallel region per call, no
  synchronisation per step).
- A whole-sequence product with a weight matrix (the input projection, dx) splits
  its rows into blocks; the weight gradients, whose inner size is T*B, split their
  inner dimension into parts whose partial products are then summed (BLAS GEMMs).

Every parallel kernel takes a last argument ``serial``: True runs the same chunks one
after the other on the calling thread, without entering Numba's threading layer (the
functional layer uses it where a parallel launch is unsafe: a child forked from a
process that used GNU OpenMP, or a second concurrent launch on the workqueue layer).
Results are bit-identical either way.

BLAS packs every operand it is given, so a split of a GEMM duplicates the packing of
the operand all chunks share; chunks are kept large enough to make that negligible,
and problems too small to gain are not split at all.
"""

import numpy as np
from numba import prange

from .._config import jit, jit_parallel
from .blas import gemm
from .linalg import add_into, copy_into
from .tiles import MR, matmul

#: At most this many chunks per parallel loop (enough for 16 cores).
MAX_CHUNKS = 16

#: Multiply-adds below which a chunk is not worth a thread (~10-20 us of work).
MIN_WORK = 1 << 20

#: Smallest row block of a split whole-sequence product.
MIN_BLOCK = 64

#: Smallest part of the inner dimension of a split weight-gradient GEMM.
MIN_INNER = 256

#: Smallest block of weight-gradient rows: each block's GEMM repacks the whole
#: (T*B, N) input, so blocks of 64-128 rows ran at 0.5-0.7 of one whole GEMM at
#: large_batch sizes (T*B = 25600, 4H = 2048), blocks of 256 at par.
MIN_GRAD_ROWS = 256

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
#: Every chunk reads the same packed weights (packed once per call), so small chunks
#: cost no packing; measured at (50, 64, 256, 256), 1 thread: 16-row chunks as fast
#: as one 64-row chunk, and 2 threads then 1.5-2x faster.
CHUNK_ROWS = 2 * MR


@jit
def batch_chunk(B):
    """Rows per chunk of the recurrence for a batch of ``B`` rows.

    Batches of fewer than MR / 2 rows, which ``tiles.matmul`` runs one row at a time
    anyway, split into single rows; larger ones into chunks of at least CHUNK_ROWS.
    """
    if B < MR // 2:
        return 1
    return chunk_size(B, CHUNK_ROWS)


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
    if serial:
        for i in range(n_chunks(M, size)):
            r0 = i * size
            matmul(c, r0, a, r0, min(M, r0 + size) - r0, mp, False)
    else:
        for i in prange(n_chunks(M, size)):
            r0 = i * size
            matmul(c, r0, a, r0, min(M, r0 + size) - r0, mp, False)


@jit
def _grad_block(dw_x, dw_h, db_x, db_h, da_x, da_h, x, h_head, h_tail, k0, k1, m0, m1):
    # rows m0:m1 of the gradients from rows k0:k1 of the K rows, overwritten;
    # h_prev is h_head (rows 0..B-1) then h_tail
    B = h_head.shape[0]
    gemm(dw_x[m0:m1], da_x[k0:k1, m0:m1], x[k0:k1], True, False, False)
    acc = False
    if k0 < B:  # rows whose previous state is h0
        e = min(k1, B)
        gemm(dw_h[m0:m1], da_h[k0:e, m0:m1], h_head[k0:e], True, False, False)
        acc = True
    if k1 > B:
        s = max(k0, B)
        gemm(dw_h[m0:m1], da_h[s:k1, m0:m1], h_tail[s - B:k1 - B], True, False, acc)
    # bias sums row by row, k ascending: a fixed order. On views from column 0: a loop
    # from m0 keeps Numba's negative-index check and does not vectorise (it took longer
    # than both GEMMs at (T*B, 4H) = (3200, 128), measured)
    _column_sums(db_x[m0:m1], da_x, k0, k1, m0)
    _column_sums(db_h[m0:m1], da_h, k0, k1, m0)


@jit
def _column_sums(dst, a, k0, k1, m0):
    # dst[j] = a[k0, m0 + j] + a[k0 + 1, m0 + j] + ... + a[k1 - 1, m0 + j], in k order
    n = dst.shape[0]
    copy_into(dst, a[k0, m0:m0 + n])
    for k in range(k0 + 1, k1):
        add_into(dst, a[k, m0:m0 + n])


@jit
def _sum_parts(dst, parts, j0, j1):
    # dst[j0:j1] = parts[0, j0:j1] + parts[1, j0:j1] + ... in part order
    for j in range(j0, j1):
        dst[j] = parts[0, j]
    for p in range(1, parts.shape[0]):
        pp = parts[p]
        for j in range(j0, j1):
            dst[j] += pp[j]


@jit_parallel
def linear_grads(dw_x, dw_h, db_x, db_h, da_x, da_h, x, h_head, h_tail, serial):
    """Weight and bias gradients of ``a = x W_x^T + b_x + h_prev W_h^T + b_h`` over
    all K = T*B rows, where ``h_prev = [h_head; h_tail]`` (h0, then h_0..h_{T-2}):

        dw_x = da_x^T x,  dw_h = da_h^T h_prev,  db_x = sum(da_x),  db_h = sum(da_h)

    dw_x (M, N), dw_h (M, Q), db_x, db_h (M,) written; da_x, da_h (K, M); x (K, N);
    h_head (B, Q); h_tail (K - B, Q); all C-contiguous, K >= 1. (da_h differs from
    da_x where the hidden term is gated, as in the GRU's candidate.)

    Split over P parts of K whose partial results are then summed in part order, or,
    when partials would be too big or K too short (P = 1), over blocks of the M rows.
    ``serial``: run every part on the calling thread (same results).
    """
    K, M = da_x.shape
    N = x.shape[1]
    Q = h_head.shape[1]
    work = K * M * (N + Q + 2)
    P = min(_n_parts(K, MIN_INNER, work), max(1, MAX_PARTIALS // max(1, M * (N + Q + 2))))
    ksize = -(-K // P)
    P = n_chunks(K, ksize)
    msize = M if P > 1 else -(-M // _n_parts(M, MIN_GRAD_ROWS, work))
    nb = n_chunks(M, msize)
    if P == 1:  # blocks write the results directly
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
        for task in range(P * nb):
            p = task // nb
            m0 = (task % nb) * msize
            _grad_block(px[p], ph[p], pbx[p], pbh[p], da_x, da_h, x, h_head, h_tail,
                        p * ksize, min(K, (p + 1) * ksize), m0, min(M, m0 + msize))
    else:
        for task in prange(P * nb):
            p = task // nb
            m0 = (task % nb) * msize
            _grad_block(px[p], ph[p], pbx[p], pbh[p], da_x, da_h, x, h_head, h_tail,
                        p * ksize, min(K, (p + 1) * ksize), m0, min(M, m0 + msize))
    if P > 1:
        rows = chunk_size(M, 1)
        if serial:
            for i in range(n_chunks(M, rows)):
                for m in range(i * rows, min(M, (i + 1) * rows)):
                    _sum_parts(dw_x[m], px[:, m], 0, N)
                    _sum_parts(dw_h[m], ph[:, m], 0, Q)
                _sum_parts(db_x, pbx, i * rows, min(M, (i + 1) * rows))
                _sum_parts(db_h, pbh, i * rows, min(M, (i + 1) * rows))
        else:
            for i in prange(n_chunks(M, rows)):
                for m in range(i * rows, min(M, (i + 1) * rows)):
                    _sum_parts(dw_x[m], px[:, m], 0, N)
                    _sum_parts(dw_h[m], ph[:, m], 0, Q)
                _sum_parts(db_x, pbx, i * rows, min(M, (i + 1) * rows))
                _sum_parts(db_h, pbh, i * rows, min(M, (i + 1) * rows))
