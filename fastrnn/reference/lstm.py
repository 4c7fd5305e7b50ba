"""Plain-NumPy LSTM (PyTorch's equations and layouts). Never imports a kernel.

    i, f, g, o = sigma(.), sigma(.), tanh(.), sigma(.) of  W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                 (with projections: h_t = W_hr (o * tanh(c_t)))

Shapes: x (T, B, I); h0 (B, P); c0 (B, H); w_ih (4H, I), gates stacked i, f, g, o;
w_hh (4H, P); biases (4H,); w_hr (P, H) or None (then P = H).
"""

import numpy as np

from ._common import sigmoid, truncate_by_windows


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """Returns ``(out, h_n, c_n, saved)``: out (T, B, P), h_n (B, P), c_n (B, H), and
    ``saved`` (the gate activations (T, B, 4H) and cell states (T, B, H)) for backward."""
    T, B, I = x.shape
    H = w_ih.shape[0] // 4
    gates = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, 4 * H)
    if b_ih is not None:
        gates += b_ih
        gates += b_hh
    P = H if w_hr is None else w_hr.shape[0]
    out = np.empty((T, B, P), gates.dtype)
    cs = np.empty((T, B, H), gates.dtype)
    h, c = h0, c0
    for t in range(T):
        a = gates[t]
        a += h @ w_hh.T
        a[:, : 2 * H] = sigmoid(a[:, : 2 * H])
        np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
        a[:, 3 * H :] = sigmoid(a[:, 3 * H :])
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c = f * c + i * g
        cs[t] = c
        h = o * np.tanh(c)
        if w_hr is not None:
            h = h @ w_hr.T
        out[t] = h
    return out, out[-1].copy(), cs[-1].copy(), {"gates": gates, "c": cs}


def lstm_backward(x, h0, c0, w_ih, w_hh, w_hr, out, saved, dout, dh_n=None, dc_n=None,
                  truncate=None):
    """Gradient of ``sum(out * dout) + sum(h_n * dh_n) + sum(c_n * dc_n)``.

    Returns a dict with ``dx``, ``dh0``, ``dc0``, ``dw_ih``, ``dw_hh``, ``db`` (the
    gradient of ``b_ih`` and of ``b_hh``) and ``dw_hr`` (None without projections).
    ``truncate=k``: the gradient entering at step t flows through steps t..t-k+1 only,
    in h and in c.
    """
    T, B, _ = x.shape
    P, H = out.shape[2], saved["c"].shape[2]
    dh_n = np.zeros((B, P), out.dtype) if dh_n is None else dh_n
    dc_n = np.zeros((B, H), out.dtype) if dc_n is None else dc_n
    if truncate is None or truncate >= T:
        return _full_backward(x, h0, c0, w_ih, w_hh, w_hr, out, saved, dout, dh_n, dc_n)

    def window(s0, t):
        d = np.zeros((t + 1 - s0, B, P), out.dtype)
        last = t == T - 1
        d[-1] = dout[t] + (dh_n if last else 0)
        sub = {"gates": saved["gates"][s0 : t + 1], "c": saved["c"][s0 : t + 1]}
        h_start = h0 if s0 == 0 else out[s0 - 1]
        c_start = c0 if s0 == 0 else saved["c"][s0 - 1]
        return _full_backward(x[s0 : t + 1], h_start, c_start, w_ih, w_hh, w_hr,
                              out[s0 : t + 1], sub, d, np.zeros((B, P), out.dtype),
                              dc_n if last else np.zeros((B, H), out.dtype))

    zeros = {"dx": x, "dh0": h0, "dc0": c0, "dw_ih": w_ih, "dw_hh": w_hh, "db": w_ih[:, 0]}
    totals = {n: np.zeros_like(a) for n, a in zeros.items()}
    totals["dw_hr"] = None if w_hr is None else np.zeros_like(w_hr)
    return truncate_by_windows(T, truncate, window, totals)


def _full_backward(x, h0, c0, w_ih, w_hh, w_hr, out, saved, dout, dh_n, dc_n):
    T, B, I = x.shape
    H = saved["c"].shape[2]
    gates, cs = saved["gates"], saved["c"]
    da = np.empty_like(gates)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        i, f, g, o = (gates[t][:, j * H : (j + 1) * H] for j in range(4))
        c_prev = c0 if t == 0 else cs[t - 1]
        tc = np.tanh(cs[t])
        if w_hr is None:
            dm = dh
        else:  # h_t = W_hr m_t
            dw_hr += dh.T @ (o * tc)
            dm = dh @ w_hr
        dc = dc + dm * o * (1 - tc * tc)
        da[t] = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                dc * i * (1 - g * g), dm * tc * o * (1 - o)], axis=1)
        dc = dc * f
        dh = da[t] @ w_hh
    h_prev = np.concatenate([h0[None], out[:-1]])
    da2 = da.reshape(T * B, 4 * H)
    return {
        "dx": (da2 @ w_ih).reshape(T, B, I),
        "dh0": dh,
        "dc0": dc,
        "dw_ih": da2.T @ x.reshape(T * B, I),
        "dw_hh": da2.T @ h_prev.reshape(T * B, -1),
        "db": da2.sum(axis=0),
        "dw_hr": dw_hr,
    }
