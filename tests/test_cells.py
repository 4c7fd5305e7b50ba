"""Every cell's kernels (through the functional API) against the NumPy reference."""

import numpy as np
import pytest

import fastrnn
from fastrnn._config import jit
from fastrnn.kernels import gru as _gru
from fastrnn.kernels import lstm as _lstm
from fastrnn.kernels.tiles import _data

from .cells import CELLS
from .conftest import SHAPES, assert_close

TRUNCATIONS = [None, 1, 3, "T-1", "T", "T+5"]


def _truncate(spec, T):
    return {"T-1": max(1, T - 1), "T": T, "T+5": T + 5}.get(spec, spec)


def _upstream(cell, p, out, seed=1):
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    dfin = {n: rng.standard_normal(s).astype(out.dtype) for n, s in cell.final_shapes(p).items()}
    return dout, dfin


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", list(CELLS))
def test_forward_matches_reference(name, shape, bias, dtype):
    cell = CELLS[name]
    p = cell.make(*shape, dtype=dtype, bias=bias)
    out, fin, _ = cell.forward(p)
    r_out, r_fin, _ = cell.ref_forward(p)
    assert_close(out, r_out, dtype, what="out")
    for n in r_fin:
        assert_close(fin[n], r_fin[n], dtype, what=n)
    assert np.array_equal(fin["h_n"], out[-1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=str)
@pytest.mark.parametrize("name", list(CELLS))
def test_backward_matches_reference(name, shape, bias, truncate, dtype):
    cell = CELLS[name]
    p = cell.make(*shape, dtype=dtype, bias=bias)
    k = _truncate(truncate, shape[0])
    out, fin, cache = cell.forward(p)
    r_out, _, saved = cell.ref_forward(p)
    dout, dfin = _upstream(cell, p, out)
    g = cell.backward(cache, dout, dfin, truncate=k)
    r = cell.ref_backward(p, r_out, saved, dout, dfin, truncate=k)
    for n in cell.params:
        if r[n] is None:
            assert g[n] is None, n
        else:
            assert_close(g[n], r[n], dtype, scale=10, what=n)
    if bias and cell.kind != "gru":  # both biases enter the same sum
        assert np.array_equal(g["b_ih"], g["b_hh"]) and g["b_ih"] is not g["b_hh"]


@pytest.mark.parametrize("name", list(CELLS))
def test_truncate_at_least_T_is_full_bptt(name, dtype):
    cell = CELLS[name]
    p = cell.make(8, 6, 3, 5, dtype=dtype)
    out, fin, cache = cell.forward(p)
    dout, dfin = _upstream(cell, p, out)
    full = cell.backward(cache, dout, dfin)
    for k in (8, 9, 80):
        g = cell.backward(cache, dout, dfin, truncate=k)
        for n in cell.params:
            assert np.array_equal(g[n], full[n]), (k, n)


@pytest.mark.parametrize("name", list(CELLS))
def test_inference_path_gives_the_same_outputs(name):
    cell = CELLS[name]
    p = cell.make(6, 5, 2, 4)
    out1, fin1, cache = cell.forward(p)
    out2, fin2, none = cell.forward(p, cache=False)
    assert none is None and cache is not None
    assert np.array_equal(out1, out2)
    for n in fin1:
        assert np.array_equal(fin1[n], fin2[n])


@pytest.mark.parametrize("name", list(CELLS))
def test_missing_upstream_gradients_are_zeros(name):
    cell = CELLS[name]
    p = cell.make(6, 3, 2, 5)
    out, fin, cache = cell.forward(p)
    dfin = {n: np.ones_like(a) for n, a in fin.items()}
    a = cell.backward(cache, None, dfin)
    b = cell.backward(cache, np.zeros_like(out), dfin)
    c = cell.backward(cache, np.zeros_like(out), {})
    for n in cell.params:
        assert np.array_equal(a[n], b[n])
        assert not np.any(c[n])


@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru"])
def test_truncate_one_sees_only_each_steps_own_gradient(name):
    # k = 1: the gradient entering at t stops at h_{t-1} (and c_{t-1}): the result
    # is the sum over t of one-step backward passes from the stored states
    cell = CELLS[name]
    p = cell.make(5, 2, 3, 4)
    out, fin, cache = cell.forward(p)
    dout, dfin = _upstream(cell, p, out)
    g = cell.backward(cache, dout, dfin, truncate=1)
    total = {n: 0 for n in ("w_ih", "w_hh")}
    for t in range(5):
        q = dict(p, x=p["x"][t:t + 1])
        if t > 0:
            q["h0"] = out[t - 1]
            if cell.kind == "lstm":
                q["c0"] = cache.cs[t - 1]
        o, f, c = cell.forward(q)
        d = {n: dfin[n] for n in dfin} if t == 4 else {}
        one = cell.backward(c, dout[t:t + 1], d)
        for n in total:
            total[n] = total[n] + one[n]
    for n in total:
        np.testing.assert_allclose(g[n], total[n], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("truncate", [None, 1, 3])
@pytest.mark.parametrize("B", [1, 3, 9], ids=lambda b: f"B{b}")
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"])
def test_lengths_match_the_reference_run_per_sequence(name, B, truncate, dtype):
    # packed-sequence semantics: padding outputs 0, final states at each last real
    # step, gradients as if each sequence ran alone on its own steps
    cell = CELLS[name]
    T = 7
    p = cell.make(T, B, 3, 4, dtype=dtype, seed=5)
    lengths = np.random.default_rng(B).integers(1, T + 1, B)
    lengths[0] = T if B > 1 else 4
    if B > 2:
        lengths[1] = 1
    out, fin, cache = cell.forward(p, lengths=lengths)
    dout, dfin = _upstream(cell, p, out)
    g = cell.backward(cache, dout, dfin, truncate=truncate)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    r_out, r_fin, r_g = cell.ref_with_lengths(p, lengths, np.where(pad[..., None], 0, dout), dfin,
                                              truncate)
    assert not np.any(out[pad])
    assert_close(out, r_out, dtype, what="out")
    for n in fin:
        assert_close(fin[n], r_fin[n], dtype, what=n)
    for n in cell.params:
        if r_g[n] is not None:
            assert_close(g[n], r_g[n], dtype, scale=10, what=n)


@pytest.mark.parametrize("name", ["rnn_identity", "lstm", "gru"])
def test_padding_values_never_reach_results(name):
    # NaN and inf in the padding of x and dout change nothing
    cell = CELLS[name]
    p = cell.make(6, 4, 3, 5)
    lengths = np.array([6, 2, 4, 1])
    out, fin, cache = cell.forward(p, lengths=lengths)
    dout, dfin = _upstream(cell, p, out)
    g = cell.backward(cache, dout, dfin, truncate=2)
    pad = np.arange(6)[:, None] >= lengths[None, :]
    q = dict(p, x=p["x"].copy())
    q["x"][pad] = np.nan
    q["x"][pad & (np.arange(4)[None, :] == 2)] = np.inf
    dout2 = dout.copy()
    dout2[pad] = np.nan
    out2, fin2, cache2 = cell.forward(q, lengths=lengths)
    g2 = cell.backward(cache2, dout2, dfin, truncate=2)
    assert np.array_equal(out, out2)
    for n in cell.params:
        assert np.array_equal(g[n][~pad] if n == "x" else g[n], g2[n][~pad] if n == "x" else g2[n]), n


@pytest.mark.parametrize("truncate", [None, 1])
@pytest.mark.parametrize("act", ["relu", "identity"])
def test_an_infinite_last_state_stays_out_of_padding(act, truncate):
    # the first padding step's da is 0 and its h_{t-1} the last real state: inf there
    # must not make dW_hh NaN (0 * inf); PyTorch's packed sequences give 0.3 and 0.5
    x = np.array([[[np.inf], [0.0]], [[0.0], [0.0]]])  # (T, B, I) = (2, 2, 1)
    h0 = np.array([[0.3], [0.2]])
    w_ih, w_hh = np.array([[1.0]]), np.array([[0.5]])
    out, _, cache = fastrnn.elman_forward(x, h0, w_ih, w_hh, nonlinearity=act,
                                          lengths=[1, 2])
    dout = np.zeros_like(out)
    dout[0, 0] = 1.0  # the loss: out[0, 0] = act(x + 0.5 * 0.3) = inf
    g = fastrnn.elman_backward(cache, dout, truncate=truncate)
    assert out[0, 0, 0] == np.inf and g.dw_hh[0, 0] == 0.3 and g.dh0[0, 0] == 0.5
    assert g.dw_ih[0, 0] == np.inf  # inf * 1: the real step's own term


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_lengths_all_T_equal_no_lengths(name):
    cell = CELLS[name]
    p = cell.make(5, 6, 3, 4)
    out, fin, cache = cell.forward(p)
    out2, fin2, cache2 = cell.forward(p, lengths=np.full(6, 5))
    dout, dfin = _upstream(cell, p, out)
    assert np.array_equal(out, out2)
    g, g2 = cell.backward(cache, dout, dfin, 2), cell.backward(cache2, dout, dfin, 2)
    for n in cell.params:
        assert np.array_equal(g[n], g2[n])


@jit
def _cells_both_ways(latency, gates, b, c, m, gh, h):
    # the LSTM's and the GRU's forward cell over each row, in one pass or two
    H = c.shape[1]
    pa, pb, pc, pm, pg, ph = _data(gates), _data(b), _data(c), _data(m), _data(gh), _data(h)
    for r in range(gates.shape[0]):
        a = r * 4 * H
        _lstm._cell_forward(pa, a, pb, pc, r * H, pm, r * H, H, latency)
        # GRU on the first 3H entries of the same rows: gi there, gh from gh
        _gru._cell_forward(pg, r * 3 * H, pb, pg, (gates.shape[0] + r) * 3 * H, ph, r * H, pm,
                           (gates.shape[0] + r) * H, pm, (2 * gates.shape[0] + r) * H, H,
                           latency)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H", [1, 7, 16, 33])
def test_cell_in_one_pass_or_two_gives_the_same_bits(H, dtype):
    # the forward kernels run the cell in one pass for a batch of a row or two (latency)
    # and in two otherwise: a row's bits must not depend on which
    rng = np.random.default_rng(H)
    R = 3
    gates = (3 * rng.standard_normal((R, 4 * H))).astype(dtype)
    gates[0, :2] = [np.nan, np.inf]
    b = rng.standard_normal(4 * H).astype(dtype)
    c = rng.standard_normal((R, H)).astype(dtype)
    gh = rng.standard_normal((2 * R, 3 * H)).astype(dtype)
    h = rng.standard_normal((R, H)).astype(dtype)
    results = []
    for latency in (True, False):
        args = [a.copy() for a in (gates, b, c, np.zeros((3 * R, H), dtype), gh, h)]
        _cells_both_ways(latency, *args)
        results.append(args)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    assert not np.array_equal(results[0][0], gates)  # the cells ran
