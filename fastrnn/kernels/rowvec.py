"""Rows times an unpacked row-major matrix: the products of the one-step kernels.

The step kernels (``*_step``, for a user's own ``@njit`` loop) take the weights
transposed, W^T (K, N) row-major (``fastrnn.step_weights``): there is no per-call
packing to amortise, so the products read W^T's rows in place.

- ``vecmat``: one row of the batch times W^T. It holds up to 8 vectors of columns of
  the result in registers while it passes over the rows of W^T (the micro-kernel of
  ``tiles.py`` with a row stride instead of packed panels), with split sets of
  accumulators so that at least 8 independent chains of fused multiply-adds hide
  their latency.
- ``vecmat_rows``: a batch, ``tiles.MR`` rows at a time against NV vectors of columns
  (each row of W^T loaded once per group), the rest of the rows by ``vecmat``.
- ``vecmat_t`` (the backward's ``dL/dx``, ``dL/dh``): W^T times a vector, each row's
  dot product in a vector of columns, 8 rows of W^T at a time.
- ``outer_acc_rows`` (the backward's weight gradients): ``m += u^T v`` over a batch's
  rows, each vector of m held in a register over the rows.

Dimension key: K = inner size, N = columns of the result.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit_inline
from .tiles import MR, NV, VECTOR_BYTES, _data


def _float_pointers(*ps):
    """Whether the types ps are data pointers to one float dtype (float32 or float64)."""
    return (all(isinstance(p, types.CPointer) for p in ps) and len({p.dtype for p in ps}) == 1
            and ps[0].dtype in (types.float32, types.float64))


class _IR:
    """What a code generator below needs for one dtype: the LLVM scalar type ``ft``, its
    ``size``, W lanes, the vector type ``vt`` and its pointer ``vpt``, intp constants,
    the fused multiply-adds (``llvm.fmuladd``) of vectors ``vfma`` and of scalars ``fma``,
    and a scalar broadcast to all lanes."""

    def __init__(self, context, builder, dtype):
        self.builder = builder
        self.ft = context.get_value_type(dtype)
        self.size = context.get_abi_sizeof(self.ft)
        self.W = VECTOR_BYTES // self.size
        self.vt = ir.VectorType(self.ft, self.W)
        self.vpt = self.vt.as_pointer()
        self.intp = context.get_value_type(types.intp)
        suffix = "f32" if self.size == 4 else "f64"
        self.vfma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vt, [self.vt] * 3),
            f"llvm.fmuladd.v{self.W}{suffix}")
        self.fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.ft, [self.ft] * 3), f"llvm.fmuladd.{suffix}")

    def const(self, n):
        return ir.Constant(self.intp, n)

    def broadcast(self, s):
        i32 = ir.IntType(32)
        v = self.builder.insert_element(ir.Constant(self.vt, ir.Undefined), s,
                                        ir.Constant(i32, 0))
        return self.builder.shuffle_vector(v, ir.Constant(self.vt, ir.Undefined),
                                           ir.Constant(ir.VectorType(i32, self.W), None))


def _make_rowvec(nvec, splits):
    """Micro-kernel of ``vecmat``: one row times ``nvec`` vectors of columns of a
    row-major matrix, k % splits picking one of ``splits`` sets of accumulators."""

    @intrinsic
    def rowvec(typingctx, c, a, m, ldm, K, accumulate):
        # c[j] (+)= sum_k a[k] * m[k*ldm + j] for j < nvec * W (c, a, m: data pointers at
        # the first element); each set sums its k in order, then the sets in order
        if not _float_pointers(c, a, m):
            return None
        sig = types.void(c, a, m, types.intp, types.intp, types.boolean)

        def codegen(context, builder, sig, args):
            c, a, m, ldm, K, accumulate = args
            e = _IR(context, builder, sig.args[0].dtype)
            size, W, vt, vpt, const, fma = e.size, e.W, e.vt, e.vpt, e.const, e.vfma

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

            def step(k, acc):
                row = builder.gep(m, [builder.mul(k, ldm)])
                s = e.broadcast(builder.load(builder.gep(a, [k])))
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


def _make_rowsvec(nrows, nvec):
    """Micro-kernel of ``vecmat_rows``: ``nrows`` rows times ``nvec`` vectors of columns
    of a row-major matrix, each row of the matrix loaded once for all the rows."""

    @intrinsic
    def rowsvec(typingctx, c, ldc, a, lda, m, ldm, K, accumulate):
        # c[i*ldc + j] (+)= sum_k a[i*lda + k] * m[k*ldm + j] for i < nrows, j < nvec * W
        # (c, a, m: data pointers at the first element); each entry sums its k in order
        if not _float_pointers(c, a, m):
            return None
        sig = types.void(c, types.intp, a, types.intp, m, types.intp, types.intp, types.boolean)

        def codegen(context, builder, sig, args):
            c, ldc, a, lda, m, ldm, K, accumulate = args
            e = _IR(context, builder, sig.args[0].dtype)
            size, W, vt, vpt, const, fma = e.size, e.W, e.vt, e.vpt, e.const, e.vfma
            rows_c = [builder.gep(c, [builder.mul(const(i), ldc)]) for i in range(nrows)]
            rows_a = [builder.gep(a, [builder.mul(const(i), lda)]) for i in range(nrows)]

            def c_vector(i, v):
                return builder.bitcast(builder.gep(rows_c[i], [const(v * W)]), vpt)

            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nvec)] for _ in range(nrows)]
            for i in range(nrows):
                for v in range(nvec):
                    builder.store(ir.Constant(vt, None), acc[i][v])
            with builder.if_then(accumulate):
                for i in range(nrows):
                    for v in range(nvec):
                        builder.store(builder.load(c_vector(i, v), align=size), acc[i][v])
            with cgutils.for_range(builder, K) as loop:
                k = loop.index
                row = builder.gep(m, [builder.mul(k, ldm)])
                mv = [builder.load(builder.bitcast(builder.gep(row, [const(v * W)]), vpt),
                                   align=size) for v in range(nvec)]
                for i in range(nrows):
                    s = e.broadcast(builder.load(builder.gep(rows_a[i], [k])))
                    for v in range(nvec):
                        builder.store(builder.call(fma, [s, mv[v], builder.load(acc[i][v])]),
                                      acc[i][v])
            for i in range(nrows):
                for v in range(nvec):
                    builder.store(builder.load(acc[i][v]), c_vector(i, v), align=size)
            return context.get_dummy_value()

        return sig, codegen

    return rowsvec


# (rows, vectors): the register tile of tiles.py, MR x NV vectors
_rowsvec_nv = _make_rowsvec(MR, NV)
_rowsvec_1 = _make_rowsvec(MR, 1)


@jit_inline
def vecmat_rows(pc, ci, ldc, pa, ai, lda, R, m, accumulate):
    """``c[r] (+)= a[r] @ m`` for R rows: row r of c at ``pc[ci + r*ldc:]``, of a at
    ``pa[ai + r*lda:]`` (data pointers, rows of unit stride), m (K, N). Rows in groups
    of ``tiles.MR``, each row of m loaded once per group (``_make_rowsvec``: each
    entry of a group's rows summed in k order, c first); the last R % MR rows (and
    every row where m's elements are not next to each other) one by one (``vecmat``).
    """
    if R < MR:  # first: the latency-bound single row pays nothing for the groups
        for r in range(R):
            vecmat(pc, ci + r * ldc, pa, ai + r * lda, m, accumulate)
        return
    K, N = m.shape
    size = m.itemsize
    W = VECTOR_BYTES // size
    pm = _data(m)
    ldm = m.strides[0] // size
    i = 0
    if N == 1 or m.strides[1] == size:
        while R - i >= MR:
            c0, a0 = _offset(pc, ci + i * ldc), _offset(pa, ai + i * lda)
            j = 0
            while N - j >= NV * W:
                _rowsvec_nv(_offset(c0, j), ldc, a0, lda, _offset(pm, j), ldm, K, accumulate)
                j += NV * W
            while N - j >= W:
                _rowsvec_1(_offset(c0, j), ldc, a0, lda, _offset(pm, j), ldm, K, accumulate)
                j += W
            for r in range(i, i + MR):
                c, a = ci + r * ldc, ai + r * lda
                for jj in range(j, N):
                    s = pc[c + jj] if accumulate else m.dtype.type(0.0)
                    for k in range(K):
                        s += pa[a + k] * m[k, jj]
                    pc[c + jj] = s
            i += MR
    for r in range(i, R):
        vecmat(pc, ci + r * ldc, pa, ai + r * lda, m, accumulate)


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


def _make_rowdot(nrows):
    """Micro-kernel of ``vecmat_t``: ``nrows`` rows of a row-major matrix times a
    vector, each row's dot product in a vector of W lanes (``nrows`` independent
    chains of fused multiply-adds)."""

    @intrinsic
    def rowdot(typingctx, y, ldy, m, ldm, v, N, accumulate):
        # y[i*ldy] (+)= sum_j m[i*ldm + j] * v[j] for i < nrows (y, m, v: data pointers at
        # the first element). Order, the same for every row: lane l sums the j = l mod W
        # of the whole vectors in order; the lanes are added by halves (lane l + lane
        # l + W/2, ...); then the last N % W terms in order; then y's value first.
        if not _float_pointers(y, m, v):
            return None
        sig = types.void(y, types.intp, m, types.intp, v, types.intp, types.boolean)

        def codegen(context, builder, sig, args):
            y, ldy, m, ldm, v, N, accumulate = args
            e = _IR(context, builder, sig.args[0].dtype)
            ft, size, W, vt, vpt, const = e.ft, e.size, e.W, e.vt, e.vpt, e.const
            vfma, fma, i32 = e.vfma, e.fma, ir.IntType(32)
            rows = [builder.gep(m, [builder.mul(const(i), ldm)]) for i in range(nrows)]
            acc = [cgutils.alloca_once(builder, vt) for _ in range(nrows)]
            for a in acc:
                builder.store(ir.Constant(vt, None), a)
            whole = builder.sdiv(N, const(W))
            with cgutils.for_range(builder, whole) as loop:
                j = builder.mul(loop.index, const(W))
                vv = builder.load(builder.bitcast(builder.gep(v, [j]), vpt), align=size)
                for row, a in zip(rows, acc):
                    mv = builder.load(builder.bitcast(builder.gep(row, [j]), vpt), align=size)
                    builder.store(builder.call(vfma, [mv, vv, builder.load(a)]), a)
            sums = [cgutils.alloca_once(builder, ft) for _ in range(nrows)]
            for a, s in zip(acc, sums):
                x = builder.load(a)
                n = W
                while n > 1:  # lanes by halves
                    n //= 2
                    lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, n),
                                                                  list(range(n))))
                    hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, n),
                                                                  list(range(n, 2 * n))))
                    x = builder.fadd(lo, hi)
                builder.store(builder.extract_element(x, ir.Constant(i32, 0)), s)
            with cgutils.for_range_slice(builder, builder.mul(whole, const(W)), N,
                                         const(1)) as (j, _):
                vj = builder.load(builder.gep(v, [j]))
                for row, s in zip(rows, sums):
                    mj = builder.load(builder.gep(row, [j]))
                    builder.store(builder.call(fma, [mj, vj, builder.load(s)]), s)
            for i, s in enumerate(sums):
                out = builder.gep(y, [builder.mul(const(i), ldy)])
                total = builder.load(s)
                with builder.if_else(accumulate) as (then, otherwise):
                    with then:
                        builder.store(builder.fadd(builder.load(out), total), out)
                    with otherwise:
                        builder.store(total, out)
            return context.get_dummy_value()

        return sig, codegen

    return rowdot


_rowdot_8 = _make_rowdot(8)
_rowdot_4 = _make_rowdot(4)
_rowdot_2 = _make_rowdot(2)
_rowdot_1 = _make_rowdot(1)


@jit_inline
def vecmat_t(y, m, v, accumulate):
    """``y (+)= m @ v`` for y (K,), m (K, N), v (N,): each row of m times v, rows of
    m contiguous (the one-step backward kernels' transposed weights), 8 rows at a time
    in vectors of W columns (``_make_rowdot``: each entry summed in an order fixed by
    N). An m or v whose elements are not next to each other goes through the plain
    loop, each entry in column order."""
    K, N = m.shape
    size = m.itemsize
    if N > 1 and (m.strides[1] != size or v.strides[0] != size):
        for k in range(K):
            s = m.dtype.type(0.0)
            for j in range(N):
                s += m[k, j] * v[j]
            y[k] = y[k] + s if accumulate else s
        return
    py, pm, pv = _data(y), _data(m), _data(v)
    ldy = y.strides[0] // size
    ldm = m.strides[0] // size
    k = 0
    while K - k >= 8:
        _rowdot_8(_offset(py, k * ldy), ldy, _offset(pm, k * ldm), ldm, pv, N, accumulate)
        k += 8
    if K - k >= 4:
        _rowdot_4(_offset(py, k * ldy), ldy, _offset(pm, k * ldm), ldm, pv, N, accumulate)
        k += 4
    if K - k >= 2:
        _rowdot_2(_offset(py, k * ldy), ldy, _offset(pm, k * ldm), ldm, pv, N, accumulate)
        k += 2
    if K - k >= 1:
        _rowdot_1(_offset(py, k * ldy), ldy, _offset(pm, k * ldm), ldm, pv, N, accumulate)


@intrinsic
def _rank_update(typingctx, m, u, ldu, v, ldv, R, N):
    # m[j] += u[r*ldu] * v[r*ldv + j] for r < R in order, j < N (m, u, v: data pointers
    # at the first element): vectors of m held in registers over all R rows (8 at a
    # time, independent chains; then a group of 4, 2, 1), then the last N % W one by
    # one. The same fused multiply-adds in the same order as R passes of a row update.
    if not _float_pointers(m, u, v):
        return None
    sig = types.void(m, u, types.intp, v, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        m, u, ldu, v, ldv, R, N = args
        e = _IR(context, builder, sig.args[0].dtype)
        ft, size, W, vt, vpt, const = e.ft, e.size, e.W, e.vt, e.vpt, e.const
        vfma, fma = e.vfma, e.fma
        acc = [cgutils.alloca_once(builder, vt) for _ in range(8)]
        one = cgutils.alloca_once(builder, ft)

        def update(j, n):  # n vectors of m from column j, over all rows
            pms = [builder.bitcast(builder.gep(m, [builder.add(j, const(q * W))]), vpt)
                   for q in range(n)]
            for q in range(n):
                builder.store(builder.load(pms[q], align=size), acc[q])
            with cgutils.for_range(builder, R) as loop:
                sv = e.broadcast(builder.load(builder.gep(u, [builder.mul(loop.index, ldu)])))
                row = builder.gep(v, [builder.add(builder.mul(loop.index, ldv), j)])
                for q in range(n):
                    pv = builder.bitcast(builder.gep(row, [const(q * W)]), vpt)
                    x = builder.call(vfma, [sv, builder.load(pv, align=size),
                                            builder.load(acc[q])])
                    builder.store(x, acc[q])
            for q in range(n):
                builder.store(builder.load(acc[q]), pms[q], align=size)

        eights = builder.sdiv(N, const(8 * W))
        with cgutils.for_range(builder, eights) as loop:
            update(builder.mul(loop.index, const(8 * W)), 8)
        ones = builder.sdiv(N, const(W))
        rest = builder.sub(ones, builder.mul(eights, const(8)))  # 0-7 more vectors
        j = builder.mul(eights, const(8 * W))
        for n in (4, 2, 1):  # as a group of 4, of 2, of 1
            has = builder.icmp_unsigned("!=", builder.and_(rest, const(n)), const(0))
            with builder.if_then(has):
                update(j, n)
            j = builder.select(has, builder.add(j, const(n * W)), j)
        with cgutils.for_range_slice(builder, builder.mul(ones, const(W)), N,
                                     const(1)) as (j, _):
            pm = builder.gep(m, [j])
            builder.store(builder.load(pm), one)
            with cgutils.for_range(builder, R) as loop:
                s = builder.load(builder.gep(u, [builder.mul(loop.index, ldu)]))
                vj = builder.load(builder.gep(v, [builder.add(builder.mul(loop.index, ldv), j)]))
                builder.store(builder.call(fma, [s, vj, builder.load(one)]), one)
            builder.store(builder.load(one), pm)
        return context.get_dummy_value()

    return sig, codegen


@jit_inline
def outer_acc_rows(m, u, v):
    """``m += u.T @ v`` as R rank-1 updates in row order: m (K, N), u (R, K), v (R, N);
    m must not overlap u or v. Each entry gets ``m + u[0, k] v[0, j] + u[1, k] v[1, j]
    + ...`` as fused multiply-adds, left to right: the bits of R calls of a one-row
    update, with m's vectors kept in registers over the rows (one pass over m instead
    of R). Rows of m and v of unit stride go through ``_rank_update`` (one row: a
    plain loop on data pointers, which LLVM vectorises, 2-24% faster there); other
    layouts through the plain loop. The plain loops fuse their multiply-adds only under
    the ``contract`` flag (fastrnn's kernels; code inlined into a caller takes the
    caller's flags), ``_rank_update`` always."""
    K, N = m.shape
    size = m.itemsize
    if N > 1 and (m.strides[1] != size or v.strides[1] != size):
        for r in range(u.shape[0]):
            for k in range(K):
                s = u[r, k]
                for j in range(N):
                    m[k, j] += s * v[r, j]
        return
    pm, pu, pv = _data(m), _data(u), _data(v)
    ldm = m.strides[0] // size
    su = u.strides[1] // size
    if u.shape[0] == 1:
        for k in range(K):
            s = pu[k * su]
            o = k * ldm
            for j in range(N):
                pm[o + j] += s * pv[j]
        return
    for k in range(K):
        _rank_update(_offset(pm, k * ldm), _offset(pu, k * su), u.strides[0] // size, pv,
                     v.strides[0] // size, u.shape[0], N)


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
