"""Parity with PyTorch for every cell: torch.nn.RNN / LSTM (proj_size too) / GRU for
forward and autograd gradients (an explicit autograd recurrence for the Elman sigmoid
and identity cells, which torch has no module for), and truncated BPTT against
autograd over detached windows. Skipped when torch is not installed."""

import numpy as np
import pytest

from .cells import CELLS
from .conftest import assert_close

torch = pytest.importorskip("torch")

# float32: torch and fastrnn round differently (BLAS order, activation formulas)
SCALE = {np.float32: 30, np.float64: 10}


def _leaves(p):
    return {k: None if a is None else torch.tensor(a, requires_grad=True) for k, a in p.items()}


def _torch_run(cell, p, t):
    """Forward with autograd reaching the leaves ``t``: returns (out, finals)."""
    m = cell.torch_module(p)
    if m is None:  # explicit recurrence
        step = cell.torch_step(t)
        s = (t["h0"], t["c0"]) if cell.kind == "lstm" else (t["h0"],)
        outs = []
        for x_t in t["x"]:
            s = step(x_t, s)
            outs.append(s[0])
        fin = {"h_n": s[0], "c_n": s[1]} if cell.kind == "lstm" else {"h_n": s[0]}
        return torch.stack(outs), fin
    names = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0",
             "b_hh": "bias_hh_l0", "w_hr": "weight_hr_l0"}
    params = {theirs: t[ours] for ours, theirs in names.items() if t.get(ours) is not None}
    if cell.kind == "lstm":
        out, (h_n, c_n) = torch.func.functional_call(m, params,
                                                     (t["x"], (t["h0"][None], t["c0"][None])))
        return out, {"h_n": h_n[0], "c_n": c_n[0]}
    out, h_n = torch.func.functional_call(m, params, (t["x"], t["h0"][None]))
    return out, {"h_n": h_n[0]}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 3, 5, 6), (12, 9, 4, 17)], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", list(CELLS))
def test_forward_and_gradients_match_torch(name, bias, shape, dtype):
    cell = CELLS[name]
    p = cell.make(*shape, dtype=dtype, bias=bias, seed=3)
    out, fin, cache = cell.forward(p)
    rng = np.random.default_rng(5)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dfin = {n: rng.standard_normal(a.shape).astype(dtype) for n, a in fin.items()}
    g = cell.backward(cache, dout, dfin)

    t = _leaves(p)
    t_out, t_fin = _torch_run(cell, p, t)
    loss = (t_out * torch.tensor(dout)).sum()
    for n in dfin:
        loss = loss + (t_fin[n] * torch.tensor(dfin[n])).sum()
    loss.backward()

    s = SCALE[dtype]
    assert_close(out, t_out.detach().numpy(), dtype, scale=s, what="out")
    for n in fin:
        assert_close(fin[n], t_fin[n].detach().numpy(), dtype, scale=s, what=n)
    for n in cell.params:
        if t[n] is not None:
            assert_close(g[n], t[n].grad.numpy(), dtype, scale=s, what="d" + n)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"])
def test_truncated_gradients_match_torch_detached_windows(name, k, dtype):
    # TBPTT oracle in autograd: for every entry step t, rerun steps s0..t from the
    # detached state before the window (h0 and c0 themselves when it reaches step 0)
    cell = CELLS[name]
    T = 9
    p = cell.make(T, 4, 3, 5, dtype=dtype, seed=7)
    out, fin, cache = cell.forward(p)
    rng = np.random.default_rng(8)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dfin = {n: rng.standard_normal(a.shape).astype(dtype) for n, a in fin.items()}
    g = cell.backward(cache, dout, dfin, truncate=k)

    t = _leaves(p)
    step = cell.torch_step(t)
    first = (t["h0"], t["c0"]) if cell.kind == "lstm" else (t["h0"],)
    with torch.no_grad():
        states, s = [], first
        for x_t in t["x"]:
            s = step(x_t, s)
            states.append(s)
    loss = 0
    for te in range(T):
        s0 = max(0, te - k + 1)
        s = first if s0 == 0 else tuple(a.detach() for a in states[s0 - 1])
        for i in range(s0, te + 1):
            s = step(t["x"][i], s)
        loss = loss + (s[0] * torch.tensor(dout[te])).sum()
        if te == T - 1:
            for j, n in enumerate(fin):
                loss = loss + (s[j] * torch.tensor(dfin[n])).sum()
    loss.backward()
    for n in cell.params:
        assert_close(g[n], t[n].grad.numpy(), dtype, scale=SCALE[dtype], what="d" + n)


@pytest.mark.parametrize("name", ["rnn_relu", "lstm", "lstm_proj", "gru"])
def test_named_parameters_of_a_torch_module_go_straight_in(name):
    # the PyTorch parameter names map one to one onto the functional arguments
    cell = CELLS[name]
    torch.manual_seed(0)
    T, B, I, H = 4, 2, 3, 5
    if cell.kind == "elman":
        m = torch.nn.RNN(I, H, nonlinearity=cell.nonlinearity, dtype=torch.float64)
    elif cell.kind == "lstm":
        m = torch.nn.LSTM(I, H, proj_size=2 if cell.proj else 0, dtype=torch.float64)
    else:
        m = torch.nn.GRU(I, H, dtype=torch.float64)
    sd = {n: q.detach().numpy() for n, q in m.named_parameters()}
    x = np.random.default_rng(0).standard_normal((T, B, I))
    p = {"x": x, "h0": None, "w_ih": sd["weight_ih_l0"], "w_hh": sd["weight_hh_l0"],
         "b_ih": sd["bias_ih_l0"], "b_hh": sd["bias_hh_l0"]}
    if cell.kind == "lstm":
        p.update(c0=None, w_hr=sd.get("weight_hr_l0"))
    out, fin, _ = cell.forward(p)
    with torch.no_grad():
        t_out = m(torch.tensor(x))[0]
    np.testing.assert_allclose(out, t_out.numpy(), rtol=1e-12, atol=1e-14)
