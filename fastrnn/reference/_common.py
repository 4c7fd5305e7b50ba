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
