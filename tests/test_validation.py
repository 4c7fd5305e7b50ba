"""Bad input gives clear errors; odd but valid input gives the same answer; inputs are
never modified; dtype rules; empty sizes; NaN propagation."""

import hashlib

import numpy as np
import pytest

import fastrnn

from .conftest import make_elman


def _args(T=4, B=3, I=2, H=5, dtype=np.float64):
    return make_elman(T, B, I, H, dtype=dtype)


def _call(**overrides):
    a = _args()
    a.update(overrides)
    return fastrnn.elman_forward(**a)


@pytest.mark.parametrize("name, value, exc, words", [
    ("x", np.zeros((4, 3)), ValueError, ["x", "3 dimensions", "(T, B, I)", "(4, 3)"]),
    ("x", np.zeros((4, 3, 2, 1)), ValueError, ["x", "3 dimensions"]),
    ("x", np.zeros((4, 3, 7)), ValueError, ["w_ih", "(H, I)", "(5, 7)", "(5, 2)"]),
    ("x", np.zeros((4, 3, 0)), ValueError, ["input size I", "at least 1"]),
    ("h0", np.zeros((3, 4)), ValueError, ["h0", "(B, H)", "(3, 5)", "(3, 4)"]),
    ("h0", np.zeros((2, 5)), ValueError, ["h0", "(3, 5)", "(2, 5)"]),
    ("h0", np.zeros((1, 3, 5)), ValueError, ["h0", "2 dimensions"]),
    ("w_ih", np.zeros(5), ValueError, ["w_ih", "2 dimensions"]),
    ("w_ih", np.zeros((0, 2)), ValueError, ["hidden size H", "at least 1"]),
    ("w_hh", np.zeros((5, 4)), ValueError, ["w_hh", "(H, H)", "(5, 5)", "(5, 4)"]),
    ("w_hh", np.zeros((4, 5)), ValueError, ["w_hh", "(5, 5)", "(4, 5)"]),
    ("b_ih", np.zeros(4), ValueError, ["b_ih", "(H,)", "(5,)", "(4,)"]),
    ("b_hh", np.zeros((5, 1)), ValueError, ["b_hh", "1 dimensions"]),
    ("b_ih", None, ValueError, ["b_ih", "b_hh", "both"]),
    ("b_hh", None, ValueError, ["b_ih", "b_hh", "both"]),
    ("x", np.zeros((4, 3, 2), complex), TypeError, ["x", "complex128"]),
    ("x", np.zeros((4, 3, 2), object), TypeError, ["x", "object"]),
    ("x", np.full((4, 3, 2), "a"), TypeError, ["x", "<U1"]),
    ("w_hh", np.zeros((5, 5), "datetime64[s]"), TypeError, ["w_hh", "datetime64"]),
    ("w_ih", np.zeros((5, 2), np.longdouble), TypeError, ["w_ih", "extended precision"]),
    ("x", [[[1.0, 2.0]], [[1.0]]], TypeError, ["x", "list"]),
    ("x", "abc", TypeError, ["x", "<U3"]),
    ("nonlinearity", "tahn", ValueError, ["nonlinearity", "'tahn'", "tanh", "relu"]),
    ("nonlinearity", None, TypeError, ["nonlinearity", "NoneType"]),
    ("cache", "yes", TypeError, ["cache", "True or False", "str"]),
])
def test_forward_rejects_bad_arguments(name, value, exc, words):
    if np.dtype(getattr(value, "dtype", float)) == np.longdouble and \
            np.finfo(np.longdouble).bits <= 64:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(exc) as e:
        _call(**{name: value})
    msg = str(e.value)
    assert msg.startswith("elman_forward: ")
    for w in words:
        assert w in msg, (w, msg)


@pytest.fixture
def forward():
    a = _args()
    out, h_n, cache = fastrnn.elman_forward(**a)
    return out, h_n, cache


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(dout=np.zeros((4, 3, 4))), ValueError, ["dout", "(T, B, H)", "(4, 3, 5)", "(4, 3, 4)"]),
    (dict(dout=np.zeros((3, 5))), ValueError, ["dout", "3 dimensions"]),
    (dict(dh_n=np.zeros((3, 4))), ValueError, ["dh_n", "(B, H)", "(3, 5)", "(3, 4)"]),
    (dict(dout=np.zeros((4, 3, 5), complex)), TypeError, ["dout", "complex"]),
    (dict(truncate=0), ValueError, ["truncate", ">= 1", "0"]),
    (dict(truncate=-2), ValueError, ["truncate", "-2"]),
    (dict(truncate=2.0), TypeError, ["truncate", "float"]),
    (dict(truncate=True), TypeError, ["truncate", "bool"]),
    (dict(truncate="3"), TypeError, ["truncate", "str"]),
])
def test_backward_rejects_bad_arguments(forward, kwargs, exc, words):
    out, h_n, cache = forward
    args = dict(cache=cache, dout=np.zeros_like(out))
    args.update(kwargs)
    with pytest.raises(exc) as e:
        fastrnn.elman_backward(**args)
    msg = str(e.value)
    assert msg.startswith("elman_backward: ")
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("bad", [None, {}, "cache", (1, 2, 3)])
def test_backward_rejects_a_non_cache(bad):
    with pytest.raises(TypeError, match="elman_backward: cache must be the ElmanCache"):
        fastrnn.elman_backward(bad, np.zeros((1, 1, 1)))


def test_numpy_integer_truncate_is_accepted(forward):
    out, h_n, cache = forward
    a = fastrnn.elman_backward(cache, np.ones_like(out), truncate=np.int64(2))
    b = fastrnn.elman_backward(cache, np.ones_like(out), truncate=2)
    assert np.array_equal(a.dw_hh, b.dw_hh)


def _digest(arrays):
    return [None if a is None else (a.dtype.str, a.shape, hashlib.sha256(
        np.ascontiguousarray(a).tobytes()).hexdigest()) for a in arrays]


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_inputs_are_never_modified(truncate, dtype):
    a = _args(T=6, B=5)
    a = {k: None if v is None else (v * 3).astype(dtype) for k, v in a.items()}
    rng = np.random.default_rng(0)
    dout = rng.standard_normal((6, 5, 5)).astype(dtype)
    dh_n = rng.standard_normal((5, 5)).astype(dtype)
    before = _digest(list(a.values()) + [dout, dh_n])
    out, h_n, cache = fastrnn.elman_forward(**a)
    out_before = _digest([out, h_n])
    fastrnn.elman_backward(cache, dout, dh_n, truncate=truncate)
    assert _digest(list(a.values()) + [dout, dh_n]) == before
    assert _digest([out, h_n]) == out_before


def test_odd_layouts_give_identical_results():
    a = _args(T=6, B=5, I=3, H=4)
    out, h_n, cache = fastrnn.elman_forward(**a)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    g = fastrnn.elman_backward(cache, dout, truncate=3)

    def fortran(v):
        return np.asfortranarray(v)

    def strided(v):  # a non-contiguous view with the same values
        big = np.zeros(v.shape + (2,), v.dtype)
        big[..., 0] = v
        return big[..., 0]

    def big_endian(v):
        return v.astype(v.dtype.newbyteorder(">"))

    def read_only(v):
        v = v.copy()
        v.flags.writeable = False
        return v

    for f in (fortran, strided, big_endian, read_only, lambda v: v.tolist()):
        b = {k: None if v is None else f(v) for k, v in a.items()}
        out2, h_n2, cache2 = fastrnn.elman_forward(**b)
        g2 = fastrnn.elman_backward(cache2, f(dout), truncate=3)
        assert out2.dtype == np.float64
        assert np.array_equal(out, out2) and np.array_equal(h_n, h_n2)
        for name in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih"):
            assert np.array_equal(getattr(g, name), getattr(g2, name)), name


@pytest.mark.parametrize("dtypes, expected", [
    ((np.float32,) * 6, np.float32),
    ((np.float64,) * 6, np.float64),
    ((np.int32,) * 6, np.float64),
    ((np.bool_,) * 6, np.float64),
    ((np.float16,) * 6, np.float32),
    ((np.float32, np.float32, np.float64, np.float32, np.float32, np.float32), np.float64),
    ((np.float32, np.int64, np.float32, np.float32, np.float32, np.float32), np.float64),
    ((np.float16, np.float32, np.float32, np.float32, np.float32, np.float32), np.float32),
])
def test_dtype_rules(dtypes, expected):
    a = _args()
    a = {k: v.astype(d) for (k, v), d in zip(a.items(), dtypes)}
    out, h_n, cache = fastrnn.elman_forward(**a)
    assert out.dtype == expected and h_n.dtype == expected
    g = fastrnn.elman_backward(cache, np.ones(out.shape, np.float16))
    for name in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        assert getattr(g, name).dtype == expected


@pytest.mark.parametrize("T, B", [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch(T, B):
    a = make_elman(max(T, 1), max(B, 1), 2, 5)
    a["x"] = np.zeros((T, B, 2))
    a["h0"] = np.arange(B * 5, dtype=float).reshape(B, 5)
    out, h_n, cache = fastrnn.elman_forward(**a)
    assert out.shape == (T, B, 5) and h_n.shape == (B, 5)
    assert np.array_equal(h_n, a["h0"])  # T = 0: h_n is h0
    dh_n = np.ones((B, 5))
    g = fastrnn.elman_backward(cache, np.zeros((T, B, 5)), dh_n, truncate=2)
    assert g.dx.shape == (T, B, 2)
    assert np.array_equal(g.dh0, dh_n if T == 0 else np.zeros((B, 5)))
    for name in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        assert not np.any(getattr(g, name))
    # the empty result is also what a zero-sized gradient of a full problem gives
    assert g.dw_ih.shape == (5, 2) and g.dw_hh.shape == (5, 5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_in_an_input_stays_in_its_sequence(nonlinearity, dtype):
    T, B = 6, 5
    a = _args(T=T, B=B, dtype=dtype)
    a["x"] = a["x"].copy()
    a["x"][2, 1, 0] = np.nan
    out, h_n, cache = fastrnn.elman_forward(**a, nonlinearity=nonlinearity)
    assert np.isnan(out[2:, 1]).all()
    assert np.isfinite(out[:2]).all() and np.isfinite(np.delete(out, 1, axis=1)).all()
    g = fastrnn.elman_backward(cache, np.ones_like(out), truncate=None)
    assert np.isnan(g.dw_hh).any() and np.isfinite(np.delete(g.dx, 1, axis=1)).all()


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid", "relu", "identity"])
def test_nan_weights_give_nan_and_no_crash(nonlinearity):
    a = _args()
    a["w_hh"] = a["w_hh"].copy()
    a["w_hh"][0, 0] = np.nan
    out, h_n, cache = fastrnn.elman_forward(**a, nonlinearity=nonlinearity)
    assert np.isnan(out[1:]).any()
    g = fastrnn.elman_backward(cache, np.ones_like(out), truncate=2)
    assert np.isnan(g.dw_hh).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
def test_huge_preactivations_saturate_without_overflow(nonlinearity, dtype):
    a = _args(dtype=dtype)
    a["x"] = (a["x"] * 1e4).astype(dtype)
    with np.errstate(all="raise"):
        out, h_n, cache = fastrnn.elman_forward(**a, nonlinearity=nonlinearity)
        g = fastrnn.elman_backward(cache, np.ones_like(out))
    assert np.isfinite(out).all() and np.isfinite(g.dw_hh).all()
    lo = -1.0 if nonlinearity == "tanh" else 0.0
    assert out.min() >= lo and out.max() <= 1.0
