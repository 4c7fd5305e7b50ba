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
        # inference: the weights packed once, outside the timed call (pack_weight), as
        # ONNX Runtime packs them once when it builds its session
        q = dict(p, w_ih=fastrnn.pack_weight(p["w_ih"]), w_hh=fastrnn.pack_weight(p["w_hh"]))
        return lambda: {"out": cls._run(cell, q, False)[0]}

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


def _installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


class Unsupported(Exception):
    """A framework cannot run this (cell, mode, dtype): reported as n/a, not as a failure."""


class JAX(_Framework):
    """``lax.scan`` over the steps under ``jax.jit``; train is ``jax.vjp`` of the same
    function (the gradient of sum(out * dout) with respect to x and W_hh)."""

    name = "jax"

    @staticmethod
    def available():
        return _installed("jax")

    @staticmethod
    def _scan(cell, H):
        import jax.numpy as jnp
        from jax import lax
        from jax.nn import sigmoid as jax_sigmoid

        def rnn(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
            gi = jnp.einsum("tbi,gi->tbg", x, w_ih) + b_ih  # the input projection, one GEMM

            if cell == "rnn_tanh":
                def step(h, g):
                    h = jnp.tanh(g + h @ w_hh.T + b_hh)
                    return h, h
                return lax.scan(step, h0, gi)[1]
            if cell == "lstm":
                def step(hc, g):
                    h, c = hc
                    a = g + h @ w_hh.T + b_hh
                    i, f = jax_sigmoid(a[:, :H]), jax_sigmoid(a[:, H:2 * H])
                    gg, o = jnp.tanh(a[:, 2 * H:3 * H]), jax_sigmoid(a[:, 3 * H:])
                    c = f * c + i * gg
                    h = o * jnp.tanh(c)
                    return (h, c), h
                return lax.scan(step, (h0, c0), gi)[1]

            def step(h, g):
                gh = h @ w_hh.T + b_hh
                r = jax_sigmoid(g[:, :H] + gh[:, :H])
                z = jax_sigmoid(g[:, H:2 * H] + gh[:, H:2 * H])
                n = jnp.tanh(g[:, 2 * H:] + r * gh[:, 2 * H:])
                h = (1 - z) * n + z * h
                return h, h
            return lax.scan(step, h0, gi)[1]

        return rnn

    @classmethod
    def prepare(cls, cell, mode, p):
        import jax

        _check_cell(cell)
        if p["x"].dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        H = p["w_hh"].shape[1]
        rnn = cls._scan(cell, H)
        args = [jax.device_put(p[k]) if p.get(k) is not None else None
                for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
        if args[2] is None:
            args[2] = args[1]  # unused by rnn_tanh and gru
        if mode == "forward":
            f = jax.jit(rnn)
            return lambda: {"out": np.asarray(f(*args).block_until_ready())}
        dout = jax.device_put(p["dout"])

        def train(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dout):
            out, vjp = jax.vjp(lambda x_, w_: rnn(x_, h0, c0, w_ih, w_, b_ih, b_hh), x, w_hh)
            dx, dw_hh = vjp(dout)
            return out, dx, dw_hh

        f = jax.jit(train)

        def run():
            out, dx, dw = jax.block_until_ready(f(*args, dout))
            return {"out": np.asarray(out), "dx": np.asarray(dx), "dw_hh": np.asarray(dw)}

        return run


class ONNXRuntime(_Framework):
    """One ONNX ``RNN``/``LSTM``/``GRU`` node (built with ``onnx.helper``) run by ONNX
    Runtime's CPU provider: forward only. ONNX orders the gates i, o, f, c (LSTM) and
    z, r, h (GRU; ``linear_before_reset=1`` is PyTorch's GRU); weights are reordered."""

    name = "onnxruntime"
    threads = None  # set by the harness: the session's intra-op threads

    @staticmethod
    def available():
        return _installed("onnxruntime") and _installed("onnx")

    @staticmethod
    def _reorder(a, cell, H):
        if cell == "lstm":  # torch i, f, g, o -> onnx i, o, f, c
            i, f, g, o = (a[k * H:(k + 1) * H] for k in range(4))
            return np.concatenate([i, o, f, g])
        if cell == "gru":  # torch r, z, n -> onnx z, r, h
            r, z, n = (a[k * H:(k + 1) * H] for k in range(3))
            return np.concatenate([z, r, n])
        return a

    @classmethod
    def prepare(cls, cell, mode, p):
        _check_cell(cell)
        if mode != "forward":
            raise Unsupported("forward only")
        if p["x"].dtype != np.float32:
            raise Unsupported("float32 only (ONNX Runtime's LSTM has no float64 kernel)")
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        T, B, I = p["x"].shape
        H = p["w_hh"].shape[1]
        elem = TensorProto.FLOAT
        W = cls._reorder(p["w_ih"], cell, H)[None]
        R = cls._reorder(p["w_hh"], cell, H)[None]
        bias = np.concatenate([cls._reorder(p["b_ih"], cell, H),
                               cls._reorder(p["b_hh"], cell, H)])[None]
        inputs = ["X", "W", "R", "B", "", "initial_h"]
        feeds = {"X": p["x"], "initial_h": p["h0"][None]}
        attrs = {"hidden_size": H}
        if cell == "lstm":
            inputs.append("initial_c")
            feeds["initial_c"] = p["c0"][None]
        if cell == "gru":
            attrs["linear_before_reset"] = 1
        op = {"rnn_tanh": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
        node = helper.make_node(op, inputs, ["Y"], **attrs)
        value = lambda n, shape: helper.make_tensor_value_info(n, elem, shape)  # noqa: E731
        graph = helper.make_graph(
            [node], "rnn", [value("X", [T, B, I]), value("initial_h", [1, B, H])]
            + ([value("initial_c", [1, B, H])] if cell == "lstm" else []),
            [value("Y", [T, 1, B, H])],
            initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"),
                                                                     (bias, "B"))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        onnx.checker.check_model(model)
        opts = ort.SessionOptions()
        if cls.threads:
            opts.intra_op_num_threads = cls.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        return lambda: {"out": sess.run(["Y"], feeds)[0][:, 0]}


FRAMEWORKS = {f.name: f for f in (FastRNN, NumPy, Torch, JAX, ONNXRuntime)}


def reference_results(cell, mode, p):
    """The float64 reference results for problem ``p`` (any dtype), for checking."""
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    return NumPy.prepare(cell, mode, p64)()
