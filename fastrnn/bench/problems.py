"""Benchmark problems: sizes, random inputs, FLOP counts."""

import numpy as np

#: name -> (T, B, I, H); "deepbench" is cell-dependent (see ``shape``)
SIZES = {
    "tiny": (1000, 1, 8, 32),
    "small": (100, 32, 64, 128),
    "medium": (50, 64, 256, 256),
    "deepbench": (50, 16, 1760, 1760),
    "large_batch": (100, 256, 128, 512),
}

#: DeepBench's recurrent sizes: the plain RNN at 1760, LSTM and GRU at 512
DEEPBENCH_GATED = (25, 16, 512, 512)

#: gates per cell (the G of the FLOP count)
GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3}

CELLS = tuple(GATES)
MODES = ("forward", "train")


def shape(cell, size):
    """(T, B, I, H) of a size for a cell."""
    if size == "deepbench" and cell != "rnn_tanh":
        return DEEPBENCH_GATED
    return SIZES[size]


def flops(cell, size, mode):
    """Forward: 2*T*B*(I+H)*G*H; train (forward + backward, backward ~ 2x forward): 3x."""
    T, B, I, H = shape(cell, size)
    f = 2.0 * T * B * (I + H) * GATES[cell] * H
    return f if mode == "forward" else 3.0 * f


def make_problem(cell, size, dtype, seed=0):
    """Random inputs and weights (PyTorch's init, U(-1/sqrt(H), 1/sqrt(H))), initial
    states and an upstream gradient ``dout``, as arrays of ``dtype``."""
    T, B, I, H = shape(cell, size)
    G = GATES[cell]
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    p = {
        "x": rng.standard_normal((T, B, I)),
        "h0": 0.1 * rng.standard_normal((B, H)),
        "w_ih": rng.uniform(-k, k, (G * H, I)),
        "w_hh": rng.uniform(-k, k, (G * H, H)),
        "b_ih": rng.uniform(-k, k, G * H),
        "b_hh": rng.uniform(-k, k, G * H),
        "dout": rng.standard_normal((T, B, H)),
    }
    if cell == "lstm":
        p["c0"] = 0.1 * rng.standard_normal((B, H))
    return {name: a.astype(dtype) for name, a in p.items()}
