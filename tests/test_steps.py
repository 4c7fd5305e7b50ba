"""One-step kernels for user @njit loops: agree with the sequence kernels and the
reference, forward and backward; callable from user code; allocate nothing."""

import numpy as np
import pytest
from numba import njit

import fastrnn
from fastrnn import kernels

from .cells import CELLS
from .conftest import assert_close


@njit
def _run_steps(kind, act, xs, h0, c0, w_ih_t, w_hh_t, b, b_ih, b_hh, w_hr_t):
    # a user-style loop: all buffers preallocated, one step call per time step
    T, B, _ = xs.shape
    P = h0.shape[1]
    H = c0.shape[1]
    hs = np.empty((T + 1, B, P), xs.dtype)
    cs = np.empty((T + 1, B, H), xs.dtype)
    gates = np.empty((T, B, 6 * H), xs.dtype)
    hs[0] = h0
    cs[0] = c0
    for t in range(T):
        if kind == 0:
            kernels.elman_step(hs[t + 1], xs[t], hs[t], w_ih_t, w_hh_t, b, act)
        elif kind == 1:
            kernels.lstm_step(hs[t + 1], cs[t + 1], gates[t, :, : 4 * H], xs[t], hs[t], cs[t],
                              w_ih_t, w_hh_t, b, w_hr_t)
        else:
            kernels.gru_step(hs[t + 1], gates[t], xs[t], hs[t], w_ih_t, w_hh_t, b_ih, b_hh)
    return hs, cs, gates


@njit
def _run_back(kind, act, xs, hs, cs, gates, dout, w, w_ih_t, w_hh_t, w_hr_t, dw_ih_t, dw_hh_t,
              db, db_hh, dw_hr_t, dfin_h, dfin_c):
    # backpropagation through time written by a user with the step backward kernels
    T, B, I = xs.shape
    P = hs.shape[2]
    H = cs.shape[2]
    dx = np.empty((T, B, I), xs.dtype)
    dh = dfin_h.copy()
    dc = dfin_c.copy()
    dh_prev = np.empty_like(dh)
    dc_prev = np.empty_like(dc)
    da = np.empty((B, 6 * H), xs.dtype)
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        if kind == 0:
            kernels.elman_step_backward(dx[t], dh_prev, da[:, :H], dw_ih_t, dw_hh_t, db, dh, xs[t],
                                        hs[t], hs[t + 1], w_ih_t, w_hh_t, act)
        elif kind == 1:
            kernels.lstm_step_backward(dx[t], dh_prev, dc_prev, da[:, : 4 * H], dw_ih_t, dw_hh_t,
                                       db, dw_hr_t, dh, dc, xs[t], hs[t], cs[t],
                                       gates[t, :, : 4 * H], cs[t + 1], w_ih_t, w_hh_t, w_hr_t)
            dc[:] = dc_prev
        else:
            kernels.gru_step_backward(dx[t], dh_prev, da, dw_ih_t, dw_hh_t, db, db_hh, dh, xs[t],
                                      hs[t], gates[t], w_ih_t, w_hh_t)
        dh[:] = dh_prev
    return dx, dh, dc


KIND = {"elman": 0, "lstm": 1, "gru": 2}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (6, 1, 3, 5), (5, 3, 7, 32), (4, 5, 4, 9),
                                   (3, 9, 6, 20)], ids=str)  # B = 9: rows in groups of MR
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "rnn_sigmoid", "rnn_identity", "lstm",
                                  "lstm_proj", "gru"])
def test_steps_agree_with_the_sequence_kernels_and_the_reference(name, shape, dtype):
    cell = CELLS[name]
    p = cell.make(*shape, dtype=dtype, seed=2)
    T, B, I, H, P = cell.sizes(p)
    out, fin, cache = cell.forward(p)
    r_out, r_fin, saved = cell.ref_forward(p)
    w = fastrnn.step_weights(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p.get("w_hr"))
    act = kernels.activations.ACTIVATIONS[cell.nonlinearity]
    c0 = p.get("c0", np.zeros((B, H), dtype))
    hs, cs, gates = _run_steps(KIND[cell.kind], act, p["x"], p["h0"], c0, w.w_ih_t, w.w_hh_t, w.b,
                               w.b_ih, w.b_hh, w.w_hr_t)
    assert_close(hs[1:], out, dtype, what="steps vs sequence")
    assert_close(hs[1:], r_out, dtype, what="steps vs reference")
    if cell.kind == "lstm":
        assert_close(cs[-1], r_fin["c_n"], dtype, what="c_n")

    rng = np.random.default_rng(3)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dfin = {n: rng.standard_normal(a.shape).astype(dtype) for n, a in fin.items()}
    r = cell.ref_backward(p, r_out, saved, dout, dfin)
    dw_ih_t, dw_hh_t = np.zeros_like(w.w_ih_t), np.zeros_like(w.w_hh_t)
    db, db_hh, dw_hr_t = np.zeros_like(w.b), np.zeros_like(w.b), np.zeros_like(w.w_hr_t)
    dx, dh0, dc0 = _run_back(KIND[cell.kind], act, p["x"], hs, cs, gates, dout, w, w.w_ih_t,
                             w.w_hh_t, w.w_hr_t, dw_ih_t, dw_hh_t, db, db_hh, dw_hr_t,
                             dfin["h_n"], dfin.get("c_n", np.zeros((B, H), dtype)))
    s = 10
    assert_close(dx, r["x"], dtype, scale=s, what="dx")
    assert_close(dh0, r["h0"], dtype, scale=s, what="dh0")
    assert_close(dw_ih_t.T, r["w_ih"], dtype, scale=s, what="dw_ih")
    assert_close(dw_hh_t.T, r["w_hh"], dtype, scale=s, what="dw_hh")
    assert_close(db, r["b_ih"], dtype, scale=s, what="db")
    if cell.kind == "gru":
        assert_close(db_hh, r["b_hh"], dtype, scale=s, what="db_hh")
    if cell.kind == "lstm":
        assert_close(dc0, r["c0"], dtype, scale=s, what="dc0")
        if cell.proj:
            assert_close(dw_hr_t.T, r["w_hr"], dtype, scale=s, what="dw_hr")


ALLOC_SCRIPT = """
import numpy as np, fastrnn
from numba import njit
from numba.core.runtime import rtsys
from fastrnn import kernels as K

rng = np.random.default_rng(0)
B, I, H, P = 2, 3, 8, 5
f = np.float32
x, h, hp, c = (rng.standard_normal(s).astype(f) for s in [(B, I), (B, H), (B, P), (B, H)])
we = fastrnn.step_weights(rng.standard_normal((H, I)), rng.standard_normal((H, H)), dtype=f)
wl = fastrnn.step_weights(rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, P)),
                          w_hr=rng.standard_normal((P, H)), dtype=f)
wg = fastrnn.step_weights(rng.standard_normal((3 * H, I)), rng.standard_normal((3 * H, H)), dtype=f)
o, o2, o3, o4, o5 = (np.zeros(s, f) for s in [(B, H), (B, P), (B, H), (B, 6 * H), (B, I)])

@njit
def loop(n, x, h, hp, c, o, o2, o3, o4, o5, we, wl, wg):
    for i in range(n):
        K.elman_step(o, x, h, we[0], we[1], we[2], K.TANH)
        K.elman_step_backward(o5, o3, o, we[0], we[1], we[2], h, x, h, o, we[0], we[1], K.TANH)
        K.lstm_step(o2, o3, o4[:, :4 * H], x, hp, c, wl[0], wl[1], wl[2], wl[5])
        K.lstm_step_backward(o5, o2, o3, o4[:, :4 * H], wl[0], wl[1], wl[2], wl[5], hp, c, x, hp,
                             c, o4[:, :4 * H], c, wl[0], wl[1], wl[5])
        K.gru_step(o, o4, x, h, wg[0], wg[1], wg[3], wg[4])
        K.gru_step_backward(o5, o3, o4, wg[0], wg[1], wg[3], wg[4], h, x, h, o4, wg[0], wg[1])

def allocations(n):  # passing arrays in from Python costs a few (their meminfos)
    before = rtsys.get_allocation_stats().alloc
    loop(n, x, h, hp, c, o, o2, o3, o4, o5, we, wl, wg)
    return rtsys.get_allocation_stats().alloc - before

allocations(1)
print(allocations(1000) - allocations(0))
"""


def test_steps_allocate_nothing():
    # count Numba's allocations (NRT statistics) over 1000 calls of every step kernel
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    res = subprocess.run([sys.executable, "-c", ALLOC_SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "0"
    # and the count does see an allocating function
    bad = ALLOC_SCRIPT.replace("K.gru_step(o, o4,", "o4.copy()\n        K.gru_step(o, o4,")
    res = subprocess.run([sys.executable, "-c", bad], env=env, capture_output=True, text=True,
                         check=True)
    assert int(res.stdout.strip()) >= 1000


def test_step_weights_from_layers_and_torch_state_dicts():
    lstm = fastrnn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=np.float64,
                        seed=0)
    w = fastrnn.step_weights_from(lstm, layer=1, reverse=True)
    sd = lstm.state_dict()
    assert np.array_equal(w.w_ih_t, sd["weight_ih_l1_reverse"].T)
    assert np.array_equal(w.b, sd["bias_ih_l1_reverse"] + sd["bias_hh_l1_reverse"])
    assert np.array_equal(w.w_hr_t, sd["weight_hr_l1_reverse"].T)
    assert w.w_ih_t.flags.c_contiguous and w.w_ih_t.dtype == np.float64
    w2 = fastrnn.step_weights_from(sd, layer=1, reverse=True, dtype=np.float32)
    assert w2.w_hh_t.dtype == np.float32
    with pytest.raises(ValueError, match="no weight_ih_l2"):
        fastrnn.step_weights_from(lstm, layer=2)
    with pytest.raises(TypeError, match="source must be a fastrnn layer"):
        fastrnn.step_weights_from([1, 2])
    gru = fastrnn.GRU(2, 3, bias=False, seed=0)
    wg = fastrnn.step_weights_from(gru)
    assert not np.any(wg.b_ih) and not np.any(wg.b_hh) and wg.w_hr_t.shape == (0, 0)


_lstm_step_inline = njit(inline="always")(kernels.lstm_step.py_func)  # docs/simulation.md
_gru_step_inline = njit(inline="always")(kernels.gru_step.py_func)
_elman_step_inline = njit(inline="always")(kernels.elman_step.py_func)


@njit(fastmath={"contract", "nsz"})  # fastrnn's flags (fastrnn._config.FASTMATH)
def _steps_both_ways(n, x, h, c, w_ih_t, w_hh_t, b, b_hh, w_hr_t, gates):
    # n steps of each cell called and inlined into this loop, from the same states
    P, H = h.shape[1], c.shape[1]
    hs = np.empty((6, 1, P), x.dtype)
    cs = np.empty((2, 1, H), x.dtype)
    he, hi = h.copy(), h.copy()
    ce, ci = c.copy(), c.copy()
    ge, gi = gates.copy(), gates.copy()
    out = np.empty((6, n, P), x.dtype)
    for t in range(n):
        kernels.lstm_step(hs[0], cs[0], ge, x, he, ce, w_ih_t, w_hh_t, b, w_hr_t)
        _lstm_step_inline(hs[1], cs[1], gi, x, hi, ci, w_ih_t, w_hh_t, b, w_hr_t)
        he[:] = hs[0]
        hi[:] = hs[1]
        ce[:] = cs[0]
        ci[:] = cs[1]
        out[0, t] = hs[0, 0]
        out[1, t] = hs[1, 0]
    if w_hr_t.shape[0] == 0:  # the Elman and GRU steps on the first H columns
        g = w_hh_t.shape[1] // 4
        for t in range(n):
            kernels.elman_step(hs[2], x, h, w_ih_t[:, :g], w_hh_t[:, :g], b[:g], kernels.TANH)
            _elman_step_inline(hs[3], x, h, w_ih_t[:, :g], w_hh_t[:, :g], b[:g], kernels.TANH)
            kernels.gru_step(hs[4], gates[:, : 6 * g], x, h, w_ih_t[:, : 3 * g],
                             w_hh_t[:, : 3 * g], b[: 3 * g], b_hh[: 3 * g])
            _gru_step_inline(hs[5], gates[:, : 6 * g], x, h, w_ih_t[:, : 3 * g],
                             w_hh_t[:, : 3 * g], b[: 3 * g], b_hh[: 3 * g])
            h[:] = hs[2]
            out[2, t] = hs[2, 0]
            out[3, t] = hs[3, 0]
            out[4, t] = hs[4, 0]
            out[5, t] = hs[5, 0]
    return out


@pytest.mark.parametrize("proj", [False, True], ids=["plain", "proj"])
def test_steps_inlined_into_a_loop_match_the_calls(proj, dtype):
    # docs/simulation.md: njit(inline="always")(step.py_func) in a loop compiled with
    # fastrnn's fastmath flags gives the called kernel's bits (inlined code takes the
    # caller's flags: without `contract` a few scalar sums would round apart)
    rng = np.random.default_rng(0)
    I, H = 5, 12  # 4H = 48 and H = 12: whole vectors and scalar tails
    P = 7 if proj else H
    w = fastrnn.step_weights(rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, P)) / 3,
                             rng.standard_normal(4 * H), rng.standard_normal(4 * H),
                             rng.standard_normal((P, H)) / 3 if proj else None, dtype=dtype)
    x = rng.standard_normal((1, I)).astype(dtype)
    h, c = np.zeros((1, P), dtype), np.zeros((1, H), dtype)
    out = _steps_both_ways(20, x, h, c, w.w_ih_t, w.w_hh_t, w.b, w.b_hh, w.w_hr_t,
                           np.empty((1, 6 * H), dtype))
    for k in (0, 2, 4) if not proj else (0,):
        assert np.array_equal(out[k + 1], out[k]), k
