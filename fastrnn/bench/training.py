"""``python -m fastrnn.bench.training``: what truncation and checkpointing cost.

- Truncated BPTT(k): median time of backward (and of forward + backward) for each k
  against full BPTT, fastrnn only. Only the recurrent product grows with k (the live
  windows are batched into one product per step); the weight-gradient products stay one
  per sequence.
- Checkpointing (``checkpoint=`` of lstm_forward/gru_forward): peak memory and time of
  forward + backward against the ordinary cache, each in a fresh process (peak RSS from
  ``getrusage``, minus the process's RSS after the inputs were made).
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from . import problems
from .harness import measure, set_threads


def _train_fns(cell, p, truncate=None, checkpoint=None):
    import fastrnn

    w = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    kw = {} if checkpoint is None else {"checkpoint": checkpoint}
    if cell == "rnn_tanh":
        fwd = lambda: fastrnn.elman_forward(p["x"], p["h0"], *w)[-1]  # noqa: E731
        bwd = lambda c: fastrnn.elman_backward(c, p["dout"], truncate=truncate)  # noqa: E731
    elif cell == "lstm":
        fwd = lambda: fastrnn.lstm_forward(p["x"], p["h0"], p["c0"], *w, **kw)[-1]  # noqa: E731
        bwd = lambda c: fastrnn.lstm_backward(c, p["dout"], truncate=truncate)  # noqa: E731
    else:
        fwd = lambda: fastrnn.gru_forward(p["x"], p["h0"], *w, **kw)[-1]  # noqa: E731
        bwd = lambda c: fastrnn.gru_backward(c, p["dout"], truncate=truncate)  # noqa: E731
    return fwd, bwd


def truncation_costs(cells, size, ks, repeats, dtype="float32"):
    """Rows: cell, k (None = full), backward median, forward+backward median, and both
    relative to full BPTT."""
    rows = []
    for cell in cells:
        p = problems.make_problem(cell, size, dtype)
        full = {}
        for k in [None, *ks]:
            fwd, bwd = _train_fns(cell, p, truncate=k)
            cache = fwd()
            bwd(cache)  # compile
            b, _ = measure(lambda: bwd(cache), repeats)
            t, _ = measure(lambda: bwd(fwd()), repeats)
            if k is None:
                full = {"backward": b, "train": t}
            rows.append({"cell": cell, "size": size, "k": k, "backward_s": b, "train_s": t,
                         "backward_vs_full": b / full["backward"],
                         "train_vs_full": t / full["train"]})
    return rows


def _rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss():
    """Reset the kernel's peak-RSS counter (Linux >= 4.0): the inputs' float64 temporaries
    must not count as the run's peak. Returns the current RSS in KiB, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _rss_kib("VmRSS")
    except (OSError, StopIteration):
        return None


def _memory_child(spec):
    """In a fresh process: one forward + backward; prints JSON with time and memory."""
    a = json.loads(spec)
    set_threads(a["threads"]) if a["threads"] else None
    T, B, I, H = a["shape"]
    problems.SIZES["_memory"] = (T, B, I, H)
    p = problems.make_problem(a["cell"], "_memory", a["dtype"])
    fwd, bwd = _train_fns(a["cell"], p, checkpoint=a["checkpoint"])
    small = {k: v[:2].copy() if k in ("x", "dout") else v for k, v in p.items()}
    f_small, b_small = _train_fns(a["cell"], small, checkpoint=1 if a["checkpoint"] else None)
    b_small(f_small())  # compile on a 2-step problem, outside the measurement
    base = _reset_peak_rss()  # KiB, inputs made
    if base is None:  # no clear_refs: the peak since the start (an upper bound)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    cache = fwd()
    t1 = time.perf_counter()
    g = bwd(cache)
    t2 = time.perf_counter()
    try:
        peak = _rss_kib("VmHWM")
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"forward_s": t1 - t0, "backward_s": t2 - t1,
                      "peak_growth_mb": (peak - base) / 1024.0,
                      "dw_hh_sum": float(np.sum(g.dw_hh, dtype=np.float64))}))


def checkpoint_costs(cells, shape, checkpoints, dtype="float32", threads=None):
    rows = []
    for cell in cells:
        for ck in [None, *checkpoints]:
            spec = json.dumps({"cell": cell, "shape": shape, "checkpoint": ck, "dtype": dtype,
                               "threads": threads})
            res = subprocess.run([sys.executable, "-m", "fastrnn.bench.training",
                                  "--memory-child", spec], capture_output=True, text=True)
            row = {"cell": cell, "shape": shape, "checkpoint": ck}
            if res.returncode != 0:
                row["error"] = (res.stderr.strip().splitlines() or ["no output"])[-1]
            else:
                row.update(json.loads(res.stdout.strip().splitlines()[-1]))
            rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastrnn.bench.training", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="rnn_tanh,lstm,gru")
    ap.add_argument("--size", default="1000,32,64,128",
                    help="size of the truncation table: a name of fastrnn.bench.SIZES or T,B,I,H")
    ap.add_argument("--truncate", default="1,10,100", help="k values ('' to skip the table)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-shape", default="100000,16,256,256",
                    help="T,B,I,H of the checkpointing comparison ('' to skip it)")
    ap.add_argument("--checkpoints", default="sqrt,100",
                    help="checkpoint values to compare with the ordinary cache")
    ap.add_argument("--json", default="bench-results/training.json")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.memory_child:
        _memory_child(a.memory_child)
        return 0
    cells = [c for c in a.cells.split(",") if c]
    limiter = set_threads(a.threads) if a.threads else None  # noqa: F841
    ks = [int(k) for k in a.truncate.split(",") if k]
    if "," in a.size:
        problems.SIZES[a.size] = tuple(int(v) for v in a.size.split(","))
    report = {}
    if ks:
        report["truncation"] = truncation_costs(cells, a.size, ks, a.repeats)
        print(f"Truncated BPTT(k), (T, B, I, H) = {problems.SIZES[a.size]}, float32, medians:")
        print(f"{'cell':<9}{'k':>6}{'backward ms':>13}{'vs full':>9}{'fwd+bwd ms':>12}"
              f"{'vs full':>9}")
        for r in report["truncation"]:
            print(f"{r['cell']:<9}{str(r['k'] or 'full'):>6}{r['backward_s'] * 1e3:>13.3f}"
                  f"{r['backward_vs_full']:>9.2f}{r['train_s'] * 1e3:>12.3f}"
                  f"{r['train_vs_full']:>9.2f}")
    if a.memory_shape:
        shape = [int(s) for s in a.memory_shape.split(",")]
        cks = [c if c == "sqrt" else int(c) for c in a.checkpoints.split(",") if c]
        gated = [c for c in cells if c != "rnn_tanh"]
        report["checkpoint"] = checkpoint_costs(gated, shape, cks, threads=a.threads)
        print(f"\nCheckpointing, (T, B, I, H) = {tuple(shape)}, float32, one forward + backward "
              "in a fresh process:")
        print(f"{'cell':<7}{'checkpoint':>11}{'forward s':>11}{'backward s':>12}"
              f"{'peak MB':>10}  dW_hh sum")
        for r in report["checkpoint"]:
            if "error" in r:
                print(f"{r['cell']:<7}{str(r['checkpoint']):>11}  failed: {r['error']}")
                continue
            print(f"{r['cell']:<7}{str(r['checkpoint'] or 'none'):>11}{r['forward_s']:>11.2f}"
                  f"{r['backward_s']:>12.2f}{r['peak_growth_mb']:>10.0f}  {r['dw_hh_sum']:.6g}")
        print("peak MB: growth of the peak resident memory over the inputs "
              "(x, dout, weights), which are made first.")
    if a.json:
        import os
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=float)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
