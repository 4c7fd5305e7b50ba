"""pack_weight: forwards with weights packed once give the same bits as with arrays."""

import numpy as np
import pytest

import fastrnn

from .conftest import SHAPES


def _problem(cell, T, B, I, H, dtype, proj=0, seed=0):
    rng = np.random.default_rng(seed)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    P = proj or H
    p = {"x": rng.standard_normal((T, B, I)),
         "w_ih": rng.standard_normal((G * H, I)) / np.sqrt(I),
         "w_hh": 0.5 * rng.standard_normal((G * H, P)) / np.sqrt(P),
         "b_ih": 0.1 * rng.standard_normal(G * H), "b_hh": 0.1 * rng.standard_normal(G * H),
         "w_hr": rng.standard_normal((P, H)) / np.sqrt(H) if proj else None}
    return {k: None if a is None else a.astype(dtype) for k, a in p.items()}


def _forward(cell, p, w_ih, w_hh, w_hr=None, cache=False):
    args = (p["x"], None, w_ih, w_hh, p["b_ih"], p["b_hh"])
    if cell == "rnn":
        out, h_n, c = fastrnn.elman_forward(*args, cache=cache)
        return out, (h_n,), c
    if cell == "lstm":
        out, h_n, c_n, c = fastrnn.lstm_forward(args[0], None, None, *args[2:], w_hr=w_hr,
                                                cache=cache)
        return out, (h_n, c_n), c
    out, h_n, c = fastrnn.gru_forward(*args, cache=cache)
    return out, (h_n,), c


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_weights_give_the_same_bits(cell, shape, dtype):
    p = _problem(cell, *shape, dtype)
    plain = _forward(cell, p, p["w_ih"], p["w_hh"])
    packed = _forward(cell, p, fastrnn.pack_weight(p["w_ih"]), fastrnn.pack_weight(p["w_hh"]))
    assert packed[0].dtype == np.dtype(dtype)
    assert np.array_equal(packed[0], plain[0])
    for a, b in zip(packed[1], plain[1]):
        assert np.array_equal(a, b)


def test_packed_projection_and_mixed_arguments(dtype):
    p = _problem("lstm", 6, 3, 4, 5, dtype, proj=3)
    plain = _forward("lstm", p, p["w_ih"], p["w_hh"], p["w_hr"])
    for w_ih, w_hh, w_hr in [(fastrnn.pack_weight(p["w_ih"]), p["w_hh"],
                              fastrnn.pack_weight(p["w_hr"])),
                             (p["w_ih"], fastrnn.pack_weight(p["w_hh"]), p["w_hr"])]:
        got = _forward("lstm", p, w_ih, w_hh, w_hr)
        assert np.array_equal(got[0], plain[0])
        assert all(np.array_equal(a, b) for a, b in zip(got[1], plain[1]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_from_a_packed_forward(cell):
    p = _problem(cell, 5, 3, 4, 6, np.float64)
    out, _, cache = _forward(cell, p, p["w_ih"], p["w_hh"], cache=True)
    out2, _, cache2 = _forward(cell, p, fastrnn.pack_weight(p["w_ih"]),
                               fastrnn.pack_weight(p["w_hh"]), cache=True)
    backward = {"rnn": fastrnn.elman_backward, "lstm": fastrnn.lstm_backward,
                "gru": fastrnn.gru_backward}[cell]
    dout = np.cos(out)
    g, g2 = backward(cache, dout), backward(cache2, dout)
    for n in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        assert np.array_equal(getattr(g, n), getattr(g2, n)), n


def test_packed_weight_is_a_private_copy():
    p = _problem("gru", 4, 2, 3, 5, np.float32)
    w_hh = p["w_hh"].copy()
    packed = fastrnn.pack_weight(w_hh)
    before = _forward("gru", p, p["w_ih"], packed)[0]
    w_hh[:] = 7.0  # the original changes; the packed copy does not
    assert np.array_equal(_forward("gru", p, p["w_ih"], packed)[0], before)
    assert np.array_equal(packed.array, p["w_hh"])
    assert packed.shape == w_hh.shape and packed.dtype == np.float32
    with pytest.raises(ValueError):
        packed.array[0, 0] = 1.0  # read-only
    assert "PackedWeight(shape=(15, 5)" in repr(packed)


def test_dtype_of_packed_weights():
    p = _problem("rnn", 4, 2, 3, 5, np.float64)
    w32 = p["w_hh"].astype(np.float32)
    assert fastrnn.pack_weight(np.ones((2, 3), int)).dtype == np.float64
    assert fastrnn.pack_weight(np.ones((2, 3), np.float16)).dtype == np.float32
    assert fastrnn.pack_weight(w32, dtype=np.float64).dtype == np.float64
    assert fastrnn.pack_weight(fastrnn.pack_weight(w32)).dtype == np.float32
    # float32 packed weights in a float64 forward: converted and packed as an array would be
    got = _forward("rnn", p, p["w_ih"], fastrnn.pack_weight(w32))[0]
    assert got.dtype == np.float64
    assert np.array_equal(got, _forward("rnn", p, p["w_ih"], w32)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="pack_weight: w must have 2 dimensions"):
        fastrnn.pack_weight(np.ones(3))
    with pytest.raises(ValueError, match="at least one row"):
        fastrnn.pack_weight(np.ones((0, 3)))
    with pytest.raises(TypeError, match="pack_weight: w must have a real numeric dtype"):
        fastrnn.pack_weight(np.ones((2, 2), complex))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fastrnn.pack_weight(np.ones((2, 2)), dtype=np.int32)
    p = _problem("gru", 4, 2, 3, 5, np.float32)
    with pytest.raises(ValueError, match=r"gru_forward: w_hh must have shape \(3\*H, H\)"):
        _forward("gru", p, p["w_ih"], fastrnn.pack_weight(np.ones((15, 4), np.float32)))
