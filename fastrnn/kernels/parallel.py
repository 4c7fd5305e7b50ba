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
- A whole-sequence GEMM splits its output into row or column blocks, or (for the
  weight gradients, whose inner size is T*B) its inner dimension into parts whose
  partial products are then summed.

BLAS packs every operand it is given, so a split duplicates the packing of the
operand all chunks share; chunks are kept large enough to make that negligible, and
problems too small to gain are not split at all.
"""

import numpy as np
from numba import prange

from .._config import jit, jit_parallel
from .blas import gemm

#: At most this many chunks per parallel loop (enough for 16 cores).
MAX_CHUNKS = 16

#: Multiply-adds below which a chunk is not worth a thread (~10-20 us of work).
MIN_WORK = 1 << 20

#: Smallest row or column block of a split GEMM output.
MIN_BLOCK = 64

#: Smallest part of the inner dimension of a split weight-gradient GEMM.
MIN_INNER = 256

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


@jit
def batch_chunk(B, H, min_rows):
    """Rows per chunk of the recurrence for a batch of ``B`` rows and ``H`` units.

    Below ``min_rows`` (the hand-loop threshold of ``linalg.matmul``) each row is
    its own chunk. From there on a chunk has at least min_rows rows and, for larger
    H, up to 64, because BLAS repacks the H x H weights in every call and a small
    chunk would spend its time packing.
    """
    if B < min_rows:
        return 1
    return chunk_size(B, max(min_rows, min(64, H // 4)))


@jit_parallel
def par_gemm(c, a, b, trans_a, trans_b, accumulate):
    """``gemm`` split over blocks of the larger output dimension (C-contiguous c, a, b)."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if M >= N:
        size = -(-M // _n_parts(M, MIN_BLOCK, M * N * K))
        nc = n_chunks(M, size)
        if nc == 1:
            gemm(c, a, b, trans_a, trans_b, accumulate)
            return
        for i in prange(nc):
            lo = i * size
            hi = min(M, lo + size)
            a_blk = a[:, lo:hi] if trans_a else a[lo:hi]
            gemm(c[lo:hi], a_blk, b, trans_a, trans_b, accumulate)
    else:
        size = -(-N // _n_parts(N, MIN_BLOCK, M * N * K))
        nc = n_chunks(N, size)
        if nc == 1:
            gemm(c, a, b, trans_a, trans_b, accumulate)
            return
        for i in prange(nc):
            lo = i * size
            hi = min(N, lo + size)
            b_blk = b[lo:hi] if trans_b else b[:, lo:hi]
            gemm(c[:, lo:hi], a, b_blk, trans_a, trans_b, accumulate)


@jit_parallel
def par_gemm_tn(c, a, b, accumulate):
    """``c = a^T b`` (or ``c += ...``): c (M, N), a (K, M), b (K, N), C-contiguous.

    The weight-gradient shape: K = T*B rows summed over. Split over K into parts whose
    partial products are summed in part order; when the partials would be too big
    (or K too short) the output is split instead (``par_gemm``).
    """
    K, M = a.shape
    N = b.shape[1]
    P = min(_n_parts(K, MIN_INNER, K * M * N), max(1, MAX_PARTIALS // max(1, M * N)))
    if P == 1:
        par_gemm(c, a, b, True, False, accumulate)
        return
    size = -(-K // P)
    P = n_chunks(K, size)
    parts = np.empty((P, M, N), c.dtype)
    for p in prange(P):
        lo = p * size
        hi = min(K, lo + size)
        gemm(parts[p], a[lo:hi], b[lo:hi], True, False, False)
    size = chunk_size(M, 1)
    for i in prange(n_chunks(M, size)):
        for r in range(i * size, min(M, (i + 1) * size)):
            cr = c[r]
            if not accumulate:
                p0 = parts[0, r]
                for j in range(N):
                    cr[j] = p0[j]
            for p in range(0 if accumulate else 1, P):
                pr = parts[p, r]
                for j in range(N):
                    cr[j] += pr[j]


@jit_parallel
def par_sum_rows(s, a):
    """``s = a.sum(axis=0)`` in a fixed order: s (N,), a (K, N) C-contiguous, K >= 1."""
    K, N = a.shape
    P = _n_parts(K, MIN_INNER, K * N // 8)  # a sum is far cheaper than a multiply-add row
    size = -(-K // P)
    P = n_chunks(K, size)
    parts = np.empty((P, N), s.dtype)
    for p in prange(P):
        lo = p * size
        part = parts[p]
        for j in range(N):
            part[j] = a[lo, j]
        for r in range(lo + 1, min(K, lo + size)):
            ar = a[r]
            for j in range(N):
                part[j] += ar[j]
    for j in range(N):
        s[j] = parts[0, j]
    for p in range(1, P):
        for j in range(N):
            s[j] += parts[p, j]
