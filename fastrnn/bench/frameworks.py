"""What each framework runs for a (cell, mode) pair.

A framework's ``prepare(cell, mode, p)`` returns a function of no arguments that runs
one call and returns the results to check: ``{"out": ...}`` for forward, plus
``"dx"`` and ``"dw_hh"`` for train (forward + backward of sum(out * dout)).
"""

import numpy as np

import fastrnn
from fastrnn import reference as ref

from .problems import CELLS


def _check_cell(cell):
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}")


class _Framework:
    """A framework's forward and train calls; subclasses define ``_forward``/``_train``
    (each returns a function of no arguments) and, if optional, ``available``."""

    name = ""

    @staticmethod
    def available():
        return True

    @classmethod
    def prepare(cls, cell, mode, p):
        _check_cell(cell)
        return cls._forward(cell, p) if mode == "forward" else cls._train(cell, p)


def _weights(p):
    return (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])


class FastRNN(_Framework):
    name = "fastrnn"

    @staticmethod
    def _run(cell, p, cache):
        if cell == "rnn_tanh":
            out, _, c = fastrnn.elman_forward(p["x"], p["h0"], *_weights(p), cache=cache)
        elif cell == "lstm":
            out, _, _, c = fastrnn.lstm_forward(p["x"], p["h0"], p["c0"], *_weights(p),
                                                cache=cache)
        else:
            out, _, c = fastrnn.gru_forward(p["x"], p["h0"], *_weights(p), cache=cache)
        return out, c

    @classmethod
    def _forward(cls, cell, p):
        return lambda: {"out": cls._run(cell, p, False)[0]}

    @classmethod
    def _train(cls, cell, p):
        backward = {"rnn_tanh": fastrnn.elman_backward, "lstm": fastrnn.lstm_backward,
                    "gru": fastrnn.gru_backward}[cell]

        def run():
            out, cache = cls._run(cell, p, True)
            g = backward(cache, p["dout"])
            return {"out": out, "dx": g.dx, "dw_hh": g.dw_hh}

        return run


class NumPy(_Framework):
    name = "numpy"

    @staticmethod
    def _run(cell, p):
        if cell == "rnn_tanh":
            out, _ = ref.elman_forward(p["x"], p["h0"], *_weights(p))
            return out, None
        if cell == "lstm":
            out, _, _, saved = ref.lstm_forward(p["x"], p["h0"], p["c0"], *_weights(p))
            return out, saved
        out, _, saved = ref.gru_forward(p["x"], p["h0"], *_weights(p))
        return out, saved

    @classmethod
    def _forward(cls, cell, p):
        return lambda: {"out": cls._run(cell, p)[0]}

    @classmethod
    def _train(cls, cell, p):
        def run():
            out, saved = cls._run(cell, p)
            if cell == "rnn_tanh":
                g = ref.elman_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, p["dout"])
            elif cell == "lstm":
                g = ref.lstm_backward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], None, out,
                                      saved, p["dout"])
            else:
                g = ref.gru_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, saved,
                                     p["dout"])
            return {"out": out, "dx": g["dx"], "dw_hh": g["dw_hh"]}

        return run


class Torch(_Framework):
    name = "torch"

    @staticmethod
    def available():
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def prepare(cls, cell, mode, p):
        import torch

        _check_cell(cell)
        T, B, I = p["x"].shape
        H = p["w_hh"].shape[1]
        dtype = torch.float32 if p["x"].dtype == np.float32 else torch.float64
        module = {"rnn_tanh": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        rnn = module(I, H, dtype=dtype)
        with torch.no_grad():
            for name, key in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                              ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
                getattr(rnn, name).copy_(torch.from_numpy(p[key]))
        x = torch.from_numpy(p["x"])
        h0 = torch.from_numpy(p["h0"])[None]
        state = (h0, torch.from_numpy(p["c0"])[None]) if cell == "lstm" else h0
        dout = torch.from_numpy(p["dout"])
        if mode == "forward":
            def run():
                with torch.no_grad():
                    out, _ = rnn(x, state)
                return {"out": out.numpy()}
        else:
            def run():
                rnn.zero_grad(set_to_none=True)
                xg = x.detach().requires_grad_(True)
                out, _ = rnn(xg, state)
                out.backward(dout)
                return {"out": out.detach().numpy(), "dx": xg.grad.numpy(),
                        "dw_hh": rnn.weight_hh_l0.grad.numpy()}
        return run


FRAMEWORKS = {f.name: f for f in (FastRNN, NumPy, Torch)}


def reference_results(cell, mode, p):
    """The float64 reference results for problem ``p`` (any dtype), for checking."""
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    return NumPy.prepare(cell, mode, p64)()
