"""Register-tiled products with a packed weight matrix: the per-step product of a
recurrence.

Each step of a recurrence multiplies a few rows (the batch) by the same weight
matrix. A BLAS call repacks that whole matrix every step, and LLVM does not turn a
plain loop nest into a register-blocked kernel. So the weights are packed once per
call of a kernel (``pack``/``pack_t``) and every step's product runs a micro-kernel
written directly in LLVM IR: a tile of MR rows x NR columns of ``c`` lives in
vector registers for the whole inner dimension, and each step of k is NR/W vector
loads of the packed weights, MR broadcasts of ``a`` and MR * NR/W fused
multiply-adds.

Packed layout: ``mp[p, k, :] = m[k, p*NR : (p+1)*NR]`` (P = ceil(N / NR) panels of
NR columns, the last one zero-padded), so a panel is read front to back.

Summation order: every entry of ``c`` is ``c (or 0) + s_0 + s_1 + ...``, left to
right, where s_b is the sum over the b-th block of KC values of k of ``a[r, k] m[k, j]``,
in k order from 0 with one fused multiply-add per term, whichever tile, row group or
thread computes it: a row's result never depends on the other rows. ``c``'s value joins
after a block's sum rather than starting it, so that loading it does not hold up the
first multiply-adds (LSTM small and deepbench forwards and training 0.5-2% faster,
measured); and a long sum (the weight gradients' T*B rows) runs as short chains: in
float32, 10x less error at T*B = 25600.

Vector width W follows the host (64-byte vectors with AVX-512, 32 with AVX, else 16):
Numba's cache is keyed on the host CPU, so a cache never crosses machines.

Dimension key: R = rows of ``a`` and ``c``, K = inner size, N = columns of ``c``.
"""

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit, jit_inline
from ._symbols import compiled_once
from .linalg import as_bits


def _vector_bytes():
    features = llvm_binding.get_host_cpu_features()
    if features.get("avx512f", False):
        return 64
    if features.get("avx", False):
        return 32
    return 16


#: Bytes per vector register on this host.
VECTOR_BYTES = _vector_bytes()

#: Rows of a tile: 8 with 32 vector registers (AVX-512: 16 accumulators), else 4.
MR = 8 if VECTOR_BYTES == 64 else 4

#: Vectors per row of a tile (NR = NV * W columns).
NV = 2

#: Panels per pass of the one-row kernel: its 4 * NV independent accumulators hide the
#: latency of the fused multiply-adds. The last 1-3 panels go in one pass too (a GRU
#: with H = 32 has 3: three one-panel passes, 2 accumulators each, took 2.5x as long).
ROW_PANELS = 4

#: Sets of accumulators of the split one-row kernels of 1, 2, 3 panels (k % splits
#: picks the set), for ``matmul(..., split=True)``: the per-step product of a recurrence
#: over a batch of a row or two (simulations) is a chain of K dependent fused
#: multiply-adds per accumulator, latency-bound with fewer than 8 chains (4 cycles each,
#: 2 per cycle). Each set sums its k in order, then the sets are added in order.
#: With 16 vector registers (AVX2), 3 panels keep one set (12 accumulators would spill).
ROW_SPLITS = {1: 4, 2: 2, 3: 2 if VECTOR_BYTES == 64 else 1}

#: Inner-dimension block: a panel's block of KC x NR entries stays in L1 while all row
#: tiles of the rows pass over it. Each block's sum is added to c in turn (the summation
#: order).
KC = 256

#: Rows per block: the rows' block of MC x KC entries (512 KB in float32) stays in L2
#: while the panels pass, each group of panels read once per block. 512 rather than
#: 128: the products of 400-800 rows with a weight too large for L2 (deepbench's
#: projection and dx) read it from L3 once or twice instead of 4-7 times (800 x 1760 x
#: 1760 232 -> 247 GFLOP/s, 400 x 512 x 2048 1-5% faster, float64 5-9%; no change at
#: the other sizes, measured).
MC = 512

#: Blocks of at least this many rows go row tile by row tile over groups of panels;
#: fewer (a step of a recurrence) panel by panel (see ``_matmul``).
GROUP_ROWS = 64

#: Steps of k ahead at which a full tile prefetches its panels: the panels stream from
#: L2 or L3 (for a product of a few rows with a large matrix, from L3 each step), and
#: the hardware prefetchers stop at page boundaries. 3-13% faster for products of
#: 16-3200 rows (1.3x for 16 x 512 x 2048, measured); the one-row kernels, whose panels
#: are in L1 for the tiny recurrences they serve, do without (1 x 32 x 128 was 1.4x slower).
PREFETCH_K = 8

#: Bytes of packed weights per group of panels in a block of at least GROUP_ROWS rows: the
#: group's KC x (group columns) entries stay in L2 while the row tiles pass over it.
L2_GROUP = 1 << 19


def _make_tile(mr, panels, splits=1):
    """Micro-kernel for ``mr`` rows x ``panels`` panels (NV vectors each); ``splits`` > 1
    (one-row kernels): k % splits picks one of ``splits`` sets of accumulators."""

    @intrinsic
    def tile(typingctx, c, c_off, ldc, a, a_off, lda, mp, m_off, pstride, K, rows, cols,
             accumulate):
        # c[c_off + i*ldc + j] (+)= sum_k a[a_off + i*lda + k] * mp[m_off + q*pstride + k*NR + u]
        # (column j is lane u of panel q)
        # for i < rows (rows <= mr: missing rows read row rows-1 and are not stored) and
        # j < cols (<= panels*NR; the packed columns past cols are zeros)
        # c, a, mp: data pointers (no arrays here: see matmul)
        if not (isinstance(c, types.CPointer) and isinstance(a, types.CPointer)
                and isinstance(mp, types.CPointer) and c.dtype == a.dtype == mp.dtype
                and c.dtype in (types.float32, types.float64)):
            return None
        intp_t = types.intp
        sig = types.void(c, intp_t, intp_t, a, intp_t, intp_t, mp, intp_t, intp_t, intp_t,
                         intp_t, intp_t, types.boolean)

        def codegen(context, builder, sig, args):
            c, c_off, ldc, a, a_off, lda, mp, m_off, pstride, K, rows, cols, accumulate = args
            dtype = sig.args[0].dtype
            size = context.get_abi_sizeof(context.get_value_type(dtype))
            W = VECTOR_BYTES // size
            NR = NV * W
            nvec = panels * NV
            ft = context.get_value_type(dtype)
            vt = ir.VectorType(ft, W)
            vpt = vt.as_pointer()
            intp = context.get_value_type(types.intp)

            def const(v):
                return ir.Constant(intp, v)

            cd, ad, md = c, a, mp
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                f"llvm.fmuladd.v{W}{'f32' if size == 4 else 'f64'}")
            # accumulators as allocas: LLVM promotes them to registers; sets[s] sums the
            # k with k % splits == s, from 0 (c joins at the end)
            sets = [[[cgutils.alloca_once(builder, vt) for _ in range(nvec)] for _ in range(mr)]
                    for _ in range(splits)]
            acc = sets[0]
            for part in sets:
                for row in part:
                    for v in row:
                        builder.store(ir.Constant(vt, None), v)
            last = builder.sub(rows, const(1))
            a_rows, c_rows, live = [], [], []
            for i in range(mr):
                is_live = builder.icmp_signed("<", const(i), rows)
                live.append(is_live)
                src = builder.select(is_live, const(i), last)
                a_rows.append(builder.gep(ad, [builder.add(a_off, builder.mul(src, lda))]))
                c_rows.append(builder.gep(cd, [builder.add(c_off, builder.mul(const(i), ldc))]))
            full = builder.icmp_signed("==", cols, const(nvec * W))

            def c_vector(i, v):
                return builder.bitcast(builder.gep(c_rows[i], [const(v * W)]), vpt)

            # a partial tile (cols < panels * NR) goes through a scratch tile in memory:
            # whole vectors in registers, element copies for the columns that exist
            scratch = cgutils.alloca_once(builder, ft, size=const(mr * nvec * W))

            def scratch_vector(i, v):
                return builder.bitcast(builder.gep(scratch, [const((i * nvec + v) * W)]), vpt)

            def copy_partial(to_scratch):
                with cgutils.for_range(builder, rows) as rloop:
                    i = rloop.index
                    c_row = builder.gep(cd, [builder.add(c_off, builder.mul(i, ldc))])
                    s_row = builder.gep(scratch, [builder.mul(i, const(nvec * W))])
                    with cgutils.for_range(builder, cols) as jloop:
                        j = jloop.index
                        src, dst = (c_row, s_row) if to_scratch else (s_row, c_row)
                        builder.store(builder.load(builder.gep(src, [j])), builder.gep(dst, [j]))

            # with accumulate, c's values join after the sums (see the module's summation
            # order): the live rows' lines are fetched while the sums run (each row's
            # first element's line, every 64 bytes on, and its last element's: a row need
            # not start a line; a prefetch never faults), a partial tile's copied
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0i8")
            with builder.if_then(accumulate):
                with builder.if_else(full) as (whole, partial):
                    with whole:
                        ends = list(range(0, nvec * W, 64 // size)) + [nvec * W - 1]
                        for i in range(mr):
                            with builder.if_then(live[i]):
                                for e in ends:
                                    ptr = builder.bitcast(builder.gep(c_rows[i], [const(e)]), i8p)
                                    builder.call(prefetch, [ptr, ir.Constant(i32, 1),  # write,
                                                            ir.Constant(i32, 3),  # keep
                                                            ir.Constant(i32, 1)])
                    with partial:
                        copy_partial(True)
            bases = [builder.gep(md, [builder.add(m_off, builder.mul(const(q), pstride))])
                     for q in range(panels)]
            zeros_mask = ir.Constant(ir.VectorType(ir.IntType(32), W), None)

            def step(k, acc):
                # one k: acc[i][v] += a[i, k] * panel vector v at k
                koff = builder.mul(k, const(NR))
                if mr > 1:  # (a prefetch past the end of the panels is harmless: no fault)
                    for q in range(panels):
                        for line in range(0, NR * size, 64):
                            ptr = builder.gep(bases[q], [builder.add(
                                koff, const(PREFETCH_K * NR + line // size))])
                            builder.call(prefetch, [builder.bitcast(ptr, i8p),  # read, keep
                                                    ir.Constant(i32, 0), ir.Constant(i32, 3),
                                                    ir.Constant(i32, 1)])  # in all caches
                mv = []
                for v in range(nvec):
                    q, u = divmod(v, NV)
                    ptr = builder.gep(bases[q], [builder.add(koff, const(u * W))])
                    mv.append(builder.load(builder.bitcast(ptr, vpt), align=size))
                for i in range(mr):
                    s = builder.load(builder.gep(a_rows[i], [k]))
                    s = builder.insert_element(ir.Constant(vt, ir.Undefined), s,
                                               ir.Constant(ir.IntType(32), 0))
                    s = builder.shuffle_vector(s, ir.Constant(vt, ir.Undefined), zeros_mask)
                    for v in range(nvec):
                        builder.store(builder.call(fma, [s, mv[v], builder.load(acc[i][v])]),
                                      acc[i][v])

            if splits == 1:
                with cgutils.for_range(builder, K) as loop:
                    step(loop.index, acc)
            else:
                whole_k = builder.mul(builder.sdiv(K, const(splits)), const(splits))
                with cgutils.for_range(builder, builder.sdiv(K, const(splits))) as loop:
                    for q, part in enumerate(sets):
                        step(builder.add(builder.mul(loop.index, const(splits)), const(q)), part)
                for q, part in enumerate(sets):
                    k = builder.add(whole_k, const(q))
                    with builder.if_then(builder.icmp_signed("<", k, K)):
                        step(k, part)
                # the sets in a fixed order: ((s0 + s1) + s2) + ..., then c + that
                for part in sets[1:]:
                    for i in range(mr):
                        for v in range(nvec):
                            builder.store(builder.fadd(builder.load(acc[i][v]),
                                                       builder.load(part[i][v])), acc[i][v])

            def put(i, dst):
                # row i of the tile to dst(v) (its vectors): acc, or with accumulate
                # c + acc (dst holding c's values)
                with builder.if_else(accumulate) as (add, plain):
                    with add:
                        for v in range(nvec):
                            builder.store(builder.fadd(builder.load(dst(v), align=size),
                                                       builder.load(acc[i][v])),
                                          dst(v), align=size)
                    with plain:
                        for v in range(nvec):
                            builder.store(builder.load(acc[i][v]), dst(v), align=size)

            with builder.if_else(full) as (whole, partial):
                with whole:
                    for i in range(mr):
                        with builder.if_then(live[i]):
                            put(i, lambda v: c_vector(i, v))
                with partial:
                    for i in range(mr):
                        with builder.if_then(live[i]):
                            put(i, lambda v: scratch_vector(i, v))
                    copy_partial(False)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile = _make_tile(MR, 1)
_row_tile = _make_tile(1, ROW_PANELS)
_row_3 = _make_tile(1, 3)
_row_2 = _make_tile(1, 2)
_row_1 = _make_tile(1, 1)
_row_3s = _make_tile(1, 3, ROW_SPLITS[3])
_row_2s = _make_tile(1, 2, ROW_SPLITS[2])
_row_1s = _make_tile(1, 1, ROW_SPLITS[1])


#: An int and a bool of no literal type, for constants passed from one kernel to another
#: (``_int(0)``, ``_int(KC)``, ``_bool(False)``): Numba types a constant argument, or a
#: global, as a literal of its value, and compiles the callee once more for each mix of
#: literal values and plain types it meets (cold, float32: ``_row`` twice, 0.6 s each;
#: ``grads._transpose_into`` three times, ~1 s each; a parallel kernel called with a
#: literal ``serial`` by the compiled entry points and with a bool from Python, twice)
_int = np.intp
_bool = np.bool_


@jit
def panel_width(dtype_size):
    """Columns per panel (NR) for elements of ``dtype_size`` bytes."""
    return NV * (VECTOR_BYTES // dtype_size)


@intrinsic
def _address(typingctx, a):
    # the address of a's first element, as an integer
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, context.get_value_type(types.intp))

    return types.intp(a), codegen


@jit
def _aligned_panels(P, K, NR, N, dtype_like):
    # (P, K, NR) for N columns, starting on a VECTOR_BYTES boundary, the last panel's
    # columns past N zero: the micro-kernels load whole vectors of the packed weights,
    # and a vector that straddles two cache lines costs two loads (Numba allocates on
    # 32-byte boundaries; with AVX-512 that made the one-row kernel 2-4x slower,
    # measured). Not zero-filled otherwise: the packing writes every other entry, and a
    # zeroing pass over a 3 MB matrix cost as much as a third of the packing
    itemsize = dtype_like.itemsize
    n = P * K * NR
    buf = np.empty(n + VECTOR_BYTES // itemsize, dtype_like.dtype)
    skip = (-_address(buf)) % VECTOR_BYTES // itemsize
    mp = buf[skip : skip + n].reshape(P, K, NR)
    u = N - (P - 1) * NR  # columns used in the last panel
    if P > 0 and u < NR:
        last = mp[P - 1]
        for k in range(K):
            for j in range(u, NR):
                last[k, j] = 0.0
    return mp


@jit
def pack(m):
    """Packed copy of m (K, N), C-contiguous, for ``matmul``: (ceil(N / NR), K, NR), its
    first element on a vector boundary."""
    return pack_and_sum(m, _bool(False))[0]


@jit
def pack_and_sum(m, summed):
    """``(pack(m), linalg.bits_sum(m))``, the checksum taken while each row of m is in
    L1 (0 without ``summed``): a backward checks that the weights did not change since
    the forward, and a separate pass read the matrix from memory once more (4 MB: 0.04
    ms from cache, ~0.1 ms within a training step). Python code calls this form, with
    or without the sum: each wrapper compiles its own copy of the packing (a summed and
    a plain wrapper cost a cold LSTM forward 1.2 s more)."""
    K, N = m.shape
    NR = panel_width(m.itemsize)
    P = (N + NR - 1) // NR
    mp = _aligned_panels(P, K, NR, N, m)
    Pf = N // NR  # whole panels
    bits = as_bits(m.reshape(-1)).reshape(K, N)  # (m is C-contiguous)
    s = np.uint64(0)
    # row by row of m: reading m a panel (a column block) at a time strode across rows
    # and ran at a fifth of the speed of a copy (4 MB: 2.9 ms against 0.58, measured)
    for k in range(K):
        mk = m[k]
        for p in range(Pf):
            dst = mp[p, k]
            for j in range(NR):
                dst[j] = mk[p * NR + j]
        if Pf < P:
            dst = mp[Pf, k]
            for j in range(N - Pf * NR):
                dst[j] = mk[Pf * NR + j]
        if summed:
            bk = bits[k]
            for j in range(N):
                s += np.uint64(bk[j])
    return mp, s


@intrinsic
def _transpose_block(typingctx, dst, d_off, ldd, src, s_off, lds):
    # dst[d_off + i*ldd + j] = src[s_off + j*lds + i] for i, j < W (one vector's
    # elements): W vector loads, log2(W) rounds of W two-vector shuffles, W vector stores.
    # Returns the sum of the block's bits as uint64 (linalg.bits_sum), from the loaded
    # registers; LLVM drops it where the caller does not use it
    if not (isinstance(dst, types.CPointer) and isinstance(src, types.CPointer)
            and dst.dtype == src.dtype and dst.dtype in (types.float32, types.float64)):
        return None
    intp_t = types.intp
    sig = types.uint64(dst, intp_t, intp_t, src, intp_t, intp_t)

    def codegen(context, builder, sig, args):
        dst, d_off, ldd, src, s_off, lds = args
        ft = context.get_value_type(sig.args[0].dtype)
        size = context.get_abi_sizeof(ft)
        W = VECTOR_BYTES // size
        vpt = ir.VectorType(ft, W).as_pointer()
        intp = context.get_value_type(types.intp)

        def row(base, off, ld, i):
            ptr = builder.gep(base, [builder.add(off, builder.mul(ir.Constant(intp, i), ld))])
            return builder.bitcast(ptr, vpt)

        v = [builder.load(row(src, s_off, lds, i), align=size) for i in range(W)]
        i64 = ir.IntType(64)
        wide = [builder.zext(builder.bitcast(x, ir.VectorType(ir.IntType(8 * size), W)),
                             ir.VectorType(i64, W)) for x in v]
        acc = wide[0]
        for x in wide[1:]:
            acc = builder.add(acc, x)
        lane = [builder.extract_element(acc, ir.Constant(ir.IntType(32), i)) for i in range(W)]
        total = lane[0]
        for x in lane[1:]:
            total = builder.add(total, x)
        # a perfect shuffle: row 2i of the next round interleaves the first halves of
        # rows i and i + W/2, row 2i+1 their second halves; log2(W) rounds transpose
        h = W // 2
        mask_t = ir.VectorType(ir.IntType(32), W)
        lo = ir.Constant(mask_t, [x for i in range(h) for x in (i, W + i)])
        hi = ir.Constant(mask_t, [x for i in range(h, W) for x in (i, W + i)])
        for _ in range(W.bit_length() - 1):
            v = [builder.shuffle_vector(v[i], v[i + h], mask)
                 for i in range(h) for mask in (lo, hi)]
        for i in range(W):
            builder.store(v[i], row(dst, d_off, ldd, i), align=size)
        return total

    return sig, codegen


@jit
def pack_t(w):
    """Packed copy of w.T for w (N, K), C-contiguous: what ``pack(w.T)`` gives, without
    the transpose."""
    return pack_t_and_sum(w, _bool(False))[0]


@jit
def pack_t_and_sum(w, summed):
    """``(pack_t(w), linalg.bits_sum(w))``, or 0 for the sum without ``summed``: as
    ``pack_and_sum`` (a forward with a cache keeps the checksums of its weights)."""
    N, K = w.shape
    NR = panel_width(w.itemsize)
    W = VECTOR_BYTES // w.itemsize
    P = (N + NR - 1) // NR
    mp = _aligned_panels(P, K, NR, N, w)
    pw, pm = _data(w), _data(mp)
    bits = as_bits(w.reshape(-1))
    s = np.uint64(0)
    # blocks of W x W transposed in registers (element by element, a 4 MB matrix took
    # 4x as long, 2.4 ms against 0.62, measured); the edges element by element
    Nf = N // W * W
    Kf = K // W * W
    for j0 in range(0, Nf, W):
        p, u = divmod(j0, NR)
        for k0 in range(0, Kf, W):
            b = _transpose_block(pm, (p * K + k0) * NR + u, NR, pw, j0 * K + k0, K)
            if summed:
                s += b
        for k in range(Kf, K):
            for j in range(W):
                mp[p, k, u + j] = w[j0 + j, k]
                if summed:
                    s += np.uint64(bits[(j0 + j) * K + k])
    for j in range(Nf, N):
        p, u = divmod(j, NR)
        for k in range(K):
            mp[p, k, u] = w[j, k]
            if summed:
                s += np.uint64(bits[j * K + k])
    return mp, s


@intrinsic
def _data(typingctx, a):
    # a's data pointer (taking no reference: the caller keeps a alive)
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return types.CPointer(a.dtype)(a), codegen


@jit_inline
def _row_passes(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, P, NR, K, N, accumulate):
    # the one-row kernels' passes over ROW_PANELS panels at a time (enough independent
    # chains without splitting the sums); returns the panels done (the rest: 0-3)
    p = 0
    while p + ROW_PANELS <= P:
        _row_tile(c, c_off + p * NR, ldc, a, a_off, lda, m, m_off + p * pstride, pstride, K,
                  1, min(ROW_PANELS * NR, N - p * NR), accumulate)
        p += ROW_PANELS
    return p


@jit_inline
def _row_split(c, c_off, a, a_off, m, pstride, P, NR, K, N, accumulate):
    # one row of c (N columns) from one of a (K <= KC), split sums: c[c_off + j] (+)=
    # sum_k a[a_off + k] * (column j of the P packed panels), for j < N: ROW_PANELS
    # panels per pass (chains enough without splitting), then the last 1-3 panels in one
    # pass of the ROW_SPLITS kernels
    p = _row_passes(c, c_off, N, a, a_off, K, m, 0, pstride, P, NR, K, N, accumulate)
    c_off += p * NR
    m_off = p * pstride
    cols = N - p * NR
    if P - p == 3:
        _row_3s(c, c_off, N, a, a_off, K, m, m_off, pstride, K, 1, cols, accumulate)
    elif P - p == 2:
        _row_2s(c, c_off, N, a, a_off, K, m, m_off, pstride, K, 1, cols, accumulate)
    elif P - p == 1:
        _row_1s(c, c_off, N, a, a_off, K, m, m_off, pstride, K, 1, cols, accumulate)


@jit
def _row(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, P, NR, K, N, accumulate):
    # one row: c[c_off + j] (+)= sum_k a[a_off + k] * (column j of the P packed panels
    # from offset m_off), for j < N, k < K, each entry summed in k order: ROW_PANELS
    # panels per pass, then the rest in one
    p = _row_passes(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, P, NR, K, N, accumulate)
    c_off += p * NR
    m_off += p * pstride
    cols = N - p * NR
    if P - p == 3:
        _row_3(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, K, 1, cols, accumulate)
    elif P - p == 2:
        _row_2(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, K, 1, cols, accumulate)
    elif P - p == 1:
        _row_1(c, c_off, ldc, a, a_off, lda, m, m_off, pstride, K, 1, cols, accumulate)


# The product itself works on data pointers, one instance per dtype, compiled once and
# called by its symbol (``_symbols.compiled_once``):
# - a compiled function that takes arrays takes a reference to each on entry and drops it
#   on exit (atomic counts; Numba's pruning pass did not remove them from a function this
#   branchy): six atomic operations, about 80 ns per call, more than a 1 x 32 x 32
#   product, in every step of a recurrence;
# - linked into each caller, the product's code cost 1-3 s of compilation per kernel.
_MATMUL_SIGNATURES = {dt: types.void(types.CPointer(dt), types.intp, types.intp,
                                     types.CPointer(dt), types.intp, types.intp,
                                     types.CPointer(dt), types.intp, types.intp, types.intp,
                                     types.intp, types.boolean, types.boolean)
                      for dt in (types.float32, types.float64)}

#: Version of ``_matmul``'s signature, in the symbol callers' code resolves: bump it when
#: the signature changes.
_MATMUL_ABI = 2


def _symbol(dtype):
    return f"fastrnn_tiles_matmul_{dtype}_v{_MATMUL_ABI}"


def _matmul(c, ci, N, a, ai, K, m, P, KP, NR, R, accumulate, split):
    # matmul on pointers: c (.., N) and a (.., K) row-major, m packed (P, KP, NR), KP = K
    if R <= 0 or N == 0:
        return
    if K == 0:
        if not accumulate:
            for j in range(ci * N, (ci + R) * N):
                c[j] = 0.0
        return
    ldc = N
    lda = K
    c0 = ci * ldc
    a0 = ai * lda
    pstride = KP * NR
    if R < MR // 2 and K <= KC:
        # what the blocked loops below do for these shapes (row by row, one k block),
        # without them: for one row of a tiny recurrence they cost as much as the product
        for i in range(R):
            if split:
                _row_split(c, c0 + i * ldc, a, a0 + i * lda, m, pstride, P, NR, K, N,
                           accumulate)
            else:
                _row(c, c0 + i * ldc, ldc, a, a0 + i * lda, lda, m, _int(0), pstride, P, NR, K,
                     N, accumulate)
        return
    for r0 in range(0, R, MC):
        r1 = min(R, r0 + MC)
        for k0 in range(0, K, KC):
            kc = min(KC, K - k0)
            acc = accumulate or k0 > 0
            # full tiles of MR rows; a remainder of at least MR / 2 rows as one partial
            # tile, a smaller one row by row
            rt = r0 + (r1 - r0) // MR * MR
            if r1 - rt >= MR // 2:
                rt = r1
            # the order of the tiles: with few row tiles (a step of a recurrence), panel
            # by panel, each panel's block in L1 while the row tiles pass; with many (the
            # whole-sequence products), row tile by row tile over groups of panels that
            # stay in L2, so that c is written a row at a time and not in strips of NR
            # columns across many rows (1.2-1.6x faster for (3200, 256) x (256, 1024) and
            # (25600, 128) x (128, 2048), measured). Each entry's sum is the same either way.
            group = 1
            if r1 - r0 >= GROUP_ROWS:
                group = max(1, L2_GROUP // (kc * NV * VECTOR_BYTES))
            for g0 in range(0, P, group):
                for i in range(r0, rt, MR):
                    for p in range(g0, min(P, g0 + group)):
                        _tile(c, c0 + i * ldc + p * NR, ldc, a, a0 + i * lda + k0, lda, m,
                              p * pstride + k0 * NR, pstride, kc, min(MR, r1 - i),
                              min(NR, N - p * NR), acc)
            for i in range(rt, r1):
                _row(c, c0 + i * ldc, ldc, a, a0 + i * lda + k0, lda, m, k0 * NR, pstride, P,
                     NR, kc, N, acc)


_matmul_call = compiled_once(_symbol("{}"), _MATMUL_SIGNATURES)(_matmul)


@jit_inline
def matmul(c, ci, a, ai, R, mp, accumulate, split=False):
    """``c[ci:ci+R] = a[ai:ai+R] @ m``, or ``+=`` with ``accumulate``, for ``mp = pack(m)``.

    c (M, N), a (M', K): C-contiguous; mp (P, K, NR) from ``pack`` of an m with N
    columns; rows ci..ci+R-1 of c must not overlap rows ai..ai+R-1 of a, or mp. The
    caller keeps the rows in bounds (nothing is checked here). Inlined into the caller
    (Numba IR), so that no array crosses a call.

    ``split``: with fewer than MR / 2 rows and K <= KC, sum each entry in ROW_SPLITS
    interleaved parts of k (latency), not in k order: a recurrence whose whole batch is
    that small passes it for every step's product, so that a row's sums do not depend
    on how the batch is split across threads. (Otherwise every entry is summed in the
    module's order wherever it is computed, so the same row gives the same bits in any
    product.)
    """
    _matmul_call(_data(c), ci, c.shape[1], _data(a), ai, a.shape[1], _data(mp), mp.shape[0],
                 mp.shape[1], mp.shape[2], R, accumulate, split)


@jit_inline
def step_matmul(c, ci, a, ai, R, mp, accumulate, split):
    """``matmul(c, ci, a, ai, R, mp, accumulate, split)`` for the per-step product of a
    recurrence: with ``split`` and one row (a batch of one), the row's kernels run
    inlined in the caller, without the call into the compiled product (a fifth of a
    step of a tiny recurrence: its branches, the spills around it). The same sums as
    ``matmul``'s. (Inlined code is compiled again in every kernel that calls it: this
    one is kept to the forward recurrences.)"""
    P, K, NR = mp.shape
    N = c.shape[1]
    if split and R == 1 and 0 < K <= KC and N > 0:
        _row_split(_data(c), ci * N, _data(a), ai * K, _data(mp), K * NR, P, NR, K, N,
                   accumulate)
    else:
        matmul(c, ci, a, ai, R, mp, accumulate, split)
