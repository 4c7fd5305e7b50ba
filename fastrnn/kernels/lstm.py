"""LSTM kernels: forward recurrence, full BPTT and truncated BPTT (PyTorch's LSTM).

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh           (4H: gates i, f, g, o)
    i, f, g, o = sigma(a_i), sigma(a_f), tanh(a_g), sigma(a_o)
    c_t = f * c_{t-1} + i * g
    m_t = o * tanh(c_t)
    h_t = m_t,  or  h_t = W_hr m_t  with projections (PyTorch's proj_size)

Dimension key: T = time steps, B = batch, I = input features, H = cell units,
P = features of h (H, or the projection size).

Arrays as in ``elman.py``: C-contiguous, one float dtype, unchecked, outputs first.
``b`` is ``b_ih + b_hh`` (4H,). Without projections pass ``w_hr`` of shape (0, 0).
``gates`` (T, B, 4H) holds the input projection on entry to the recurrence and the
gate activations i, f, g, o on exit; with ``cs`` of T rows the cell states are kept
too: together they are all backward needs (m_t = o * tanh(c_t) is recomputed). With
``cs`` of 0 rows (inference) only the running cell state is kept.
"""

import numpy as np
from numba import prange

from .._config import jit, jit_calls_parallel, jit_inline, jit_parallel
from .activations import rowmap, sigmoid_ir, sigmoid_row, tanh, tanh_ir, tanh_row
from .grads import linear_grads
from .linalg import (add_into, add_p, copy_into, copy_p, copy_rows, zero_p,
                     sum_windows, sum_windows_p, window_entries, zero)
from .parallel import batch_chunk, n_chunks, par_matmul
from .tiles import MR, _bool, _data, _int, matmul, pack, pack_t, step_matmul
from .rowvec import _row_stride, outer_acc_rows, vecmat_rows, vecmat_t

# --------------------------------------------------------------------------------------
# forward


@jit_calls_parallel
def lstm_project(gates, x, w_ih, serial):
    """``gates[t] = x[t] W_ih^T`` for all steps. gates (T, B, 4H) written."""
    T, B, I = x.shape
    par_matmul(gates.reshape(T * B, gates.shape[2]), x.reshape(T * B, I), pack_t(w_ih),
               serial)


@jit_inline
def _gate_activations(a, H):
    # a (4H) pre-activations -> i, f, g, o in place (explicit full-width vectors)
    p = _data(a)
    sigmoid_row(p, 0, 2 * H)
    tanh_row(p, 2 * H, H)
    sigmoid_row(p, 3 * H, H)


def _emit_gates_forward(e, xs):
    # a_i, a_f, a_g, a_o (+ b) -> i, f, g, o in place
    a_i, a_f, a_g, a_o, b_i, b_f, b_g, b_o = xs
    return [sigmoid_ir(e, e.add(a_i, b_i)), sigmoid_ir(e, e.add(a_f, b_f)),
            tanh_ir(e, e.add(a_g, b_g)), sigmoid_ir(e, e.add(a_o, b_o))] + [None] * 4


def _emit_state_forward(e, xs):
    # i, f, g, o; c_{t-1} -> c_t; m_t written
    i, f, g, o, c, _ = xs
    c = e.fma(f, c, e.mul(i, g))  # c_t = f c_{t-1} + i g
    return [None] * 4 + [c, e.mul(o, tanh_ir(e, c))]  # m = o tanh(c)


def _emit_cell_forward(e, xs):
    # both of the above: a_i, a_f, a_g, a_o (+ b) -> i, f, g, o; c_{t-1} -> c_t; m_t
    act = _emit_gates_forward(e, xs[:8])
    return act + _emit_state_forward(e, act[:4] + xs[8:])[4:]


# The cell in one pass over the row, or in two: the four gates' activations (independent
# chains), then the state's (c, tanh(c), m). The same operations, so the same bits. In
# one pass an iteration's dependent chain (sigmoid, then c, then tanh) outlasts what the
# out-of-order window overlaps with the next: two passes took 14.2-15.1 against 15.4-17.0
# ns per 16 units (H = 128, in L1). For a batch of a row or two, the step's latency
# counts, and the second pass's reloads add to it (tiny forward 0.099-0.108 ms in one pass,
# 0.108-0.109 in two).
_cell_forward_rows = rowmap(_emit_cell_forward)
_gates_forward_rows = rowmap(_emit_gates_forward)
_state_forward_rows = rowmap(_emit_state_forward)


@jit_inline
def _cell_forward(pa, a, pb, pc, c, pm, m, H, latency):
    # gates row at a (pre-activations in, i, f, g, o out), c_{t-1} -> c_t at c, m_t at m;
    # latency: one pass (a latency-bound step), else two
    if latency:
        _cell_forward_rows((pa, pa, pa, pa, pb, pb, pb, pb, pc, pm),
                           (a, a + H, a + 2 * H, a + 3 * H, 0, H, 2 * H, 3 * H, c, m), H)
    else:
        _gates_forward_rows((pa, pa, pa, pa, pb, pb, pb, pb),
                            (a, a + H, a + 2 * H, a + 3 * H, 0, H, 2 * H, 3 * H), H)
        _state_forward_rows((pa, pa, pa, pa, pc, pm), (a, a + H, a + 2 * H, a + 3 * H, c, m), H)


@jit
def _forward_chunk(out, h_n, c_n, gates, cs, h0, c0, w_hh_t, b, w_hr_t, lengths, r0, r1):
    T, B, P = out.shape
    H = c0.shape[1]
    G = 4 * H
    R = r1 - r0
    split = B < MR // 2  # the whole batch: the same for any thread count (tiles.matmul)
    proj = w_hr_t.shape[0] > 0
    keep = cs.shape[0] > 0
    c = np.empty((R, H), out.dtype)  # running cell state
    copy_rows(c, c0[r0:r1])
    m = np.empty((R if proj else 0, H), out.dtype)  # o * tanh(c) before W_hr
    o2 = out.reshape(T * B, P)  # row t*B + r is out[t, r]; the same for g2 and gates
    g2 = gates.reshape(T * B, G)
    # rows by pointer and offset (see gru._forward_chunk)
    po, pa, pc, pm, pcs, pb = _data(out), _data(gates), _data(c), _data(m), _data(cs), _data(b)
    for t in range(T):
        # a_t = W_ih x_t + W_hh h_{t-1} (+ b below)
        if t == 0:
            step_matmul(g2, r0, h0, r0, R, w_hh_t, True, split)
        else:
            step_matmul(g2, t * B + r0, o2, (t - 1) * B + r0, R, w_hh_t, True, split)
        for r in range(R):
            i = t * B + r0 + r  # row of out, gates and cs
            pmr, moff = (pm, r * H) if proj else (po, i * P)
            if t >= lengths[r0 + r]:  # padding: output 0, the state stays
                zero_p(pmr, moff, H)
            else:
                a = i * G
                _cell_forward(pa, a, pb, pc, r * H, pmr, moff, H, split)
            if keep:
                copy_p(pcs, i * H, pc, r * H, H)
        if proj:
            step_matmul(o2, t * B + r0, m, 0, R, w_hr_t, False, split)  # h_t = W_hr m_t
    for r in range(r0, r1):
        copy_into(h_n[r], out[lengths[r] - 1, r])
    copy_rows(c_n[r0:r1], c)


@jit_parallel
def lstm_recurrence(out, h_n, c_n, gates, cs, h0, c0, w_hh_t, b, w_hr_t, lengths, serial):
    """Run the recurrence.

    out (T, B, P), h_n (B, P), c_n (B, H) written (final states at each row's last
    step); gates (T, B, 4H) projection in, activations out; cs (T, B, H) written (or
    (0, B, H) to keep no history); h0 (B, P); c0 (B, H); w_hh_t, w_hr_t =
    tiles.pack_t(w_hh), tiles.pack_t(w_hr) for w_hh (4H, P) and w_hr (P, H) or (0, 0)
    (packed by the caller, as in ``elman_recurrence``); b (4H,); lengths (B,) int64 in
    1..T (steps from lengths[r] on are padding: output 0).
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _forward_chunk(out, h_n, c_n, gates, cs, h0, c0, w_hh_t, b, w_hr_t, lengths, c * size,
                           min(B, (c + 1) * size))
    else:
        for c in prange(n_chunks(B, size)):
            _forward_chunk(out, h_n, c_n, gates, cs, h0, c0, w_hh_t, b, w_hr_t, lengths, c * size,
                           min(B, (c + 1) * size))


@jit_calls_parallel
def lstm_forward(out, h_n, c_n, gates, cs, x, h0, c0, w_ih, w_hh, b, w_hr):
    """Whole forward pass (T >= 1): ``lstm_project`` then ``lstm_recurrence``."""
    lstm_project(gates, x, w_ih, _bool(False))
    lstm_recurrence(out, h_n, c_n, gates, cs, h0, c0, pack_t(w_hh), b, pack_t(w_hr),
                    np.full(x.shape[1], x.shape[0], np.int64), _bool(False))


# --------------------------------------------------------------------------------------
# backward


def _emit_cell_backward(e, xs):
    # from dL/dm_t (dm) and dL/dc_t arriving from step t+1 (dc) to the gate
    # pre-activation gradients da_i, da_f, da_g, da_o and dL/dc_{t-1} (dc_prev)
    _, _, _, _, _, dm, dc, i, f, g, o, c, c_prev = xs
    one = e.c(1.0)
    tc = tanh_ir(e, c)
    dm_o = e.mul(dm, o)
    dc = e.fma(dm_o, e.fma(e.neg(tc), tc, one), dc)  # m = o tanh(c)
    da_i = e.mul(e.mul(dc, g), e.mul(i, e.sub(one, i)))  # c = f c_prev + i g
    da_f = e.mul(e.mul(dc, c_prev), e.mul(f, e.sub(one, f)))
    da_g = e.mul(e.mul(dc, i), e.fma(e.neg(g), g, one))
    da_o = e.mul(e.mul(dm, tc), e.mul(o, e.sub(one, o)))
    return [da_i, da_f, da_g, da_o, e.mul(dc, f)] + [None] * 8


_cell_backward_rows = rowmap(_emit_cell_backward)


@jit_inline
def _cell_backward(da, dc_prev, dm, dc, a, c, c_prev, H):
    # one row, one pass of full-width vectors: da (4H) written; dc_prev (H) written (may
    # alias dc); dm, dc (H); a (4H) gate activations, c, c_prev (H) from the forward
    pd = _data(da)
    pa = _data(a)
    _cell_backward_rows((pd, pd, pd, pd, _data(dc_prev), _data(dm), _data(dc), pa, pa, pa, pa,
                         _data(c), _data(c_prev)),
                        (0, H, 2 * H, 3 * H, 0, 0, 0, 0, H, 2 * H, 3 * H, 0, 0), H)


@jit_inline
def _m_row(pm, m, pa, a, pc, c, H):
    # m_t = o * tanh(c_t), recomputed for dW_hr: m, a (the gates' row), c offsets into
    # the data pointers pm, pa, pc
    for j in range(H):
        pm[m + j] = pa[a + 3 * H + j] * tanh(pc[c + j])


@jit
def _backward_chunk(da, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p, w_hr_p,
                    lengths, r0, r1):
    T, B, G = gates.shape
    H = cs.shape[2]
    R = r1 - r0
    proj = w_hr_p.shape[0] > 0
    da2 = da.reshape(T * B, G)  # row t*B + r is da[t, r]
    dh = np.zeros((R, dh_n.shape[1]), da.dtype)  # dL/dh_t from later steps
    dc = np.zeros((R, H), da.dtype)  # dL/dc_t from later steps
    dm = np.empty((R, H), da.dtype) if proj else dh
    P = dh.shape[1]
    # rows by pointer and offset (see gru._forward_chunk)
    pd, pdh, pdc, pdm, pdo, pg, pcs, pc0 = (_data(da), _data(dh), _data(dc), _data(dm),
                                            _data(dout), _data(gates), _data(cs), _data(c0))
    pms = _data(ms)
    for t in range(T - 1, -1, -1):
        for r in range(R):
            L = lengths[r0 + r]
            if t < L:
                add_p(pdh, r * P, pdo, (t * B + r0 + r) * P, P)
            if t == L - 1:  # the final states are those of the row's last step
                add_into(dh[r], dh_n[r0 + r])
                add_into(dc[r], dc_n[r0 + r])
        if proj:  # h_t = W_hr m_t  ->  dm_t = dh_t W_hr;  dW_hr needs dh_t and m_t
            copy_rows(dhs[t, r0:r1], dh)
            matmul(dm, 0, dh, 0, R, w_hr_p, False)
            for r in range(R):
                i = t * B + r0 + r
                if t < lengths[r0 + r]:
                    _m_row(pms, i * H, pg, i * G, pcs, i * H, H)
                else:
                    zero_p(pms, i * H, H)
        for r in range(R):
            i = t * B + r0 + r  # row of da, gates and cs
            if t >= lengths[r0 + r]:  # padding (dh, dc of the row are still zero)
                zero_p(pd, i * G, G)
                continue
            pp, po = (pc0, (r0 + r) * H) if t == 0 else (pcs, (i - B) * H)  # c_{t-1}
            _cell_backward_rows((pd, pd, pd, pd, pdc, pdm, pdc, pg, pg, pg, pg, pcs, pp),
                                (i * G, i * G + H, i * G + 2 * H, i * G + 3 * H, r * H, r * H,
                                 r * H, i * G, i * G + H, i * G + 2 * H, i * G + 3 * H, i * H,
                                 po), H)
        # a_t = ... + W_hh h_{t-1}  ->  dh_{t-1} = da_t W_hh
        matmul(dh, 0, da2, t * B + r0, R, w_hh_p, False)
    copy_rows(dh0[r0:r1], dh)
    copy_rows(dc0[r0:r1], dc)


@jit_parallel
def lstm_backward_recurrence(da, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p,
                             w_hr_p, lengths, serial):
    """Backward through the recurrence (full BPTT).

    da (T, B, 4H) written: dL/da_t; with projections dhs (T, B, P) and ms (T, B, H)
    written (dL/dh_t and m_t, for dW_hr; else 0-row arrays); dh0 (B, P), dc0 (B, H)
    written; dout (T, B, P); dh_n (B, P); dc_n (B, H); gates, cs from the forward;
    c0 (B, H); w_hh_p, w_hr_p = tiles.pack(w_hh), tiles.pack(w_hr) for w_hh (4H, P) and
    w_hr (P, H) or (0, 0) (packed by the caller, as in ``elman_backward_recurrence``);
    lengths (B,) as in the forward.
    """
    B = gates.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _backward_chunk(da, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p, w_hr_p,
                            lengths, c * size, min(B, (c + 1) * size))
    else:
        for c in prange(n_chunks(B, size)):
            _backward_chunk(da, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p, w_hr_p,
                            lengths, c * size, min(B, (c + 1) * size))


# Truncated BPTT(k): as in elman.py, the live windows (entered at steps t..t+k-1) are
# stacked by age; each carries dL/dh and dL/dc, and both stop at the window's start.
# dout (T, A, B, P) enters by age, and the per-window gate gradients can be written
# out by age (da_ages), for stacks.


@jit
def _truncated_chunk(da, da_ages, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p,
                     w_hr_p, lengths, r0, r1, k):
    T, B, G = gates.shape
    H = cs.shape[2]
    R = r1 - r0
    P = dh_n.shape[1]
    proj = w_hr_p.shape[0] > 0
    gh = np.empty((2, k, R, P), da.dtype)  # dL/dh per window, by age; [p] now, [1-p] next
    gc = np.empty((2, k + 1, R, H), da.dtype)  # dL/dc per window; age k is a discard slot
    ga = np.empty((k, R, G), da.dtype)  # gate gradients per window
    dm = np.empty((k if proj else 0, R, H), da.dtype)  # dL/dm per window
    # as 2-D row stacks for matmul: row (p*k + age)*R + r is gh[p, age, r], and so on
    gh2 = gh.reshape(2 * k * R, P)
    ga2 = ga.reshape(k * R, G)
    dm2 = dm.reshape(dm.shape[0] * R, H)
    pd, pga, pgc, pgh, pdm, pg, pcs, pc0 = (_data(da), _data(ga), _data(gc), _data(gh),
                                            _data(dm), _data(gates), _data(cs), _data(c0))
    pdhs, pms = _data(dhs), _data(ms)
    p = 0
    n_prop = _int(0)  # (a literal 0 compiled window_entries once more)
    for t in range(T - 1, -1, -1):
        hs = gh[p]
        n_live = window_entries(hs, dout, t, r0, r1, n_prop)
        for a in range(n_prop + 1, n_live):  # windows entering here carry no dL/dc yet
            for r in range(R):
                zero(gc[p, a, r])
        for r in range(R):
            zero(gc[p, 0, r])
            L = lengths[r0 + r]
            if t == L - 1:  # dh_n, dc_n enter with the row's last step
                add_into(hs[0, r], dh_n[r0 + r])
                add_into(gc[p, 0, r], dc_n[r0 + r])
            elif t >= L:  # padding: no window carries anything here
                for a in range(n_live):
                    zero(hs[a, r])
        if proj:  # h_t = W_hr m_t
            matmul(dm2, 0, gh2, p * k * R, n_live * R, w_hr_p, False)
            for r in range(R):
                i = t * B + r0 + r
                # the total dL/dh_t, for dW_hr
                sum_windows_p(pdhs, i * P, pgh, (p * k * R + r) * P, R * P, n_live, P)
                if t < lengths[r0 + r]:
                    _m_row(pms, i * H, pg, i * G, pcs, i * H, H)
                else:
                    zero_p(pms, i * H, H)
        for r in range(R):
            i = t * B + r0 + r  # row of da, gates and cs
            if t >= lengths[r0 + r]:
                for a in range(n_live):
                    zero(ga[a, r])
                    zero(gc[1 - p, a + 1, r])
            else:
                pp, po = (pc0, (r0 + r) * H) if t == 0 else (pcs, (i - B) * H)  # c_{t-1}
                for a in range(n_live):  # window a's rows by offset (see _backward_chunk)
                    w = (a * R + r) * G  # ga[a, r]
                    cn = (((1 - p) * (k + 1) + a + 1) * R + r) * H  # gc[1 - p, a + 1, r]
                    cw = ((p * (k + 1) + a) * R + r) * H  # gc[p, a, r]
                    pm, mo = (pdm, (a * R + r) * H) if proj else (pgh, ((p * k + a) * R + r) * P)
                    _cell_backward_rows((pga, pga, pga, pga, pgc, pm, pgc, pg, pg, pg, pg, pcs,
                                         pp),
                                        (w, w + H, w + 2 * H, w + 3 * H, cn, mo, cw, i * G,
                                         i * G + H, i * G + 2 * H, i * G + 3 * H, i * H, po), H)
            sum_windows_p(pd, i * G, pga, r * G, R * G, n_live, G)
            if da_ages.shape[0] > 0:
                for a in range(da_ages.shape[1]):
                    if a < n_live:
                        copy_into(da_ages[t, a, r0 + r], ga[a, r])
                    else:
                        zero(da_ages[t, a, r0 + r])
        if t == 0:
            # every live window reaches h0 and c0 within its k steps
            matmul(dh0, r0, da.reshape(T * B, G), r0, R, w_hh_p, False)
            for r in range(R):
                sum_windows(dc0[r0 + r], gc[1 - p, 1:, r], n_live)
            break
        n_prop = min(n_live, k - 1)  # age k-1 expires at this step
        if n_prop > 0:
            matmul(gh2, ((1 - p) * k + 1) * R, ga2, 0, n_prop * R, w_hh_p, False)
        p = 1 - p


@jit_parallel
def lstm_truncated_recurrence(da, da_ages, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0,
                              w_hh_p, w_hr_p, k, lengths, serial):
    """``lstm_backward_recurrence`` truncated to windows of ``k`` steps (1 <= k < T),
    with dout (T, A, B, P) entering by age (1 <= A <= k) and the per-window gate
    gradients written to da_ages (T, k, B, 4H) by age, or pass a (0, k, B, 4H) array."""
    B = gates.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _truncated_chunk(da, da_ages, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0,
                             w_hh_p, w_hr_p, lengths, c * size, min(B, (c + 1) * size), k)
    else:
        for c in prange(n_chunks(B, size)):
            _truncated_chunk(da, da_ages, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0,
                             w_hh_p, w_hr_p, lengths, c * size, min(B, (c + 1) * size), k)


@jit_calls_parallel
def lstm_weight_grads(dx, dw_ih, dw_hh, db, dw_hr, da, dhs, ms, x, h0, w_ih, out, serial):
    """The whole-sequence products: dx (T, B, I), dw_ih (4H, I), dw_hh (4H, P), db (4H,)
    and, with projections, dw_hr (P, H) (else (0, 0)) written."""
    T, B, I = x.shape
    G = da.shape[2]
    P = out.shape[2]
    TB = T * B
    da2 = da.reshape(TB, G)
    par_matmul(dx.reshape(TB, I), da2, pack(w_ih), serial)
    db_hh = np.empty_like(db)  # equal to db for this cell
    linear_grads(dw_ih, dw_hh, db, db_hh, da2, da2, G, x.reshape(TB, I), h0,
                 out.reshape(TB, P)[: TB - B], serial)
    if dw_hr.shape[0] > 0:  # h_t = W_hr m_t  ->  dW_hr = sum_t dh_t^T m_t
        # (the same kernel, with no hidden term: zero-width h_prev)
        dhs2 = dhs.reshape(TB, P)
        linear_grads(dw_hr, np.empty((P, 0), da.dtype), np.empty(P, da.dtype),
                     np.empty(P, da.dtype), dhs2, dhs2, P, ms.reshape(TB, ms.shape[2]),
                     np.empty((B, 0), da.dtype), np.empty((TB - B, 0), da.dtype), serial)


@jit_calls_parallel
def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dout, dh_n, dc_n, x, h0, c0, w_ih,
                  w_hh, w_hr, out, gates, cs, k):
    """Whole backward pass: the gradient of ``sum(out * dout) + sum(h_n * dh_n)
    + sum(c_n * dc_n)``; ``k <= 0`` or ``k >= T``: full BPTT, else truncated to k steps.
    ``gates`` and ``cs`` as left by ``lstm_forward`` (cs with T rows)."""
    T, B, _ = x.shape
    P = out.shape[2]
    proj = w_hr.shape[0] > 0
    da = np.empty_like(gates)
    n = T if proj else 0
    dhs = np.empty((n, B, P), out.dtype)
    ms = np.empty((n, B, cs.shape[2]), out.dtype)
    lengths = np.full(B, T, np.int64)
    w_hh_p, w_hr_p = pack(w_hh), pack(w_hr)
    if k <= 0 or k >= T:
        lstm_backward_recurrence(da, dhs, ms, dh0, dc0, dout, dh_n, dc_n, gates, cs, c0, w_hh_p,
                                 w_hr_p, lengths, _bool(False))
    else:
        lstm_truncated_recurrence(da, np.empty((0, k, B, gates.shape[2]), out.dtype), dhs, ms,
                                  dh0, dc0, dout.reshape(T, 1, B, P), dh_n, dc_n, gates, cs, c0,
                                  w_hh_p, w_hr_p, k, lengths, _bool(False))
    lstm_weight_grads(dx, dw_ih, dw_hh, db, dw_hr, da, dhs, ms, x, h0, w_ih, out, _bool(False))


# --------------------------------------------------------------------------------------
# one step, for a user's own @njit loop (simulations); weights transposed
# (``fastrnn.step_weights``), no allocation, outputs must not alias inputs.


@jit
def lstm_step(h_out, c_out, gates, x, h, c, w_ih_t, w_hh_t, b, w_hr_t):
    """One step.

    h_out (B, P), c_out (B, H) written; gates (B, 4H) written: the gate activations
    i, f, g, o (what ``lstm_step_backward`` needs); x (B, I); h (B, P); c (B, H);
    w_ih_t (I, 4H) = W_ih^T; w_hh_t (P, 4H) = W_hh^T; b (4H,) = b_ih + b_hh;
    w_hr_t (H, P) = W_hr^T, or a (0, 0) array without projections (then P = H).
    """
    H = c.shape[1]
    G = 4 * H
    proj = w_hr_t.shape[0] > 0
    pa, px, ph, pc, pco, pho, pb = (_data(gates), _data(x), _data(h), _data(c), _data(c_out),
                                    _data(h_out), _data(b))
    B = x.shape[0]
    sa = _row_stride(gates)  # rows by offset: no views (see _forward_chunk)
    for r in range(B):
        if proj:
            copy_p(pa, r * sa, pb, 0, G)
        else:
            zero_p(pa, r * sa, G)  # b is added by the cell, as in the sequence kernels
    vecmat_rows(pa, 0, sa, px, 0, _row_stride(x), B, w_ih_t, True)
    vecmat_rows(pa, 0, sa, ph, 0, _row_stride(h), B, w_hh_t, True)
    for r in range(B):
        a = r * sa
        co = r * _row_stride(c_out)
        copy_p(pco, co, pc, r * _row_stride(c), H)
        if not proj:  # the sequence kernels' cell (full-width vectors)
            _cell_forward(pa, a, pb, pco, co, pho, r * _row_stride(h_out), H,
                          x.shape[0] < MR // 2)
            continue
        # with projections m_t = o tanh(c_t) has no row of its own (no allocation here)
        ga = gates[r]
        _gate_activations(ga, H)
        cr = c_out[r]
        ho = h_out[r]
        zero(ho)
        for j in range(H):
            cj = ga[H + j] * cr[j] + ga[j] * ga[2 * H + j]  # c = f c_prev + i g
            cr[j] = cj
            mj = ga[3 * H + j] * tanh(cj)  # m = o tanh(c)
            for q in range(ho.shape[0]):  # h = W_hr m
                ho[q] += mj * w_hr_t[j, q]


@jit
def lstm_step_backward(dx, dh, dc, dgates, dw_ih_t, dw_hh_t, db, dw_hr_t, dh_out, dc_out, x, h,
                       c, gates, c_out, w_ih_t, w_hh_t, w_hr_t):
    """Backward of ``lstm_step`` from dh_out (B, P) and dc_out (B, H).

    dx (B, I), dh (B, P), dc (B, H) written: dL/dx, dL/dh, dL/dc; dgates (B, 4H)
    written: dL/d(gate pre-activations); dw_ih_t (I, 4H), dw_hh_t (P, 4H), db (4H,) and,
    with projections, dw_hr_t (H, P) accumulated (+=); the rest as in the step.
    """
    H = c.shape[1]
    proj = w_hr_t.shape[0] > 0
    for r in range(x.shape[0]):
        a = gates[r]
        dm = dc[r]  # dL/dm first, overwritten by dL/dc_prev below (same j, read first)
        if proj:  # h = W_hr m
            vecmat_t(dm, w_hr_t, dh_out[r], _bool(False))
            for j in range(H):
                mj = a[3 * H + j] * tanh(c_out[r, j])
                for q in range(dh_out.shape[1]):
                    dw_hr_t[j, q] += mj * dh_out[r, q]
        else:
            copy_into(dm, dh_out[r])
        _cell_backward(dgates[r], dc[r], dm, dc_out[r], a, c_out[r], c[r], H)
        vecmat_t(dx[r], w_ih_t, dgates[r], _bool(False))  # a = x W_ih^T + h W_hh^T + b
        vecmat_t(dh[r], w_hh_t, dgates[r], _bool(False))
        add_into(db, dgates[r])
    outer_acc_rows(dw_ih_t, x, dgates)  # the rows' updates in row order, one pass over each
    outer_acc_rows(dw_hh_t, h, dgates)
