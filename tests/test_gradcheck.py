"""Gradients against SciPy finite differences (float64).

The loss is L = sum(out * dout) + sum(h_n * dh_n), the quantity elman_backward
differentiates. Full BPTT is checked against finite differences of the forward
itself; truncated BPTT against finite differences of its definition: the sum over
entry steps t of L_t, where L_t recomputes h_t from the state before its window
held constant.
"""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

import fastrnn

from .conftest import NONLINEARITIES, make_elman

PARAMS = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
GRAD_NAME = {"x": "dx", "h0": "dh0", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih",
             "b_hh": "db_hh"}
EPS = 1e-7  # forward differences: truncation ~eps, rounding ~1e-16/eps


def _loss(p, dout, dh_n, nonlinearity):
    out, h_n, _ = fastrnn.elman_forward(**p, nonlinearity=nonlinearity, cache=False)
    return float(np.sum(out * dout) + np.sum(h_n * dh_n))


def _truncated_loss(p, dout, dh_n, nonlinearity, k, states):
    # sum_t L_t with h_{t-k} (the state before the window of entry t) held at `states`
    T = p["x"].shape[0]
    total = 0.0
    for t in range(T):
        s0 = max(0, t - k + 1)
        h_start = p["h0"] if s0 == 0 else states[s0 - 1]
        q = dict(p, x=p["x"][s0:t + 1], h0=h_start)
        out, h_t, _ = fastrnn.elman_forward(**q, nonlinearity=nonlinearity, cache=False)
        total += float(np.sum(h_t * dout[t]))
        if t == T - 1:
            total += float(np.sum(h_t * dh_n))
    return total


def _fd_grad(f, p, name):
    shape = p[name].shape

    def g(flat):
        return f(dict(p, **{name: flat.reshape(shape)}))

    return approx_fprime(p[name].ravel().copy(), g, EPS).reshape(shape)


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


def _problem(nonlinearity, seed=0):
    p = make_elman(6, 3, 2, 4, seed=seed)
    if nonlinearity == "relu":  # keep pre-activations away from the kink at 0
        p["b_ih"] = p["b_ih"] + 0.5
    rng = np.random.default_rng(seed + 10)
    dout = rng.standard_normal((6, 3, 4))
    dh_n = rng.standard_normal((3, 4))
    return p, dout, dh_n


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_full_bptt_matches_finite_differences(nonlinearity):
    p, dout, dh_n = _problem(nonlinearity)
    _, _, cache = fastrnn.elman_forward(**p, nonlinearity=nonlinearity)
    g = fastrnn.elman_backward(cache, dout, dh_n)
    for name in PARAMS:
        fd = _fd_grad(lambda q: _loss(q, dout, dh_n, nonlinearity), p, name)
        assert _rel_err(getattr(g, GRAD_NAME[name]), fd) < 1e-6, name


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_truncated_bptt_matches_finite_differences_of_its_definition(nonlinearity, k):
    p, dout, dh_n = _problem(nonlinearity, seed=1)
    out, _, cache = fastrnn.elman_forward(**p, nonlinearity=nonlinearity)
    g = fastrnn.elman_backward(cache, dout, dh_n, truncate=k)
    states = out.copy()  # the constants: states before each window, at the base point
    for name in PARAMS:
        fd = _fd_grad(lambda q: _truncated_loss(q, dout, dh_n, nonlinearity, k, states), p, name)
        assert _rel_err(getattr(g, GRAD_NAME[name]), fd) < 1e-6, (name, k)


def test_finite_difference_check_detects_a_wrong_gradient():
    # the check itself must be able to fail: a gradient with one wrong entry, and
    # the truncated gradient compared with full-BPTT differences, are both rejected
    p, dout, dh_n = _problem("tanh")
    _, _, cache = fastrnn.elman_forward(**p)
    g = fastrnn.elman_backward(cache, dout, dh_n)
    fd = _fd_grad(lambda q: _loss(q, dout, dh_n, "tanh"), p, "w_hh")
    bad = g.dw_hh.copy()
    bad[0, 0] += 1e-4 * np.abs(bad).max()
    assert _rel_err(bad, fd) > 1e-5
    g1 = fastrnn.elman_backward(cache, dout, dh_n, truncate=1)
    assert _rel_err(g1.dw_hh, fd) > 1e-2
