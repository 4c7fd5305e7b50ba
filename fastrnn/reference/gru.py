"""Plain-NumPy GRU (PyTorch's equations and layouts). Never imports a kernel.

    r = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))      (b_hn inside r *, as PyTorch)
    h_t = (1 - z) * n + z * h_{t-1}

Shapes: x (T, B, I); h0 (B, H); w_ih (3H, I), gates stacked r, z, n; w_hh (3H, H);
biases (3H,).
"""

import numpy as np

from ._common import sigmoid, truncate_by_windows


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """Returns ``(out, h_n, saved)``: out (T, B, H), h_n (B, H), and ``saved`` (the gate
    values r, z, n (T, B, 3H) and the hidden part of n's pre-activation (T, B, H))."""
    T, B, I = x.shape
    H = w_ih.shape[0] // 3
    gates = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, 3 * H)
    if b_ih is not None:
        gates += b_ih
    out = np.empty((T, B, H), gates.dtype)
    ghn = np.empty((T, B, H), gates.dtype)
    h = h0
    for t in range(T):
        gh = h @ w_hh.T
        if b_hh is not None:
            gh += b_hh
        a = gates[t]
        a[:, : 2 * H] = sigmoid(a[:, : 2 * H] + gh[:, : 2 * H])
        r, z = a[:, :H], a[:, H : 2 * H]
        ghn[t] = gh[:, 2 * H :]
        n = np.tanh(a[:, 2 * H :] + r * ghn[t])
        a[:, 2 * H :] = n
        h = (1 - z) * n + z * h
        out[t] = h
    return out, out[-1].copy(), {"gates": gates, "ghn": ghn}


def gru_backward(x, h0, w_ih, w_hh, out, saved, dout, dh_n=None, truncate=None):
    """Gradient of ``sum(out * dout) + sum(h_n * dh_n)``.

    Returns a dict with ``dx``, ``dh0``, ``dw_ih``, ``dw_hh``, ``db_ih``, ``db_hh``.
    ``truncate=k``: the gradient entering at step t flows through steps t..t-k+1 only.
    """
    T, B, _ = x.shape
    H = out.shape[2]
    dh_n = np.zeros((B, H), out.dtype) if dh_n is None else dh_n
    if truncate is None or truncate >= T:
        return _full_backward(x, h0, w_ih, w_hh, out, saved, dout, dh_n)

    def window(s0, t):
        d = np.zeros((t + 1 - s0, B, H), out.dtype)
        d[-1] = dout[t] + (dh_n if t == T - 1 else 0)
        sub = {"gates": saved["gates"][s0 : t + 1], "ghn": saved["ghn"][s0 : t + 1]}
        start = h0 if s0 == 0 else out[s0 - 1]
        return _full_backward(x[s0 : t + 1], start, w_ih, w_hh, out[s0 : t + 1], sub, d,
                              np.zeros((B, H), out.dtype))

    zeros = {"dx": x, "dh0": h0, "dw_ih": w_ih, "dw_hh": w_hh, "db_ih": w_ih[:, 0],
             "db_hh": w_ih[:, 0]}
    return truncate_by_windows(T, truncate, window,
                               {n: np.zeros_like(a) for n, a in zeros.items()})


def _full_backward(x, h0, w_ih, w_hh, out, saved, dout, dh_n):
    T, B, I = x.shape
    H = out.shape[2]
    gates, ghn = saved["gates"], saved["ghn"]
    dgi = np.empty_like(gates)  # gradient of W_ih x + b_ih
    dgh = np.empty_like(gates)  # gradient of W_hh h + b_hh
    dh = dh_n.copy()
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        r, z, n = (gates[t][:, j * H : (j + 1) * H] for j in range(3))
        h_prev = h0 if t == 0 else out[t - 1]
        da_n = dh * (1 - z) * (1 - n * n)
        da_z = dh * (h_prev - n) * z * (1 - z)
        da_r = da_n * ghn[t] * r * (1 - r)
        dgi[t] = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh[t] = np.concatenate([da_r, da_z, da_n * r], axis=1)
        dh = dh * z + dgh[t] @ w_hh
    h_prev = np.concatenate([h0[None], out[:-1]])
    dgi2 = dgi.reshape(T * B, 3 * H)
    dgh2 = dgh.reshape(T * B, 3 * H)
    return {
        "dx": (dgi2 @ w_ih).reshape(T, B, I),
        "dh0": dh,
        "dw_ih": dgi2.T @ x.reshape(T * B, I),
        "dw_hh": dgh2.T @ h_prev.reshape(T * B, H),
        "db_ih": dgi2.sum(axis=0),
        "db_hh": dgh2.sum(axis=0),
    }
