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
exp       Cephes ``exp``, <= 2 ulp      ``expf``'s reduction, <= 2 ulp
tanh      Cephes ``tanh``, <= 2 ulp     Eigen's rational form, <= 5 ulp
sigmoid   via exp, <= 3 ulp             via exp, <= 3 ulp
========  ============================  ================================

(ulp of the result; float32 arithmetic is float32 throughout, float64 throughout.)
NaN in gives NaN out, +-inf saturate (tanh -> +-1, sigmoid -> 0 or 1, exp -> inf or 0),
and no input overflows. exp underflows gradually (subnormal results, 0 below
-103.9 in float32, -745.1 in float64); sigmoid flushes results under the smallest
normal number to zero (x < -87.34 in float32, -708.40 in float64).

Each function is written once as LLVM IR (``Emit``) and emitted at two widths: as a
scalar (``exp``, ``tanh``, ``sigmoid``: Python functions with a NumPy fallback,
overloaded for Numba's float32 and float64, so one kernel source serves both dtypes;
LLVM vectorises loops over them) and as explicit vectors of the host's full width
(``tanh_row``, ``sigmoid_row``, in place over a row). Both give the same bits.

Activation codes (``TANH``, ``RELU``, ``SIGMOID``, ``IDENTITY``) are small integers:
kernels take the code as a runtime argument, so one compiled kernel serves all four
(no extra specialisations) and the branch is taken once per row, outside the loop
that vectorises.
"""

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from .._config import OVERLOAD_OPTIONS, jit_inline
from .tiles import VECTOR_BYTES, _data

TANH = 0
RELU = 1
SIGMOID = 2
IDENTITY = 3

#: Public names of the Elman nonlinearities and their codes.
ACTIVATIONS = {"tanh": TANH, "relu": RELU, "sigmoid": SIGMOID, "identity": IDENTITY}


# --------------------------------------------------------------------------------------
# The functions are written once, as LLVM IR, for a scalar (W = 1) or a vector of W lanes
# of either dtype. Every multiply-add that may be fused is an explicit fused multiply-add
# and no other product feeds a sum: the `contract` flag then has nothing to fuse, so the
# scalar code, LLVM's vectorised loops over it and the explicit vectors of the row
# functions give the same bits lane by lane.


_LOG2E = 1.4426950408889634


class Emit:
    """IR operations on values of one type: ``dtype`` (float32/float64) or vectors of
    ``W`` of them; integers of the same width for the bit manipulations."""

    def __init__(self, builder, dtype, W=1):
        self.b = builder
        self.f64 = dtype == types.float64
        bits = 64 if self.f64 else 32
        ft = ir.DoubleType() if self.f64 else ir.FloatType()
        it = ir.IntType(bits)
        self.W = W
        self.ft, self.it = ft, it
        self.ty = ft if W == 1 else ir.VectorType(ft, W)
        self.ity = it if W == 1 else ir.VectorType(it, W)
        suffix = ("f64" if self.f64 else "f32") if W == 1 else f"v{W}{'f64' if self.f64 else 'f32'}"
        module = builder.module
        self._fma = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.ty, [self.ty] * 3), "llvm.fma." + suffix)
        self._fabs = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.ty, [self.ty]), "llvm.fabs." + suffix)

    def _splat(self, ty, scalar_ty, v):
        c = ir.Constant(scalar_ty, v)
        return c if self.W == 1 else ir.Constant(ty, [c] * self.W)

    def c(self, v):
        """A float constant (rounded to the dtype)."""
        v = float(v) if self.f64 else float(np.float32(v))
        return self._splat(self.ty, self.ft, v)

    def ic(self, v):
        return self._splat(self.ity, self.it, int(v))

    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def div(self, a, b):
        return self.b.fdiv(a, b)

    def fma(self, a, b, c):
        """a * b + c, rounded once."""
        return self.b.call(self._fma, [a, b, c])

    def neg(self, a):
        return self.b.fneg(a)

    def abs(self, a):
        return self.b.call(self._fabs, [a])

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def cmp(self, op, a, b):
        """Ordered comparison: false when either side is NaN."""
        return self.b.fcmp_ordered(op, a, b)

    def poly(self, x, coefficients):
        """Horner's scheme, highest degree first, one fused multiply-add per term."""
        p = self.c(coefficients[0])
        for k in coefficients[1:]:
            p = self.fma(p, x, self.c(k))
        return p

    def estrin(self, x, coefficients):
        """The polynomial of ``poly`` by Estrin's scheme: pairs of terms first
        (a + b x), then pairs of those with x^2, with x^4, ...: the dependent chain is
        log2(degree) fused multiply-adds instead of degree (the latency of a
        recurrence's step; the throughput is the same but for the squares)."""
        terms = [self.c(k) for k in reversed(coefficients)]  # lowest degree first
        power = x
        while len(terms) > 1:
            terms = [self.fma(terms[j + 1], power, terms[j]) if j + 1 < len(terms)
                     else terms[j] for j in range(0, len(terms), 2)]
            if len(terms) > 1:
                power = self.mul(power, power)
        return terms[0]

    def clamp(self, x, lo, hi):
        """``x`` limited to [lo, hi]; NaN stays NaN (ordered compares are false). Both
        compares read ``x``, so they run side by side."""
        above, below = self.cmp(">", x, self.c(hi)), self.cmp("<", x, self.c(lo))
        return self.select(below, self.c(lo), self.select(above, self.c(hi), x))

    def pow2(self, n):
        """2**n for an integer vector n in [2 emin - 2, 2 emax + 1], as two normal
        factors: results below the normal range flush to zero, above it overflow to inf
        (the product of the two, by the caller)."""
        b = self.b
        mant, bias = (52, 1023) if self.f64 else (23, 127)
        n1 = b.ashr(n, self.ic(1))
        s1 = b.bitcast(b.shl(b.add(n1, self.ic(bias)), self.ic(mant)), self.ty)
        s2 = b.bitcast(b.shl(b.add(b.sub(n, n1), self.ic(bias)), self.ic(mant)), self.ty)
        return s1, s2


def _exp_reduced(e, x, bias):
    # Cephes exp (float64: Pade form) / expf's reduction (float32) of x in the int range of n,
    # reduced: (v, t) with exp(x) = v * 2**n, v = exp(r), |r| <= ln(2) / 2, and the
    # low bits of t's pattern = n + bias (round(x log2(e)) without a float->int cast:
    # t = x log2(e) + 1.5 * 2**(mantissa bits) + bias).
    rnd = (6755399441055744.0 if e.f64 else 12582912.0) + bias
    t = e.fma(x, e.c(_LOG2E), e.c(rnd))
    fn = e.sub(t, e.c(rnd))
    if e.f64:
        r = e.fma(fn, e.c(-6.93145751953125e-1), x)  # Cody-Waite: ln 2 split in two
        r = e.fma(fn, e.c(-1.42860682030941723212e-6), r)
        rr = e.mul(r, r)
        pr = e.poly(rr, [1.26177193074810590878e-4, 3.02994407707441961300e-2,
                         9.99999999999999999910e-1])
        q = e.poly(rr, [3.00198505138664455042e-6, 2.52448340349684104192e-3,
                        2.27265548208155028766e-1, 2.00000000000000000009e0])
        p2 = e.mul(e.mul(r, pr), e.c(2.0))
        v = e.add(e.c(1.0), e.div(p2, e.fma(e.neg(r), pr, q)))  # 1 + 2p / (q - p), p = r P
    else:
        r = e.fma(fn, e.c(-0.693359375), x)
        r = e.fma(fn, e.c(2.12194440e-4), r)
        # 1 + r + r^2 p(r), p of degree 4 (Cephes: 5), fitted to exp on |r| <= ln(2) / 2
        # by reweighted least squares: 0.07 ulp from exp before rounding
        p = e.estrin(r, [1.3950483407825232e-3, 8.368905633687973e-3, 4.166620597243309e-2,
                       1.66665181517601e-1, 0.5])
        v = e.add(e.fma(p, e.mul(r, r), r), e.c(1.0))  # 1 + r + p r^2
    return v, t


def _exp_parts(e, x):
    # exp(x) as (a, s) with exp(x) = a * s: a sum that adds 1 to exp(x) fuses the last
    # product (fma(a, s, 1)) instead of leaving a product for the `contract` flag to
    # fuse or not. The clamp keeps n inside the int range; the two-factor scaling
    # 2**n = s1 * s then overflows to inf / underflows to 0 by itself. NaN passes both
    # compares (ordered: false).
    hi, lo = (710.0, -746.0) if e.f64 else (89.0, -104.0)
    v, t = _exp_reduced(e, e.clamp(x, lo, hi), 0)
    rnd_bits = 0x4338000000000000 if e.f64 else 0x4B400000
    s1, s2 = e.pow2(e.b.sub(e.b.bitcast(t, e.ity), e.ic(rnd_bits)))
    return e.mul(v, s1), s2


def exp_ir(e, x):
    a, s = _exp_parts(e, x)
    return e.mul(a, s)


def tanh_ir(e, x):
    if e.f64:
        # Cephes tanh: |x| >= 0.625 from exp (no cancellation there), else
        # x + x^3 P(x^2) / Q(x^2)
        z = e.abs(x)
        a, s = _exp_parts(e, e.add(z, z))
        big = e.sub(e.c(1.0), e.div(e.c(2.0), e.fma(a, s, e.c(1.0))))  # 1 - 2 / (exp(2|x|) + 1)
        big = e.select(e.cmp("<", x, e.c(0.0)), e.neg(big), big)
        x2 = e.mul(x, x)
        p = e.poly(x2, [-9.64399179425052238628e-1, -9.92877231001918586564e1,
                        -1.61468768441708447952e3])
        q = e.poly(x2, [1.0, 1.12811678491632931402e2, 2.23548839060100448583e3,
                        4.84406305325125486048e3])
        small = e.fma(e.mul(x, x2), e.div(p, q), x)
        return e.select(e.cmp(">=", z, e.c(0.625)), big, small)
    # float32: odd rational approximation on [-7.9, 7.9] (the form Eigen uses); above 9
    # the correctly rounded result is +-1, below 4e-4 it is x
    clamp = 7.90531110763549805
    v = e.clamp(x, -clamp, clamp)
    x2 = e.mul(v, v)
    p = e.estrin(x2, [-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                    5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                    4.89352455891786e-03])
    q = e.poly(x2, [1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                    4.89352518554385e-03])
    y = e.div(e.mul(v, p), q)
    z = e.abs(x)
    y = e.select(e.cmp("<", z, e.c(4e-4)), x, y)
    one = e.select(e.cmp(">", x, e.c(0.0)), e.c(1.0), e.c(-1.0))
    return e.select(e.cmp(">", z, e.c(9.0)), one, y)


#: Below these, exp(x) is under the smallest normal number (2**-126, 2**-1022): n of
#: ``_exp_reduced`` stays >= the least exponent, so 2**n is one normal factor.
_EXP_NORMAL_MIN = {False: -87.33654475, True: -708.3964185322641}


def sigmoid_ir(e, x):
    # z = exp(-|x|) lies in (0, 1]: nothing overflows; 1 / (1 + z), or z / (1 + z) below
    # 0, one division either way (the multiplier pipes, which the products fill, do one
    # product here instead of three). With -|x| clamped below where z turns subnormal
    # (z is then 0), 2**n is one normal factor: its bits are t's shifted into the
    # exponent (t = 1.5 2**m + bias + n: the shift drops everything above n + bias).
    # v * 2**n is exact, so 1 + z rounds once, as a fused multiply-add would. NaN passes
    # the compares (ordered: false) and stays NaN.
    lo = e.c(_EXP_NORMAL_MIN[e.f64])
    u = e.neg(e.abs(x))
    below = e.cmp("<", u, lo)
    mant, bias = (52, 1023) if e.f64 else (23, 127)
    v, t = _exp_reduced(e, e.select(below, lo, u), bias)
    s = e.b.bitcast(e.b.shl(e.b.bitcast(t, e.ity), e.ic(mant)), e.ty)
    z = e.select(below, e.c(0.0), e.mul(v, s))
    return e.div(e.select(e.cmp(">=", x, e.c(0.0)), e.c(1.0), z), e.add(z, e.c(1.0)))


def _scalar(emit):
    """A Numba intrinsic computing ``emit`` on one float32 or float64."""

    @intrinsic
    def f(typingctx, x):
        if x not in (types.float32, types.float64):
            return None

        def codegen(context, builder, sig, args):
            return emit(Emit(builder, sig.args[0]), args[0])

        return x(x), codegen

    return f


_exp_scalar = _scalar(exp_ir)
_tanh_scalar = _scalar(tanh_ir)
_sigmoid_scalar = _scalar(sigmoid_ir)


#: Full-width vectors per step of ``rowmap``'s loop, as one LLVM vector: LLVM splits
#: each operation into that many, side by side, so the activations' long dependent
#: chains of two vectors overlap (LSTM cell, H = 128: 16.8 -> 15.0 ns per 16 units;
#: with 4, spills made it 17.7).
ROW_VECTORS = 2


def rowmap(emit):
    """A Numba intrinsic ``f(ptrs, offs, n)`` running ``emit`` over rows of n elements.

    ``ptrs``: a tuple of k data pointers of one float dtype (``tiles._data``), ``offs``:
    k element offsets. For each j < n, ``emit(e, xs)`` gets the k values
    ``ptrs[q][offs[q] + j]`` and returns k values or None: a value is stored back to
    ``ptrs[q][offs[q] + j]``. It runs on explicit vectors of ROW_VECTORS times the
    host's full width W (LLVM's vectoriser uses half of it with AVX-512), the last
    n % W elements as one more vector through masked loads and stores (lanes past the
    row are neither read nor written), so every element goes through the same code.
    Rows may be the same memory (in place) but must not overlap otherwise.
    """

    @intrinsic
    def f(typingctx, ptrs, offs, n):
        if not (isinstance(ptrs, types.UniTuple) and isinstance(ptrs.dtype, types.CPointer)
                and ptrs.dtype.dtype in (types.float32, types.float64)
                and isinstance(offs, types.BaseTuple) and len(offs) == len(ptrs)
                and all(isinstance(t, types.Integer) for t in offs)
                and isinstance(n, types.Integer)):
            return None
        sig = types.void(ptrs, offs, n)

        def codegen(context, builder, sig, args):
            ptrs_ty, offs_ty, n_ty = sig.args
            dtype = ptrs_ty.dtype.dtype
            k = len(ptrs_ty)
            intp_t = types.intp
            intp = context.get_value_type(intp_t)
            size = context.get_abi_sizeof(context.get_value_type(dtype))
            W = ROW_VECTORS * VECTOR_BYTES // size
            e = Emit(builder, dtype, W)
            vpt = e.ty.as_pointer()

            def const(v):
                return ir.Constant(intp, v)

            n = context.cast(builder, args[2], n_ty, intp_t)
            rows = [builder.gep(builder.extract_value(args[0], q),
                                [context.cast(builder, builder.extract_value(args[1], q),
                                              offs_ty[q], intp_t)]) for q in range(k)]

            def run(vectors, load, store):
                xs = [load(v) for v in vectors]
                for v, y in zip(vectors, emit(e, xs)):
                    if y is not None:
                        store(y, v)

            full = builder.sdiv(n, const(W))
            with cgutils.for_range(builder, full) as loop:
                j = builder.mul(loop.index, const(W))
                run([builder.bitcast(builder.gep(row, [j]), vpt) for row in rows],
                    lambda v: builder.load(v, align=size),
                    lambda y, v: builder.store(y, v, align=size))
            done = builder.mul(full, const(W))
            rest = builder.trunc(builder.sub(n, done), ir.IntType(32))
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(rest.type, 0))):
                # lanes j < rest of one more vector
                i32 = ir.IntType(32)
                lanes = ir.Constant(ir.VectorType(i32, W), [ir.Constant(i32, j) for j in range(W)])
                limit = builder.insert_element(ir.Constant(ir.VectorType(i32, W), None), rest,
                                               ir.Constant(i32, 0))
                limit = builder.shuffle_vector(limit, limit, ir.Constant(ir.VectorType(i32, W),
                                                                         [ir.Constant(i32, 0)] * W))
                mask = builder.icmp_signed("<", lanes, limit)
                mty = mask.type
                name = f"{W}{'f64' if e.f64 else 'f32'}"
                mload = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(e.ty, [vpt, i32, mty, e.ty]),
                    f"llvm.masked.load.v{name}.p0v{name}")
                mstore = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [e.ty, vpt, i32, mty]),
                    f"llvm.masked.store.v{name}.p0v{name}")
                align = ir.Constant(i32, size)
                run([builder.bitcast(builder.gep(row, [done]), vpt) for row in rows],
                    lambda v: builder.call(mload, [v, align, mask, ir.Constant(e.ty, None)]),
                    lambda y, v: builder.call(mstore, [y, v, align, mask]))
            return context.get_dummy_value()

        return sig, codegen

    return f


_tanh_rows = rowmap(lambda e, xs: [tanh_ir(e, xs[0])])
_sigmoid_rows = rowmap(lambda e, xs: [sigmoid_ir(e, xs[0])])


@jit_inline
def tanh_row(p, off, n):
    """In place ``p[off:off+n] = tanh(p[off:off+n])``, p a data pointer (``rowmap``)."""
    _tanh_rows((p,), (off,), n)


@jit_inline
def sigmoid_row(p, off, n):
    """In place ``p[off:off+n] = sigmoid(p[off:off+n])``, p a data pointer (``rowmap``)."""
    _sigmoid_rows((p,), (off,), n)


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


def _floats(impl):
    def typer(x):
        if x in (types.float32, types.float64):
            return lambda x: impl(x)
        return None

    return typer


overload(exp, jit_options=OVERLOAD_OPTIONS)(_floats(_exp_scalar))
overload(tanh, jit_options=OVERLOAD_OPTIONS)(_floats(_tanh_scalar))
overload(sigmoid, jit_options=OVERLOAD_OPTIONS)(_floats(_sigmoid_scalar))


# --------------------------------------------------------------------------------------
# Row helpers used by the cell kernels. The activation branch is outside the loop.


_bias_tanh_rows = rowmap(lambda e, xs: [tanh_ir(e, e.add(xs[0], xs[1])), None])
_bias_sigmoid_rows = rowmap(lambda e, xs: [sigmoid_ir(e, e.add(xs[0], xs[1])), None])


@jit_inline
def activate(p, off, pb, n, act):
    """In place ``p[off:off+n] = act(p[off:off+n] + pb[:n])`` on data pointers
    (``tiles._data``): pre-activations and the bias. tanh and sigmoid run in one pass of
    full-width vectors (``rowmap``)."""
    if act == TANH:
        _bias_tanh_rows((p, pb), (off, 0), n)
    elif act == SIGMOID:
        _bias_sigmoid_rows((p, pb), (off, 0), n)
    elif act == RELU:
        for j in range(n):
            v = p[off + j] + pb[j]
            p[off + j] = 0.0 if v < 0.0 else v  # NaN stays NaN
    else:  # IDENTITY
        for j in range(n):
            p[off + j] += pb[j]


# da = dh * act'(a), act' in terms of h = act(a): (da, dh, h) -> da
_tanh_grad_rows = rowmap(lambda e, xs: [e.mul(xs[1], e.sub(e.c(1.0), e.mul(xs[2], xs[2]))),
                                        None, None])
_sigmoid_grad_rows = rowmap(lambda e, xs: [e.mul(xs[1], e.mul(xs[2], e.sub(e.c(1.0), xs[2]))),
                                           None, None])


@jit_inline
def activation_backward_p(da, d, dh, s, h, o, n, act):
    """``da[d:d+n] = dh[s:s+n] * act'(a)`` on data pointers (``tiles._data``), with
    ``act'`` written in terms of the output ``h[o:o+n] = act(a)`` (which is all backward
    keeps): tanh ``1 - h**2``; sigmoid ``h (1 - h)``; relu ``h > 0`` (as PyTorch,
    ``h <= 0`` blocks the gradient and NaN lets it through); identity 1. da may be dh
    (in place)."""
    if act == TANH:
        _tanh_grad_rows((da, dh, h), (d, s, o), n)
    elif act == SIGMOID:
        _sigmoid_grad_rows((da, dh, h), (d, s, o), n)
    elif act == RELU:
        for j in range(n):
            da[d + j] = 0.0 if h[o + j] <= 0.0 else dh[s + j]
    else:  # IDENTITY
        for j in range(n):
            da[d + j] = dh[s + j]


@jit_inline
def activation_backward(da, dh, h, act):
    """``activation_backward_p`` for 1-D rows: ``da[:] = dh * act'(a)``, h = act(a)."""
    activation_backward_p(_data(da), 0, _data(dh), 0, _data(h), 0, da.shape[0], act)
