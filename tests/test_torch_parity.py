"""Parity with PyTorch: torch.nn.RNN for forward and autograd gradients (tanh, relu),
an explicit autograd recurrence for sigmoid and identity, and truncated BPTT against
autograd over detached windows. Skipped when torch is not installed."""

import numpy as np
import pytest

import fastrnn

from .conftest import NONLINEARITIES, assert_close, make_elman

torch = pytest.importorskip("torch")

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
# float32: torch and fastrnn each round differently (BLAS order, activations)
SCALE = {np.float32: 20, np.float64: 10}


def _tensors(p, dtype):
    return {k: None if a is None else torch.tensor(a, dtype=TORCH_DTYPE[dtype], requires_grad=True)
            for k, a in p.items()}


def _torch_cell(t, nonlinearity):
    def step(x_t, h):
        a = x_t @ t["w_ih"].T + h @ t["w_hh"].T
        if t["b_ih"] is not None:
            a = a + t["b_ih"] + t["b_hh"]
        return {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
                "identity": lambda z: z}[nonlinearity](a)

    return step


def _torch_forward(t, nonlinearity, use_module):
    if use_module:
        H, I = t["w_ih"].shape
        rnn = torch.nn.RNN(I, H, nonlinearity=nonlinearity, bias=t["b_ih"] is not None,
                           dtype=t["x"].dtype)
        # functional_call swaps in our leaf tensors, so autograd reaches them
        params = {"weight_ih_l0": t["w_ih"], "weight_hh_l0": t["w_hh"]}
        if t["b_ih"] is not None:
            params.update(bias_ih_l0=t["b_ih"], bias_hh_l0=t["b_hh"])
        out, h_n = torch.func.functional_call(rnn, params, (t["x"], t["h0"][None]))
        return out, h_n[0]
    step = _torch_cell(t, nonlinearity)
    h, outs = t["h0"], []
    for x_t in t["x"]:
        h = step(x_t, h)
        outs.append(h)
    return torch.stack(outs), h


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 3, 5, 6), (12, 9, 4, 17)], ids=str)
def test_forward_and_gradients_match_torch(nonlinearity, bias, shape, dtype):
    T, B, I, H = shape
    p = make_elman(*shape, dtype=dtype, bias=bias, seed=3)
    rng = np.random.default_rng(5)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)

    out, h_n, cache = fastrnn.elman_forward(**p, nonlinearity=nonlinearity)
    g = fastrnn.elman_backward(cache, dout, dh_n)

    t = _tensors(p, dtype)
    t_out, t_h_n = _torch_forward(t, nonlinearity, use_module=nonlinearity in ("tanh", "relu"))
    loss = (t_out * torch.tensor(dout)).sum() + (t_h_n * torch.tensor(dh_n)).sum()
    loss.backward()

    s = SCALE[dtype]
    assert_close(out, t_out.detach().numpy(), dtype, scale=s, what="out")
    assert_close(h_n, t_h_n.detach().numpy(), dtype, scale=s, what="h_n")
    names = {"x": "dx", "h0": "dh0", "w_ih": "dw_ih", "w_hh": "dw_hh"}
    if bias:
        names.update(b_ih="db_ih", b_hh="db_hh")
    for tname, gname in names.items():
        assert_close(getattr(g, gname), t[tname].grad.numpy(), dtype, scale=s, what=gname)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_truncated_gradients_match_torch_detached_windows(nonlinearity, k, dtype):
    # TBPTT oracle in autograd: for every entry step t, rerun steps s0..t from
    # h_{s0-1}.detach() (h0 itself when the window reaches step 0)
    T, B, I, H = 9, 4, 3, 5
    p = make_elman(T, B, I, H, dtype=dtype, seed=7)
    rng = np.random.default_rng(8)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    out, _, cache = fastrnn.elman_forward(**p, nonlinearity=nonlinearity)
    g = fastrnn.elman_backward(cache, dout, dh_n, truncate=k)

    t = _tensors(p, dtype)
    step = _torch_cell(t, nonlinearity)
    with torch.no_grad():
        states, h = [], t["h0"]
        for x_t in t["x"]:
            h = step(x_t, h)
            states.append(h)
    loss = 0
    for te in range(T):
        s0 = max(0, te - k + 1)
        h = t["h0"] if s0 == 0 else states[s0 - 1].detach()
        for s in range(s0, te + 1):
            h = step(t["x"][s], h)
        loss = loss + (h * torch.tensor(dout[te])).sum()
        if te == T - 1:
            loss = loss + (h * torch.tensor(dh_n)).sum()
    loss.backward()
    s = SCALE[dtype]
    for tname, gname in {"x": "dx", "h0": "dh0", "w_ih": "dw_ih", "w_hh": "dw_hh",
                         "b_ih": "db_ih", "b_hh": "db_hh"}.items():
        assert_close(getattr(g, gname), t[tname].grad.numpy(), dtype, scale=s, what=gname)


def test_weights_load_from_torch_module():
    # the PyTorch parameter names map one to one onto elman_forward's arguments
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, nonlinearity="relu", dtype=torch.float64)
    sd = {n: q.detach().numpy() for n, q in rnn.named_parameters()}
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    out, h_n, _ = fastrnn.elman_forward(x, None, sd["weight_ih_l0"], sd["weight_hh_l0"],
                                        sd["bias_ih_l0"], sd["bias_hh_l0"], nonlinearity="relu")
    with torch.no_grad():
        t_out, t_h = rnn(torch.tensor(x))
    np.testing.assert_allclose(out, t_out.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n, t_h[0].numpy(), rtol=1e-12, atol=1e-14)
