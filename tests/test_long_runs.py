"""The inference path streams: a forward with cache=False of any length needs memory for
its inputs and outputs only (plus a bounded gate buffer)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastrnn
from fastrnn import functional

from .cells import CELLS
from .conftest import assert_close


@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_streamed_inference_equals_one_pass(name, monkeypatch, dtype):
    cell = CELLS[name]
    p = cell.make(37, 3, 4, 5, dtype=dtype)
    out, fin, _ = cell.forward(p, cache=False)
    monkeypatch.setattr(functional._common, "STREAM_ELEMENTS", 3 * 4 * 5 * 4)  # chunks of 4-5 steps
    out2, fin2, _ = cell.forward(p, cache=False)
    assert_close(out2, out, dtype)
    for n in fin:
        assert_close(fin2[n], fin[n], dtype)
    # keep_out=False: the same final states, no out
    f = {"elman": fastrnn.elman_forward, "lstm": fastrnn.lstm_forward,
         "gru": fastrnn.gru_forward}[cell.kind]
    kw = {"nonlinearity": cell.nonlinearity} if cell.kind == "elman" else {}
    res = f(**p, cache=False, keep_out=False, **kw)
    assert res[0] is None and res[-1] is None
    assert_close(res[1], fin["h_n"], dtype)
    if cell.kind == "lstm":
        assert_close(res[2], fin["c_n"], dtype)


@pytest.mark.parametrize("fn", ["elman_forward", "lstm_forward", "gru_forward"])
def test_keep_out_arguments(fn):
    rng = np.random.default_rng(0)
    G = {"elman_forward": 1, "lstm_forward": 4, "gru_forward": 3}[fn]
    args = [rng.standard_normal((5, 2, 3)), None] + ([None] if fn == "lstm_forward" else [])
    args += [rng.standard_normal((G * 4, 3)), rng.standard_normal((G * 4, 4))]
    f = getattr(fastrnn, fn)
    with pytest.raises(ValueError, match=f"{fn}: keep_out=False needs cache=False"):
        f(*args, keep_out=False)
    with pytest.raises(TypeError, match=f"{fn}: keep_out"):
        f(*args, cache=False, keep_out="no")


SCRIPT = textwrap.dedent("""
    import resource, sys, time
    import numpy as np, fastrnn
    cell, T, keep_out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "keep"
    H, I = 32, 4
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    rng = np.random.default_rng(0)
    w_ih = (rng.standard_normal((G * H, I)) * 0.3).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) * 0.1).astype(np.float32)
    small = rng.standard_normal((10, 1, I)).astype(np.float32)
    kw = dict(cache=False, keep_out=keep_out)
    run = {"rnn": lambda x: fastrnn.elman_forward(x, None, w_ih, w_hh, **kw),
           "lstm": lambda x: fastrnn.lstm_forward(x, None, None, w_ih, w_hh, **kw),
           "gru": lambda x: fastrnn.gru_forward(x, None, w_ih, w_hh, **kw)}[cell]
    run(small)  # compile / load, then measure the long run alone
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = run(x)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    out, h_n = res[0], res[1]
    assert np.isfinite(h_n).all() and (out is None) != keep_out
    print(peak * 1024, x.nbytes, 0 if out is None else out.nbytes, seconds)
""")


@pytest.mark.slow
@pytest.mark.parametrize("keep_out", ["keep", "stream"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_million_steps_in_bounded_memory(cell, keep_out, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss in KiB is Linux's")
    script = tmp_path / "long.py"
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script), cell, "1000000", keep_out],
                         capture_output=True,
                         text=True, check=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(fastrnn.__file__)))
    peak, x_bytes, out_bytes, seconds = (float(v) for v in res.stdout.split())
    # the output (out: 128 MB, none with keep_out=False) plus at most 32 MB of anything
    # else (x, 16 MB, is made before the measurement starts); without streaming the
    # LSTM's gate buffer alone would add 512 MB
    assert peak <= out_bytes + 32e6, (peak, out_bytes, x_bytes)
    if keep_out == "stream":
        assert out_bytes == 0
