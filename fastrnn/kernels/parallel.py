"""How kernels split their work across threads.

All parallelism inside fastrnn is its own (``prange``); no kernel calls BLAS. Results
are bit-identical for any thread count: every chunk computes whole entries of its
results, each the same way whichever chunk it falls in (``tiles.matmul`` sums every
entry in one order, whatever rows or columns share its tile), so chunk sizes may follow
the number of threads. No chunk ``+=``s into memory another chunk writes.

- The recurrence splits the batch, one chunk per thread: rows are independent through
  the whole sequence, so each chunk of rows runs its own time loop (one parallel
  region per call, no synchronisation per step). The fewer the chunks, the more rows
  each step's product gets per pass over the weights (the weights stream from L3 at
  the large sizes).
- A whole-sequence product with a weight matrix (the input projection, dx) splits
  its rows into blocks; the weight gradients split the columns of ``da`` (the gate
  units: ``grads.linear_grads``).

Every parallel kernel takes a last argument ``serial``: True runs the same chunks one
after the other on the calling thread, without entering Numba's threading layer (the
functional layer uses it where a parallel launch is unsafe: a child forked from a
process that used GNU OpenMP, or a second concurrent launch on the workqueue layer).
Results are bit-identical either way. A kernel with a single chunk runs it serially
too: a parallel region costs 2-3 us to enter, as much as a tiny forward's kernels.
"""

import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit, jit_inline, jit_parallel
from .tiles import MR, _int, matmul

#: At most this many chunks per parallel loop (enough for 16 cores).
MAX_CHUNKS = 16

#: Multiply-adds below which a chunk is not worth a thread (~10-20 us of work).
MIN_WORK = 1 << 20

#: Multiply-adds below which a whole product runs on the calling thread (~0.1 ms of
#: work). A parallel region costs 1-4 us to enter, but on a shared host the helper
#: thread, spinning or woken beside the caller's serial work (a recurrence), cost up to
#: ~0.25 ms per region at times: LSTM (1000, 1, 8, 32) training at 2 threads took 0.63
#: ms with its one 5M weight-gradient region, 0.38 without it (as at 1 thread).
MIN_PARALLEL_WORK = 1 << 24

#: Smallest row block of a split whole-sequence product.
MIN_BLOCK = 64

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
def balance(cost, parts):
    """Tasks of unequal ``cost`` (n,) (int64) dealt to ``parts`` workers: the costliest
    first (the lower index on ties), each to the least loaded worker so far (the lower
    index on ties). Returns ``(order, starts)``: worker w runs tasks
    ``order[starts[w]:starts[w + 1]]``, in index order. (``prange`` hands out equal
    runs of iterations, whatever they cost.) Plain loops: a few dozen tasks, and
    ``np.argsort`` took a second to compile."""
    n = cost.shape[0]
    owner = np.full(n, -1, np.int64)
    load = np.zeros(parts, np.int64)
    for _ in range(n):
        t = -1
        for u in range(n):
            if owner[u] < 0 and (t < 0 or cost[u] > cost[t]):
                t = u
        w = 0
        for v in range(1, parts):
            if load[v] < load[w]:
                w = v
        owner[t] = w
        load[w] += cost[t]
    starts = np.zeros(parts + 1, np.int64)
    for t in range(n):
        starts[owner[t] + 1] += 1
    for w in range(parts):
        starts[w + 1] += starts[w]
    order = np.empty(n, np.int64)
    filled = starts[:parts].copy()
    for t in range(n):
        order[filled[owner[t]]] = t
        filled[owner[t]] += 1
    return order, starts


#: Fewest rows per chunk of the recurrence: one register tile of ``tiles.matmul``.
CHUNK_ROWS = MR


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
    into single rows; larger ones into at most MAX_CHUNKS chunks of equal shares of at
    least CHUNK_ROWS rows, the last chunk the rest. One register tile is enough: a
    batch of 16 rows in two chunks made deepbench's forwards at 2 threads 0.70x the
    time of one chunk; and shares are not rounded up to whole tiles: 9 + 9 rows, not
    16 + 2, took 0.76x the time at (100, 18, 64, 128). The split never changes a result
    (rows are independent).
    """
    threads = 1 if serial else min(MAX_CHUNKS, _num_threads())
    if threads <= 1:
        return max(1, B)
    if B < MR // 2:
        return 1
    return max(CHUNK_ROWS, -(-B // threads))


@jit
def _n_parts(n, min_size, work, serial):
    # how many parts to split n items into, given the multiply-adds of all of them: at
    # most one per thread. prange hands each thread an equal run of parts, so more parts
    # than threads only unbalance them (the LSTM's and GRU's deepbench, 400 rows, went in
    # 6 parts of 72: 216 rows to one thread, 184 to the other; one part each made their
    # forwards at 2 threads 0.96-0.99x the time)
    if serial or work < MIN_PARALLEL_WORK:
        return 1
    return max(1, min(MAX_CHUNKS, _num_threads(), n // max(1, min_size), work // MIN_WORK))


@jit_parallel
def par_matmul(c, a, mp, serial):
    """``c = a @ m`` for ``mp = tiles.pack(m)`` (or ``tiles.pack_t(w)`` for m = w^T), split
    into blocks of rows, at most one per thread (``_n_parts``).

    c (M, N), a (M, K): C-contiguous; mp (P, K, NR). Each row's sum is the same in any
    block (``tiles.matmul``), so the blocks only decide the threads' shares of the work.
    ``serial``: run every block on the calling thread (same results, no parallel region).
    """
    M = c.shape[0]
    parts = _n_parts(M, _int(MIN_BLOCK), M * c.shape[1] * a.shape[1], serial)
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
