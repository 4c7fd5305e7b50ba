"""The vectorisable activations against NumPy, in ulps of the result."""

import numpy as np
import pytest

from fastrnn._config import jit
from fastrnn.kernels import activations as A
from fastrnn.kernels.tiles import VECTOR_BYTES, _data


@jit
def _apply(code, x, y):
    # code 0: tanh, 1: sigmoid, 2: exp
    for i in range(x.shape[0]):
        if code == 0:
            y[i] = A.tanh(x[i])
        elif code == 1:
            y[i] = A.sigmoid(x[i])
        else:
            y[i] = A.exp(x[i])


def _exact(code, x):
    x = x.astype(np.float64)
    if code == 0:
        return np.tanh(x)
    if code == 1:
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    with np.errstate(over="ignore"):
        return np.exp(x)


def _ulps(y, exact, dtype):
    # error in units of the spacing of `dtype` at the exact value
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    return np.abs(y.astype(np.float64) - exact) / spacing


def _points(dtype, lo, hi):
    rng = np.random.default_rng(0)
    pts = [rng.uniform(lo, hi, 100_000), rng.uniform(-1, 1, 20_000),
           rng.uniform(-1e-3, 1e-3, 5_000), np.logspace(-30, np.log10(hi), 5_000),
           -np.logspace(-30, np.log10(hi), 5_000), [0.0, 0.625, -0.625, 4e-4, 9.0, 0.5]]
    return np.concatenate(pts).astype(dtype)


# max ulps measured: tanh 4.4 (float32) / 1 (float64), sigmoid 2.0 / 2, exp 1 / 2
LIMITS = {(0, np.float32): 5, (0, np.float64): 2, (1, np.float32): 3, (1, np.float64): 3,
          (2, np.float32): 2, (2, np.float64): 2}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code, name", [(0, "tanh"), (1, "sigmoid"), (2, "exp")])
def test_accuracy_in_ulps(code, name, dtype):
    hi = 80.0 if dtype == np.float32 else 700.0
    x = _points(dtype, -hi if code != 2 else -80.0, hi)
    y = np.empty_like(x)
    _apply(code, x, y)
    exact = _exact(code, x)
    tiny = np.finfo(dtype).tiny
    keep = np.abs(exact) > tiny  # subnormal results are flushed to zero by design
    assert _ulps(y[keep], exact[keep], dtype).max() <= LIMITS[(code, dtype)], name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e4, -1e4, 1e30, -1e30], dtype)
    y = np.empty_like(x)
    _apply(0, x, y)
    np.testing.assert_array_equal(y, [np.nan, 1, -1, 0, 1, -1, 1, -1])
    _apply(1, x, y)
    np.testing.assert_array_equal(y, [np.nan, 1, 0, 0.5, 1, 0, 1, 0])
    _apply(2, x, y)
    np.testing.assert_array_equal(y, [np.nan, np.inf, 0, 1, np.inf, 0, np.inf, 0])


@jit
def _activate(h, b, code):
    # the kernels' activate works on data pointers
    A.activate(_data(h), 0, _data(b), h.shape[0], code)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_helpers_match_numpy(dtype):
    rng = np.random.default_rng(1)
    a0 = (4 * rng.standard_normal(37)).astype(dtype)
    b = rng.standard_normal(37).astype(dtype)
    a = a0 + b
    dh = rng.standard_normal(37).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-15
    for name, code in A.ACTIVATIONS.items():
        h = a0.copy()
        _activate(h, b, code)  # act(a0 + b)
        exact = {"tanh": np.tanh(a), "relu": np.maximum(a, 0), "identity": a,
                 "sigmoid": _exact(1, a).astype(dtype)}[name]
        np.testing.assert_allclose(h, exact, rtol=tol, atol=tol)
        da = np.empty_like(a)
        A.activation_backward(da, dh, h, code)
        d = {"tanh": 1 - h * h, "relu": (h > 0).astype(dtype), "identity": np.ones_like(h),
             "sigmoid": h * (1 - h)}[name]
        np.testing.assert_allclose(da, dh * d, rtol=tol, atol=tol)
    # relu: NaN stays NaN forward, and its gradient passes (as torch.relu's does)
    h = np.array([np.nan, -1.0, 2.0], dtype)
    _activate(h, np.zeros(3, dtype), A.RELU)
    assert np.isnan(h[0]) and h[1] == 0 and h[2] == 2
    da = np.empty(3, dtype)
    A.activation_backward(da, np.ones(3, dtype), h, A.RELU)
    np.testing.assert_array_equal(da, [1, 0, 1])


@jit
def _rows(code, x, off, n):
    p = _data(x)
    if code == 0:
        A.tanh_row(p, off, n)
    else:
        A.sigmoid_row(p, off, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", [0, 1])
def test_vector_rows_give_the_scalar_bits(code, dtype):
    # the explicit vectors (and their masked tail) and the scalar function are the same
    # IR: the same bits, whatever the position in the row; nothing past the row written
    x = _points(dtype, -800.0, 800.0)
    x = np.concatenate([x, np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)])
    scalar = np.empty_like(x)
    _apply(code, x, scalar)
    rows = x.copy()
    _rows(code, rows, 0, x.shape[0])
    np.testing.assert_array_equal(rows, scalar)
    W = A.ROW_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize  # lanes per step
    for n in sorted({1, 2, W // 2, W - 1, W, W + 1, 2 * W + 3, 37}):
        for off in (0, 3):
            y = x[:100].copy()
            _rows(code, y, off, n)
            expect = x[:100].copy()
            expect[off : off + n] = scalar[off : off + n]
            np.testing.assert_array_equal(y, expect, err_msg=f"n={n}, off={off}")


ROW_AT_A_PAGE_END = """
import ctypes, mmap, sys
import numpy as np
from tests.test_activations import _rows
page = mmap.PAGESIZE
buf = mmap.mmap(-1, 2 * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.mprotect(ctypes.c_void_p(base + page), page, 0) == 0  # PROT_NONE
for dtype in (np.float32, np.float64):
    x = np.frombuffer(buf, dtype, count=page // np.dtype(dtype).itemsize)
    for n in (1, 3, 37):  # a row ending at the page's end: its tail is a part vector
        x[-n:] = 0.5
        _rows(0, x, x.shape[0] - n, n)
        assert np.allclose(x[-n:], np.tanh(0.5), rtol=1e-6, atol=0), x[-n:]
print("ok")
"""


def test_the_tail_of_a_row_reads_nothing_past_it():
    # the last part vector of a row is read and written through masks: a row that ends
    # where the readable memory ends must not fault (run apart: a fault kills the process)
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", ROW_AT_A_PAGE_END], capture_output=True,
                         text=True, cwd=root)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_flushes_below_the_normal_range(dtype):
    # exp(-|x|) under the smallest normal number is 0 (one-factor scaling); just above
    # it the result is normal, and the whole way down the sigmoid never increases
    lo = np.log(np.finfo(dtype).tiny)
    x = np.concatenate([np.linspace(lo - 3, lo + 3, 4001), [lo - 1e-3, lo + 1e-3]]).astype(dtype)
    y = np.empty_like(x)
    _apply(1, x, y)
    assert np.all(y[x < lo] == 0) and np.all(y[x > lo] >= np.finfo(dtype).tiny)
    assert np.all(np.diff(y[:4001]) >= 0)
    _apply(1, -x, y)  # and 1 above
    assert np.all(y[x < lo] == 1)


def test_python_fallbacks_agree_with_numpy():
    x = np.linspace(-50, 50, 101)
    np.testing.assert_allclose(A.tanh(x), np.tanh(x))
    np.testing.assert_allclose(A.exp(x), np.exp(x))
    with np.errstate(over="raise"):
        s = A.sigmoid(np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])
