"""NumPy activations shared by the reference cells (never imports a kernel)."""

import numpy as np


def sigmoid(a):
    """Logistic function without overflow: 1/(1+exp(-a)) for a >= 0, e/(1+e) otherwise."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


def activate(a, nonlinearity):
    """In place ``a[...] = act(a)``."""
    if nonlinearity == "tanh":
        np.tanh(a, out=a)
    elif nonlinearity == "relu":
        np.maximum(a, 0, out=a)  # NaN stays NaN
    elif nonlinearity == "sigmoid":
        a[...] = sigmoid(a)
    elif nonlinearity != "identity":
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def activation_backward(dh, h, nonlinearity):
    """``dh * act'(a)`` with act' written in terms of the output h = act(a)."""
    if nonlinearity == "tanh":
        return dh * (1 - h * h)
    if nonlinearity == "relu":
        return np.where(h <= 0, 0, dh).astype(dh.dtype, copy=False)  # NaN h passes, as PyTorch
    if nonlinearity == "sigmoid":
        return dh * (h * (1 - h))
    if nonlinearity == "identity":
        return dh.copy()
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def truncate_by_windows(T, k, window_grads, totals):
    """Truncated BPTT(k) from its definition, for any cell.

    The gradient entering at step t flows back through steps s0..t only,
    s0 = max(0, t-k+1): it is full BPTT over that window, started from the state
    before it held constant, with the gradient entering at t alone.
    ``window_grads(s0, t)`` returns that window's gradients as a dict; they are summed
    into ``totals`` (a dict of zero arrays, modified and returned): ``dx`` over steps
    s0..t, the initial-state gradients (``dh0``, ``dc0``) only for windows that reach
    step 0, every other entry whole.
    """
    for t in range(T):
        s0 = max(0, t - k + 1)
        for name, g in window_grads(s0, t).items():
            if name == "dx":
                totals["dx"][s0 : t + 1] += g
            elif name in ("dh0", "dc0"):
                if s0 == 0:
                    totals[name] += g
            elif g is not None:
                totals[name] += g
    return totals
