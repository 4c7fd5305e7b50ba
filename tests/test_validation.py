"""Bad input gives clear errors; odd but valid input gives the same answer; inputs are
never modified; dtype rules; empty sizes; NaN propagation."""

import hashlib

import numpy as np
import pytest

import fastrnn

from .cells import CELLS
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
    ("x", np.zeros((4, 3, 7)), ValueError, ["w_ih", "(H, I)", "(5, 7)", "(5, 2)",
                                          "x.shape = (4, 3, 7)"]),
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


@pytest.mark.parametrize("fn, kwargs, exc, words", [
    ("lstm_forward", dict(w_ih=np.zeros((10, 2))), ValueError, ["w_ih", "(4*H, I)", "multiple of 4"]),
    ("lstm_forward", dict(c0=np.zeros((3, 4))), ValueError, ["c0", "(B, H)", "(3, 5)", "(3, 4)"]),
    ("lstm_forward", dict(h0=np.zeros((3, 4))), ValueError, ["h0", "(B, H)", "(3, 5)"]),
    ("lstm_forward", dict(w_hh=np.zeros((20, 4))), ValueError, ["w_hh", "(4*H, H)", "(20, 5)"]),
    ("lstm_forward", dict(w_hr=np.zeros((2, 4))), ValueError, ["w_hr", "(P, H)", "(2, 5)", "(2, 4)"]),
    ("lstm_forward", dict(w_hr=np.zeros((2, 5))), ValueError, ["w_hh", "(4*H, P)", "(20, 2)"]),
    ("lstm_forward", dict(w_hr=np.zeros((0, 5))), ValueError, ["projection size P", "at least 1"]),
    ("lstm_forward", dict(w_hr=np.zeros(5)), ValueError, ["w_hr", "2 dimensions"]),
    ("lstm_forward", dict(c0=np.zeros((3, 5), complex)), TypeError, ["c0", "complex"]),
    ("lstm_forward", dict(b_ih=np.zeros(5)), ValueError, ["b_ih", "(4*H,)", "(20,)", "(5,)"]),
    ("gru_forward", dict(w_ih=np.zeros((14, 2))), ValueError, ["w_ih", "(3*H, I)", "multiple of 3"]),
    ("gru_forward", dict(w_hh=np.zeros((15, 4))), ValueError, ["w_hh", "(3*H, H)", "(15, 5)"]),
    ("gru_forward", dict(b_hh=np.zeros(14)), ValueError, ["b_hh", "(3*H,)", "(15,)"]),
    ("gru_forward", dict(h0=np.zeros((3, 5, 1))), ValueError, ["h0", "2 dimensions"]),
    ("gru_forward", dict(cache=1), TypeError, ["cache", "True or False", "int"]),
])
def test_lstm_and_gru_forward_reject_bad_arguments(fn, kwargs, exc, words):
    cell = CELLS["lstm" if fn.startswith("lstm") else "gru"]
    p = cell.make(4, 3, 2, 5)
    p.update(kwargs)
    with pytest.raises(exc) as e:
        getattr(fastrnn, fn)(**p)
    msg = str(e.value)
    assert msg.startswith(fn + ": ")
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("fn, kwargs, exc, words", [
    ("lstm_backward", dict(dc_n=np.zeros((3, 4))), ValueError, ["dc_n", "(B, H)", "(3, 5)"]),
    ("lstm_backward", dict(dh_n=np.zeros((3, 5, 1))), ValueError, ["dh_n", "2 dimensions"]),
    ("lstm_backward", dict(dout=np.zeros((4, 3, 4))), ValueError, ["dout", "(T, B, H)", "(4, 3, 5)"]),
    ("lstm_backward", dict(truncate=0), ValueError, ["truncate", ">= 1"]),
    ("gru_backward", dict(dout=np.zeros((4, 3, 4))), ValueError, ["dout", "(T, B, H)", "(4, 3, 5)"]),
    ("gru_backward", dict(truncate=1.5), TypeError, ["truncate", "float"]),
])
def test_lstm_and_gru_backward_reject_bad_arguments(fn, kwargs, exc, words):
    cell = CELLS["lstm" if fn.startswith("lstm") else "gru"]
    out, fin, cache = cell.forward(cell.make(4, 3, 2, 5))
    args = dict(cache=cache, dout=np.zeros_like(out))
    args.update(kwargs)
    with pytest.raises(exc) as e:
        getattr(fastrnn, fn)(**args)
    for w in [fn + ": "] + words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("fn, other", [("lstm_backward", "elman"), ("gru_backward", "lstm"),
                                       ("elman_backward", "gru")])
def test_backward_rejects_another_cells_cache(fn, other):
    cell = {"elman": CELLS["rnn_tanh"], "lstm": CELLS["lstm"], "gru": CELLS["gru"]}[other]
    out, _, cache = cell.forward(cell.make(3, 2, 2, 4))
    with pytest.raises(TypeError, match=f"{fn}: cache must be the .*Cache returned by the "
                                        "forward call with cache=True"):
        getattr(fastrnn, fn)(cache, np.zeros_like(out))


def _digest(arrays):
    return [None if a is None else (a.dtype.str, a.shape, hashlib.sha256(
        np.ascontiguousarray(a).tobytes()).hexdigest()) for a in arrays]


def _upstream(cell, p, out, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(out.shape).astype(dtype),
            {n: rng.standard_normal(s).astype(dtype) for n, s in cell.final_shapes(p).items()})


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_inputs_are_never_modified(name, truncate, dtype):
    cell = CELLS[name]
    p = {k: None if v is None else (v * 3).astype(dtype)
         for k, v in cell.make(6, 5, 2, 5).items()}
    out, fin, cache = cell.forward(p)
    dout, dfin = _upstream(cell, p, out, dtype)
    before = _digest(list(p.values()) + [dout] + list(dfin.values()))
    outputs = _digest([out] + list(fin.values()))
    cell.backward(cache, dout, dfin, truncate=truncate)
    assert _digest(list(p.values()) + [dout] + list(dfin.values())) == before
    assert _digest([out] + list(fin.values())) == outputs


def _fortran(v):
    return np.asfortranarray(v)


def _strided(v):  # a non-contiguous view with the same values
    big = np.zeros(v.shape + (2,), v.dtype)
    big[..., 0] = v
    return big[..., 0]


def _big_endian(v):
    return v.astype(v.dtype.newbyteorder(">"))


def _read_only(v):
    v = v.copy()
    v.flags.writeable = False
    return v


@pytest.mark.parametrize("convert", [_fortran, _strided, _big_endian, _read_only, np.ndarray.tolist])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_odd_layouts_give_identical_results(name, convert):
    cell = CELLS[name]
    p = cell.make(6, 5, 3, 4)
    out, fin, cache = cell.forward(p)
    dout, dfin = _upstream(cell, p, out)
    g = cell.backward(cache, dout, dfin, truncate=3)
    q = {k: None if v is None else convert(v) for k, v in p.items()}
    out2, fin2, cache2 = cell.forward(q)
    g2 = cell.backward(cache2, convert(dout), {n: convert(a) for n, a in dfin.items()},
                       truncate=3)
    assert out2.dtype == np.float64 and np.array_equal(out, out2)
    for n in fin:
        assert np.array_equal(fin[n], fin2[n])
    for n in cell.params:
        assert np.array_equal(g[n], g2[n]), n


@pytest.mark.parametrize("dtypes, expected", [
    ((np.float32,) * 3, np.float32),
    ((np.float64,) * 3, np.float64),
    ((np.int32,) * 3, np.float64),
    ((np.bool_,) * 3, np.float64),
    ((np.float16,) * 3, np.float32),
    ((np.float32, np.float64, np.float32), np.float64),
    ((np.float32, np.float32, np.int64), np.float64),
    ((np.float16, np.float32, np.float32), np.float32),
])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_proj", "gru"])
def test_dtype_rules(name, dtypes, expected):
    # dtypes: of x, of the weights, of the initial states (and biases)
    cell = CELLS[name]
    p = cell.make(4, 3, 2, 5)
    group = {"x": 0, "w_ih": 1, "w_hh": 1, "w_hr": 1, "h0": 2, "c0": 2, "b_ih": 2, "b_hh": 2}
    p = {k: v.astype(dtypes[group[k]]) for k, v in p.items()}
    out, fin, cache = cell.forward(p)
    assert out.dtype == expected and all(a.dtype == expected for a in fin.values())
    g = cell.backward(cache, np.ones(out.shape, np.float16), {})
    for n in cell.params:
        assert g[n].dtype == expected


@pytest.mark.parametrize("T, B", [(0, 3), (4, 0), (0, 0)])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_empty_sequence_or_batch(name, T, B):
    cell = CELLS[name]
    p = cell.make(max(T, 1), max(B, 1), 2, 5)
    p["x"] = np.zeros((T, B, 2))
    for n in ("h0", "c0"):
        if n in p:
            p[n] = np.arange(B * p[n].shape[1], dtype=float).reshape(B, p[n].shape[1])
    out, fin, cache = cell.forward(p)
    T_, B_, I, H, P = cell.sizes(p)
    assert out.shape == (T, B, P)
    assert np.array_equal(fin["h_n"], p["h0"])  # T = 0: the final states are the initial ones
    if "c_n" in fin:
        assert np.array_equal(fin["c_n"], p["c0"])
    dfin = {n: np.ones(s) for n, s in cell.final_shapes(p).items()}
    g = cell.backward(cache, np.zeros(out.shape), dfin, truncate=2)
    assert g["x"].shape == (T, B, 2)
    assert np.array_equal(g["h0"], dfin["h_n"] if T == 0 else np.zeros((B, P)))
    for n in cell.params:
        if n not in ("x", "h0", "c0"):
            assert g[n].shape == p[n].shape and not np.any(g[n]), n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CELLS))
def test_nan_in_an_input_stays_in_its_sequence(name, dtype):
    cell = CELLS[name]
    p = cell.make(6, 5, 2, 5, dtype=dtype)
    p["x"][2, 1, 0] = np.nan
    out, fin, cache = cell.forward(p)
    assert np.isnan(out[2:, 1]).all()
    assert np.isfinite(out[:2]).all() and np.isfinite(np.delete(out, 1, axis=1)).all()
    dout = np.ones_like(out)
    g = cell.backward(cache, dout, {})
    assert np.isnan(g["w_hh"]).any() and np.isfinite(np.delete(g["x"], 1, axis=1)).all()


@pytest.mark.parametrize("name", list(CELLS))
def test_nan_weights_give_nan_and_no_crash(name):
    cell = CELLS[name]
    p = cell.make(4, 3, 2, 5)
    p["w_hh"][0, 0] = np.nan
    out, fin, cache = cell.forward(p)
    assert np.isnan(out[1:]).any()
    g = cell.backward(cache, np.ones_like(out), {}, truncate=2)
    assert np.isnan(g["w_hh"]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_sigmoid", "lstm", "lstm_proj", "gru"])
def test_huge_preactivations_saturate_without_overflow(name, dtype):
    cell = CELLS[name]
    p = cell.make(4, 3, 2, 5, dtype=dtype)
    p["x"] = (p["x"] * 1e4).astype(dtype)
    with np.errstate(all="raise"):
        out, fin, cache = cell.forward(p)
        g = cell.backward(cache, np.ones_like(out), {})
    assert np.isfinite(out).all() and all(np.isfinite(g[n]).all() for n in cell.params)
    if not cell.proj:
        lo = 0.0 if cell.nonlinearity == "sigmoid" else -1.0
        assert out.min() >= lo and out.max() <= 1.0


@pytest.mark.parametrize("lengths, exc, words", [
    (np.array([3, 4]), ValueError, ["lengths", "(B,) = (3,)", "(2,)"]),
    (np.array([0, 4, 4]), ValueError, ["lengths", "1..T = 1..4", "0"]),
    (np.array([5, 4, 4]), ValueError, ["lengths", "1..T = 1..4", "5"]),
    (np.array([1.0, 2.0, 3.0]), TypeError, ["lengths", "integers", "float64"]),
    ([[1, 2, 3]], ValueError, ["lengths", "(1, 3)"]),
])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_bad_lengths(name, lengths, exc, words):
    cell = CELLS[name]
    with pytest.raises(exc) as e:
        cell.forward(cell.make(4, 3, 2, 5), lengths=lengths)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_proj", "gru"])
def test_length_one_axes_with_odd_strides(name):
    # NumPy calls an array with a length-1 axis contiguous whatever that axis's
    # stride (x[:, None] has stride 0 there); the kernels must still get valid row strides
    cell = CELLS[name]
    p = cell.make(5, 1, 3, 4)
    q = {k: v for k, v in p.items()}
    q["x"] = p["x"][:, 0][:, None, :]
    q["h0"] = p["h0"][0][None, :]
    assert q["x"].strides[1] == 0 and q["x"].flags.c_contiguous
    out, fin, cache = cell.forward(p)
    out2, fin2, cache2 = cell.forward(q)
    assert np.array_equal(out, out2)
    dout = np.ones_like(out)
    g, g2 = cell.backward(cache, dout, {}), cell.backward(cache2, dout[:, 0][:, None], {})
    for n in cell.params:
        assert np.array_equal(g[n], g2[n])


@pytest.mark.parametrize("target", ["out", "x", "w_ih", "w_hh", "h0", "b_hh"])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_backward_refuses_a_cache_whose_arrays_were_modified(name, target):
    cell = CELLS[name]
    p = cell.make(4, 3, 2, 5)
    out, fin, cache = cell.forward(p)
    arr = out if target == "out" else p[target]
    arr.flat[3] += 1e-6  # even a tiny in-place change
    fn = {"elman": "elman_backward", "lstm": "lstm_backward", "gru": "gru_backward"}[cell.kind]
    with pytest.raises(ValueError, match=f"{fn}: {target} changed after the forward call"):
        cell.backward(cache, np.ones_like(out), {})


@pytest.mark.parametrize("target", ["w_ih", "w_hh", "w_hr"])
@pytest.mark.parametrize("truncate", [None, 2])
def test_backward_refuses_modified_weights_of_a_projected_lstm(target, truncate):
    # the weights' checksums are taken while packing them (forward and backward)
    cell = CELLS["lstm_proj"]
    p = cell.make(4, 3, 2, 5)
    out, fin, cache = cell.forward(p)
    p[target][-1, -1] = -p[target][-1, -1]
    with pytest.raises(ValueError, match=f"lstm_backward: {target} changed after the forward"):
        fastrnn.lstm_backward(cache, np.ones_like(out), truncate=truncate)


def test_layer_backward_refuses_parameters_updated_before_backward():
    m = fastrnn.LSTM(3, 4, num_layers=2, seed=0)
    out, states, cache = m.forward(np.ones((5, 2, 3), np.float32))
    for name, p in m.named_parameters():  # an optimizer step between forward and backward
        p -= 0.1
        break
    with pytest.raises(ValueError, match="LSTM.backward: w_ih changed after the forward call"):
        m.backward(cache, np.ones_like(out))


def _kernel_specialisations():
    import numba

    from fastrnn.kernels import activations, elman, grads, gru, linalg, lstm, parallel
    found = {}
    for mod in (activations, elman, grads, gru, linalg, lstm, parallel):
        for name, obj in vars(mod).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                found[f"{mod.__name__}.{name}"] = len(obj.signatures)
    return found


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_proj", "gru"])
def test_odd_arrays_never_compile_another_kernel(name):
    # after one ordinary call, calls with every kind of odd-but-valid array reuse the
    # same compiled kernels (they are converted once at the boundary)
    cell = CELLS[name]
    p = cell.make(5, 4, 3, 6)

    def both(q, **kw):
        out, fin, cache = cell.forward(q, **kw)
        cell.backward(cache, np.ones(out.shape), {}, truncate=2)
        cell.backward(cache, np.ones(out.shape), {})
        cell.forward(q, cache=False, **kw)

    both(p)
    both(p, lengths=np.array([5, 2, 5, 1]))
    before = _kernel_specialisations()
    variants = [lambda v: np.asfortranarray(v), _strided, _big_endian, _read_only,
                lambda v: v.tolist(), lambda v: v.astype(np.float16).astype(np.float64),
                lambda v: v.astype(np.int64).astype(np.float64)]
    for f in variants:
        both({k: None if v is None else f(v) for k, v in p.items()})
    both(p, lengths=[5, 2, 5, 1])  # lengths as a list
    one = {k: None if v is None else (v[:, :1] if k == "x" else v[:1] if k in ("h0", "c0") else v)
           for k, v in p.items()}
    both(one)  # B = 1
    assert _kernel_specialisations() == before


@pytest.mark.parametrize("gates, lstm", [(1, False), (3, False), (4, True)], ids=str)
@pytest.mark.parametrize("variant", ["plain", "packed", "no_h0", "no_bias", "float32",
                                     "strided_h0", "int_x", "mixed", "readonly_w", "T0"])
def test_quick_checks_accept_what_the_whole_checks_give(gates, lstm, variant, monkeypatch):
    # _ready_inputs (the common case in a few comparisons) returns exactly what the whole
    # checks return, or None (they then run): the same arrays, not copies, where no
    # conversion is needed
    from fastrnn.functional import _common

    T, B, I, H = (0 if variant == "T0" else 3), 2, 4, 5
    dt = np.float32 if variant == "float32" else np.float64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.int64 if variant == "int_x" else dt)
    w_ih, w_hh = rng.standard_normal((gates * H, I)).astype(dt), rng.standard_normal(
        (gates * H, H)).astype(np.float32 if variant == "mixed" else dt)
    if variant == "readonly_w":
        w_hh.flags.writeable = False
    h0 = np.ones((B, 2 * H), dt)[:, ::2] if variant == "strided_h0" else np.ones((B, H), dt)
    b = None if variant == "no_bias" else np.zeros(gates * H, dt)
    if variant == "packed":
        w_ih, w_hh = fastrnn.pack_weight(w_ih), fastrnn.pack_weight(w_hh)
    args = (x, None if variant == "no_h0" else h0, w_ih, w_hh, b, b)
    kw = dict(c0=h0.copy() if lstm else None, lstm=lstm)
    quick = _common._ready_inputs(*args, gates, kw["c0"], None, lstm, None)
    monkeypatch.setattr(_common, "_ready_inputs", lambda *a: None)
    whole = _common._check_inputs("f", *args, gates=gates, **kw)
    if variant in ("strided_h0", "int_x", "mixed", "readonly_w", "T0"):
        assert quick is None
        return
    assert quick is not None
    for field in ("dtype", "gates", "ragged", "shape"):
        assert getattr(quick, field) == getattr(whole, field), field
    for field in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "c0", "w_hr", "lengths"):
        q, w = getattr(quick, field), getattr(whole, field)
        assert (q is None) == (w is None), field
        if q is not None:
            assert q.dtype == w.dtype and np.array_equal(q, w), field
            assert q.flags.carray, field
    for field in ("x", "w_ih", "w_hh", "b_ih", "b_hh"):  # no copies
        assert getattr(quick, field) is getattr(whole, field), field
    assert all(q is w for q, w in zip(quick.packed, whole.packed))
