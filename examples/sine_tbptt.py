"""Train an Elman RNN to predict a noisy sine wave one step ahead, with streaming
truncated BPTT: the sequence is cut into chunks of k steps, the state is carried
from chunk to chunk and the gradient stops at each chunk's start.

    python examples/sine_tbptt.py
"""

import numpy as np

import fastrnn


def train(iterations=400, k=25, hidden=16, lr=0.05, seed=0, log=print):
    """Returns the loss (mean squared error) of every chunk."""
    rng = np.random.default_rng(seed)
    n = iterations * k + 1
    series = np.sin(0.07 * np.arange(n)) + 0.05 * rng.standard_normal(n)
    x_all = series[:-1].reshape(-1, 1, 1)  # (steps, B=1, I=1)
    y_all = series[1:].reshape(-1, 1, 1)

    s = 1 / np.sqrt(hidden)  # PyTorch's initialisation
    p = {"w_ih": rng.uniform(-s, s, (hidden, 1)), "w_hh": rng.uniform(-s, s, (hidden, hidden)),
         "b_ih": rng.uniform(-s, s, hidden), "b_hh": rng.uniform(-s, s, hidden),
         "v": rng.uniform(-s, s, (1, hidden)), "c": np.zeros(1)}
    h = np.zeros((1, hidden))
    losses = []
    for it in range(iterations):
        x, y = x_all[it * k:(it + 1) * k], y_all[it * k:(it + 1) * k]
        out, h_n, cache = fastrnn.elman_forward(x, h, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        pred = out @ p["v"].T + p["c"]  # linear read-out, (k, 1, 1)
        err = pred - y
        losses.append(float(np.mean(err ** 2)))
        dpred = 2 * err / k
        g = fastrnn.elman_backward(cache, dpred @ p["v"])  # full BPTT inside the chunk
        grads = {"w_ih": g.dw_ih, "w_hh": g.dw_hh, "b_ih": g.db_ih, "b_hh": g.db_hh,
                 "v": np.einsum("tbo,tbh->oh", dpred, out), "c": dpred.sum(axis=(0, 1))}
        norm = np.sqrt(sum(np.sum(a * a) for a in grads.values()))
        scale = min(1.0, 1.0 / max(norm, 1e-12))  # clip the global norm at 1
        for name in p:
            p[name] -= lr * scale * grads[name]
        h = h_n  # carry the state; the next chunk's gradient stops here
        if log and (it + 1) % 100 == 0:
            log(f"chunk {it + 1:4d}  mse {np.mean(losses[-100:]):.4f}")
    return losses


if __name__ == "__main__":
    train()
