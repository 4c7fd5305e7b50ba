"""One row times an unpacked row-major matrix: the products of the one-step kernels.

The step kernels (``*_step``, for a user's own ``@njit`` loop) take the weights
transposed, W^T (K, N) row-major (``fastrnn.step_weights``), and multiply one row of
the batch at a time: there is no per-call packing to amortise, so the product reads
W^T's rows in place. ``vecmat`` holds up to 8 vectors of columns of the result in
registers while it passes over the rows of W^T (the micro-kernel of ``tiles.py``
with a row stride instead of packed panels), with split sets of accumulators so that
at least 8 independent chains of fused multiply-adds hide their latency.

Dimension key: K = inner size, N = columns of the result.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit_inline
from .tiles import VECTOR_BYTES, _data


def _make_rowvec(nvec, splits):
    """Micro-kernel of ``vecmat``: one row times ``nvec`` vectors of columns of a
    row-major matrix, k % splits picking one of ``splits`` sets of accumulators."""

    @intrinsic
    def rowvec(typingctx, c, a, m, ldm, K, accumulate):
        # c[j] (+)= sum_k a[k] * m[k*ldm + j] for j < nvec * W (c, a, m: data pointers at
        # the first element); each set sums its k in order, then the sets in order
        if not (isinstance(c, types.CPointer) and isinstance(a, types.CPointer)
                and isinstance(m, types.CPointer) and c.dtype == a.dtype == m.dtype
                and c.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(c, a, m, types.intp, types.intp, types.boolean)

        def codegen(context, builder, sig, args):
            c, a, m, ldm, K, accumulate = args
            ft = context.get_value_type(sig.args[0].dtype)
            size = context.get_abi_sizeof(ft)
            W = VECTOR_BYTES // size
            vt = ir.VectorType(ft, W)
            vpt = vt.as_pointer()
            intp = context.get_value_type(types.intp)

            def const(v):
                return ir.Constant(intp, v)

            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                f"llvm.fmuladd.v{W}{'f32' if size == 4 else 'f64'}")

            def c_vector(v):
                return builder.bitcast(builder.gep(c, [const(v * W)]), vpt)

            sets = [[cgutils.alloca_once(builder, vt) for _ in range(nvec)]
                    for _ in range(splits)]
            for part in sets:
                for v in part:
                    builder.store(ir.Constant(vt, None), v)
            with builder.if_then(accumulate):
                for v in range(nvec):
                    builder.store(builder.load(c_vector(v), align=size), sets[0][v])
            zeros_mask = ir.Constant(ir.VectorType(ir.IntType(32), W), None)

            def step(k, acc):
                row = builder.gep(m, [builder.mul(k, ldm)])
                s = builder.insert_element(ir.Constant(vt, ir.Undefined),
                                           builder.load(builder.gep(a, [k])),
                                           ir.Constant(ir.IntType(32), 0))
                s = builder.shuffle_vector(s, ir.Constant(vt, ir.Undefined), zeros_mask)
                for v in range(nvec):
                    mv = builder.load(builder.bitcast(builder.gep(row, [const(v * W)]), vpt),
                                      align=size)
                    builder.store(builder.call(fma, [s, mv, builder.load(acc[v])]), acc[v])

            with cgutils.for_range(builder, builder.sdiv(K, const(splits))) as loop:
                for q, part in enumerate(sets):
                    step(builder.add(builder.mul(loop.index, const(splits)), const(q)), part)
            whole_k = builder.mul(builder.sdiv(K, const(splits)), const(splits))
            for q, part in enumerate(sets[:-1]):  # the last K % splits steps
                k = builder.add(whole_k, const(q))
                with builder.if_then(builder.icmp_signed("<", k, K)):
                    step(k, part)
            for v in range(nvec):
                total = builder.load(sets[0][v])
                for part in sets[1:]:
                    total = builder.fadd(total, builder.load(part[v]))
                builder.store(total, c_vector(v), align=size)
            return context.get_dummy_value()

        return sig, codegen

    return rowvec


# (vectors, sets of accumulators): at least 8 independent chains, as ROW_SPLITS
_rowvec_8 = _make_rowvec(8, 1)
_rowvec_4 = _make_rowvec(4, 2)
_rowvec_2 = _make_rowvec(2, 4)
_rowvec_1 = _make_rowvec(1, 4)


@jit_inline
def vecmat(pc, ci, pa, ai, m, accumulate):
    """``c[ci:ci+N] (+)= a[ai:ai+K] @ m`` for m (K, N), c and a data pointers (``_data``)
    to rows of unit stride: one row times an unpacked matrix (the one-step kernels'
    transposed weights), whole vectors of columns in registers (up to 8 at a time), the
    last N % W columns one by one in k order. Each entry is summed in an order fixed by
    N (the sets of ``_make_rowvec``). Rows of m may be strided; an m whose elements
    are not next to each other goes through the plain loop."""
    K, N = m.shape
    size = m.itemsize
    W = VECTOR_BYTES // size
    pm = _data(m)
    ldm = m.strides[0] // size
    c0, a0 = _offset(pc, ci), _offset(pa, ai)
    j = 0
    if N > 1 and m.strides[1] != size:
        W = N + 1  # every column by the loop below
    while N - j >= 8 * W:
        _rowvec_8(_offset(c0, j), a0, _offset(pm, j), ldm, K, accumulate)
        j += 8 * W
    if N - j >= 4 * W:
        _rowvec_4(_offset(c0, j), a0, _offset(pm, j), ldm, K, accumulate)
        j += 4 * W
    if N - j >= 2 * W:
        _rowvec_2(_offset(c0, j), a0, _offset(pm, j), ldm, K, accumulate)
        j += 2 * W
    if N - j >= W:
        _rowvec_1(_offset(c0, j), a0, _offset(pm, j), ldm, K, accumulate)
        j += W
    for jj in range(j, N):
        s = pc[ci + jj] if accumulate else m.dtype.type(0.0)
        for k in range(K):
            s += pa[ai + k] * m[k, jj]
        pc[ci + jj] = s


@jit_inline
def _row_stride(a):
    """Elements from one row of a 2-D array to the next."""
    return a.strides[0] // a.itemsize


@intrinsic
def _offset(typingctx, p, i):
    # p + i for a data pointer p
    if not (isinstance(p, types.CPointer) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.gep(args[0], [args[1]])

    return p(p, types.intp), codegen
