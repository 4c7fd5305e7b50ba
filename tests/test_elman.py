"""Elman specifics: the truncation mechanics, the oracle itself, kernels called from
user @njit code. (Comparisons with the reference for every cell: test_cells.py.)"""

import numpy as np
import pytest
from numba import njit

import fastrnn
from fastrnn import kernels
from fastrnn.reference import elman as ref

from .conftest import NONLINEARITIES, assert_close, make_elman


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_truncated_kernel_with_window_T_equals_full_bptt(nonlinearity, dtype):
    # the batched-window algorithm itself, run with k = T-1 and k = T (no shortcut)
    T, B, I, H = 6, 5, 3, 4
    p = make_elman(T, B, I, H, dtype=dtype)
    out, h_n, cache = fastrnn.elman_forward(**p, nonlinearity=nonlinearity)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    act = kernels.activations.ACTIVATIONS[nonlinearity]
    w = cache.inputs
    w_hh_p = kernels.tiles.pack(w.w_hh)

    def run(k):
        da = np.empty_like(out)
        dh0 = np.empty_like(w.h0)
        dh_n = np.zeros_like(w.h0)
        lengths = np.full(B, T, np.int64)
        if k is None:
            kernels.elman_backward_recurrence(da, dh0, dout, dh_n, out, w_hh_p, act, lengths,
                                              False)
        else:
            kernels.elman_truncated_recurrence(da, np.empty((0, k, B, H), dtype), dh0,
                                               dout[:, None], dh_n, out, w_hh_p, act, k, lengths,
                                               False)
        return da, dh0

    da_full, dh0_full = run(None)
    da_t, dh0_t = run(T)
    assert_close(da_t, da_full, dtype, scale=10)
    assert_close(dh0_t, dh0_full, dtype, scale=10)
    # one step shorter: only the window entering at the last step loses its reach to h0
    r = ref.elman_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, dout, None, nonlinearity,
                           truncate=T - 1)
    da_s, dh0_s = run(T - 1)
    assert_close(dh0_s, r["dh0"], dtype, scale=10)


def test_truncate_one_keeps_only_local_gradients():
    # k = 1: every step sees only its own dout, so dh0 = (dout_0 * act'(h_0)) W_hh
    p = make_elman(5, 2, 3, 4)
    out, _, cache = fastrnn.elman_forward(**p, nonlinearity="identity")
    dout = np.random.default_rng(0).standard_normal(out.shape)
    g = fastrnn.elman_backward(cache, dout, truncate=1)
    np.testing.assert_allclose(g.dh0, dout[0] @ p["w_hh"], rtol=1e-13)
    np.testing.assert_allclose(g.db_ih, dout.sum(axis=(0, 1)), rtol=1e-13)


def test_reference_truncation_matches_explicit_windows():
    # check the oracle: the reference's window construction against the definition
    # written out for T = 3, k = 2 with identity activation (everything linear)
    p = make_elman(3, 1, 2, 2, bias=False)
    x, h0, w_ih, w_hh = p["x"], p["h0"], p["w_ih"], p["w_hh"]
    out, _ = ref.elman_forward(x, h0, w_ih, w_hh, nonlinearity="identity")
    dout = np.random.default_rng(3).standard_normal(out.shape)
    g = ref.elman_backward(x, h0, w_ih, w_hh, out, dout, None, "identity", truncate=2)
    # window t=0: steps {0} -> reaches h0; t=1: steps {1, 0} -> reaches h0; t=2: {2, 1}
    dh0 = dout[0] @ w_hh + dout[1] @ w_hh @ w_hh
    np.testing.assert_allclose(g["dh0"], dh0, rtol=1e-13)
    dx2 = dout[2] @ w_ih
    dx1 = (dout[1] + dout[2] @ w_hh) @ w_ih
    dx0 = (dout[0] + dout[1] @ w_hh) @ w_ih  # dout[2] does not reach step 0
    np.testing.assert_allclose(g["dx"], np.stack([dx0, dx1, dx2]), rtol=1e-13)


@njit(cache=False)
def _user_loop(x, h0, w_ih, w_hh, b, act, dout, dh_n, k):
    # a user's own @njit code calling the whole-sequence kernels
    T, B, I = x.shape
    H = w_hh.shape[0]
    out = np.empty((T, B, H), x.dtype)
    h_n = np.empty((B, H), x.dtype)
    kernels.elman_forward(out, h_n, x, h0, w_ih, w_hh, b, act)
    dx = np.empty_like(x)
    dh0 = np.empty_like(h0)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db = np.empty_like(b)
    kernels.elman_backward(dx, dh0, dw_ih, dw_hh, db, dout, dh_n, x, h0, w_ih, w_hh, out, act, k)
    return out, h_n, dx, dh0, dw_ih, dw_hh, db


@pytest.mark.parametrize("k", [0, 2])
def test_kernels_callable_from_user_njit_code(k):
    T, B, I, H = 7, 5, 3, 4
    p = make_elman(T, B, I, H)
    b = p["b_ih"] + p["b_hh"]
    dout = np.random.default_rng(4).standard_normal((T, B, H))
    dh_n = np.zeros((B, H))
    out, h_n, dx, dh0, dw_ih, dw_hh, db = _user_loop(p["x"], p["h0"], p["w_ih"], p["w_hh"], b,
                                                     kernels.TANH, dout, dh_n, k)
    r_out, r_h_n = ref.elman_forward(**p)
    assert_close(out, r_out, np.float64)
    r = ref.elman_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], r_out, dout, dh_n,
                           truncate=k or None)
    for name, got in zip(["dx", "dh0", "dw_ih", "dw_hh", "db"], [dx, dh0, dw_ih, dw_hh, db]):
        assert_close(got, r[name], np.float64, scale=10, what=name)
