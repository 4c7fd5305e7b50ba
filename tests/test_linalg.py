"""The matrix helpers behind every step's product, on each of their paths."""

import numpy as np
import pytest
from numba import njit

from fastrnn.kernels import linalg

from .cells import CELLS
from .conftest import assert_close


@njit
def _matmul(c, a, m, accumulate):
    linalg.matmul(c, a, m, accumulate)


# (R, K, N): hand matvec (R < 4), BLAS, and the hand loop for few rows and a large m
# (R <= 16, K*N >= 2^16), with odd sizes, column blocks and k remainders
SHAPES = [(1, 7, 9), (3, 512, 512), (4, 256, 255), (5, 257, 300), (16, 1760, 1760),
          (7, 3, 40000), (16, 512, 2048), (17, 512, 2048), (4, 16, 16)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul_every_path_against_numpy(shape, accumulate, dtype):
    R, K, N = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((R + 3, K + 5)).astype(dtype)[1:R + 1, 2:K + 2]  # a view
    m = rng.standard_normal((K, N)).astype(dtype)
    c0 = rng.standard_normal((R, N)).astype(dtype)
    c = c0.copy()
    _matmul(c, a, m, accumulate)
    want = (c0.astype(np.float64) if accumulate else 0) + a.astype(np.float64) @ m
    assert_close(c, want.astype(dtype) if dtype == np.float32 else want, dtype, scale=10)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_cells_with_few_rows_and_large_weights(name, dtype):
    # B = 5 rows and H = 128..256: the recurrent products run in the hand loop
    cell = CELLS[name]
    B, H = 5, {"rnn_tanh": 256, "lstm": 128, "gru": 151}[name]
    assert linalg.BLAS_MIN_ROWS <= B <= linalg.HAND_MAX_ROWS
    assert H * cell.gates * H >= linalg.HAND_MIN_ELEMENTS
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
