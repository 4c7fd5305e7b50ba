"""Per-step latency of one recurrent step at simulation sizes: ``python -m fastrnn.bench.steps``.

One Elman/LSTM/GRU step, batch 1 (``--batch``), hidden size H in {16, 32, 64, 128},
input size I (``--input``: a number, or ``H``; default 8, a controller's few sensors):
fastrnn's step kernel called from an ``@njit`` loop (10^6 steps, fewer for large H),
against the same step in a NumPy loop, ``torch.nn.*Cell`` under ``no_grad`` and a jitted
JAX step, when installed. ``--backward``: each step forward and then its backward from
a fixed gradient of h (and c), the weight gradients summed over the steps, as in a
training loop (fastrnn's ``*_step_backward``; NumPy: fastrnn's reference on one step;
torch: autograd through the cell; JAX: a jitted ``jax.vjp`` of the step). Every
framework's results are checked against fastrnn's on the same weights before timing
(forward: h; backward: dL/dh and dL/dW_hh). Reports microseconds per step and ratios.
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
from fastrnn import reference as ref
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


@njit
def _train_loop(kind, n, x, h, c, h2, c2, gates, gh, gc, dx, dh, dc, dg, dw_ih_t, dw_hh_t, db,
                db_hh, dw_hr_t, w_ih_t, w_hh_t, b, b_ih, b_hh, w_hr_t):
    # n iterations of a step and its backward from the fixed gh (and gc), the weight
    # gradients summed; the state ping-pongs between two buffers
    for i in range(n):
        if kind == 0:
            K.elman_step(h2, x, h, w_ih_t, w_hh_t, b, K.TANH)
            K.elman_step_backward(dx, dh, dg, dw_ih_t, dw_hh_t, db, gh, x, h, h2, w_ih_t, w_hh_t,
                                  K.TANH)
        elif kind == 1:
            K.lstm_step(h2, c2, gates, x, h, c, w_ih_t, w_hh_t, b, w_hr_t)
            K.lstm_step_backward(dx, dh, dc, dg, dw_ih_t, dw_hh_t, db, dw_hr_t, gh, gc, x, h, c,
                                 gates, c2, w_ih_t, w_hh_t, w_hr_t)
        else:
            K.gru_step(h2, gates, x, h, w_ih_t, w_hh_t, b_ih, b_hh)
            K.gru_step_backward(dx, dh, dg, dw_ih_t, dw_hh_t, db, db_hh, gh, x, h, gates,
                                w_ih_t, w_hh_t)
        h, h2 = h2, h
        c, c2 = c2, c


def _weights(cell, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G, k = GATES[cell], 1 / np.sqrt(H)
    p = {n: rng.uniform(-k, k, s) for n, s in [("w_ih", (G * H, I)), ("w_hh", (G * H, H)),
                                               ("b_ih", (G * H,)), ("b_hh", (G * H,))]}
    return {n: a.astype(dtype) for n, a in p.items()}


class _FastRNN:
    name = "fastrnn"

    def __init__(self, cell, p, x, h, c, g, backward):
        self.kind = CELLS.index(cell)
        self.w = fastrnn.step_weights(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        H = h.shape[1]
        self.x, self.h, self.c = x.copy(), h.copy(), c.copy()
        self.h2, self.c2 = np.empty_like(self.h), np.empty_like(self.c)
        self.gates = np.empty((x.shape[0], 6 * H), x.dtype)
        self.backward = backward
        if backward:
            w = self.w
            self.gh, self.gc = g
            self.dx, self.dh, self.dc = np.empty_like(x), np.empty_like(h), np.empty_like(c)
            self.dg = np.empty((x.shape[0], 6 * H), x.dtype)
            self.grads = [np.zeros_like(a) for a in (w.w_ih_t, w.w_hh_t, w.b_ih, w.b_hh,
                                                     w.w_hr_t)]

    def run(self, steps):
        w = self.w
        gates = self.gates[:, : 4 * self.h.shape[1]] if self.kind == 1 else self.gates
        if not self.backward:
            _loop(self.kind, steps // 2, self.x, self.h, self.c, self.h2, self.c2, gates,
                  w.w_ih_t, w.w_hh_t, w.b, w.b_ih, w.b_hh, w.w_hr_t)
            return
        dg = self.dg[:, : 4 * self.h.shape[1]] if self.kind == 1 else self.dg
        dg = dg[:, : self.h.shape[1]] if self.kind == 0 else dg
        _train_loop(self.kind, steps, self.x, self.h, self.c, self.h2, self.c2, gates, self.gh,
                    self.gc, self.dx, self.dh, self.dc, dg, *self.grads, w.w_ih_t, w.w_hh_t,
                    w.b, w.b_ih, w.b_hh, w.w_hr_t)

    def one(self):
        if not self.backward:
            self.run(2)
            return self.h
        self.run(1)  # from the initial state, the gradients zero
        return np.concatenate([self.dh.ravel(), self.grads[1].T.ravel()])


class _NumPy:
    name = "numpy"

    def __init__(self, cell, p, x, h, c, g, backward):
        self.cell = cell
        self.wi, self.wh = p["w_ih"].T.copy(), p["w_hh"].T.copy()
        self.b, self.bi, self.bh = p["b_ih"] + p["b_hh"], p["b_ih"], p["b_hh"]
        self.x, self.h, self.c = x, h.copy(), c.copy()
        self.p, self.g, self.backward = p, g, backward
        self.grads = {}

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

    def train_step(self):
        # fastrnn's NumPy reference on a sequence of one step, forward and backward
        p, x, h, c = self.p, self.x[None], self.h, self.c
        gh, gc = self.g[0][None], self.g[1]
        w = (p["w_ih"], p["w_hh"])
        if self.cell == "rnn_tanh":
            out, _ = ref.elman_forward(x, h, *w, p["b_ih"], p["b_hh"])
            r = ref.elman_backward(x, h, *w, out, gh)
        elif self.cell == "lstm":
            out, _, self.c, saved = ref.lstm_forward(x, h, c, *w, p["b_ih"], p["b_hh"])
            r = ref.lstm_backward(x, h, c, *w, None, out, saved, gh, dc_n=gc)
        else:
            out, _, saved = ref.gru_forward(x, h, *w, p["b_ih"], p["b_hh"])
            r = ref.gru_backward(x, h, *w, out, saved, gh)
        self.h = out[0]
        for n in ("dw_ih", "dw_hh", "db", "db_ih", "db_hh"):
            if n in r:
                self.grads[n] = self.grads[n] + r[n] if n in self.grads else r[n]
        self.dh = r["dh0"]

    def run(self, steps):
        step = self.train_step if self.backward else self.step
        for _ in range(steps):
            step()

    def one(self):
        if not self.backward:
            self.run(2)
            return self.h
        self.run(1)
        return np.concatenate([self.dh.ravel(), self.grads["dw_hh"].ravel()])


class _Torch:
    name = "torch"

    @staticmethod
    def available():
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, cell, p, x, h, c, g, backward):
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
        self.gh, self.gc = (torch.from_numpy(a) for a in g)
        self.torch, self.backward = torch, backward

    def run(self, steps):
        if self.backward:
            return self._train(steps)
        with self.torch.no_grad():
            m, x, h, c = self.m, self.x, self.h, self.c
            for _ in range(steps):
                if self.lstm:
                    h, c = m(x, (h, c))
                else:
                    h = m(x, h)
            self.h, self.c = h, c

    def _train(self, steps):
        backward = self.torch.autograd.backward
        m, h, c, gh, gc = self.m, self.h, self.c, self.gh, self.gc
        x = self.x.detach().requires_grad_()  # dL/dx, dL/dh, dL/dc, as the others compute
        for _ in range(steps):
            h = h.detach().requires_grad_()
            if self.lstm:
                h2, c2 = m(x, (h, c.detach().requires_grad_()))
                backward([h2, c2], [gh, gc])
            else:
                h2 = m(x, h)
                backward(h2, gh)
                c2 = c
            self.dh = h.grad
            h, c = h2, c2
        self.h, self.c = h.detach(), c.detach()

    def one(self):
        if not self.backward:
            self.run(2)
            return self.h.numpy()
        self.run(1)
        return np.concatenate([self.dh.numpy().ravel(), self.m.weight_hh.grad.numpy().ravel()])


class _JAX:
    name = "jax"

    @staticmethod
    def available():
        try:
            import jax  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, cell, p, x, h, c, g, backward):
        import jax
        import jax.numpy as jnp
        if x.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)  # else JAX computes in float32
        H = h.shape[1]

        def step(w, x, h, c):
            wi, wh, bi, bh = w
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

        w = tuple(jnp.asarray(a) for a in (p["w_ih"].T, p["w_hh"].T, p["b_ih"], p["b_hh"]))

        def train_step(grads, x, h, c, g):
            # the step, and its backward from g; the weight gradients summed into grads
            out, vjp = jax.vjp(step, w, x, h, c)  # dL/dx, dL/dh, dL/dc too, as the others
            dw, _, dh, _ = vjp(g)
            return out, dh, tuple(a + b for a, b in zip(grads, dw))

        # the weights are the jitted functions' constants (fewer arguments per call)
        self.step = jax.jit(lambda x, h, c: step(w, x, h, c))
        self.train_step = jax.jit(train_step)
        self.grads = tuple(jnp.zeros_like(a) for a in w)
        self.x, self.h, self.c = jnp.asarray(x), jnp.asarray(h), jnp.asarray(c)
        self.g = tuple(jnp.asarray(a) for a in g)
        self.backward = backward

    def run(self, steps):
        x, h, c = self.x, self.h, self.c
        if self.backward:
            grads = self.grads
            for _ in range(steps):
                (h, c), self.dh, grads = self.train_step(grads, x, h, c, self.g)
            self.grads = grads
        else:
            for _ in range(steps):
                h, c = self.step(x, h, c)
        h.block_until_ready()
        self.h, self.c = h, c

    def one(self):
        if not self.backward:
            self.run(2)
            return np.asarray(self.h)
        self.run(1)
        return np.concatenate([np.asarray(self.dh).ravel(), np.asarray(self.grads[1]).T.ravel()])


FRAMEWORKS = {"fastrnn": _FastRNN, "numpy": _NumPy, "torch": _Torch, "jax": _JAX}


def measure(cls, cell, I, H, dtype, max_steps, budget, repeats, backward=False, batch=1):
    """Microseconds per step (median of ``repeats`` runs of n steps), and n."""
    p = _weights(cell, I, H, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, I)).astype(dtype)
    h = (0.1 * rng.standard_normal((batch, H))).astype(dtype)
    c = (0.1 * rng.standard_normal((batch, H))).astype(dtype)
    g = tuple(rng.standard_normal((batch, H)).astype(dtype) for _ in range(2))  # dL/dh, dL/dc
    ref = _FastRNN(cell, p, x, h, c, g, backward).one()
    fw = cls(cell, p, x, h, c, g, backward)
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
    ap.add_argument("--batch", type=int, default=1, help="batch size B (rows per step)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--frameworks", default="fastrnn,numpy,torch,jax")
    ap.add_argument("--backward", action="store_true",
                    help="time each step forward and backward (a training loop's step)")
    ap.add_argument("--steps", type=int, default=1_000_000, help="steps per timed run (at most)")
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per timed run (at most)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None,
                    help="default bench-results/steps.json (steps-backward.json with --backward)")
    a = ap.parse_args(argv)
    if a.batch < 1:
        ap.error(f"--batch must be at least 1, got {a.batch}")
    from .harness import set_threads
    fws = [f for f in a.frameworks.split(",") if f in FRAMEWORKS and
           getattr(FRAMEWORKS[f], "available", lambda: True)()]
    limiter = set_threads(a.threads)  # noqa: F841
    dtype = np.dtype(a.dtype).type
    rows = []
    what = "one step forward and backward" if a.backward else "one step"
    print(f"{what}, batch {a.batch}, input size {a.input}, {a.dtype}, {a.threads} thread(s); "
          f"microseconds per step (x: that framework / fastrnn)")
    print(f"{'cell':<9}{'H':>5}" + "".join(f"{f:>18}" for f in fws))
    for cell in a.cells.split(","):
        for H in (int(h) for h in a.hidden.split(",")):
            I = H if a.input == "H" else int(a.input)
            res = {f: measure(FRAMEWORKS[f], cell, I, H, dtype, a.steps, a.budget, a.repeats,
                              a.backward, a.batch) for f in fws}
            base = res["fastrnn"].get("us_per_step")
            line = f"{cell:<9}{H:>5}"
            for f in fws:
                r = res[f]
                if not r["ok"]:
                    line += f"{'FAILED check':>18}"
                    continue
                ratio = "" if f == "fastrnn" else f" ({r['us_per_step'] / base:.0f}x)"
                line += f"{r['us_per_step']:>11.3f}{ratio:>7}"
                rows.append(dict(r, cell=cell, B=a.batch, I=I, H=H, framework=f, dtype=a.dtype,
                                 mode="backward" if a.backward else "forward"))
            print(line)
    if a.json is None:
        a.json = "bench-results/steps-backward.json" if a.backward else "bench-results/steps.json"
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
