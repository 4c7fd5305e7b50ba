"""fastrnn from many threads at once and after fork: same results as serial calls, no
abort, whatever Numba's threading layer."""

import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastrnn

from fastrnn.functional import _common

from .cells import CELLS

#: "all": every array that grows with T made from recycled blocks (``_common._empty``),
#: as arrays of 32 MB and more are; "default": the size threshold as shipped
RECYCLING = ["default", "all"]


@pytest.fixture
def recycling(request, monkeypatch):
    if request.param == "all":
        monkeypatch.setattr(_common, "RECYCLE_MIN_BYTES", 0)
    yield request.param
    # (blocks recycled here stay in the idle list; harmless for later tests)


def _problem(name):
    cell = CELLS[name]
    p = cell.make(12, 40, 8, 16, dtype=np.float32, seed=1)
    out, fin, cache = cell.forward(p)
    g = cell.backward(cache, np.ones_like(out), {}, truncate=4)
    return cell, p, out, g


def _same(cell, p, out, g):
    o, f, c = cell.forward(p)
    gg = cell.backward(c, np.ones_like(o), {}, truncate=4)
    return np.array_equal(o, out) and all(np.array_equal(gg[n], g[n]) for n in cell.params)


@pytest.mark.parametrize("recycling", RECYCLING, indirect=True)
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_results_share_no_memory_with_later_calls(name, recycling):
    # temporaries are reused across calls on a thread (functional._common._scratch), and
    # large arrays are made from blocks no array refers to any more (_empty): nothing
    # returned, kept in a cache, or streamed may live in them
    cell = CELLS[name]
    p = cell.make(9, 5, 3, 6, dtype=np.float32, seed=2)
    out, fin, cache = cell.forward(p)
    g = cell.backward(cache, np.ones_like(out), {}, truncate=None)
    gt = cell.backward(cache, np.ones_like(out), {}, truncate=3)
    inf_out, inf_fin, _ = cell.forward(p, cache=False)
    results = [out, *fin.values(), *g.values(), *gt.values(), inf_out, *inf_fin.values()]
    saved = [a.copy() for a in results if a is not None]
    other = cell.make(7, 4, 2, 5, dtype=np.float32, seed=3)  # smaller: same buffers
    for _ in range(2):
        cell.forward(p, cache=False)  # the same sizes
        o, f, c = cell.forward(other)
        cell.backward(c, -np.ones_like(o), {}, truncate=None)
        cell.backward(c, -np.ones_like(o), {}, truncate=2)
        cell.forward(other, cache=False)
        x, w_ih, w_hh = other["x"], other["w_ih"], other["w_hh"]
        if name == "lstm":
            fastrnn.lstm_forward(x, None, None, w_ih, w_hh, cache=False, keep_out=False)
        else:
            fn = fastrnn.elman_forward if name == "rnn_tanh" else fastrnn.gru_forward
            fn(x, None, w_ih, w_hh, cache=False, keep_out=False)
    again = cell.backward(cache, np.ones_like(out), {}, truncate=None)
    now = [a for a in results if a is not None]
    assert all(np.array_equal(a, b) for a, b in zip(now, saved))
    assert all(np.array_equal(again[n], g[n]) for n in cell.params if g[n] is not None)


@pytest.mark.parametrize("recycling", RECYCLING, indirect=True)
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_eight_threads_at_once_match_serial_calls(name, recycling):
    cell, p, out, g = _problem(name)
    barrier = threading.Barrier(8)
    results = []

    def work():
        barrier.wait()  # start together
        results.append(all(_same(cell, p, out, g) for _ in range(5)))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8


def test_thread_pool_server_loop():
    # a server-like loop: many small requests of mixed cells and sizes on a pool
    layers = {"rnn": fastrnn.RNN(4, 8, seed=0), "lstm": fastrnn.LSTM(4, 8, num_layers=2, seed=1),
              "gru": fastrnn.GRU(4, 8, bidirectional=True, seed=2)}
    rng = np.random.default_rng(0)
    requests = [(kind, rng.standard_normal((int(rng.integers(1, 30)), int(rng.integers(1, 9)), 4))
                 .astype(np.float32)) for kind in ["rnn", "lstm", "gru"] * 20]
    expected = [layers[k](x)[0] for k, x in requests]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda r: layers[r[0]](r[1])[0], requests))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


SCRIPT = textwrap.dedent("""
    import os, sys, threading, multiprocessing as mp
    import numpy as np, fastrnn
    from fastrnn import _threads

    def run(seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((30, 40, 8))
        lstm = fastrnn.LSTM(8, 16, num_layers=2, dtype=np.float64, seed=seed)
        out, h, cache = lstm.forward(x)
        g = lstm.backward(cache, np.ones_like(out), truncate=5)
        return float(out.sum()), float(g.params["weight_hh_l0"].sum())

    if __name__ == "__main__":
        expected = [run(s) for s in range(4)]  # the parent uses the parallel kernels first
        layer = _threads.threading_layer()
        # threads at once
        results = [None] * 4
        def work(i):
            results[i] = run(i)
        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert results == expected, "threads"
        # forked children (multiprocessing with fork)
        with mp.get_context("fork").Pool(2) as pool:
            assert pool.map(run, range(4)) == expected, "fork"
        print("ok", layer)
""")


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_threads_and_fork_in_a_fresh_process(layer, tmp_path):
    # the default layer here is GNU OpenMP (not fork-safe); workqueue is not
    # thread-safe: fastrnn must survive both
    if sys.platform == "win32":
        pytest.skip("no fork on Windows")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(os.path.dirname(fastrnn.__file__)))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().startswith("ok")


def test_recycled_blocks(monkeypatch):
    # a block is reused only once no array refers to it (views included), for an array
    # of at most its size and at least half; idle blocks beyond the cap are freed
    monkeypatch.setattr(_common, "RECYCLE_MIN_BYTES", 1 << 10)
    monkeypatch.setattr(_common, "RECYCLE_IDLE_MAX_BYTES", 1 << 15)
    idle = _common._idle
    saved = idle[:]
    idle.clear()
    try:
        small = _common._empty((10,), np.float32)  # under the threshold: np.empty
        assert not isinstance(small.base, _common._Block)
        a = _common._empty((32, 16), np.float64)  # 4 KB
        assert a.shape == (32, 16) and a.dtype == np.float64 and a.flags.c_contiguous
        address = a.ctypes.data
        view = a[3:, ::2]
        del a
        assert idle == []
        b = _common._empty((32, 16), np.float64)
        assert b.ctypes.data != address  # a view of the first is alive
        del view
        assert [m.ctypes.data for m in idle] == [address]
        c = _common._empty((16, 16), np.float32)  # 1 KB: less than half the block
        assert c.ctypes.data != address
        d = _common._empty((3, 5, 40), np.float32)  # 2.4 KB: fits
        assert d.ctypes.data == address and idle == []
        del b, c, d
        assert len(idle) == 3
        big = [_common._empty((1 << 12,), np.float32) for _ in range(4)]  # 16 KB each
        del big
        assert sum(m.nbytes for m in idle) <= 1 << 15  # the rest went back to the system
    finally:
        idle[:] = saved


def test_recycled_arrays_left_at_exit_make_no_noise():
    # the blocks' owners return them from __del__, which also runs at interpreter exit
    code = textwrap.dedent("""
        import numpy as np
        from fastrnn.functional import _common
        _common.RECYCLE_MIN_BYTES = 0
        kept = [_common._empty((100, 7), np.float32) for _ in range(3)]
        gone = _common._empty((100, 7), np.float32)
        del gone
        import fastrnn
        p = np.ones((4, 2, 3), np.float32)
        out, h_n, c_n, cache = fastrnn.lstm_forward(p, None, None, np.ones((8, 3), np.float32),
                                                    np.ones((8, 2), np.float32))
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr
