"""Property-based tests (Hypothesis, fixed profile: derandomised, bounded examples)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .cells import CELLS
from .conftest import assert_close

settings.register_profile("fastrnn", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastrnn")

cells = st.sampled_from(list(CELLS))
dtypes = st.sampled_from([np.float32, np.float64])
sizes = st.tuples(st.integers(1, 9), st.integers(1, 7), st.integers(1, 6), st.integers(1, 9))


def _setup(name, shape, dtype, seed, bias=True):
    cell = CELLS[name]
    T, B, I, H = shape
    if cell.proj and H < 2:
        H = 2
    p = cell.make(T, B, I, H, dtype=dtype, seed=seed, bias=bias)
    return cell, p


@given(cells, sizes, dtypes, st.integers(0, 2**16), st.booleans(),
       st.one_of(st.none(), st.integers(1, 12)))
def test_kernels_match_the_reference(name, shape, dtype, seed, bias, truncate):
    cell, p = _setup(name, shape, dtype, seed, bias)
    out, fin, cache = cell.forward(p)
    r_out, r_fin, saved = cell.ref_forward(p)
    assert_close(out, r_out, dtype, what="out")
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dfin = {n: rng.standard_normal(a.shape).astype(dtype) for n, a in fin.items()}
    g = cell.backward(cache, dout, dfin, truncate)
    r = cell.ref_backward(p, r_out, saved, dout, dfin, truncate)
    for n in cell.params:
        if r[n] is not None:
            assert_close(g[n], r[n], dtype, scale=10, what=n)


@given(cells, sizes, st.integers(0, 2**16), st.one_of(st.none(), st.integers(1, 5)))
def test_gradients_are_linear_in_the_upstream_gradient(name, shape, seed, truncate):
    cell, p = _setup(name, shape, np.float64, seed)
    out, fin, cache = cell.forward(p)
    rng = np.random.default_rng(seed)
    d1, d2 = rng.standard_normal((2,) + out.shape)
    f1 = {n: rng.standard_normal(a.shape) for n, a in fin.items()}
    f2 = {n: rng.standard_normal(a.shape) for n, a in fin.items()}
    a, b = 0.7, -1.3
    g1, g2 = cell.backward(cache, d1, f1, truncate), cell.backward(cache, d2, f2, truncate)
    g = cell.backward(cache, a * d1 + b * d2, {n: a * f1[n] + b * f2[n] for n in f1}, truncate)
    for n in cell.params:
        if g[n] is not None:
            assert_close(g[n], a * g1[n] + b * g2[n], np.float64, scale=100, what=n)


@given(cells, sizes, st.integers(0, 2**16), st.integers(0, 5))
def test_truncate_at_least_T_equals_full_bptt(name, shape, seed, extra):
    cell, p = _setup(name, shape, np.float64, seed)
    out, fin, cache = cell.forward(p)
    dout = np.cos(out)
    full = cell.backward(cache, dout, {})
    g = cell.backward(cache, dout, {}, truncate=shape[0] + extra)
    for n in cell.params:
        assert np.array_equal(g[n], full[n])


@given(cells, sizes, dtypes, st.integers(0, 2**16), st.data())
def test_a_sequence_equals_its_two_halves_with_the_state_carried(name, shape, dtype, seed, data):
    cell, p = _setup(name, shape, dtype, seed)
    T = p["x"].shape[0]
    s = data.draw(st.integers(0, T))
    out, fin, _ = cell.forward(p, cache=False)
    first, fin1, _ = cell.forward(dict(p, x=p["x"][:s]), cache=False)
    rest = dict(p, x=p["x"][s:], h0=fin1["h_n"])
    if "c0" in p:
        rest["c0"] = fin1["c_n"]
    second, fin2, _ = cell.forward(rest, cache=False)
    assert_close(np.concatenate([first, second]), out, dtype)
    for n in fin:
        assert_close(fin2[n], fin[n], dtype)


@given(cells, sizes, st.integers(0, 2**16))
def test_lengths_all_T_equal_no_lengths(name, shape, seed):
    cell, p = _setup(name, shape, np.float32, seed)
    T, B = p["x"].shape[:2]
    a = cell.forward(p)
    b = cell.forward(p, lengths=np.full(B, T))
    assert np.array_equal(a[0], b[0])
    ga = cell.backward(a[2], np.ones_like(a[0]), {}, 2)
    gb = cell.backward(b[2], np.ones_like(b[0]), {}, 2)
    for n in cell.params:
        assert np.array_equal(ga[n], gb[n])
