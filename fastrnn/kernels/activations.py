"""Activation functions for the kernels: vectorisable, accurate, NaN-preserving.

Numba has no SVML, so ``np.tanh``/``np.exp`` inside a kernel loop are scalar libm
calls (~20 ns each) that also stop LLVM from vectorising the loop: at small sizes
the activation, not the matrix product, would dominate. The functions here use only
multiply, add, divide, compare-and-select and bit casts, so a loop over a row of
pre-activations vectorises.

Accuracy (checked in ``tests/test_activations.py`` against NumPy in float64):

========  ============================  ================================
function  float64                       float32
========  ============================  ================================
exp       Cephes ``exp``, <= 2 ulp      Cephes ``expf``, <= 2 ulp
tanh      Cephes ``tanh``, <= 2 ulp     Eigen's rational form, <= 5 ulp
sigmoid   via exp, <= 3 ulp             via exp, <= 3 ulp
========  ============================  ================================

(ulp of the result; float32 arithmetic is float32 throughout, float64 throughout.)
NaN in gives NaN out, +-inf saturate (tanh -> +-1, sigmoid -> 0 or 1, exp -> inf or 0),
and no input overflows. Results that would be subnormal are flushed to zero
(exp(x) for x < -87.3 in float32, -708.4 in float64).

Each scalar function is a Python function with a NumPy fallback, overloaded for
Numba's float32 and float64 types, so one kernel source serves both dtypes.

Activation codes (``TANH``, ``RELU``, ``SIGMOID``, ``IDENTITY``) are small integers:
kernels take the code as a runtime argument, so one compiled kernel serves all four
(no extra specialisations) and the branch is taken once per row, outside the loop
that vectorises.
"""

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from .._config import OVERLOAD_OPTIONS, jit, jit_inline

TANH = 0
RELU = 1
SIGMOID = 2
IDENTITY = 3

#: Public names of the Elman nonlinearities and their codes.
ACTIVATIONS = {"tanh": TANH, "relu": RELU, "sigmoid": SIGMOID, "identity": IDENTITY}


# --------------------------------------------------------------------------------------
# Bit casts (no-ops in machine code; they let us build 2**n from an integer n)


def _bitcast(src, dst, llvm_dst):
    """An intrinsic reinterpreting the bits of a ``src`` scalar as ``dst``."""

    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], llvm_dst)

        return dst(src), codegen

    return cast


_f32_bits = _bitcast(types.float32, types.int32, ir.IntType(32))
_f32_from_bits = _bitcast(types.int32, types.float32, ir.FloatType())
_f64_bits = _bitcast(types.float64, types.int64, ir.IntType(64))
_f64_from_bits = _bitcast(types.int64, types.float64, ir.DoubleType())


# --------------------------------------------------------------------------------------
# float64: Cephes exp and tanh

_LOG2E = 1.4426950408889634
_ROUND64 = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND64 rounds x to an integer
_ROUND64_BITS = 0x4338000000000000


@jit
def _exp_f64(x):
    # Clamp keeps n inside the int range; the two-factor scaling below then
    # overflows to inf / underflows to 0 by itself. NaN passes both compares.
    x = 710.0 if x > 710.0 else x
    x = -746.0 if x < -746.0 else x
    t = x * _LOG2E + _ROUND64
    n = _f64_bits(t) - _ROUND64_BITS  # round(x * log2(e)) without a float->int cast
    fn = t - _ROUND64
    r = x - fn * 6.93145751953125e-1  # Cody-Waite: ln 2 split in two
    r = r - fn * 1.42860682030941723212e-6
    rr = r * r
    p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
             + 9.99999999999999999910e-1)
    q = (((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
          + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0)
    e = 1.0 + 2.0 * p / (q - p)
    # 2**n as two normal factors so that n in [-1077, 1025] needs no special case
    n1 = n >> 1
    s1 = _f64_from_bits((n1 + 1023) << 52)
    s2 = _f64_from_bits((n - n1 + 1023) << 52)
    return e * s1 * s2


@jit
def _tanh_f64(x):
    z = abs(x)
    # |x| >= 0.625: from exp (no cancellation there)
    s = _exp_f64(2.0 * z)
    big = 1.0 - 2.0 / (s + 1.0)
    big = -big if x < 0.0 else big
    # |x| < 0.625: x + x**3 P(x**2)/Q(x**2)
    x2 = x * x
    p = (-9.64399179425052238628e-1 * x2 - 9.92877231001918586564e1) * x2 - 1.61468768441708447952e3
    q = ((x2 + 1.12811678491632931402e2) * x2 + 2.23548839060100448583e3) * x2 + 4.84406305325125486048e3
    small = x + x * x2 * (p / q)
    return big if z >= 0.625 else small


@jit
def _sigmoid_f64(x):
    e = _exp_f64(-abs(x))  # in (0, 1]: never overflows
    r = 1.0 / (1.0 + e)
    return r if x >= 0.0 else e * r


# --------------------------------------------------------------------------------------
# float32: Cephes expf, Eigen-style rational tanh; float32 arithmetic throughout

_F = np.float32
_LOG2E_F = _F(1.44269504088896341)
_ROUND32 = _F(12582912.0)  # 1.5 * 2**23
_ROUND32_BITS = 0x4B400000
_ONE_F = _F(1.0)
_HALF_F = _F(0.5)
_ZERO_F = _F(0.0)


@jit
def _exp_f32(x):
    x = _F(89.0) if x > _F(89.0) else x
    x = _F(-104.0) if x < _F(-104.0) else x
    t = x * _LOG2E_F + _ROUND32
    n = _f32_bits(t) - _ROUND32_BITS
    fn = t - _ROUND32
    r = x - fn * _F(0.693359375)
    r = r - fn * _F(-2.12194440e-4)
    p = _F(1.9875691500e-4) * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    e = p * (r * r) + r + _ONE_F
    n1 = n >> 1
    s1 = _f32_from_bits(np.int32((n1 + 127) << 23))
    s2 = _f32_from_bits(np.int32((n - n1 + 127) << 23))
    return e * s1 * s2


_TANH_CLAMP_F = _F(7.90531110763549805)


@jit
def _tanh_f32(x):
    # Odd rational approximation on [-7.9, 7.9] (the form Eigen uses for float32);
    # above 9 the correctly rounded result is +-1, below 4e-4 it is x.
    v = _TANH_CLAMP_F if x > _TANH_CLAMP_F else x
    v = -_TANH_CLAMP_F if v < -_TANH_CLAMP_F else v
    x2 = v * v
    p = x2 * _F(-2.76076847742355e-16) + _F(2.00018790482477e-13)
    p = p * x2 + _F(-8.60467152213735e-11)
    p = p * x2 + _F(5.12229709037114e-08)
    p = p * x2 + _F(1.48572235717979e-05)
    p = p * x2 + _F(6.37261928875436e-04)
    p = p * x2 + _F(4.89352455891786e-03)
    q = x2 * _F(1.19825839466702e-06) + _F(1.18534705686654e-04)
    q = q * x2 + _F(2.26843463243900e-03)
    q = q * x2 + _F(4.89352518554385e-03)
    y = v * p / q
    z = abs(x)
    y = x if z < _F(4e-4) else y
    y = (_ONE_F if x > _ZERO_F else -_ONE_F) if z > _F(9.0) else y
    return y


@jit
def _sigmoid_f32(x):
    e = _exp_f32(-abs(x))
    r = _ONE_F / (_ONE_F + e)
    return r if x >= _ZERO_F else e * r


# --------------------------------------------------------------------------------------
# Public scalar functions: one name for both dtypes


def exp(x):
    """exp(x), vectorisable inside kernels (NumPy's ``exp`` outside them)."""
    return np.exp(x)


def tanh(x):
    """tanh(x), vectorisable inside kernels (NumPy's ``tanh`` outside them)."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow, vectorisable inside kernels."""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _by_dtype(f32, f64):
    def typer(x):
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
        return None

    return typer


overload(exp, jit_options=OVERLOAD_OPTIONS)(_by_dtype(_exp_f32, _exp_f64))
overload(tanh, jit_options=OVERLOAD_OPTIONS)(_by_dtype(_tanh_f32, _tanh_f64))
overload(sigmoid, jit_options=OVERLOAD_OPTIONS)(_by_dtype(_sigmoid_f32, _sigmoid_f64))


# --------------------------------------------------------------------------------------
# Row helpers used by the cell kernels. The activation branch is outside the loop.


@jit_inline
def activate(a, act):
    """In place ``a[:] = act(a)`` for a 1-D contiguous row ``a`` of pre-activations."""
    n = a.shape[0]
    zero = a.dtype.type(0.0)
    if act == TANH:
        for j in range(n):
            a[j] = tanh(a[j])
    elif act == RELU:
        for j in range(n):
            v = a[j]
            a[j] = zero if v < zero else v  # NaN stays NaN
    elif act == SIGMOID:
        for j in range(n):
            a[j] = sigmoid(a[j])
    # IDENTITY: nothing to do


@jit_inline
def activation_backward(da, dh, h, act):
    """``da[:] = dh * act'(a)`` for 1-D rows, with ``act'`` written in terms of the
    output ``h = act(a)`` (which is all backward keeps):

    tanh: ``1 - h**2``; sigmoid: ``h (1 - h)``; relu: ``h > 0`` (as PyTorch,
    ``h <= 0`` blocks the gradient and NaN lets it through); identity: 1.
    """
    n = da.shape[0]
    one = h.dtype.type(1.0)
    zero = h.dtype.type(0.0)
    if act == TANH:
        for j in range(n):
            hj = h[j]
            da[j] = dh[j] * (one - hj * hj)
    elif act == RELU:
        for j in range(n):
            da[j] = zero if h[j] <= zero else dh[j]
    elif act == SIGMOID:
        for j in range(n):
            hj = h[j]
            da[j] = dh[j] * (hj * (one - hj))
    else:
        for j in range(n):
            da[j] = dh[j]
