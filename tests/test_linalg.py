"""The packed, register-tiled product behind every step of a recurrence
(``fastrnn.kernels.tiles``), on each of its paths, and the products built on it: the
whole-sequence products (``parallel.par_matmul``) and the weight gradients
(``grads.linear_grads``)."""

import numba
import numpy as np
import pytest
from numba import njit

from fastrnn._config import FASTMATH
from fastrnn.kernels import grads, linalg, parallel, rowvec, tiles
from fastrnn.kernels.tiles import _data

from .cells import CELLS
from .conftest import assert_close


def _matmul(c, a, mp, accumulate, ci=0, ai=0):
    # c[ci:ci+R] (+)= a[ai:ai+R] @ m for R = len(c) - ci
    tiles.matmul(c, ci, a, ai, c.shape[0] - ci, mp, accumulate)


@njit
def _matmul_in_njit(c, ci, a, ai, R, mp, accumulate, split=False):
    tiles.matmul(c, ci, a, ai, R, mp, accumulate, split)


@njit
def _step_matmul_in_njit(c, ci, a, ai, R, mp, accumulate, split):
    tiles.step_matmul(c, ci, a, ai, R, mp, accumulate, split)


MR, KC, MC = tiles.MR, tiles.KC, tiles.MC
NR32 = tiles.NV * tiles.VECTOR_BYTES // 4  # panel width in float32
# panels per group of a block of MC / 2 or more rows with one whole k block
GROUP = tiles.L2_GROUP // (KC * tiles.NV * tiles.VECTOR_BYTES)

# (R, K, N): one-row kernel (R < MR / 2; with K <= KC on the direct path) over groups of
# ROW_PANELS panels and the 1-3 panels left; partial tiles (MR / 2 <= R < MR); full tiles with
# row remainders; several k blocks (K > KC); several row blocks (R > MC); blocks of MC / 2
# rows or more over several groups of panels; partial last panels (N % NR != 0); K = 1
SHAPES = [(1, 7, 9), (1, 32, 4 * NR32 + 5), (3, 512, 512), (MR // 2, 256, 255),
          (MR - 1, 257, 300), (MR, 1, 1), (MR + 1, KC + 1, 2 * NR32 + 1),
          (2 * MR + MR // 2, 3, 37), (16, 1760, 1760), (MC + MR + 3, 2 * KC + 7, 129),
          (4, 16, 16), (MR // 2 - 1, 40, 5 * NR32 + 3), (1, 32, 3 * NR32 - 5),
          (MC + MC // 2 + 1, KC + 5, (GROUP + 1) * NR32 + 3)]


def _operands(R, K, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((R, K)).astype(dtype)
    m = rng.standard_normal((K, N)).astype(dtype)
    return a, m


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("split", [False, True], ids=["k_order", "split"])
def test_matmul_every_path_against_numpy(shape, accumulate, split, dtype):
    # rows 1..R of a (R + 3)-row c from rows 2..R+1 of an (R + 4)-row a
    R, K, N = shape
    a, m = _operands(R + 4, K, N, dtype)
    big = np.random.default_rng(1).standard_normal((R + 3, N)).astype(dtype)
    before = big.copy()
    _matmul_in_njit(big, 1, a, 2, R, tiles.pack(m), accumulate, split)
    want = (before[1:R + 1].astype(np.float64) if accumulate else 0) + a[2:R + 2] @ m
    assert_close(big[1:R + 1], want.astype(dtype) if dtype == np.float32 else want, dtype,
                 scale=10)
    # nothing written outside the rows
    assert np.array_equal(big[[0, R + 1, R + 2]], before[[0, R + 1, R + 2]])


def _cancelling_terms(dtype):
    # a large value and the spacing of floats there (float32: 1e8 and 8): an added 1
    # is lost against it, the spacing's worth of ones summed first is not
    big = dtype(1e8 if dtype == np.float32 else 1e17)
    return big, int(np.spacing(big))


@pytest.mark.parametrize("R", [1, MR, MR + 1], ids=["row", "tile", "tile_and_row"])
@pytest.mark.parametrize("N", [3, NR32, 4 * NR32 + 3], ids=["part", "panel", "panels"])
@pytest.mark.parametrize("split", [False, True], ids=["k_order", "split"])
def test_products_sum_each_block_of_k_then_add_it_to_c(R, N, split, dtype):
    # c + s_0 + s_1, left to right, s_b the sum of block b's terms from 0 in k order:
    # terms -big, n ones | n ones after c = big give (big - big) + n = n; a chain from c
    # would give 2n, one chain over both blocks then c 0. Partial and whole tiles, the
    # one-row kernels (split ones within one block, below) of 1 to 4 panels
    big, n = _cancelling_terms(dtype)
    K = KC + n
    a = np.zeros((R, K), dtype)
    a[:, 0] = -big
    a[:, 1:n + 1] = 1
    a[:, KC:] = 1
    mp = tiles.pack(np.ones((K, N), dtype))
    c = np.full((R, N), big, dtype)
    _matmul_in_njit(c, 0, a, 0, R, mp, True, split)
    assert np.all(c == n)
    # within one block (the split one-row kernels too): big + (n ones) = big + n
    c = np.full((R, N), big, dtype)
    _matmul_in_njit(c, 0, np.ones((R, n), dtype), 0, R, tiles.pack(np.ones((n, N), dtype)),
                    True, split)
    assert np.all(c == big + n)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_split_sums_only_small_products(shape, dtype):
    # split=True regroups the sums of products of fewer than MR / 2 rows with K <= KC
    # (the one-row kernels of 1-3 panels: ROW_SPLITS); any other product is summed in k
    # order as without it, bit for bit
    R, K, N = shape
    a, m = _operands(R, K, N, dtype, seed=5)
    mp = tiles.pack(m)
    c, s = np.empty((R, N), dtype), np.empty((R, N), dtype)
    _matmul_in_njit(c, 0, a, 0, R, mp, False, False)
    _matmul_in_njit(s, 0, a, 0, R, mp, False, True)
    nr = mp.shape[2]  # this dtype's panel width (with AVX2, float64's 3 last panels
    # keep one set of accumulators where float32's 2 are split)
    full = N // (tiles.ROW_PANELS * nr) * tiles.ROW_PANELS * nr  # 4-panel passes
    if R >= MR // 2 or K > KC:
        assert np.array_equal(s, c)
    else:
        assert np.array_equal(s[:, :full], c[:, :full])
        if K >= 2 and N > full and tiles.ROW_SPLITS[min(3, -(-(N - full) // nr))] > 1:
            assert not np.array_equal(s[:, full:], c[:, full:])  # regrouped: other roundings


@pytest.mark.parametrize("shape", SHAPES + [(1, KC, 4 * NR32 + 5), (1, KC + 1, 7)], ids=str)
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("split", [False, True], ids=["k_order", "split"])
def test_step_matmul_is_matmul_bit_for_bit(shape, accumulate, split, dtype):
    # the recurrences' per-step product (one row with split sums: inlined) gives matmul's
    # bits: a batch of one row and a larger one split so that a chunk has one row agree
    R, K, N = shape
    a, m = _operands(R + 2, K, N, dtype, seed=3)
    mp = tiles.pack(m)
    c = np.random.default_rng(4).standard_normal((R + 2, N)).astype(dtype)
    s = c.copy()
    _matmul_in_njit(c, 1, a, 2, R, mp, accumulate, split)
    _step_matmul_in_njit(s, 1, a, 2, R, mp, accumulate, split)
    assert np.array_equal(s, c)


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (2 * NR32 + 3, 40), (NR32, 3),
                                   (3 * NR32 // 2, 64)], ids=str)
def test_pack_layout(shape, dtype):
    N, K = shape
    w = np.random.default_rng(2).standard_normal((N, K)).astype(dtype)
    NR = tiles.panel_width(w.itemsize)
    P = -(-N // NR)
    # the packed buffer is not zero-filled (only the last panel's padding is zeroed): a
    # freed NaN-filled block of its size is likely what it gets, so a miss shows
    np.full(P * K * NR + tiles.VECTOR_BYTES // w.itemsize, np.nan, dtype)
    mp = tiles.pack_t(w)
    assert mp.shape == (P, K, NR) and mp.dtype == dtype
    padded = np.zeros((K, P * NR), dtype)
    padded[:, :N] = w.T
    assert np.array_equal(mp, padded.reshape(K, P, NR).transpose(1, 0, 2))
    wt = np.ascontiguousarray(w.T)
    np.full(P * K * NR + tiles.VECTOR_BYTES // w.itemsize, np.nan, dtype)
    assert np.array_equal(tiles.pack(wt), mp)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (2 * NR32 + 3, 40), (17, 33), (64, 16),
                                   (3, 0), (0, 4)], ids=str)
def test_packing_with_checksum(shape, dtype):
    # pack_and_sum / pack_t_and_sum: the same packing, and the checksum of the matrix that
    # a separate pass gives (integer sums: any order), NaN, inf and -0.0 entries included
    w = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    w.flat[:3] = [np.nan, -np.inf, -0.0][: w.size]
    bits = w.reshape(-1).view(np.uint32 if dtype == np.float32 else np.uint64)
    want = int(bits.astype(np.uint64).sum(dtype=np.uint64))
    assert int(linalg.bits_sum(w.reshape(-1))) == want
    mp, s = tiles.pack_and_sum(w, True)
    assert np.array_equal(mp, tiles.pack(w), equal_nan=True) and int(s) == want
    mp, s = tiles.pack_t_and_sum(w, True)
    assert np.array_equal(mp, tiles.pack_t(w), equal_nan=True) and int(s) == want
    assert int(tiles.pack_t_and_sum(w, False)[1]) == 0 == int(tiles.pack_and_sum(w, False)[1])
    if w.size:  # a flipped sign bit shows (NaN and -0.0 included)
        w2 = w.copy()
        w2.flat[-1] = -w2.flat[-1]
        assert (int(tiles.pack_and_sum(w2, True)[1]) != want
                != int(tiles.pack_t_and_sum(w2, True)[1]))


@pytest.mark.parametrize("K", [KC + 9, 40], ids=["k_blocks", "one_k_block"])
@pytest.mark.parametrize("R", [1, 2, MR // 2, MR - 1, MR + 1, 2 * MR + 3, tiles.GROUP_ROWS,
                               MC + 5])
def test_a_row_does_not_depend_on_the_other_rows(R, K, dtype):
    # every entry is summed in one order (tiles' summation order), whichever
    # kernel (row, partial or full tile) computes it and in whichever order the tiles
    # run: any row split gives the same bits. K <= KC: a single row takes the direct
    # path, without the blocking loops; R >= GROUP_ROWS: tiles over groups of panels
    N = (GROUP + 1) * NR32 + 3
    a, m = _operands(R, K, N, dtype, seed=3)
    mp = tiles.pack(m)
    c = np.empty((R, N), dtype)
    _matmul(c, a, mp, False)
    for r in {0, R // 2, R - 1}:
        alone = np.empty((1, N), dtype)
        _matmul(alone, a, mp, False, ai=r)
        assert np.array_equal(alone[0], c[r])


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 3, 5), (2 * MC + 37, KC + 3, 8 * NR32 + 9)],
                         ids=str)
def test_par_matmul_is_the_product_in_any_block_split(shape, dtype):
    # the whole-sequence product (input projection, dx): c = a @ w^T over row blocks
    # (two for the largest shape with 2 threads), the same bits run in parallel or
    # serially, and each row the bits of that row alone
    R, K, N = shape
    if R > MC and numba.get_num_threads() >= 2:  # the case that really splits
        assert parallel._n_parts(R, parallel.MIN_BLOCK, R * K * N, False) >= 2
    a, w = _operands(R, K, N, dtype, seed=5)
    w = np.ascontiguousarray(w.T)  # (N, K), as W_ih
    wp = tiles.pack_t(w)
    c = np.full((R, N), np.nan, dtype)
    parallel.par_matmul(c, a, wp, False)
    assert_close(c, a.astype(np.float64) @ w.T.astype(np.float64), dtype, scale=10)
    serial = np.empty_like(c)
    parallel.par_matmul(serial, a, wp, True)
    assert np.array_equal(c, serial)
    alone = np.empty((1, N), dtype)
    parallel.par_matmul(alone, a[R - 1:], wp, True)
    assert np.array_equal(alone[0], c[R - 1])


def test_weight_gradients_of_little_work_stay_on_the_calling_thread():
    # below MIN_PARALLEL_WORK multiply-adds in all, however many tasks (the GRU's parts
    # make 3): no parallel region (why: parallel.MIN_PARALLEL_WORK)
    small = parallel.MIN_PARALLEL_WORK - 1
    assert grads.task_workers(3, small, False) == 1
    assert grads.task_workers(3, 10 * small, True) == 1
    if numba.config.NUMBA_NUM_THREADS < 2:
        return
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        assert grads.task_workers(3, small + 1, False) == 2
        assert grads.task_workers(1, small + 1, False) == 1
    finally:
        numba.set_num_threads(saved)


# (K, B, M, N, Q): one entry; odd sizes; K over 3 blocks of KC with h0's B rows spanning
# the first block and part of the second, M = 265 over 9 or more panels (2 column blocks
# with 2 threads: M (N + Q) K is over MIN_PARALLEL_WORK whatever the panel width); no
# hidden term (Q = 0, as dW_hr); the direct form (K < N + Q, and K < N, Q for the GRU's
# own columns) in one block and in two, h0's rows spanning them
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (7, 3, 5, 3, 2),
                                   (3 * KC + 5, KC + 7, 265, 40, 50), (300, 4, 37, 17, 0),
                                   (5, 2, 37, 17, 9), (KC + 5, KC + 3, 2 * NR32 + 9, 270, 300)],
                         ids=str)
@pytest.mark.parametrize("shared", ["all", "none", "leading"])
def test_linear_grads_against_numpy(shape, shared, dtype):
    # the weight gradients: dw_x = da_x^T x, dw_h = da_h^T [h0; h_tail], bias sums, with
    # da_h the same array as da_x (Elman, LSTM), another one, or equal in its leading
    # columns (the GRU); the same bits in parallel (column blocks) or serially (one block)
    K, B, M, N, Q = shape
    if K > 2 * KC and numba.get_num_threads() >= 2:  # the case that really splits
        assert parallel.n_chunks(M, grads.column_blocks(M, N + Q, K, 4, False)) >= 2
    rng = np.random.default_rng(6)
    da_x, x = (rng.standard_normal(s).astype(dtype) for s in ((K, M), (K, N)))
    S = {"all": M, "none": 0, "leading": 2 * M // 3}[shared]
    da_h = da_x if shared == "all" else rng.standard_normal((K, M)).astype(dtype)
    if shared == "leading":
        da_h[:, :S] = np.nan  # never read: those columns are da_x's
    h = rng.standard_normal((K, Q)).astype(dtype)
    given = [a.copy() for a in (da_x, da_h, x, h)]
    outs = []
    for serial in (False, True):
        out = [np.full(s, np.nan, dtype) for s in ((M, N), (M, Q), M, M)]
        grads.linear_grads(*out, da_x, da_h, S, x, h[:B], h[B:], serial)
        outs.append(out)
    f64 = [a.astype(np.float64) for a in (da_x, da_h, x, h)]
    f64[1][:, :S] = f64[0][:, :S]
    want = (f64[0].T @ f64[2], f64[1].T @ f64[3], f64[0].sum(0), f64[1].sum(0))
    for got, ref, other in zip(outs[0], want, outs[1]):
        assert_close(got, ref, dtype, scale=10)
        assert np.array_equal(got, other)
    for a, b in zip(given, (da_x, da_h, x, h)):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("cost, parts", [
    ([1], 2), ([5, 5], 2), ([3, 3, 3, 3, 3], 2), ([9, 1, 1, 1, 1, 1, 1, 1, 1, 1], 3),
    # the GRU's weight-gradient tasks at 2 threads: 2 shared blocks, then x, h per block
    # of the candidate's columns; in index order prange's halves were 686 : 294
    ([327, 327, 32, 131, 32, 131], 2), (list(range(1, 30)), 16)], ids=str)
def test_balance_deals_every_task_once_by_cost(cost, parts):
    cost = np.array(cost, np.int64)
    order, starts = parallel.balance(cost, parts)
    assert starts[0] == 0 and starts[-1] == len(cost) and np.all(np.diff(starts) >= 0)
    assert sorted(order) == list(range(len(cost)))
    loads = [cost[order[starts[w]:starts[w + 1]]].sum() for w in range(parts)]
    for w in range(parts):  # each worker's tasks in index order
        assert list(order[starts[w]:starts[w + 1]]) == sorted(order[starts[w]:starts[w + 1]])
    # longest-first greedy: within 4/3 of the best possible (a bound of the optimum)
    assert max(loads) <= 4 / 3 * max(cost.max(), -(-cost.sum() // parts))
    if len(cost) == 6:
        assert loads == [490, 490]


def test_weight_gradients_stay_accurate_over_long_sums():
    # float32 over T*B = 32768 rows: blocks of KC keep the error near one block's (3-6e-7
    # of the largest entry measured; one chain over all rows gave 3-6e-6)
    K, M, N = 32768, 64, 32
    rng = np.random.default_rng(0)
    da, x = rng.standard_normal((K, M)), rng.standard_normal((K, N))
    f = np.float32
    dw, db = np.empty((M, N), f), np.empty(M, f)
    grads.linear_grads(dw, np.empty((M, 0), f), db, np.empty(M, f), da.astype(f), da.astype(f),
                       M, x.astype(f), np.empty((0, 0), f), np.empty((K, 0), f), True)
    for got, want in ((dw, da.T @ x), (db, da.sum(axis=0))):
        assert np.abs(got - want).max() <= 1.5e-6 * np.abs(want).max()


def test_weight_gradient_sums_run_in_blocks_of_rows(dtype):
    # every entry is s_0 + s_1 + ..., s_b the fused multiply-adds of block b's KC rows in
    # row order from 0 (tiles' summation order), a bias entry likewise the sum of its
    # blocks' sums: terms -big, n ones | n ones give -big + n (exact); one chain over
    # all rows would lose every 1 (-big)
    big, n = _cancelling_terms(dtype)
    K, M, N = KC + n, 3, 2
    da = np.zeros((K, M), dtype)
    x = np.ones((K, N), dtype)
    da[0] = -big
    da[1:n + 1] = 1
    da[KC:] = 1
    dw = np.empty((M, N), dtype)
    db = np.empty(M, dtype)
    grads.linear_grads(dw, np.empty((M, 0), dtype), db, np.empty(M, dtype), da, da, M, x,
                       np.empty((0, 0), dtype), np.empty((K, 0), dtype), True)
    assert np.all(dw == -big + n) and np.all(db == -big + n)


def test_nan_and_inf_stay_in_their_row(dtype):
    R, K, N = MR + 3, 40, NR32 + 5
    a, m = _operands(R, K, N, dtype, seed=4)
    a[2, 7] = np.nan
    a[MR + 1, 3] = np.inf
    c = np.empty((R, N), dtype)
    _matmul(c, a, tiles.pack(m), False)
    assert np.isnan(c[2]).all()
    assert not np.isfinite(c[MR + 1]).any()
    others = np.delete(c, [2, MR + 1], axis=0)
    assert np.isfinite(others).all()


def test_empty_operands(dtype):
    m = np.ones((0, 5), dtype)
    c = np.full((3, 5), 7.0, dtype)
    _matmul(c, np.ones((3, 0), dtype), tiles.pack(m), True)
    assert (c == 7).all()
    _matmul(c, np.ones((3, 0), dtype), tiles.pack(m), False)
    assert (c == 0).all()


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("B", [3, 5, 2 * MR + 1])
def test_cells_on_each_row_path(name, B, dtype):
    # B = 3: rows one by one; 5: a partial tile; 2 MR + 1: full tiles and a single row.
    # H = 128..256 gives several panels and, for the backward's W_hh, several k blocks
    cell = CELLS[name]
    H = {"rnn_tanh": 256, "lstm": 128, "gru": 151}[name]
    p = cell.make(6, B, 7, H, dtype=dtype)
    out, fin, cache = cell.forward(p)
    r_out, r_fin, saved = cell.ref_forward(p)
    assert_close(out, r_out, dtype, what="out")
    rng = np.random.default_rng(1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    g = cell.backward(cache, dout, {})
    ref = cell.ref_backward(p, r_out, saved, dout, {})
    for n, a in ref.items():
        if a is not None:
            assert_close(g[n], a, dtype, scale=10, what=n)


def test_kernels_call_the_product_by_its_symbol_without_linking_it(dtype):
    # the product is compiled once per dtype and every caller resolves its symbol: were it
    # linked in, each parallel kernel would compile it again in five modules (1-3 s each)
    c = np.zeros((2, 3), dtype)
    a, m = _operands(2, 4, 3, dtype)
    _matmul_in_njit(c, 0, a, 0, 2, tiles.pack(m), False)
    assert_close(c, a @ m, dtype)
    ir = "\n".join(_matmul_in_njit.inspect_llvm().values())
    name = tiles._symbol(np.dtype(dtype).name)
    assert f'declare i32 @"{name}"' in ir or f"declare i32 @{name}" in ir
    defined = [line for line in ir.splitlines() if line.startswith("define")]
    assert defined and not [line for line in defined if "tiles7_matmul" in line or
                            "tiles4_row" in line or "tiles5_tile" in line]


@njit
def _columns_in_njit(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail):
    mp, at, c, sums = grads._scratch(da, a_head.shape[1] + b_head.shape[1], 0, da.shape[1])
    grads._grad_columns_call(dw_a, dw_b, db, da, a_head, a_tail, b_head, b_tail, mp, at, c,
                             sums, 0, da.shape[1])


def test_weight_gradients_call_their_column_kernel_by_its_symbol(dtype):
    # like the product: compiled once per dtype, never linked into its callers
    K, M, N = 5, 3, 2
    out = [np.empty(s, dtype) for s in ((M, N), (M, 0), M)]
    da, x = np.ones((K, M), dtype), np.ones((K, N), dtype)
    none = np.empty((0, 0), dtype)
    _columns_in_njit(*out, da, np.empty((0, N), dtype), x, none, none)
    assert np.all(out[0] == K) and np.all(out[2] == K)
    ir = "\n".join(_columns_in_njit.inspect_llvm().values())
    name = f"fastrnn_grads_columns_{np.dtype(dtype).name}_v{grads._GRAD_ABI}"
    assert f'declare i32 @"{name}"' in ir or f"declare i32 @{name}" in ir
    defined = [line for line in ir.splitlines() if line.startswith("define")]
    assert defined and not [line for line in defined if "_grad_columns" in line
                            or "_transpose_into" in line or "_pack_columns" in line]


@njit
def _both_forms(dc_a, dc_b, dbc, dr_a, dr_b, dbr, da, a_head, a_tail, b_head, b_tail):
    j1 = da.shape[1]
    Na, Nb = a_head.shape[1], b_head.shape[1]
    mp, at, c, sums = grads._scratch(da, Na + Nb, 0, j1)
    grads._grad_columns_call(dc_a, dc_b, dbc, da, a_head, a_tail, b_head, b_tail, mp, at, c,
                             sums, 0, j1)
    ap, bp, at, block = grads._row_scratch(da, Na, Nb, 0, j1)
    grads._grad_rows_call(dr_a, dr_b, dbr, da, a_head, a_tail, b_head, b_tail, ap, bp, at,
                          block, 0, j1)


# (K, B, M, Na, Nb)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3 * KC + 5, KC + 7, 265, 40, 50),
                                   (KC + 5, 3, 37, 270, 0), (9, 0, 20, 3, 0)], ids=str)
def test_both_forms_of_the_weight_gradients_give_the_same_bits(shape, dtype):
    # the transposed and the direct form sum every entry in the same order (tiles'
    # order over blocks of KC rows; the bias from the first row): linear_grads may pick
    # either by shape. A column of -0.0 checks the sums' start.
    K, B, M, Na, Nb = shape
    rng = np.random.default_rng(3)
    da = rng.standard_normal((K, M)).astype(dtype)
    da[:, 0] = -0.0
    a, b = rng.standard_normal((K, Na)).astype(dtype), rng.standard_normal((K, Nb)).astype(dtype)
    outs = [[np.full(s, np.nan, dtype) for s in ((M, Na), (M, Nb), M)] for _ in range(2)]
    _both_forms(*outs[0], *outs[1], da, a[:B], a[B:], b[:min(B, K)], b[min(B, K):])
    for got, other in zip(*outs):
        assert got.tobytes() == other.tobytes()
    assert_close(outs[1][0], da.astype(np.float64).T @ a, dtype, scale=10)
    assert_close(outs[1][1], da.astype(np.float64).T @ b, dtype, scale=10)
    assert_close(outs[1][2], da.astype(np.float64).sum(0), dtype, scale=10)
    assert np.signbit(outs[1][2][0])


@njit
def _vecmat(c, a, m, accumulate):
    # rows 1 of c and a (2, N) and (2, K): offsets into the data pointers
    rowvec.vecmat(_data(c), c.shape[1], _data(a), a.shape[1], m, accumulate)


@pytest.mark.parametrize("K, N", [(1, 1), (7, 128), (32, 96), (5, 33), (3, 16), (9, 200),
                                  (2, 8 * NR32 + 17)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "row_strided", "element_strided"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_vecmat_against_numpy(K, N, layout, accumulate, dtype):
    # the one-step kernels' product with unpacked weights: whole vectors of columns
    # (8, 4, 2, 1 at a time), the rest one by one; strided rows of m are read in place,
    # an m with gaps between elements goes through the plain loop
    rng = np.random.default_rng(4)
    big = rng.standard_normal((K, 2 * N + 3)).astype(dtype)
    m = {"contiguous": np.ascontiguousarray(big[:, :N]), "row_strided": big[:, 3:N + 3],
         "element_strided": big[:, : 2 * N : 2]}[layout]
    a = rng.standard_normal((2, K)).astype(dtype)
    c0 = rng.standard_normal((2, N)).astype(dtype)
    c = c0.copy() if accumulate else np.full((2, N), np.nan, dtype)
    _vecmat(c, a, m, accumulate)
    want = (c0[1].astype(np.float64) if accumulate else 0) + a[1].astype(np.float64) @ m
    assert_close(c[1], want.astype(dtype), dtype, scale=10)
    assert np.array_equal(c[0], c0[0]) or not accumulate and np.isnan(c[0]).all()


@njit
def _vecmat_t(y, m, v, accumulate):
    rowvec.vecmat_t(y, m, v, accumulate)


W32 = tiles.VECTOR_BYTES // 4  # float32 lanes


@pytest.mark.parametrize("K, N", [(1, 1), (1, 128), (8, 128), (13, 96), (7, 33), (15, 5),
                                  (21, 2 * W32 + 3), (3, W32 - 1), (32, 200)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "row_strided", "element_strided", "v_strided",
                                    "y_strided"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_vecmat_t_against_numpy(K, N, layout, accumulate, dtype):
    # the one-step backward kernels' product y (+)= m @ v: rows of m 8, 4, 2, 1 at a
    # time in vectors of columns; m or v with gaps between elements: the plain loop
    rng = np.random.default_rng(5)
    big = rng.standard_normal((K, 2 * N + 3)).astype(dtype)
    m = {"element_strided": big[:, : 2 * N : 2], "row_strided": big[:, 3:N + 3]}.get(
        layout, np.ascontiguousarray(big[:, :N]))
    vbig = rng.standard_normal(2 * N).astype(dtype)
    v = vbig[::2] if layout == "v_strided" else vbig[:N].copy()
    ybig = rng.standard_normal(2 * K).astype(dtype)
    y0 = ybig.copy()
    y = ybig[::2] if layout == "y_strided" else ybig[:K]
    if not accumulate:
        y[:] = np.nan
    m0, v0 = m.copy(), v.copy()
    _vecmat_t(y, m, v, accumulate)
    want = (y0[: 2 * K : 2] if layout == "y_strided" else y0[:K]).astype(np.float64)
    want = (want if accumulate else 0) + m.astype(np.float64) @ v
    assert_close(y, want.astype(dtype), dtype, scale=10)
    assert np.array_equal(m, m0) and np.array_equal(v, v0)
    if layout == "y_strided":  # the entries between y's are left alone
        assert np.array_equal(ybig[1::2], y0[1::2])
    if layout in ("contiguous", "row_strided") and not accumulate:
        # each row's sum has one order, whatever group of rows it went in
        for k in range(K):
            one = np.full(1, np.nan, dtype)
            _vecmat_t(one, np.ascontiguousarray(m[k : k + 1]), v, False)
            assert one[0] == y[k], k


def test_vecmat_t_nan_in_nan_out():
    m = np.ones((11, 37), np.float32)
    v = np.ones(37, np.float32)
    v[35] = np.nan  # in the last N % W columns (W = 8 or 16)
    y = np.zeros(11, np.float32)
    _vecmat_t(y, m, v, False)
    assert np.isnan(y).all()
    v[35], v[2] = 1, np.inf  # in the whole vectors; 0 * inf is NaN
    m[4, 2] = 0
    y[:] = 0
    _vecmat_t(y, m, v, True)
    assert np.isnan(y[4]) and np.isposinf(np.delete(y, 4)).all()


@njit(fastmath=set(FASTMATH))  # inlined code takes the caller's flags: fastrnn's
def _outer_acc_rows(m, u, v):
    rowvec.outer_acc_rows(m, u, v)


@pytest.mark.parametrize("R, K, N", [(1, 1, 1), (3, 5, 37), (16, 7, 8 * W32 + 3), (2, 9, 128),
                                     (5, 1, W32 - 1), (4, 3, 200)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "row_strided", "element_strided", "v_strided",
                                    "u_strided"])
def test_outer_acc_rows_against_numpy_and_row_by_row(R, K, N, layout, dtype):
    # the step backwards' weight gradients: m += u.T @ v, m's vectors held over the rows;
    # the same bits as one row at a time, in row order
    rng = np.random.default_rng(6)
    big = rng.standard_normal((K, 2 * N + 3)).astype(dtype)
    m = {"element_strided": big[:, : 2 * N : 2], "row_strided": big[:, 3:N + 3]}.get(
        layout, np.ascontiguousarray(big[:, :N]))
    ubig = rng.standard_normal((R, 2 * K)).astype(dtype)
    u = ubig[:, ::2] if layout == "u_strided" else ubig[:, :K].copy()
    vbig = rng.standard_normal((R, 2 * N)).astype(dtype)
    v = vbig[:, ::2] if layout == "v_strided" else vbig[:, :N].copy()
    m0, u0, v0, big0 = m.copy(), u.copy(), v.copy(), big.copy()
    _outer_acc_rows(m, u, v)
    assert_close(m, (m0.astype(np.float64) + u.astype(np.float64).T @ v).astype(dtype), dtype,
                 scale=10)
    assert np.array_equal(u, u0) and np.array_equal(v, v0)
    if layout == "row_strided":  # the columns around m's are left alone
        assert np.array_equal(big[:, :3], big0[:, :3]) and np.array_equal(
            big[:, N + 3:], big0[:, N + 3:])
    one_by_one = m0.copy()
    for r in range(R):
        _outer_acc_rows(one_by_one, np.ascontiguousarray(u[r : r + 1]),
                        np.ascontiguousarray(v[r : r + 1]))
    assert one_by_one.tobytes() == np.ascontiguousarray(m).tobytes()


@njit(fastmath=set(FASTMATH))
def _vecmat_rows(c, a, m, R, accumulate):
    # rows 1..R of c (R + 1, N + 2) and a (R + 1, K + 1): data pointers, offsets, strides
    rowvec.vecmat_rows(_data(c), c.shape[1] + 1, c.shape[1], _data(a), a.shape[1] + 1,
                       a.shape[1], R, m, accumulate)


@pytest.mark.parametrize("R, K, N", [(1, 1, 1), (tiles.MR, 7, 128), (tiles.MR + 1, 32, 96),
                                     (2 * tiles.MR + 3, 5, 33), (3, 9, 200),
                                     (tiles.MR, 4, 2 * NR32 + 5), (tiles.MR + 2, 3, 7)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "row_strided", "element_strided"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_vecmat_rows_against_numpy(R, K, N, layout, accumulate, dtype):
    # the one-step kernels' product for a batch: rows in groups of MR reading each row of
    # m once, the rest one by one; the entries around the rows are left alone
    rng = np.random.default_rng(7)
    big = rng.standard_normal((K, 2 * N + 3)).astype(dtype)
    m = {"contiguous": np.ascontiguousarray(big[:, :N]), "row_strided": big[:, 3:N + 3],
         "element_strided": big[:, : 2 * N : 2]}[layout]
    a = rng.standard_normal((R + 1, K + 1)).astype(dtype)
    c0 = rng.standard_normal((R + 1, N + 2)).astype(dtype)
    c = c0.copy()
    if not accumulate:
        c[1:, 1:N + 1] = np.nan
    _vecmat_rows(c, a, m, R, accumulate)
    want = (c0[1:, 1:N + 1].astype(np.float64) if accumulate else 0) + a[1:, 1:] @ m.astype(
        np.float64)
    assert_close(c[1:, 1:N + 1], want.astype(dtype), dtype, scale=10)
    around = np.ones(c.shape, bool)
    around[1:, 1:N + 1] = False
    assert np.array_equal(c[around], c0[around])
