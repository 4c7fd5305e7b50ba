"""One interface over every cell, so tests can be written once and run for all.

A ``Cell`` knows how to make a random problem with a contractive recurrence, and how
to run fastrnn's functional API, the NumPy reference and (when installed) PyTorch on
it, returning outputs and gradients under common names:

- problem: dict of the functional API's arguments (``x``, ``h0``, ``w_ih``, ...)
- finals: dict of final states (``h_n``, and ``c_n`` for the LSTM)
- grads: dict keyed by argument name (``x``, ``h0``, ``w_ih``, ..., ``b_hh``)
"""

from dataclasses import dataclass

import numpy as np

import fastrnn
from fastrnn.reference import elman as ref_elman
from fastrnn.reference import gru as ref_gru
from fastrnn.reference import lstm as ref_lstm


def _contractive(rng, rows, cols, radius):
    w = rng.standard_normal((rows, cols))
    return w * (radius / max(np.linalg.norm(w, 2), 1e-12))


@dataclass(frozen=True)
class Cell:
    name: str
    kind: str  # "elman", "lstm", "gru"
    gates: int
    nonlinearity: str = "tanh"
    proj: bool = False

    # ------------------------------------------------------------------ problems
    def make(self, T, B, I, H, dtype=np.float64, seed=0, bias=True, radius=0.8):
        rng = np.random.default_rng(seed)
        G = self.gates
        P = max(1, H - 1) if self.proj else H
        p = {
            "x": rng.standard_normal((T, B, I)),
            "h0": 0.5 * rng.standard_normal((B, P)),
            "w_ih": rng.standard_normal((G * H, I)) / np.sqrt(I),
            "w_hh": np.concatenate([_contractive(rng, H, P, radius) for _ in range(G)]),
            "b_ih": 0.1 * rng.standard_normal(G * H) if bias else None,
            "b_hh": 0.1 * rng.standard_normal(G * H) if bias else None,
        }
        if self.kind == "lstm":
            p["c0"] = 0.5 * rng.standard_normal((B, H))
            if self.proj:
                p["w_hr"] = _contractive(rng, P, H, 1.0)
        return {k: None if a is None else a.astype(dtype) for k, a in p.items()}

    def sizes(self, p):
        """(T, B, I, H, P)."""
        T, B, I = p["x"].shape
        return T, B, I, p["w_ih"].shape[0] // self.gates, p["h0"].shape[1]

    def final_shapes(self, p):
        T, B, I, H, P = self.sizes(p)
        return {"h_n": (B, P), "c_n": (B, H)} if self.kind == "lstm" else {"h_n": (B, P)}

    @property
    def params(self):
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
        if self.kind == "lstm":
            names.insert(2, "c0")
            if self.proj:
                names.append("w_hr")
        return names

    # ------------------------------------------------------------------ fastrnn
    def forward(self, p, cache=True, lengths=None):
        """Returns (out, finals, cache)."""
        if self.kind == "elman":
            out, h_n, c = fastrnn.elman_forward(**p, nonlinearity=self.nonlinearity, cache=cache,
                                                lengths=lengths)
            return out, {"h_n": h_n}, c
        if self.kind == "lstm":
            out, h_n, c_n, c = fastrnn.lstm_forward(**p, cache=cache, lengths=lengths)
            return out, {"h_n": h_n, "c_n": c_n}, c
        out, h_n, c = fastrnn.gru_forward(**p, cache=cache, lengths=lengths)
        return out, {"h_n": h_n}, c

    def backward(self, cache, dout, dfinals, truncate=None):
        """Returns grads by argument name (bias grads None without bias)."""
        if self.kind == "elman":
            g = fastrnn.elman_backward(cache, dout, dfinals.get("h_n"), truncate=truncate)
        elif self.kind == "lstm":
            g = fastrnn.lstm_backward(cache, dout, dfinals.get("h_n"), dfinals.get("c_n"),
                                      truncate=truncate)
        else:
            g = fastrnn.gru_backward(cache, dout, dfinals.get("h_n"), truncate=truncate)
        out = {"x": g.dx, "h0": g.dh0, "w_ih": g.dw_ih, "w_hh": g.dw_hh, "b_ih": g.db_ih,
               "b_hh": g.db_hh}
        if self.kind == "lstm":
            out["c0"] = g.dc0
            if self.proj:
                out["w_hr"] = g.dw_hr
        return out

    # ------------------------------------------------------------------ reference
    def ref_forward(self, p):
        """Returns (out, finals, saved)."""
        if self.kind == "elman":
            out, h_n = ref_elman.elman_forward(**p, nonlinearity=self.nonlinearity)
            return out, {"h_n": h_n}, None
        if self.kind == "lstm":
            out, h_n, c_n, saved = ref_lstm.lstm_forward(**p)
            return out, {"h_n": h_n, "c_n": c_n}, saved
        out, h_n, saved = ref_gru.gru_forward(**p)
        return out, {"h_n": h_n}, saved

    def ref_backward(self, p, out, saved, dout, dfinals, truncate=None):
        if self.kind == "elman":
            r = ref_elman.elman_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, dout,
                                         dfinals.get("h_n"), self.nonlinearity, truncate)
            r["db_ih"] = r["db_hh"] = r["db"]
        elif self.kind == "lstm":
            r = ref_lstm.lstm_backward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"],
                                       p.get("w_hr"), out, saved, dout, dfinals.get("h_n"),
                                       dfinals.get("c_n"), truncate)
            r["db_ih"] = r["db_hh"] = r["db"]
        else:
            r = ref_gru.gru_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], out, saved, dout,
                                     dfinals.get("h_n"), truncate)
        g = {n: r["d" + n] for n in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")}
        if self.kind == "lstm":
            g["c0"] = r["dc0"]
            if self.proj:
                g["w_hr"] = r["dw_hr"]
        if p["b_ih"] is None:
            g["b_ih"] = g["b_hh"] = None
        return g

    def ref_with_lengths(self, p, lengths, dout, dfinals, truncate=None):
        """The reference run sequence by sequence, each on its own real steps only:
        returns (out, finals, grads), outputs zero past each length."""
        T, B, I, H, P = self.sizes(p)
        out = np.zeros((T, B, P), p["x"].dtype)
        fin = {n: np.zeros(s, p["x"].dtype) for n, s in self.final_shapes(p).items()}
        grads = {n: None if p[n] is None else np.zeros_like(p[n]) for n in self.params}
        for b in range(B):
            L = int(lengths[b])
            q = dict(p, x=p["x"][:L, b:b + 1], h0=p["h0"][b:b + 1])
            if "c0" in q:
                q["c0"] = p["c0"][b:b + 1]
            o, f, saved = self.ref_forward(q)
            out[:L, b] = o[:, 0]
            for n in fin:
                fin[n][b] = f[n][0]
            g = self.ref_backward(q, o, saved, dout[:L, b:b + 1],
                                  {n: d[b:b + 1] for n, d in dfinals.items()}, truncate)
            for n in self.params:
                if grads[n] is None:
                    continue
                if n == "x":
                    grads[n][:L, b] = g[n][:, 0]
                elif n in ("h0", "c0"):
                    grads[n][b] = g[n][0]
                else:
                    grads[n] += g[n]
        return out, fin, grads

    # ------------------------------------------------------------------ torch
    def torch_step(self, t):
        """A function (x_t, state) -> state for the cell, on torch tensors ``t`` (a dict
        like the problem); state is (h,) or (h, c)."""
        import torch

        H = t["w_ih"].shape[0] // self.gates

        def lin(x_t, h):
            a = x_t @ t["w_ih"].T + h @ t["w_hh"].T
            return a if t["b_ih"] is None else a + t["b_ih"] + t["b_hh"]

        if self.kind == "elman":
            f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
                 "identity": lambda z: z}[self.nonlinearity]
            return lambda x_t, s: (f(lin(x_t, s[0])),)
        if self.kind == "lstm":
            def step(x_t, s):
                a = lin(x_t, s[0])
                i, f, g, o = (a[:, j * H:(j + 1) * H] for j in range(4))
                c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                return (h @ t["w_hr"].T if self.proj else h, c)
            return step

        def gru_step(x_t, s):
            gi = x_t @ t["w_ih"].T + (0 if t["b_ih"] is None else t["b_ih"])
            gh = s[0] @ t["w_hh"].T + (0 if t["b_hh"] is None else t["b_hh"])
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            return ((1 - z) * n + z * s[0],)
        return gru_step

    def torch_module(self, p):
        """The torch.nn module with these weights, or None where torch has none
        (Elman with sigmoid or identity, projections not smaller than H)."""
        import torch

        T, B, I, H, P = self.sizes(p)
        dtype = torch.float64 if p["x"].dtype == np.float64 else torch.float32
        bias = p["b_ih"] is not None
        if self.kind == "elman":
            if self.nonlinearity not in ("tanh", "relu"):
                return None
            m = torch.nn.RNN(I, H, nonlinearity=self.nonlinearity, bias=bias, dtype=dtype)
        elif self.kind == "lstm":
            if self.proj and P >= H:  # torch.nn.LSTM requires proj_size < hidden_size
                return None
            m = torch.nn.LSTM(I, H, bias=bias, proj_size=P if self.proj else 0, dtype=dtype)
        else:
            m = torch.nn.GRU(I, H, bias=bias, dtype=dtype)
        names = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0",
                 "b_hh": "bias_hh_l0", "w_hr": "weight_hr_l0"}
        with torch.no_grad():
            for ours, theirs in names.items():
                if p.get(ours) is not None:
                    getattr(m, theirs).copy_(torch.from_numpy(p[ours]))
        return m


CELLS = {c.name: c for c in [
    Cell("rnn_tanh", "elman", 1, "tanh"),
    Cell("rnn_relu", "elman", 1, "relu"),
    Cell("rnn_sigmoid", "elman", 1, "sigmoid"),
    Cell("rnn_identity", "elman", 1, "identity"),
    Cell("lstm", "lstm", 4),
    Cell("lstm_proj", "lstm", 4, proj=True),
    Cell("gru", "gru", 3),
]}
