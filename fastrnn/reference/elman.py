"""Plain-NumPy Elman RNN: the correctness oracle of the tests and the NumPy baseline of
the benchmarks. Never imports a kernel.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

Shapes: x (T, B, I), h0 (B, H), w_ih (H, I), w_hh (H, H), biases (H,).
Written as the fastest reasonable NumPy: the input projection of all steps is one
matrix product, updates are in place, weight gradients are whole-sequence products.
Truncated BPTT is computed the obvious way (one short full-BPTT pass per window), so
that it is an oracle independent of the kernel's batched-window algorithm.
"""

import numpy as np

from ._common import activate, activation_backward, truncate_by_windows


def elman_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """Forward recurrence; returns ``(out, h_n)`` with out (T, B, H), h_n (B, H)."""
    T, B, I = x.shape
    H = w_hh.shape[0]
    out = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, H)
    if b_ih is not None:
        out += b_ih
        out += b_hh
    h = h0
    w_hh_t = w_hh.T
    for t in range(T):
        a = out[t]
        a += h @ w_hh_t
        activate(a, nonlinearity)
        h = a
    return out, out[-1].copy()


def elman_backward(x, h0, w_ih, w_hh, out, dout, dh_n=None, nonlinearity="tanh",
                   truncate=None):
    """Gradient of ``sum(out * dout) + sum(h_n * dh_n)``.

    Returns a dict with ``dx`` (T, B, I), ``dh0`` (B, H), ``dw_ih`` (H, I),
    ``dw_hh`` (H, H) and ``db`` (H,) (the gradient of ``b_ih`` and of ``b_hh``).
    ``truncate=k`` lets the gradient entering at step t flow back through steps
    t..t-k+1 only (see DESIGN.md, "Backward and truncation").
    """
    T, B, _ = x.shape
    H = w_hh.shape[0]
    if dh_n is None:
        dh_n = np.zeros((B, H), out.dtype)
    if truncate is None or truncate >= T:
        return _full_backward(x, h0, w_ih, w_hh, out, dout, dh_n, nonlinearity)
    return _truncated_backward(x, h0, w_ih, w_hh, out, dout, dh_n, nonlinearity, truncate)


def _full_backward(x, h0, w_ih, w_hh, out, dout, dh_n, nonlinearity):
    T, B, I = x.shape
    H = w_hh.shape[0]
    da = np.empty_like(out)
    dh = dh_n.copy()
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        da[t] = activation_backward(dh, out[t], nonlinearity)
        dh = da[t] @ w_hh
    h_prev = np.concatenate([h0[None], out[:-1]])
    da2 = da.reshape(T * B, H)
    return {
        "dx": (da2 @ w_ih).reshape(T, B, I),
        "dh0": dh,
        "dw_ih": da2.T @ x.reshape(T * B, I),
        "dw_hh": da2.T @ h_prev.reshape(T * B, H),
        "db": da2.sum(axis=0),
    }


def _truncated_backward(x, h0, w_ih, w_hh, out, dout, dh_n, nonlinearity, k):
    T, B, _ = x.shape
    H = w_hh.shape[0]

    def window(s0, t):
        d = np.zeros((t + 1 - s0, B, H), out.dtype)
        d[-1] = dout[t] + (dh_n if t == T - 1 else 0)
        start = h0 if s0 == 0 else out[s0 - 1]
        return _full_backward(x[s0 : t + 1], start, w_ih, w_hh, out[s0 : t + 1], d,
                              np.zeros((B, H), out.dtype), nonlinearity)

    zeros = {"dx": x, "dh0": h0, "dw_ih": w_ih, "dw_hh": w_hh, "db": w_hh[0]}
    return truncate_by_windows(T, k, window, {n: np.zeros_like(a) for n, a in zeros.items()})
