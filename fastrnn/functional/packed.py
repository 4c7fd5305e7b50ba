"""Weight matrices packed once, for forwards that run many times with the same weights.

Every forward packs W_ih and W_hh (and an LSTM's W_hr) into the panel layout of the
register-tiled products (``kernels/tiles.py``): a copy of each matrix, made on every call
because an array may have changed since the last one. For inference with fixed weights
(a served model, a simulation that calls a forward again and again) ``pack_weight`` does
it once, as ONNX Runtime does when it builds a session: at the DeepBench LSTM size
(T, B, I, H) = (25, 16, 512, 512), float32, one thread, packing both matrices is about
0.2 ms and, with their 8 MB going through the caches, 0.3-0.5 ms of a 7 ms forward.
"""

import numpy as np

from .. import _validation as v
from ..kernels import tiles as _tiles

__all__ = ["PackedWeight", "pack_weight"]


class PackedWeight:
    """A weight matrix and its packed form (from ``pack_weight``), accepted by the
    forwards in place of ``w_ih``, ``w_hh`` or ``w_hr``.

    It holds its own copy of the matrix: changing the array it was made from changes
    nothing here (pack it again after an update). ``array`` is a read-only view of that
    copy, with ``shape`` and ``dtype``. A forward whose working dtype differs from
    ``dtype`` (float32 weights with a float64 ``x``) converts the matrix and packs the
    converted copy as usual: the results are the same, only the time saved is lost.
    Backward takes the matrix as it would take an array.
    """

    __slots__ = ("_array", "_packed")

    def __init__(self, array, packed):
        self._array = array  # fastrnn's copy: C-contiguous, writeable, never handed out
        self._packed = packed  # tiles.pack_t(array)

    @property
    def array(self):
        a = self._array.view()
        a.flags.writeable = False
        return a

    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    def __repr__(self):
        return f"PackedWeight(shape={self.shape}, dtype={self.dtype})"


def pack_weight(w, dtype=None):
    """Pack a weight matrix once for the forwards (see ``PackedWeight``).

    Parameters
    ----------
    w : array_like, (N, K)
        ``w_ih`` (G*H, I), ``w_hh`` (G*H, P) or ``w_hr`` (P, H), in PyTorch's layout.
    dtype : float32, float64 or None
        None: float32 stays float32, float64 float64 (int and bool become float64,
        float16 float32, as in the forwards).

    Returns
    -------
    PackedWeight

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    >>> w_ih = rng.standard_normal((16, 3)).astype(np.float32)
    >>> w_hh = rng.standard_normal((16, 4)).astype(np.float32)
    >>> p_ih, p_hh = fastrnn.pack_weight(w_ih), fastrnn.pack_weight(w_hh)
    >>> out, h_n, c_n, _ = fastrnn.lstm_forward(x, None, None, p_ih, p_hh, cache=False)
    >>> ref = fastrnn.lstm_forward(x, None, None, w_ih, w_hh, cache=False)[0]
    >>> bool(np.array_equal(out, ref))
    True
    """
    fn = "pack_weight"
    if isinstance(w, PackedWeight):
        w = w._array
    a = v.to_array(fn, "w", w)
    v.check_ndim(fn, "w", a, "(N, K)")
    if a.size == 0:
        raise ValueError(f"{fn}: w must have at least one row and one column, got shape "
                         f"{a.shape}")
    if dtype is None:
        dt = v.working_dtype(a)
    else:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype!r}")
    a = np.array(a, dtype=dt, order="C")  # always a copy
    return PackedWeight(a, _tiles.pack_t_and_sum(a, False)[0])  # (Python calls this form)


def unpack(fn, name, value):
    """``(array, packed)`` for a forward's weight argument: a PackedWeight's own copy and
    packed form, or ``(value as an ndarray, None)``."""
    if isinstance(value, PackedWeight):
        return value._array, value._packed
    return v.to_array(fn, name, value), None
