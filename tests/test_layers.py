"""Layers (RNN, LSTM, GRU): parity with torch.nn modules, truncation through stacks,
dropout, state_dict round trips, bad arguments."""

import numpy as np
import pytest

import fastrnn

from .conftest import assert_close

torch = pytest.importorskip("torch")

KINDS = {
    "rnn_tanh": (fastrnn.RNN, torch.nn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (fastrnn.RNN, torch.nn.RNN, dict(nonlinearity="relu")),
    "lstm": (fastrnn.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (fastrnn.LSTM, torch.nn.LSTM, dict(proj_size=2)),
    "gru": (fastrnn.GRU, torch.nn.GRU, {}),
}
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
SCALE = {np.float32: 50, np.float64: 10}


def _pair(kind, I, H, dtype, seed=0, **cfg):
    ours_cls, theirs_cls, extra = KINDS[kind]
    kw = dict(extra, **cfg)
    ours = ours_cls(I, H, dtype=dtype, seed=seed, **kw)
    torch.manual_seed(seed)
    theirs = theirs_cls(I, H, dtype=TORCH[dtype], **kw)
    ours.load_state_dict({n: p.detach().numpy() for n, p in theirs.named_parameters()})
    return ours, theirs


def _states(kind, rng, shape_h, shape_c, dtype):
    h = rng.standard_normal(shape_h).astype(dtype) * 0.5
    if kind.startswith("lstm"):
        return h, rng.standard_normal(shape_c).astype(dtype) * 0.5
    return h


def _to_torch(s):
    if isinstance(s, tuple):
        return tuple(torch.tensor(a, requires_grad=True) for a in s)
    return torch.tensor(s, requires_grad=True)


def _flat(s):
    return list(s) if isinstance(s, tuple) else [s]


CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=3, bias=False),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=2, batch_first=True),
]


def _run_both(kind, cfg, dtype, T=6, B=4, I=3, H=5, with_h0=True, lengths=None, unbatched=False,
              seed=0):
    ours, theirs = _pair(kind, I, H, dtype, seed=seed, **cfg)
    rng = np.random.default_rng(seed + 1)
    L, D = ours.num_layers, ours.num_directions
    P = ours.proj_size or H
    bf = ours.batch_first
    if unbatched:
        x = rng.standard_normal((T, I)).astype(dtype)
        h0 = _states(kind, rng, (L * D, P), (L * D, H), dtype) if with_h0 else None
    else:
        x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(dtype)
        h0 = _states(kind, rng, (L * D, B, P), (L * D, B, H), dtype) if with_h0 else None
    out, h_n, cache = ours.forward(x, h0, lengths=lengths)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dh_n = tuple(rng.standard_normal(a.shape).astype(dtype) for a in h_n) \
        if isinstance(h_n, tuple) else rng.standard_normal(h_n.shape).astype(dtype)
    if lengths is not None:  # torch's padded output is 0 there and has no gradient
        pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
        dout[(pad.T if bf else pad)] = 0
    g = ours.backward(cache, dout, dh_n)

    xt = torch.tensor(x, requires_grad=True)
    h0t = _to_torch(h0) if with_h0 else None
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=bf,
                                                         enforce_sorted=False)
        po, t_hn = theirs(packed, h0t)
        t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(po, batch_first=bf, total_length=T)
    else:
        t_out, t_hn = theirs(xt, h0t)
    loss = (t_out * torch.tensor(dout)).sum()
    for a, d in zip(_flat(t_hn), _flat(dh_n)):
        loss = loss + (a * torch.tensor(d)).sum()
    loss.backward()
    return ours, theirs, (out, h_n, g), (t_out, t_hn, xt, h0t)


def _check(ours, theirs, mine, ref, dtype, with_h0=True):
    out, h_n, g = mine
    t_out, t_hn, xt, h0t = ref
    s = SCALE[dtype]
    assert_close(out, t_out.detach().numpy(), dtype, scale=s, what="out")
    for a, b in zip(_flat(h_n), _flat(t_hn)):
        assert_close(a, b.detach().numpy(), dtype, scale=s, what="h_n")
    assert_close(g.dx, xt.grad.numpy(), dtype, scale=s, what="dx")
    if with_h0:
        for a, b in zip(_flat(g.dh0), _flat(h0t)):
            assert_close(a, b.grad.numpy(), dtype, scale=s, what="dh0")
    names = [n for n, _ in theirs.named_parameters()]
    assert list(g.params) == names == [n for n, _ in ours.named_parameters()]
    for n, p in theirs.named_parameters():
        assert_close(g.params[n], p.grad.numpy(), dtype, scale=s, what=n)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_with_torch(kind, cfg, dtype):
    ours, theirs, mine, ref = _run_both(kind, cfg, dtype)
    _check(ours, theirs, mine, ref, dtype)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("case", ["no_h0", "unbatched", "tiny", "lengths", "lengths_bidir"])
def test_parity_special_cases(kind, case, dtype):
    cfg, kw = dict(num_layers=2), {}
    if case == "no_h0":
        kw = dict(with_h0=False)
    elif case == "unbatched":
        cfg = dict(num_layers=2, bidirectional=True)
        kw = dict(unbatched=True)
    elif case == "tiny":
        if kind == "lstm_proj":
            pytest.skip("proj_size must be smaller than hidden_size = 1")
        cfg = dict(num_layers=1)
        kw = dict(T=1, B=1, I=1, H=1)
    elif case == "lengths":
        kw = dict(lengths=[6, 1, 4, 3])  # unsorted, a length of 1 and of T
    else:
        cfg = dict(num_layers=2, bidirectional=True, batch_first=True)
        kw = dict(lengths=[2, 6, 1, 5])
    ours, theirs, mine, ref = _run_both(kind, cfg, dtype, **kw)
    _check(ours, theirs, mine, ref, dtype, with_h0=kw.get("with_h0", True))


def _torch_stack_oracle(theirs, x, h0, dout, dh_n, masks, k, kind):
    """Truncated BPTT through a stack, from its definition, in torch autograd: for each
    entry step t, rerun steps s0..t of every layer from the (detached) states of every
    layer at s0-1 and backpropagate that window's loss."""
    L = theirs.num_layers
    T = x.shape[0]
    lstm = kind.startswith("lstm")
    p = dict(theirs.named_parameters())

    def cell(layer, x_t, s):
        w = [p[f"{n}_l{layer}"] if f"{n}_l{layer}" in p else None
             for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
        if lstm:  # written out: torch's lstm_cell has no projections
            a = x_t @ w[0].T + s[0] @ w[1].T + w[2] + w[3]
            i, f, g, o = a.chunk(4, dim=1)
            c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return (h @ w[4].T if w[4] is not None else h, c)
        if kind == "gru":
            return (torch._VF.gru_cell(x_t, s[0], w[0], w[1], w[2], w[3]),)
        f = torch._VF.rnn_tanh_cell if kind == "rnn_tanh" else torch._VF.rnn_relu_cell
        return (f(x_t, s[0], w[0], w[1], w[2], w[3]),)

    first = [(h0[0][i], h0[1][i]) if lstm else (h0[i],) for i in range(L)]
    with torch.no_grad():
        states = []  # states[t][layer]
        s = first
        for t in range(T):
            inp, new = x[t], []
            for layer in range(L):
                st = cell(layer, inp, s[layer])
                new.append(st)
                inp = st[0] if layer == L - 1 or masks[layer] is None else st[0] * masks[layer][t]
            states.append(new)
            s = new
    loss = 0
    for te in range(T):
        s0 = max(0, te - k + 1)
        s = first if s0 == 0 else [tuple(a.detach() for a in st) for st in states[s0 - 1]]
        for t in range(s0, te + 1):
            inp, new = x[t], []
            for layer in range(L):
                st = cell(layer, inp, s[layer])
                new.append(st)
                inp = st[0] if layer == L - 1 or masks[layer] is None else st[0] * masks[layer][t]
            s = new
        loss = loss + (s[-1][0] * dout[te]).sum()
        if te == T - 1:
            for layer in range(L):
                for j, d in enumerate(dh_n):
                    loss = loss + (s[layer][j] * d[layer]).sum()
    loss.backward()


@pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last")
@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_truncation_through_stacks_matches_torch_windows(kind, num_layers, k, dropout):
    dtype = np.float64
    T, B, I, H = 7, 3, 3, 4
    ours, theirs = _pair(kind, I, H, dtype, seed=3, num_layers=num_layers, dropout=dropout)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I))
    L, P = num_layers, ours.proj_size or H
    h0 = _states(kind, rng, (L, B, P), (L, B, H), dtype)
    out, h_n, cache = ours.forward(x, h0)
    dout = rng.standard_normal(out.shape)
    dh_n = tuple(rng.standard_normal(a.shape) for a in h_n) if isinstance(h_n, tuple) else \
        rng.standard_normal(h_n.shape)
    g = ours.backward(cache, dout, dh_n, truncate=k)

    xt = torch.tensor(x, requires_grad=True)
    h0t = tuple(torch.tensor(a, requires_grad=True) for a in _flat(h0))
    masks = [None if m is None else torch.tensor(m) for m in cache.masks]
    _torch_stack_oracle(theirs, xt, h0t if len(h0t) == 2 else h0t[0], torch.tensor(dout),
                        [torch.tensor(d) for d in _flat(dh_n)], masks, k, kind)
    assert_close(g.dx, xt.grad.numpy(), dtype, scale=10, what="dx")
    for a, b in zip(_flat(g.dh0), h0t):
        assert_close(a, b.grad.numpy(), dtype, scale=10, what="dh0")
    for n, p in theirs.named_parameters():
        assert_close(g.params[n], p.grad.numpy(), dtype, scale=10, what=n)


def test_truncation_in_a_stack_is_not_chaining_each_layers_own_truncation():
    # the contract: a gradient reaching layer 0 at step s has used t - s of its k steps;
    # chaining per-layer truncate=k would let it run on, a different gradient
    ours = fastrnn.RNN(2, 3, num_layers=2, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((8, 2, 2))
    out, h_n, cache = ours.forward(x)
    dout = np.zeros_like(out)
    dout[-1] = 1.0
    g = ours.backward(cache, dout, truncate=2)
    # entering at t=7, window steps 6..7: nothing reaches x before step 6
    assert not np.any(g.dx[:6]) and np.any(g.dx[6:])
    layer1 = cache.caches[1][0]
    g1 = fastrnn.elman_backward(layer1, dout, truncate=2)
    g0 = fastrnn.elman_backward(cache.caches[0][0], g1.dx, truncate=2)
    assert np.any(g0.dx[5])  # the chained version reaches step 5: not the contract


def test_truncate_with_bidirectional_is_an_error():
    m = fastrnn.GRU(2, 3, bidirectional=True, seed=0)
    out, h_n, cache = m.forward(np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="GRU.backward: truncate is not defined for a "
                                         "bidirectional layer"):
        m.backward(cache, np.ones_like(out), truncate=2)
    with pytest.raises(ValueError, match="truncate is not defined"):
        m.backward(cache, np.ones_like(out), truncate=40)  # even where it would change nothing


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_dropout_masks_are_seeded_used_in_training_only_and_reused_by_backward(kind):
    cls, _, extra = KINDS[kind]
    x = np.random.default_rng(0).standard_normal((5, 3, 2))
    a = cls(2, 4, num_layers=3, dropout=0.5, dtype=np.float64, seed=7, **extra)
    b = cls(2, 4, num_layers=3, dropout=0.5, dtype=np.float64, seed=7, **extra)
    oa, _, ca = a.forward(x)
    ob, _, cb = b.forward(x)
    assert np.array_equal(oa, ob)  # same seed, same masks
    assert ca.masks[0] is not None and ca.masks[-1] is None
    assert set(np.unique(ca.masks[0])) <= {0.0, 2.0}
    oa2, _, _ = a.forward(x)
    assert not np.array_equal(oa, oa2)  # fresh masks each call
    a.eval()
    e1, _ = a(x)
    e2, _ = a(x)
    assert np.array_equal(e1, e2)
    off = cls(2, 4, num_layers=3, dropout=0.0, dtype=np.float64, seed=7, **extra)
    assert np.array_equal(e1, off(x)[0])
    # backward uses the forward's masks: check against finite differences of the
    # forward with those masks held fixed
    a.train()
    out, h_n, cache = a.forward(x)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    g = a.backward(cache, dout)
    name = "weight_hh_l0"
    w = a._params[name]
    eps = 1e-6
    i, j = 1, 2
    masks = cache.masks

    def loss():
        inp = x
        states = None
        for layer in range(3):
            q = dict(a._params)
            out_l = a._cell_forward(inp, np.zeros((3, 4)), np.zeros((3, 4)), layer, "", None,
                                    False)[0]
            inp = out_l if masks[layer] is None else out_l * masks[layer]
        return float(np.sum(inp * dout))

    w[i, j] += eps
    up = loss()
    w[i, j] -= 2 * eps
    down = loss()
    w[i, j] += eps
    assert abs((up - down) / (2 * eps) - g.params[name][i, j]) < 1e-6 * max(1, abs(up))


def test_state_dict_round_trip_with_torch():
    torch.manual_seed(0)
    t = torch.nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=torch.float64)
    m = fastrnn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=np.float64,
                     seed=1)
    m.load_state_dict({n: p.detach().numpy() for n, p in t.named_parameters()})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, (h, c) = m(x)
    with torch.no_grad():
        t_out, (t_h, t_c) = t(torch.tensor(x))
    np.testing.assert_allclose(out, t_out.numpy(), rtol=1e-12, atol=1e-13)
    # and back: fastrnn's parameters into a fresh torch module
    m2 = fastrnn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=np.float64,
                      seed=5)
    t2 = torch.nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=torch.float64)
    t2.load_state_dict({n: torch.tensor(a) for n, a in m2.state_dict().items()})
    with torch.no_grad():
        np.testing.assert_allclose(m2(x)[0], t2(torch.tensor(x))[0].numpy(), rtol=1e-12,
                                   atol=1e-13)
    sd = m2.state_dict()
    sd["weight_ih_l0"][...] = 0  # a copy: the layer is untouched
    assert np.any(m2._params["weight_ih_l0"])


@pytest.mark.parametrize("state, words", [
    ({}, ["missing keys", "weight_ih_l0"]),
    ("extra", ["unexpected keys", "bogus"]),
    ("shape", ["weight_hh_l0", "(4, 4)", "(4, 3)"]),
    ([1, 2], ["expected a dict"]),
])
def test_load_state_dict_errors(state, words):
    m = fastrnn.RNN(2, 4, seed=0)
    good = m.state_dict()
    if state == "extra":
        state = dict(good, bogus=np.zeros(1))
    elif state == "shape":
        state = dict(good, weight_hh_l0=np.zeros((4, 3)))
    exc = TypeError if isinstance(state, list) else ValueError
    with pytest.raises(exc) as e:
        m.load_state_dict(state)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("cls, kwargs, exc, words", [
    (fastrnn.RNN, dict(input_size=2, hidden_size=0), ValueError, ["hidden_size", "greater than zero"]),
    (fastrnn.RNN, dict(input_size=2, hidden_size=3.0), TypeError, ["hidden_size", "int", "float"]),
    (fastrnn.LSTM, dict(input_size=2, hidden_size=3, num_layers=0), ValueError, ["num_layers"]),
    (fastrnn.GRU, dict(input_size=0, hidden_size=3), ValueError, ["input_size"]),
    (fastrnn.RNN, dict(input_size=2, hidden_size=3, dropout=1.5), ValueError, ["dropout", "[0, 1]"]),
    (fastrnn.RNN, dict(input_size=2, hidden_size=3, dropout=True), ValueError, ["dropout"]),
    (fastrnn.LSTM, dict(input_size=2, hidden_size=3, proj_size=3), ValueError,
     ["proj_size has to be smaller than hidden_size"]),
    (fastrnn.LSTM, dict(input_size=2, hidden_size=3, proj_size=-1), ValueError, ["proj_size"]),
    (fastrnn.RNN, dict(input_size=2, hidden_size=3, nonlinearity="gelu"), ValueError,
     ["nonlinearity", "'gelu'"]),
    (fastrnn.GRU, dict(input_size=2, hidden_size=3, dtype=np.int32), TypeError, ["dtype", "float32"]),
    (fastrnn.GRU, dict(input_size=2, hidden_size=3, bidirectional="yes"), TypeError,
     ["bidirectional", "True or False"]),
])
def test_bad_constructor_arguments(cls, kwargs, exc, words):
    with pytest.raises(exc) as e:
        cls(**kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("call, exc, words", [
    (lambda m: m(np.ones((3, 2, 5))), ValueError, ["GRU.forward", "input_size = 2", "5"]),
    (lambda m: m(np.ones(3)), ValueError, ["x must have 3 dimensions", "or 2"]),
    (lambda m: m(np.ones((3, 2, 2)), np.ones((1, 2, 4))), ValueError,
     ["h0", "(num_layers*num_directions, B, H)", "(2, 2, 4)", "(1, 2, 4)"]),
    (lambda m: m(np.ones((3, 2, 2)), lengths=[4, 1]), ValueError, ["lengths", "1..T = 1..3"]),
    (lambda m: m(np.ones((3, 2)), lengths=[3]), ValueError, ["lengths needs a batched input"]),
    (lambda m: m(np.ones((3, 2, 2), complex)), TypeError, ["x", "complex"]),
    (lambda m: m.backward("cache", np.ones(3)), TypeError, ["GRU.backward", "LayerCache"]),
    (lambda m: m.backward(m.forward(np.ones((3, 2, 2)))[2], np.ones((3, 2, 3))), ValueError,
     ["dout", "(3, 2, 4)", "(3, 2, 3)"]),
    (lambda m: m.backward(m.forward(np.ones((3, 2, 2)))[2], None, np.ones((1, 2, 4))),
     ValueError, ["dh_n", "(2, 2, 4)", "(1, 2, 4)"]),
    (lambda m: m.backward(m.forward(np.ones((3, 2, 2)))[2], None, truncate=0), ValueError,
     ["truncate"]),
])
def test_bad_calls(call, exc, words):
    m = fastrnn.GRU(2, 4, num_layers=2, seed=0)
    with pytest.raises(exc) as e:
        call(m)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_backward_rejects_another_layers_cache():
    a, b = fastrnn.RNN(2, 3, seed=0), fastrnn.RNN(2, 3, seed=0)
    out, _, cache = a.forward(np.ones((2, 1, 2)))
    with pytest.raises(TypeError, match="this layer's forward"):
        b.backward(cache, np.ones_like(out))


def test_lstm_state_tuples():
    m = fastrnn.LSTM(2, 3, seed=0)
    with pytest.raises(TypeError, match="h0 of an LSTM must be None or a tuple"):
        m(np.ones((2, 1, 2)), np.zeros((1, 1, 3)))
    out, (h, c), cache = m.forward(np.ones((2, 1, 2)), (np.zeros((1, 1, 3)), None))
    g = m.backward(cache, None, (None, np.ones_like(c)))
    assert isinstance(g.dh0, tuple) and g.dh0[1].shape == (1, 1, 3)
