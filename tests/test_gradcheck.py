"""Gradients against SciPy finite differences (float64), for every cell.

The loss is L = sum(out * dout) + sum(h_n * dh_n) (+ sum(c_n * dc_n)), the quantity
backward differentiates. Full BPTT is checked against finite differences of the
forward itself; truncated BPTT against finite differences of its definition: the sum
over entry steps t of L_t, where L_t recomputes h_t from the state before its window
held constant.
"""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from .cells import CELLS

EPS = 1e-7  # forward differences: truncation ~eps, rounding ~1e-16/eps


def _problem(cell, seed=0):
    p = cell.make(6, 3, 2, 4, seed=seed)
    if cell.nonlinearity == "relu":  # keep pre-activations away from the kink at 0
        p["b_ih"] = p["b_ih"] + 0.5
    rng = np.random.default_rng(seed + 10)
    dout = rng.standard_normal(cell.forward(p)[0].shape)
    dfin = {n: rng.standard_normal(s) for n, s in cell.final_shapes(p).items()}
    return p, dout, dfin


def _loss(cell, p, dout, dfin):
    out, fin, _ = cell.forward(p, cache=False)
    return float(np.sum(out * dout) + sum(np.sum(fin[n] * dfin[n]) for n in dfin))


def _truncated_loss(cell, p, dout, dfin, k, states):
    # sum_t L_t with the state before the window of entry t held at `states`
    T = p["x"].shape[0]
    total = 0.0
    for t in range(T):
        s0 = max(0, t - k + 1)
        q = dict(p, x=p["x"][s0:t + 1])
        if s0 > 0:
            q.update({name: seq[s0 - 1] for name, seq in states.items()})
        out, fin, _ = cell.forward(q, cache=False)
        total += float(np.sum(out[-1] * dout[t]))
        if t == T - 1:
            total += sum(float(np.sum(fin[n] * dfin[n])) for n in dfin)
    return total


def _fd_grad(f, p, name):
    shape = p[name].shape

    def g(flat):
        return f(dict(p, **{name: flat.reshape(shape)}))

    return approx_fprime(p[name].ravel().copy(), g, EPS).reshape(shape)


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("name", list(CELLS))
def test_full_bptt_matches_finite_differences(name):
    cell = CELLS[name]
    p, dout, dfin = _problem(cell)
    _, _, cache = cell.forward(p)
    g = cell.backward(cache, dout, dfin)
    for param in cell.params:
        fd = _fd_grad(lambda q: _loss(cell, q, dout, dfin), p, param)
        assert _rel_err(g[param], fd) < 1e-6, param


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_sigmoid", "lstm", "lstm_proj", "gru"])
def test_truncated_bptt_matches_finite_differences_of_its_definition(name, k):
    cell = CELLS[name]
    p, dout, dfin = _problem(cell, seed=1)
    out, _, cache = cell.forward(p)
    g = cell.backward(cache, dout, dfin, truncate=k)
    states = {"h0": out.copy()}  # the constants: states before each window, at the base
    if cell.kind == "lstm":
        states["c0"] = cache.cs.copy()
    for param in cell.params:
        fd = _fd_grad(lambda q: _truncated_loss(cell, q, dout, dfin, k, states), p, param)
        assert _rel_err(g[param], fd) < 1e-6, (param, k)


def test_finite_difference_check_detects_a_wrong_gradient():
    # the check itself must be able to fail: a gradient with one wrong entry, and a
    # truncated gradient compared with full-BPTT differences, are both rejected
    cell = CELLS["lstm"]
    p, dout, dfin = _problem(cell)
    _, _, cache = cell.forward(p)
    g = cell.backward(cache, dout, dfin)
    fd = _fd_grad(lambda q: _loss(cell, q, dout, dfin), p, "w_hh")
    assert _rel_err(g["w_hh"], fd) < 1e-6
    bad = g["w_hh"].copy()
    bad[0, 0] += 1e-4 * np.abs(bad).max()
    assert _rel_err(bad, fd) > 1e-5
    g1 = cell.backward(cache, dout, dfin, truncate=1)
    assert _rel_err(g1["w_hh"], fd) > 1e-2
