"""Per-step latency of one recurrent step at simulation sizes: ``python -m fastrnn.bench.steps``.

One Elman/LSTM/GRU step, batch 1, hidden size H in {16, 32, 64, 128}, input size I
(``--input``: a number, or ``H``; default 8, a controller's few sensors):
fastrnn's step kernel called from an ``@njit`` loop (10^6 steps, fewer for large H),
against the same step in a NumPy loop, ``torch.nn.*Cell`` under ``no_grad`` and a jitted
JAX step, when installed. Every framework's step is checked against fastrnn's on the
same weights before timing. Reports microseconds per step and ratios.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from numba import njit

import fastrnn
from fastrnn import kernels as K
from fastrnn.reference._common import sigmoid as np_sigmoid

CELLS = ("rnn_tanh", "lstm", "gru")
GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3}


@njit
def _loop(kind, n, x, h, c, h2, c2, gates, w_ih_t, w_hh_t, b, b_ih, b_hh, w_hr_t):
    # n iterations of two steps (the state ping-pongs between two buffers)
    for i in range(n):
        if kind == 0:
            K.elman_step(h2, x, h, w_ih_t, w_hh_t, b, K.TANH)
            K.elman_step(h, x, h2, w_ih_t, w_hh_t, b, K.TANH)
        elif kind == 1:
            K.lstm_step(h2, c2, gates, x, h, c, w_ih_t, w_hh_t, b, w_hr_t)
            K.lstm_step(h, c, gates, x, h2, c2, w_ih_t, w_hh_t, b, w_hr_t)
        else:
            K.gru_step(h2, gates, x, h, w_ih_t, w_hh_t, b_ih, b_hh)
            K.gru_step(h, gates, x, h2, w_ih_t, w_hh_t, b_ih, b_hh)


def _weights(cell, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G, k = GATES[cell], 1 / np.sqrt(H)
    p = {n: rng.uniform(-k, k, s) for n, s in [("w_ih", (G * H, I)), ("w_hh", (G * H, H)),
                                               ("b_ih", (G * H,)), ("b_hh", (G * H,))]}
    return {n: a.astype(dtype) for n, a in p.items()}


class _FastRNN:
    name = "fastrnn"

    def __init__(self, cell, p, x, h, c):
        self.kind = CELLS.index(cell)
        self.w = fastrnn.step_weights(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        H = h.shape[1]
        self.x, self.h, self.c = x.copy(), h.copy(), c.copy()
        self.h2, self.c2 = np.empty_like(self.h), np.empty_like(self.c)
        self.gates = np.empty((1, 6 * H), x.dtype)

    def run(self, steps):
        w = self.w
        _loop(self.kind, steps // 2, self.x, self.h, self.c, self.h2, self.c2,
              self.gates[:, : 4 * self.h.shape[1]] if self.kind == 1 else self.gates,
              w.w_ih_t, w.w_hh_t, w.b, w.b_ih, w.b_hh, w.w_hr_t)

    def one(self):
        self.run(2)
        return self.h


class _NumPy:
    name = "numpy"

    def __init__(self, cell, p, x, h, c):
        self.cell = cell
        self.wi, self.wh = p["w_ih"].T.copy(), p["w_hh"].T.copy()
        self.b, self.bi, self.bh = p["b_ih"] + p["b_hh"], p["b_ih"], p["b_hh"]
        self.x, self.h, self.c = x, h.copy(), c.copy()

    def step(self):
        x, h, c, H = self.x, self.h, self.c, self.h.shape[1]
        if self.cell == "rnn_tanh":
            self.h = np.tanh(x @ self.wi + h @ self.wh + self.b)
        elif self.cell == "lstm":
            a = x @ self.wi + h @ self.wh + self.b
            i, f, o = np_sigmoid(a[:, :H]), np_sigmoid(a[:, H:2 * H]), np_sigmoid(a[:, 3 * H:])
            self.c = f * c + i * np.tanh(a[:, 2 * H:3 * H])
            self.h = o * np.tanh(self.c)
        else:
            gi, gh = x @ self.wi + self.bi, h @ self.wh + self.bh
            r = np_sigmoid(gi[:, :H] + gh[:, :H])
            z = np_sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            self.h = (1 - z) * n + z * h

    def run(self, steps):
        for _ in range(steps):
            self.step()

    def one(self):
        self.run(2)
        return self.h


class _Torch:
    name = "torch"

    @staticmethod
    def available():
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, cell, p, x, h, c):
        import torch
        H = h.shape[1]
        dt = torch.float32 if x.dtype == np.float32 else torch.float64
        cls = {"rnn_tanh": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
        self.m = cls[cell](x.shape[1], H, dtype=dt)
        with torch.no_grad():
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(self.m, theirs).copy_(torch.from_numpy(p[ours]))
        self.lstm = cell == "lstm"
        self.x, self.h, self.c = (torch.from_numpy(a.copy()) for a in (x, h, c))
        self.torch = torch

    def run(self, steps):
        with self.torch.no_grad():
            m, x, h, c = self.m, self.x, self.h, self.c
            for _ in range(steps):
                if self.lstm:
                    h, c = m(x, (h, c))
                else:
                    h = m(x, h)
            self.h, self.c = h, c

    def one(self):
        self.run(2)
        return self.h.numpy()


class _JAX:
    name = "jax"

    @staticmethod
    def available():
        try:
            import jax  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, cell, p, x, h, c):
        import jax
        import jax.numpy as jnp
        H = h.shape[1]
        wi, wh = jnp.asarray(p["w_ih"].T), jnp.asarray(p["w_hh"].T)
        bi, bh = jnp.asarray(p["b_ih"]), jnp.asarray(p["b_hh"])

        def step(x, h, c):
            if cell == "rnn_tanh":
                return jnp.tanh(x @ wi + h @ wh + bi + bh), c
            if cell == "lstm":
                a = x @ wi + h @ wh + bi + bh
                i, f = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H])
                c2 = f * c + i * jnp.tanh(a[:, 2 * H:3 * H])
                return jax.nn.sigmoid(a[:, 3 * H:]) * jnp.tanh(c2), c2
            gi, gh = x @ wi + bi, h @ wh + bh
            r = jax.nn.sigmoid(gi[:, :H] + gh[:, :H])
            z = jax.nn.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = jnp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            return (1 - z) * n + z * h, c

        self.step = jax.jit(step)
        self.x, self.h, self.c = jnp.asarray(x), jnp.asarray(h), jnp.asarray(c)

    def run(self, steps):
        x, h, c = self.x, self.h, self.c
        for _ in range(steps):
            h, c = self.step(x, h, c)
        h.block_until_ready()
        self.h, self.c = h, c

    def one(self):
        self.run(2)
        return np.asarray(self.h)


FRAMEWORKS = {"fastrnn": _FastRNN, "numpy": _NumPy, "torch": _Torch, "jax": _JAX}


def measure(cls, cell, I, H, dtype, max_steps, budget, repeats):
    """Microseconds per step (median of ``repeats`` runs of n steps), and n."""
    p = _weights(cell, I, H, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, I)).astype(dtype)
    h = (0.1 * rng.standard_normal((1, H))).astype(dtype)
    c = (0.1 * rng.standard_normal((1, H))).astype(dtype)
    ref = _FastRNN(cell, p, x, h, c).one()
    fw = cls(cell, p, x, h, c)
    got = fw.one()
    err = float(np.max(np.abs(np.asarray(got, np.float64) - ref)))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    if not err <= tol:
        return {"ok": False, "check_error": err}
    fw.run(100)  # warm-up
    t0 = time.perf_counter()
    fw.run(100)
    per = max((time.perf_counter() - t0) / 100, 1e-9)
    n = int(min(max_steps, max(100, budget / per)))
    n += n % 2
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fw.run(n)
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return {"ok": True, "check_error": err, "us_per_step": float(np.median(samples)), "steps": n}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastrnn.bench.steps", description=__doc__)
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--hidden", default="16,32,64,128")
    ap.add_argument("--input", default="8", help="input size I: a number, or H")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--frameworks", default="fastrnn,numpy,torch,jax")
    ap.add_argument("--steps", type=int, default=1_000_000, help="steps per timed run (at most)")
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per timed run (at most)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="bench-results/steps.json")
    a = ap.parse_args(argv)
    from .harness import set_threads
    fws = [f for f in a.frameworks.split(",") if f in FRAMEWORKS and
           getattr(FRAMEWORKS[f], "available", lambda: True)()]
    limiter = set_threads(a.threads)  # noqa: F841
    dtype = np.dtype(a.dtype).type
    rows = []
    print(f"one step, batch 1, input size {a.input}, {a.dtype}, {a.threads} thread(s); "
          f"microseconds per step (x: that framework / fastrnn)")
    print(f"{'cell':<9}{'H':>5}" + "".join(f"{f:>18}" for f in fws))
    for cell in a.cells.split(","):
        for H in (int(h) for h in a.hidden.split(",")):
            I = H if a.input == "H" else int(a.input)
            res = {f: measure(FRAMEWORKS[f], cell, I, H, dtype, a.steps, a.budget, a.repeats)
                   for f in fws}
            base = res["fastrnn"].get("us_per_step")
            line = f"{cell:<9}{H:>5}"
            for f in fws:
                r = res[f]
                if not r["ok"]:
                    line += f"{'FAILED check':>18}"
                    continue
                ratio = "" if f == "fastrnn" else f" ({r['us_per_step'] / base:.0f}x)"
                line += f"{r['us_per_step']:>11.3f}{ratio:>7}"
                rows.append(dict(r, cell=cell, I=I, H=H, framework=f, dtype=a.dtype))
            print(line)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
