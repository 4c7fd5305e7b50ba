"""Small vector and matrix helpers shared by the cell kernels (the per-step product
of a recurrence is ``tiles.matmul``; the one-step kernels, which take unpacked weights,
use ``rowvec.vecmat`` and ``rowvec.vecmat_t``).

Dimension key: R = rows, K = inner size, N = output size.

Array assignments are explicit loops here on purpose: Numba compiles a slice
assignment such as ``a[i:j] = b[k]`` through its general broadcasting machinery,
which costs seconds of compile time per call site.
"""

import numpy as np
from numba.core import types
from numba.extending import overload

from .._config import OVERLOAD_OPTIONS, jit, jit_inline


@jit
def copy_rows(dst, src):
    """``dst[...] = src`` for 2-D arrays of the same shape."""
    for r in range(src.shape[0]):
        d = dst[r]
        s = src[r]
        for j in range(s.shape[0]):
            d[j] = s[j]


@jit
def add_rows(dst, a, b):
    """``dst[...] = a + b`` for 2-D arrays of the same shape."""
    for r in range(a.shape[0]):
        d = dst[r]
        ar = a[r]
        br = b[r]
        for j in range(ar.shape[0]):
            d[j] = ar[j] + br[j]


@jit
def fill_rows(dst, v):
    """``dst[r] = v`` for every row r of dst (R, N); v (N,)."""
    for r in range(dst.shape[0]):
        d = dst[r]
        for j in range(v.shape[0]):
            d[j] = v[j]


@jit
def sum_rows(s, a):
    """``s = a.sum(axis=0)`` in a fixed order (row 0 first): s (N,), a (R, N), R >= 1."""
    N = a.shape[1]
    a0 = a[0]
    for j in range(N):
        s[j] = a0[j]
    for r in range(1, a.shape[0]):
        ar = a[r]
        for j in range(N):
            s[j] += ar[j]


@jit
def sum_windows(dst, win, n):
    """``dst = win[0] + win[1] + ... + win[n-1]`` in that order: dst (N,), win (>= n, N)."""
    w0 = win[0]
    for j in range(dst.shape[0]):
        dst[j] = w0[j]
    for a in range(1, n):
        w = win[a]
        for j in range(dst.shape[0]):
            dst[j] += w[j]


@jit_inline
def sum_windows_p(dst, d, src, s, stride, n, N):
    """``sum_windows`` on data pointers: ``dst[d:d+N] = src[s:s+N] + src[s+stride:...]
    + ...`` over n rows ``stride`` apart, in that order."""
    for j in range(N):
        dst[d + j] = src[s + j]
    for a in range(1, n):
        o = s + a * stride
        for j in range(N):
            dst[d + j] += src[o + j]


@jit
def zero(row):
    """``row[:] = 0`` for a 1-D array."""
    z = row.dtype.type(0.0)
    for j in range(row.shape[0]):
        row[j] = z


@jit
def add_into(dst, src):
    """``dst += src`` for 1-D arrays of the same length."""
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@jit
def copy_into(dst, src):
    """``dst[:] = src`` for 1-D arrays of the same length."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@jit_inline
def copy_p(dst, d, src, s, n):
    """``dst[d:d+n] = src[s:s+n]`` on data pointers (``tiles._data``)."""
    for j in range(n):
        dst[d + j] = src[s + j]


@jit_inline
def add_p(dst, d, src, s, n):
    """``dst[d:d+n] += src[s:s+n]`` on data pointers."""
    for j in range(n):
        dst[d + j] += src[s + j]


@jit_inline
def zero_p(dst, d, n):
    """``dst[d:d+n] = 0`` on a data pointer."""
    for j in range(n):
        dst[d + j] = 0.0


@jit
def window_entries(gs, dout, t, r0, r1, n_prop):
    """Truncated BPTT: the gradients entering at step t, ``dout[t, a]`` for rows r0:r1,
    join the live windows by age a (gs (k, R, N)): age 0 is new, ages 1..n_prop were
    propagated from step t+1, older ones start here. Returns the number of live ages."""
    for a in range(dout.shape[1]):
        for r in range(r1 - r0):
            if a == 0 or a > n_prop:
                copy_into(gs[a, r], dout[t, a, r0 + r])
            else:
                add_into(gs[a, r], dout[t, a, r0 + r])
    return max(n_prop + 1, dout.shape[1])


def as_bits(a):
    """a's elements as unsigned integers of their size (a view): a 1-D contiguous
    float32 or float64 array."""


@overload(as_bits, jit_options=OVERLOAD_OPTIONS)
def _as_bits(a):
    if isinstance(a, types.Array) and a.dtype in (types.float32, types.float64):
        u = np.uint32 if a.dtype == types.float32 else np.uint64
        return lambda a: a.view(u)
    return None


@jit
def bits_sum(a):
    """Sum of a 1-D contiguous float array's elements read as unsigned integers of their
    size, wrapping at 2**64: a cheap checksum (vectorises, reads memory once; any change
    to one element changes it). ``tiles.pack_and_sum`` computes the same while packing."""
    b = as_bits(a)
    s = np.uint64(0)
    for i in range(b.shape[0]):
        s += np.uint64(b[i])
    return s
