"""Results are bit-identical for any number of threads (Numba's; and BLAS's, which no
kernel calls)."""

import os
import subprocess
import sys
import textwrap

import numba
import pytest

import fastrnn

# big enough that every phase splits into several chunks: projection and dx over
# rows, the recurrence over 2 batch chunks, weight gradients over parts of T*B
SHAPE = (40, 64, 64, 128)

SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, fastrnn
    def run(T, B, I, H, dtype, truncate, cell="rnn"):
        rng = np.random.default_rng(0)
        G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
        x = rng.standard_normal((T, B, I)).astype(dtype)
        w_ih = (rng.standard_normal((G * H, I)) / np.sqrt(I)).astype(dtype)
        w_hh = (0.5 * rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(dtype)
        b = (0.1 * rng.standard_normal(G * H)).astype(dtype)
        if cell == "rnn":
            out, h_n, cache = fastrnn.elman_forward(x, None, w_ih, w_hh, b, b)
            g = fastrnn.elman_backward(cache, np.cos(out), truncate=truncate)
        elif cell == "lstm":
            out, h_n, c_n, cache = fastrnn.lstm_forward(x, None, None, w_ih, w_hh, b, b)
            g = fastrnn.lstm_backward(cache, np.cos(out), truncate=truncate)
        else:
            out, h_n, cache = fastrnn.gru_forward(x, None, w_ih, w_hh, b, b)
            g = fastrnn.gru_backward(cache, np.cos(out), truncate=truncate)
        h = hashlib.sha256()
        for a in (out, h_n, g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh):
            h.update(a.tobytes())
        return h.hexdigest()
""")

namespace = {}
exec(SCRIPT, namespace)
run = namespace["run"]


def _one_and_two_threads(*args):
    """``run(*args)`` with 1 and then 2 Numba threads (skips with fewer than 2)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(*args)
        numba.set_num_threads(2)
        two = run(*args)
    finally:
        numba.set_num_threads(saved)
    return one, two


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("truncate", [None, 5])
def test_same_bits_for_one_and_two_numba_threads(cell, dtype, truncate):
    one, two = _one_and_two_threads(*SHAPE, dtype, truncate, cell)
    assert one == two
    assert run(*SHAPE, dtype, truncate, cell) == one  # and repeatable


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("truncate", [None, 3])
def test_odd_batch_same_bits_whatever_rows_share_a_chunk(cell, truncate):
    # B = 19: one thread runs one 19-row chunk (two full register tiles and a 3-row
    # rest, one row at a time), two threads a 10-row and a 9-row chunk (a tile and 2
    # rows, a tile and 1; with AVX-512): every row's result must not depend on which
    # rows it was computed with
    one, two = _one_and_two_threads(7, 19, 5, 33, "float32", truncate, cell)
    assert one == two


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("truncate", [None, 3])
def test_batch_in_equal_shares_same_bits_split_between_two_threads(cell, truncate):
    # B = 26: one thread runs three full register tiles and 2 rows one at a time, two
    # threads 13 rows each, a full tile and a 5-row partial one (with AVX-512): rows 8-12
    # and 21-25 go through a partial tile on two threads only
    one, two = _one_and_two_threads(7, 26, 5, 33, "float32", truncate, cell)
    assert one == two


def test_recurrence_chunks_are_equal_shares_of_at_least_one_tile():
    from fastrnn.kernels import parallel
    from fastrnn.kernels.tiles import MR

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        sizes = {B: parallel.batch_chunk(B, False) for B in (2 * MR, 2 * MR + 2, MR + 1, MR)}
    finally:
        numba.set_num_threads(saved)
    assert sizes[2 * MR] == MR  # two register tiles: one per thread
    assert sizes[2 * MR + 2] == MR + 1  # equal shares, not MR rounded up to whole tiles
    assert sizes[MR + 1] == MR  # a tile and a row
    assert sizes[MR] == MR  # one tile stays one chunk


def test_row_blocks_of_a_product_are_one_per_thread():
    # prange gives each thread an equal run of blocks: more blocks than threads only
    # unbalance them (400 rows in 6 blocks of 72 rows: 216 and 184)
    from fastrnn.kernels import parallel

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    big = 1 << 40
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        two = parallel._n_parts(400, parallel.MIN_BLOCK, big, False)
        serial = parallel._n_parts(400, parallel.MIN_BLOCK, big, True)
        small = parallel._n_parts(400, parallel.MIN_BLOCK, parallel.MIN_PARALLEL_WORK - 1, False)
    finally:
        numba.set_num_threads(saved)
    assert (two, serial, small) == (2, 1, 1)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("B", [1, 3])
def test_tiny_batches_same_bits_for_one_and_two_threads(cell, B):
    # B < MR / 2: one chunk of B rows on one thread, B chunks of one row on two; every
    # step's product sums in split parts (tiles.ROW_SPLITS) either way. H = 21: with
    # AVX-512, Elman's 21 columns are one panel, the GRU's 63 two, the LSTM's 84 three
    one, two = _one_and_two_threads(9, B, 5, 21, "float32", None, cell)
    assert one == two


def test_blas_thread_setting_does_not_matter():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        one = run(*SHAPE, "float32", None)
    with threadpoolctl.threadpool_limits(2):
        two = run(*SHAPE, "float32", None)
    assert one == two


@pytest.mark.slow
def test_same_bits_with_more_threads_than_cores_in_a_new_process():
    code = SCRIPT + f"\nprint(run(*{SHAPE}, 'float64', 5, 'lstm'))\n"
    env = dict(os.environ, NUMBA_NUM_THREADS="5")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(fastrnn.__file__)))
    assert res.stdout.strip() == run(*SHAPE, "float64", 5, "lstm")


def test_the_shape_used_here_really_splits_every_phase():
    from fastrnn.kernels import grads, parallel

    T, B, I, H = SHAPE
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        two = parallel.batch_chunk(B, False)
        columns_two = grads.column_blocks(H, I + H, T * B, 4, False)
        parts_two = parallel._n_parts(T * B, parallel.MIN_BLOCK, T * B * I * H, False)
        numba.set_num_threads(1)
        one = parallel.batch_chunk(B, False)
        columns_one = grads.column_blocks(H, I + H, T * B, 4, False)
        parts_one = parallel._n_parts(T * B, parallel.MIN_BLOCK, T * B * I * H, False)
    finally:
        numba.set_num_threads(saved)
    assert parallel.n_chunks(B, two) >= 2  # recurrence: one chunk per thread
    assert parallel.n_chunks(B, one) == 1
    assert parallel.batch_chunk(B, True) == B  # the serial path: one chunk
    assert parts_two == 2 and parts_one == 1  # projection, dx: one row block per thread
    # dW_ih, dW_hh (Elman's H columns of da; the gated cells have 3-4x as many)
    assert parallel.n_chunks(H, columns_two) >= 2
    assert parallel.n_chunks(H, columns_one) == 1
