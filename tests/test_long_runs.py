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
    monkeypatch.setattr(functional, "STREAM_ELEMENTS", 3 * 4 * 5 * 4)  # chunks of 4-5 steps
    out2, fin2, _ = cell.forward(p, cache=False)
    assert_close(out2, out, dtype)
    for n in fin:
        assert_close(fin2[n], fin[n], dtype)


SCRIPT = textwrap.dedent("""
    import resource, sys, time
    import numpy as np, fastrnn
    cell, T = sys.argv[1], int(sys.argv[2])
    H, I = 32, 4
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    rng = np.random.default_rng(0)
    w_ih = (rng.standard_normal((G * H, I)) * 0.3).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) * 0.1).astype(np.float32)
    small = rng.standard_normal((10, 1, I)).astype(np.float32)
    run = {"rnn": lambda x: fastrnn.elman_forward(x, None, w_ih, w_hh, cache=False),
           "lstm": lambda x: fastrnn.lstm_forward(x, None, None, w_ih, w_hh, cache=False),
           "gru": lambda x: fastrnn.gru_forward(x, None, w_ih, w_hh, cache=False)}[cell]
    run(small)  # compile / load, then measure the long run alone
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = run(x)[0]
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    assert np.isfinite(out).all()
    print(peak * 1024, x.nbytes, out.nbytes, seconds)
""")


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_million_steps_in_bounded_memory(cell, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss in KiB is Linux's")
    script = tmp_path / "long.py"
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script), cell, "1000000"], capture_output=True,
                         text=True, check=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(fastrnn.__file__)))
    peak, x_bytes, out_bytes, seconds = (float(v) for v in res.stdout.split())
    # inputs and outputs (x and out: 16 + 128 MB) plus at most 32 MB of anything else;
    # without streaming the LSTM's gate buffer alone would add 512 MB
    assert peak <= out_bytes + x_bytes + 32e6, (peak, out_bytes)
