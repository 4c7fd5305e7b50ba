"""Checkpointed caches (``checkpoint=`` of lstm_forward/gru_forward): the cache keeps a
state every k steps, backward recomputes the segments, and the gradients are those of the
full cache (and of the NumPy reference)."""

import numba
import numpy as np
import pytest

import fastrnn

from .cells import CELLS
from .conftest import assert_close

GATED = ["lstm", "lstm_proj", "gru"]


def _forward(cell, p, **kw):
    f = fastrnn.lstm_forward if cell.kind == "lstm" else fastrnn.gru_forward
    r = f(**p, **kw)
    return r[0], r[-1]


def _backward(cell, cache, dout, dfin, truncate=None):
    if cell.kind == "lstm":
        return fastrnn.lstm_backward(cache, dout, dfin["h_n"], dfin["c_n"], truncate=truncate)
    return fastrnn.gru_backward(cache, dout, dfin["h_n"], truncate=truncate)


def _upstream(cell, p, out):
    rng = np.random.default_rng(7)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    dfin = {n: rng.standard_normal(s).astype(out.dtype) for n, s in cell.final_shapes(p).items()}
    return dout, dfin


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 3, 2), (23, 5, 4, 6), (13, 33, 17, 31)],
                         ids=str)
@pytest.mark.parametrize("checkpoint", [1, 3, "sqrt", "T-1"])
@pytest.mark.parametrize("name", GATED)
def test_checkpointed_gradients_match_reference_and_full_cache(name, checkpoint, shape, dtype):
    cell = CELLS[name]
    p = cell.make(*shape, dtype=dtype)
    T = shape[0]
    k = max(1, T - 1) if checkpoint == "T-1" else checkpoint
    out, full = _forward(cell, p)
    out_ck, ck = _forward(cell, p, checkpoint=k)
    assert np.array_equal(out_ck, out)
    dout, dfin = _upstream(cell, p, out)
    got = _backward(cell, ck, dout, dfin)
    want = _backward(cell, full, dout, dfin)
    r_out, _, saved = cell.ref_forward(p)
    ref = cell.ref_backward(p, r_out, saved, dout, dfin)
    for n, a in ref.items():
        field = "d" + n
        g = getattr(got, field)
        if a is None:
            assert g is None
            continue
        assert_close(g, a, dtype, scale=10, what=n)
        assert_close(g, getattr(want, field), dtype, scale=10, what=n)


@pytest.mark.parametrize("name", GATED)
def test_checkpointed_cache_keeps_no_gates(name):
    cell = CELLS[name]
    T, B, H = 100, 3, 5
    p = cell.make(T, B, 4, H)
    _, ck = _forward(cell, p, checkpoint="sqrt")
    assert ck.checkpoint == 10 and ck.gates is None
    if cell.kind == "lstm":
        assert ck.cs.shape == (10, B, H)  # c at the start of each segment
    else:
        assert ck.ghn is None
    _, same = _forward(cell, p, checkpoint=T)  # one segment: an ordinary cache
    assert same.checkpoint == 0 and same.gates.shape == (T, B, cell.gates * H)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_checkpointed_gradients_do_not_depend_on_threads(name):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    cell = CELLS[name]
    p = cell.make(30, 70, 5, 4, dtype=np.float32)
    out, ck = _forward(cell, p, checkpoint=4)
    dout, dfin = _upstream(cell, p, out)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _backward(cell, ck, dout, dfin)
        numba.set_num_threads(2)
        two = _backward(cell, ck, dout, dfin)
    finally:
        numba.set_num_threads(saved)
    for a, b in zip(vars(one).values(), vars(two).values()):
        assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_checkpoint_empty_and_inference(name):
    cell = CELLS[name]
    for shape in [(0, 3, 2, 4), (5, 0, 2, 4)]:
        p = cell.make(*shape)
        out, ck = _forward(cell, p, checkpoint=2)
        dout, dfin = _upstream(cell, p, out)
        g = _backward(cell, ck, dout, dfin)
        assert g.dx.shape == shape[:3] and not np.any(g.dw_hh)
    p = cell.make(9, 2, 3, 4)
    out, none = _forward(cell, p, checkpoint=3, cache=False)  # nothing to keep
    assert none is None and np.array_equal(out, _forward(cell, p)[0])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_checkpoint_bad_arguments(name):
    cell = CELLS[name]
    p = cell.make(9, 2, 3, 4)
    fn = "lstm_forward" if cell.kind == "lstm" else "gru_forward"
    for bad, exc in [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError),
                     ("half", TypeError), ([3], TypeError)]:
        with pytest.raises(exc, match=f"{fn}: checkpoint must be None, 'sqrt' or an integer"):
            _forward(cell, p, checkpoint=bad)
    with pytest.raises(ValueError, match="checkpoint needs full-length sequences"):
        _forward(cell, p, checkpoint=3, lengths=[9, 4])
    out, ck = _forward(cell, p, checkpoint=3, lengths=[9, 9])
    dout, dfin = _upstream(cell, p, out)
    with pytest.raises(ValueError, match="truncate=2 needs a cache with every step"):
        _backward(cell, ck, dout, dfin, truncate=2)
    _backward(cell, ck, dout, dfin, truncate=9)  # k >= T is full BPTT
