"""GEMM on row-major blocks, straight to SciPy's BLAS.

``np.dot`` inside Numba needs contiguous operands and a separate output, so a block
of columns, an accumulation ``C += A B`` or a transposed operand would each cost a
copy or a temporary. ``gemm`` calls the BLAS ``?gemm`` behind ``np.dot`` (Numba's
``numba_xxgemm`` helper, which loads SciPy's ``cython_blas``) directly, with leading
dimensions and ``beta``: any 2-D view whose last axis has unit stride is an operand.
The call is cacheable (the helper is resolved by name when the code is loaded).

BLAS threading: fastrnn's kernels parallelise with their own threads (``prange``)
and expect BLAS to be single-threaded while they run; the functional layer arranges
that (``fastrnn._blas_threads``).
"""

import numpy as np
from numba.core import types
from numba.extending import overload

from .._config import OVERLOAD_OPTIONS, jit


def _signature(dtype):
    ptr = types.CPointer(dtype)
    return types.intc(types.char, types.char, types.char,  # kind, transa, transb
                      types.intp, types.intp, types.intp,  # m, n, k
                      ptr, ptr, types.intp,  # alpha, a, lda
                      ptr, types.intp,  # b, ldb
                      ptr, ptr, types.intp)  # beta, c, ldc


_xxgemm_f32 = types.ExternalFunction("numba_xxgemm", _signature(types.float32))
_xxgemm_f64 = types.ExternalFunction("numba_xxgemm", _signature(types.float64))

# alpha and beta are passed by pointer: constant arrays baked into the compiled code
_SCALARS_F32 = np.array([1.0, 0.0], np.float32)  # [one, zero]
_SCALARS_F64 = np.array([1.0, 0.0], np.float64)
_N = np.int8(ord("N"))
_T = np.int8(ord("T"))


def _colmajor_gemm(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc):
    """Fortran-order ``c = op(a) op(b) (+ c)`` on raw pointers (typed per dtype below)."""


@overload(_colmajor_gemm, jit_options=OVERLOAD_OPTIONS)
def _colmajor_gemm_impl(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc):
    if c.dtype == types.float32:
        fn, scalars, kind = _xxgemm_f32, _SCALARS_F32, np.int8(ord("s"))
    elif c.dtype == types.float64:
        fn, scalars, kind = _xxgemm_f64, _SCALARS_F64, np.int8(ord("d"))
    else:
        return None

    def impl(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc):
        beta = scalars[0:1] if accumulate else scalars[1:2]
        return fn(kind, ta, tb, m, n, k, scalars[0:1].ctypes, a, lda, b, ldb, beta.ctypes, c, ldc)

    return impl


@jit
def _leading_dim(x):
    # the row stride in elements; a single row's stride is arbitrary (NumPy calls an
    # array with a length-1 axis contiguous whatever that axis's stride, even 0), and
    # BLAS wants at least the row length
    if x.shape[0] > 1:
        return x.strides[0] // x.itemsize
    return max(1, x.shape[1])


def _gemm_signatures():
    # Compiled eagerly for the two dtypes on any 2-D arrays ('A' layout) and plain
    # bools: lazily, every call site's mix of layouts and constant flags (which Numba
    # types as literals) would compile yet another copy.
    sigs = []
    for dt in (types.float32, types.float64):
        arr = types.Array(dt, 2, "A")
        sigs.append(types.void(arr, arr, arr, types.boolean, types.boolean, types.boolean))
    return sigs


@jit(_gemm_signatures())
def gemm(c, a, b, trans_a, trans_b, accumulate):
    """``c = op(a) @ op(b)``, or ``c += op(a) @ op(b)`` with ``accumulate``.

    c (M, N); op(a) (M, K); op(b) (K, N), where op transposes when its flag is set.
    Every operand is a 2-D row-major view with unit stride along its last axis (any
    row or column block of a C-contiguous array); c must not overlap a or b.
    """
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        if not accumulate:
            zero = c.dtype.type(0.0)
            for i in range(M):
                for j in range(N):
                    c[i, j] = zero
        return
    # row-major X (r x s, row stride ld) is column-major X^T with the same ld, so
    # C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with the flags unchanged
    _colmajor_gemm(_T if trans_b else _N, _T if trans_a else _N, N, M, K,
                   b.ctypes, _leading_dim(b), a.ctypes, _leading_dim(a),
                   accumulate, c.ctypes, _leading_dim(c))
