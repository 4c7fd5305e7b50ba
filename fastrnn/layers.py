"""Layers: ``RNN``, ``LSTM`` and ``GRU`` with PyTorch's constructor, parameter names and
call conventions, on top of the functional API.

A user of ``torch.nn.RNN/LSTM/GRU`` can load the same weights (``load_state_dict``
takes ``{n: p.detach().numpy() for n, p in module.named_parameters()}``), call the
layer the same way and get the same numbers, with gradients from ``backward``:

- shapes: ``x`` (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I);
  states (num_layers * num_directions, B, H) (unbatched: without B); LSTM states are
  ``(h, c)`` tuples, h with ``proj_size`` features when projections are on.
- stacking: layer l > 0 reads layer l-1's output; dropout (training mode only) on
  every layer's output but the last, masks drawn from the layer's seeded generator.
- bidirectional: output ``[forward, reverse]`` on the feature axis; ``h_n`` index
  ``layer * 2 + direction``.
- ``lengths`` (one per sequence): PyTorch's packed-sequence semantics; outputs past a
  sequence's length are 0, its final state is the one at its last real step, and the
  reverse direction starts at that step.
- ``backward(cache, dout, dh_n=None, truncate=None)``: gradients of
  ``sum(out * dout) + sum(h_n * dh_n)`` (+ c_n terms) for the input, the initial
  states and every parameter. ``truncate=k`` cuts every gradient k steps after it
  entered, counted across the whole stack: a gradient that enters the top at step t
  stops at step t-k+1 in every layer (so a lower layer receives it with the steps it
  has already used; see DESIGN.md). Not defined for bidirectional layers.

Parameters are initialised as PyTorch does, U(-1/sqrt(H), 1/sqrt(H)), from a
``numpy.random.Generator`` seeded with ``seed``.
"""

import numbers
from dataclasses import dataclass

import numpy as np

from . import _validation as v
from . import functional as F
from .functional._common import _check_unmodified
from .functional.elman import _elman_run_backward
from .functional.gru import _gru_run_backward
from .functional.lstm import _lstm_run_backward
from .kernels.activations import ACTIVATIONS

__all__ = ["RNN", "LSTM", "GRU", "LayerCache", "LayerGrads"]


@dataclass(frozen=True)
class LayerCache:
    """What a layer's ``backward`` needs from its ``forward``."""

    layer: object
    caches: list  # [layer][direction]: the functional caches
    masks: list  # [layer]: dropout mask applied to that layer's output, or None
    lengths: np.ndarray  # (B,) or None
    batched: bool
    T: int
    B: int


@dataclass(frozen=True)
class LayerGrads:
    """Gradients from a layer's ``backward``.

    dx: like the input x; dh0: like h0 ((dh0, dc0) for an LSTM); params: name ->
    gradient of that parameter (PyTorch's names).
    """

    dx: np.ndarray
    dh0: object
    params: dict


def _check_int(cls, name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{cls}: {name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        what = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{cls}: {name} must be {what}, got {value}")
    return int(value)


def _reverse(a, lengths):
    """Reverse the time axis of a (T, ...) array, each sequence within its own length
    (padding stays in place)."""
    if lengths is None:
        return np.ascontiguousarray(a[::-1])
    T = a.shape[0]
    t = np.arange(T)[:, None]
    idx = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=0)


class _RNNBase:
    """What RNN, LSTM and GRU share: configuration, parameters, forward and backward
    over layers and directions."""

    _kind = ""  # "elman", "lstm", "gru"
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=np.float32, seed=None,
                 nonlinearity="tanh"):
        cls = type(self).__name__
        self.input_size = _check_int(cls, "input_size", input_size, 1)
        self.hidden_size = _check_int(cls, "hidden_size", hidden_size, 1)
        self.num_layers = _check_int(cls, "num_layers", num_layers, 1)
        self.proj_size = _check_int(cls, "proj_size", proj_size, 0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"{cls}: proj_size has to be smaller than hidden_size, got "
                             f"proj_size={proj_size}, hidden_size={hidden_size}")
        if (isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout <= 1):
            raise ValueError(f"{cls}: dropout should be a number in range [0, 1] representing "
                             f"the probability of an element being zeroed, got {dropout!r}")
        for name, flag in (("bias", bias), ("batch_first", batch_first),
                           ("bidirectional", bidirectional)):
            v.check_flag(cls, name, flag)
        dt = np.dtype(dtype) if isinstance(dtype, (type, np.dtype, str)) else None
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{cls}: dtype must be float32 or float64, got {dtype!r}")
        if self._kind == "elman":
            v.check_choice(cls, "nonlinearity", nonlinearity, ACTIVATIONS)
        self.nonlinearity = nonlinearity
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = dt
        self.training = True
        self._rng = np.random.default_rng(seed)
        self._params = {}
        H, G = self.hidden_size, self._gates
        P = self.proj_size or H
        k = 1.0 / np.sqrt(H)
        for layer in range(self.num_layers):
            for suffix in self._suffixes:
                n_in = self.input_size if layer == 0 else P * self.num_directions
                shapes = [("weight_ih", (G * H, n_in)), ("weight_hh", (G * H, P))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                if self.proj_size:
                    shapes += [("weight_hr", (P, H))]
                for base, shape in shapes:
                    self._params[f"{base}_l{layer}{suffix}"] = self._rng.uniform(
                        -k, k, shape).astype(dt)

    # ------------------------------------------------------------------ configuration
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    @property
    def _P(self):
        return self.proj_size or self.hidden_size

    def __repr__(self):
        extra = [f"{self.input_size}, {self.hidden_size}"]
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                extra.append(f"{name}={getattr(self, name)}")
        if self._kind == "elman" and self.nonlinearity != "tanh":
            extra.append(f"nonlinearity={self.nonlinearity!r}")
        return f"{type(self).__name__}({', '.join(extra)}, dtype={self.dtype.name})"

    def train(self, mode=True):
        """Training mode (dropout on); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (no dropout); returns the layer."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters
    def named_parameters(self):
        """``(name, array)`` pairs in PyTorch's order; the arrays are the layer's own."""
        return iter(list(self._params.items()))

    def parameters(self):
        return iter(list(self._params.values()))

    def state_dict(self):
        """A dict name -> copy of each parameter."""
        return {n: p.copy() for n, p in self._params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in from a dict name -> array (for example
        ``{n: p.detach().numpy() for n, p in torch_module.named_parameters()}``).
        Every parameter must be present with its shape, and nothing else."""
        cls = type(self).__name__
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"{cls}.load_state_dict: expected a dict of arrays, got "
                            f"{type(state_dict).__name__}")
        missing = [n for n in self._params if n not in state_dict]
        unexpected = [n for n in state_dict if n not in self._params]
        if missing or unexpected:
            raise ValueError(f"{cls}.load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected}")
        new = {}
        for n, p in self._params.items():
            a = v.to_array(f"{cls}.load_state_dict", n, state_dict[n])
            if a.shape != p.shape:
                raise ValueError(f"{cls}.load_state_dict: {n} must have shape {p.shape}, "
                                 f"got {a.shape}")
            new[n] = a
        for n, a in new.items():
            self._params[n][...] = a

    # ------------------------------------------------------------------ calls
    def __call__(self, x, h0=None, lengths=None):
        """``out, h_n = layer(x, h0=None, lengths=None)``: forward without keeping
        anything for backward."""
        out, h_n, _ = self._forward(x, h0, lengths, keep=False)
        return out, h_n

    def forward(self, x, h0=None, lengths=None):
        """``out, h_n, cache``: forward, keeping what ``backward`` needs.

        x (T, B, I), (B, T, I) with batch_first, or (T, I); h0 None (zeros) or
        (num_layers * num_directions, B, H) (LSTM: a tuple (h0, c0)); lengths None or
        (B,) ints in 1..T.
        """
        return self._forward(x, h0, lengths, keep=True)

    def _forward(self, x, h0, lengths, keep):
        fn = f"{type(self).__name__}.forward"
        x = v.to_array(fn, "x", x)
        if x.ndim not in (2, 3):
            raise ValueError(f"{fn}: x must have 3 dimensions ((B, T, I) with batch_first, else "
                             f"(T, B, I)) or 2 (unbatched (T, I)), got {x.ndim} with shape "
                             f"{x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[2] != self.input_size:
            raise ValueError(f"{fn}: x must have input_size = {self.input_size} features "
                             f"(last axis), got {x.shape[2]}")
        T, B = x.shape[:2]
        if lengths is not None and not batched:
            raise ValueError(f"{fn}: lengths needs a batched input")
        lengths = v.check_lengths(fn, lengths, T, B)
        x = np.ascontiguousarray(x, dtype=self.dtype)  # inputs take the layer's dtype
        h0, c0 = self._check_states(fn, h0, B, batched)
        L, D = self.num_layers, self.num_directions
        caches, masks, h_n, c_n = [], [], [], []
        inp = x
        for layer in range(L):
            outs, layer_caches = [], []
            for d, suffix in enumerate(self._suffixes):
                i = layer * D + d
                xin = inp if d == 0 else _reverse(inp, lengths)
                out, fin, cache = self._cell_forward(
                    xin, h0[i], None if c0 is None else c0[i], layer, suffix, lengths, keep)
                outs.append(out if d == 0 else _reverse(out, lengths))
                layer_caches.append(cache)
                h_n.append(fin[0])
                if c0 is not None:
                    c_n.append(fin[1])
            layer_out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            mask = None
            if layer < L - 1 and self.training and self.dropout > 0:
                keep_p = 1.0 - self.dropout
                mask = ((self._rng.random(layer_out.shape) < keep_p)
                        / keep_p if keep_p > 0 else np.zeros(layer_out.shape)).astype(self.dtype)
                layer_out = layer_out * mask
            caches.append(layer_caches)
            masks.append(mask)
            inp = layer_out
        out = inp
        h_n = np.stack(h_n)
        states = (h_n, np.stack(c_n)) if c0 is not None else h_n
        if not batched:
            out = out[:, 0]
            states = tuple(s[:, 0] for s in states) if c0 is not None else states[:, 0]
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        cache = LayerCache(self, caches, masks, lengths, batched, T, B) if keep else None
        return out, states, cache

    def _check_states(self, fn, h0, B, batched, names=("h0", "c0")):
        """Initial states (or, with ``names``, final-state gradients) as (L*D, B, ·) arrays
        of the layer's dtype (zeros for None)."""
        LD, H, P = self.num_layers * self.num_directions, self.hidden_size, self._P
        lstm = self._kind == "lstm"
        if lstm and h0 is not None:
            if not (isinstance(h0, tuple) and len(h0) == 2):
                raise TypeError(f"{fn}: {names[0]} of an LSTM must be None or a tuple "
                                f"({names[0]}, {names[1]}), got {type(h0).__name__}")
            h, c = h0
        else:
            h, c = h0, None

        def state(name, a, features):
            if a is None:
                return np.zeros((LD, B, features), self.dtype)
            a = v.to_array(fn, name, a)
            layout = "(num_layers*num_directions, B, H)" if batched else \
                "(num_layers*num_directions, H)"
            if batched:
                v.check_shape(fn, name, a, layout, (LD, B, features))
            else:
                v.check_shape(fn, name, a, layout, (LD, features))
                a = a[:, None, :]
            return np.ascontiguousarray(a, dtype=self.dtype)

        h = state(names[0], h, P)
        c = state(names[1], c, H) if lstm else None
        return h, c

    def _cell_forward(self, x, h0, c0, layer, suffix, lengths, keep):
        """One layer and direction through the functional API: (out, finals, cache)."""
        p = self._params
        w = [p[f"weight_ih_l{layer}{suffix}"], p[f"weight_hh_l{layer}{suffix}"]]
        if self.bias:
            w += [p[f"bias_ih_l{layer}{suffix}"], p[f"bias_hh_l{layer}{suffix}"]]
        else:
            w += [None, None]
        if self._kind == "elman":
            out, h_n, cache = F.elman_forward(x, h0, *w, nonlinearity=self.nonlinearity,
                                              cache=keep, lengths=lengths)
            return out, (h_n,), cache
        if self._kind == "lstm":
            w_hr = p[f"weight_hr_l{layer}{suffix}"] if self.proj_size else None
            out, h_n, c_n, cache = F.lstm_forward(x, h0, c0, *w, w_hr=w_hr, cache=keep,
                                                  lengths=lengths)
            return out, (h_n, c_n), cache
        out, h_n, cache = F.gru_forward(x, h0, *w, cache=keep, lengths=lengths)
        return out, (h_n,), cache

    # ------------------------------------------------------------------ backward
    def backward(self, cache, dout, dh_n=None, truncate=None):
        """Gradients of ``sum(out * dout) + sum(h_n * dh_n)`` (LSTM: plus
        ``sum(c_n * dc_n)``, with ``dh_n`` a tuple (dh_n, dc_n)).

        Parameters
        ----------
        cache : LayerCache
            From ``forward`` of this layer.
        dout : array_like shaped like out, or None (zeros)
        dh_n : array_like shaped like h_n, or None (zeros); LSTM: a tuple of two
            (either may be None)
        truncate : int >= 1 or None
            The gradient entering at step t flows back through steps t..t-k+1 only, in
            every layer of the stack. Not defined with bidirectional=True.

        Returns
        -------
        LayerGrads
            ``dx``, ``dh0`` and ``params`` (name -> gradient).
        """
        cls = type(self).__name__
        fn = f"{cls}.backward"
        if not isinstance(cache, LayerCache) or cache.layer is not self:
            raise TypeError(f"{fn}: cache must be the LayerCache returned by this layer's "
                            f"forward, got {type(cache).__name__}")
        # every layer's cache checked before any work; each gives its weights packed
        packs = [[_check_unmodified(fn, c) for c in layer_caches]
                 for layer_caches in cache.caches]
        T, B, L, D, P, H = cache.T, cache.B, self.num_layers, self.num_directions, self._P, \
            self.hidden_size
        k = v.check_truncate(fn, truncate)
        if k is not None and self.bidirectional:
            raise ValueError(f"{fn}: truncate is not defined for a bidirectional layer (the "
                             f"reverse direction's gradient flows forward in time)")
        if k is not None and k >= T:
            k = None
        out_layout = "(B, T, D*H)" if self.batch_first else "(T, B, D*H)"
        if dout is None:
            dout = np.zeros((T, B, D * P), self.dtype)
        else:
            dout = v.to_array(fn, "dout", dout)
            if not cache.batched:
                v.check_shape(fn, "dout", dout, "(T, D*H)", (T, D * P))
                dout = dout[:, None, :]
            elif self.batch_first:
                v.check_shape(fn, "dout", dout, out_layout, (B, T, D * P))
                dout = dout.transpose(1, 0, 2)
            else:
                v.check_shape(fn, "dout", dout, out_layout, (T, B, D * P))
            dout = np.ascontiguousarray(dout, dtype=self.dtype)
        dh, dc = self._check_states(fn, dh_n, B, cache.batched, ("dh_n", "dc_n"))
        grads = {}
        dh0 = np.zeros((L * D, B, P), self.dtype)
        dc0 = np.zeros((L * D, B, H), self.dtype) if self._kind == "lstm" else None
        if k is None:
            d_layer = dout
            for layer in range(L - 1, -1, -1):
                d_in = None
                for d, suffix in enumerate(self._suffixes):
                    i = layer * D + d
                    d_out = np.ascontiguousarray(d_layer[..., d * P:(d + 1) * P])
                    if d == 1:
                        d_out = _reverse(d_out, cache.lengths)
                    g = self._cell_backward(cache.caches[layer][d], d_out[:, None], dh[i],
                                            None if dc is None else dc[i], None, False,
                                            packs[layer][d])[0]
                    self._collect(grads, g, layer, suffix, dh0, dc0, i)
                    dx = g.dx if d == 0 else _reverse(g.dx, cache.lengths)
                    d_in = dx if d_in is None else d_in + dx
                if layer > 0 and cache.masks[layer - 1] is not None:
                    d_in = d_in * cache.masks[layer - 1]
                d_layer = d_in
            dx = d_layer
        else:
            d_ages = dout[:, None]  # (T, 1, B, P): everything enters the top layer fresh
            for layer in range(L - 1, -1, -1):
                g, dx_ages = self._cell_backward(cache.caches[layer][0], d_ages, dh[layer],
                                                 None if dc is None else dc[layer], k, layer > 0,
                                                 packs[layer][0])
                self._collect(grads, g, layer, "", dh0, dc0, layer)
                if layer > 0:
                    if dx_ages is None:  # B = 0
                        dx_ages = np.zeros((T, 1, B, P), self.dtype)
                    if cache.masks[layer - 1] is not None:
                        dx_ages = dx_ages * cache.masks[layer - 1][:, None]
                    d_ages = np.ascontiguousarray(dx_ages)
                else:
                    dx = g.dx
        params = {n: grads[n] for n in self._params}
        if not cache.batched:
            dx = dx[:, 0]
            dh0 = dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        elif self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return LayerGrads(dx, dh0 if dc0 is None else (dh0, dc0), params)

    def _cell_backward(self, cache, dout_ages, dh_n, dc_n, k, want_ages, packs):
        if self._kind == "elman":
            return _elman_run_backward(cache, dout_ages, dh_n, k, want_ages, packs)
        if self._kind == "lstm":
            return _lstm_run_backward(cache, dout_ages, dh_n, dc_n, k, want_ages, packs)
        return _gru_run_backward(cache, dout_ages, dh_n, k, want_ages, packs)

    def _collect(self, grads, g, layer, suffix, dh0, dc0, i):
        grads[f"weight_ih_l{layer}{suffix}"] = g.dw_ih
        grads[f"weight_hh_l{layer}{suffix}"] = g.dw_hh
        if self.bias:
            grads[f"bias_ih_l{layer}{suffix}"] = g.db_ih
            grads[f"bias_hh_l{layer}{suffix}"] = g.db_hh
        if self.proj_size:
            grads[f"weight_hr_l{layer}{suffix}"] = g.dw_hr
        dh0[i] = g.dh0
        if dc0 is not None:
            dc0[i] = g.dc0


class RNN(_RNNBase):
    """Elman RNN layer, as ``torch.nn.RNN``: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1}
    + b_hh)``, ``nonlinearity`` in {"tanh", "relu"} (and "sigmoid", "identity").

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    nonlinearity : str
    bias : bool
    batch_first : bool
    dropout : float in [0, 1]
        On every layer's output but the last, in training mode.
    bidirectional : bool
    dtype : numpy float dtype (float32 or float64)
    seed : int, numpy.random.Generator seed, or None
        For the initial parameters and the dropout masks.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rnn = fastrnn.RNN(3, 5, num_layers=2, seed=0)
    >>> x = np.ones((7, 2, 3), np.float32)
    >>> out, h_n = rnn(x)
    >>> out.shape, h_n.shape
    ((7, 2, 5), (2, 2, 5))
    >>> [name for name, _ in rnn.named_parameters()][:4]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
    """

    _kind = "elman"
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, seed, nonlinearity)


class LSTM(_RNNBase):
    """LSTM layer, as ``torch.nn.LSTM`` (gates i, f, g, o; ``proj_size`` > 0 adds
    ``weight_hr_l{k}`` and makes h ``proj_size`` wide). States are ``(h, c)`` tuples.

    Parameters as ``RNN``, plus ``proj_size`` (0: no projections; < hidden_size).

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> lstm = fastrnn.LSTM(3, 5, proj_size=2, batch_first=True, seed=0)
    >>> out, (h_n, c_n), cache = lstm.forward(np.ones((4, 6, 3)))
    >>> out.shape, h_n.shape, c_n.shape
    ((4, 6, 2), (1, 4, 2), (1, 4, 5))
    >>> g = lstm.backward(cache, np.ones_like(out))
    >>> sorted(g.params)[-1], g.params["weight_hr_l0"].shape
    ('weight_ih_l0', (2, 5))
    """

    _kind = "lstm"
    _gates = 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype, seed)


class GRU(_RNNBase):
    """GRU layer, as ``torch.nn.GRU`` (gates r, z, n; ``b_hn`` inside ``r *``).

    Parameters as ``RNN`` without ``nonlinearity``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> gru = fastrnn.GRU(3, 4, bidirectional=True, seed=0)
    >>> out, h_n = gru(np.ones((5, 3)))                 # unbatched (T, I)
    >>> out.shape, h_n.shape
    ((5, 8), (2, 4))
    """

    _kind = "gru"
    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, seed)
