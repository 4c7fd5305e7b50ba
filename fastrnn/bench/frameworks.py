"""What each framework runs for a (cell, mode) pair.

A framework's ``prepare(cell, mode, p)`` returns a function of no arguments that runs
one call and returns the results to check: ``{"out": ...}`` for forward, plus
``"dx"`` and ``"dw_hh"`` for train (forward + backward of sum(out * dout)).
"""

import numpy as np

import fastrnn
from fastrnn.reference import elman as ref


def _check_cell(cell):
    if cell != "rnn_tanh":
        raise ValueError(f"cell {cell!r} is not implemented yet")


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
        return cls._forward(p) if mode == "forward" else cls._train(p)


class FastRNN(_Framework):
    name = "fastrnn"

    @staticmethod
    def _forward(p):
        args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return lambda: {"out": fastrnn.elman_forward(*args, cache=False)[0]}

    @staticmethod
    def _train(p):
        args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])

        def run():
            out, _, cache = fastrnn.elman_forward(*args)
            g = fastrnn.elman_backward(cache, p["dout"])
            return {"out": out, "dx": g.dx, "dw_hh": g.dw_hh}

        return run


class NumPy(_Framework):
    name = "numpy"

    @staticmethod
    def _forward(p):
        args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return lambda: {"out": ref.elman_forward(*args)[0]}

    @staticmethod
    def _train(p):
        args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])

        def run():
            out, _ = ref.elman_forward(*args)
            g = ref.elman_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, p["dout"])
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
        rnn = torch.nn.RNN(I, H, nonlinearity="tanh", dtype=dtype)
        with torch.no_grad():
            for name, key in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                              ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
                getattr(rnn, name).copy_(torch.from_numpy(p[key]))
        x = torch.from_numpy(p["x"])
        h0 = torch.from_numpy(p["h0"])[None]
        dout = torch.from_numpy(p["dout"])
        if mode == "forward":
            def run():
                with torch.no_grad():
                    out, _ = rnn(x, h0)
                return {"out": out.numpy()}
        else:
            def run():
                rnn.zero_grad(set_to_none=True)
                xg = x.detach().requires_grad_(True)
                out, _ = rnn(xg, h0)
                out.backward(dout)
                return {"out": out.detach().numpy(), "dx": xg.grad.numpy(),
                        "dw_hh": rnn.weight_hh_l0.grad.numpy()}
        return run


FRAMEWORKS = {f.name: f for f in (FastRNN, NumPy, Torch)}


def reference_results(cell, mode, p):
    """The float64 reference results for problem ``p`` (any dtype), for checking."""
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    return NumPy.prepare(cell, mode, p64)()
