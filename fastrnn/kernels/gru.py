"""GRU kernels: forward recurrence, full BPTT and truncated BPTT (PyTorch's GRU).

    gi_t = W_ih x_t + b_ih,  gh_t = W_hh h_{t-1} + b_hh        (3H: gates r, z, n)
    r = sigma(gi_r + gh_r),  z = sigma(gi_z + gh_z)
    n = tanh(gi_n + r * gh_n)            (b_hn inside r *, as PyTorch, unlike the paper)
    h_t = (1 - z) * n + z * h_{t-1}

Dimension key: T = time steps, B = batch, I = input features, H = hidden features.

Arrays as in ``elman.py``: C-contiguous, one float dtype, unchecked, outputs first.
The two biases stay separate (b_hn is gated by r). ``gates`` (T, B, 3H) holds the
input projection W_ih x_t on entry to the recurrence and r, z, n on exit; with
``ghn`` of T rows the recurrence also keeps gh_n (W_hn h_{t-1} + b_hn): together
they are all backward needs. With ``ghn`` of 0 rows (inference) nothing extra is kept.
"""

import numpy as np
from numba import prange

from .._config import jit, jit_calls_parallel, jit_inline, jit_parallel
from .activations import rowmap, sigmoid_ir, tanh_ir
from .grads import linear_grads
from .linalg import (add_into, add_p, copy_into, copy_p, copy_rows, zero_p,
                     sum_windows, sum_windows_p, window_entries, zero)
from .parallel import batch_chunk, n_chunks, par_matmul
from .tiles import MR, _bool, _data, _int, matmul, pack, pack_t, step_matmul
from .rowvec import _row_stride, outer_acc_rows, vecmat_rows, vecmat_t

# --------------------------------------------------------------------------------------
# forward


@jit_calls_parallel
def gru_project(gates, x, w_ih, serial):
    """``gates[t] = x[t] W_ih^T`` for all steps. gates (T, B, 3H) written."""
    T, B, I = x.shape
    par_matmul(gates.reshape(T * B, gates.shape[2]), x.reshape(T * B, I), pack_t(w_ih),
               serial)


def _emit_gates_forward(e, xs):
    # gi (+ b_ih) and gh -> r, z in place of gi
    a_r, a_z, b_r, b_z, gh_r, gh_z = xs
    return [sigmoid_ir(e, e.add(e.add(a_r, b_r), gh_r)),
            sigmoid_ir(e, e.add(e.add(a_z, b_z), gh_z))] + [None] * 4


def _emit_state_forward(e, xs):
    # r, z, gi_n (+ b_in), gh_n -> n in place of gi_n; h written; gh_n copied to ghn
    r, z, a_n, b_n, gh_n, h_prev, _, _ = xs
    n = tanh_ir(e, e.fma(r, gh_n, e.add(a_n, b_n)))  # b_hn inside r * (PyTorch)
    h = e.fma(z, h_prev, e.mul(e.sub(e.c(1.0), z), n))  # h = (1 - z) n + z h_prev
    return [None, None, n, None, None, None, h, gh_n]


def _emit_cell_forward(e, xs):
    # both of the above, in the order of _cell_forward's pointers
    a_r, a_z, a_n, b_r, b_z, b_n, gh_r, gh_z, gh_n, h_prev, h, k = xs
    r, z = _emit_gates_forward(e, [a_r, a_z, b_r, b_z, gh_r, gh_z])[:2]
    _, _, n, _, _, _, h, gh_n = _emit_state_forward(e, [r, z, a_n, b_n, gh_n, h_prev, h, k])
    return [r, z, n, None, None, None, None, None, None, None, h, gh_n]


# The cell in one pass over the row, or in two (as the LSTM's: lstm._cell_forward): the
# gates r and z, then n and h. The same operations, so the same bits; two passes took
# 9.7 against 12.0 ns per 16 units (H = 128, in L1).
_cell_forward_rows = rowmap(_emit_cell_forward)
_gates_forward_rows = rowmap(_emit_gates_forward)
_state_forward_rows = rowmap(_emit_state_forward)


@jit_inline
def _cell_forward(pa, a, pbi, pgh, gh, ph, hp, po, ho, pk, k, H, latency):
    # gi row at a (projection in, r, z, n out), gh row at gh (W_hh h_{t-1} + b_hh),
    # h_{t-1} at hp, h_t written at ho, gh_n copied to k; latency: one pass, else two
    if latency:
        _cell_forward_rows((pa, pa, pa, pbi, pbi, pbi, pgh, pgh, pgh, ph, po, pk),
                           (a, a + H, a + 2 * H, 0, H, 2 * H, gh, gh + H, gh + 2 * H, hp, ho,
                            k), H)
    else:
        _gates_forward_rows((pa, pa, pbi, pbi, pgh, pgh), (a, a + H, 0, H, gh, gh + H), H)
        _state_forward_rows((pa, pa, pa, pbi, pgh, ph, po, pk),
                            (a, a + H, a + 2 * H, 2 * H, gh + 2 * H, hp, ho, k), H)


@jit
def _forward_chunk(out, h_n, gates, ghn, h0, w_hh_t, b_ih, b_hh, lengths, r0, r1):
    T, B, H = out.shape
    R = r1 - r0
    split = B < MR // 2  # the whole batch: the same for any thread count (tiles.matmul)
    G = 3 * H
    keep = ghn.shape[0] > 0
    gh = np.empty((R, G), out.dtype)  # W_hh h_{t-1} + b_hh of one step
    o2 = out.reshape(T * B, H)  # row t*B + r is out[t, r]
    # rows by pointer and offset: a view of a row (out[t, r]) takes and drops a
    # reference, two atomic operations, in every step
    po, pa, pgh, pk, ph0 = _data(out), _data(gates), _data(gh), _data(ghn), _data(h0)
    pbi, pbh = _data(b_ih), _data(b_hh)
    for t in range(T):
        for r in range(R):
            copy_p(pgh, r * G, pbh, 0, G)
        # gh_t = W_hh h_{t-1} + b_hh
        if t == 0:
            step_matmul(gh, 0, h0, r0, R, w_hh_t, True, split)
        else:
            step_matmul(gh, 0, o2, (t - 1) * B + r0, R, w_hh_t, True, split)
        for r in range(R):
            i = t * B + r0 + r  # row of out, gates and ghn
            if t >= lengths[r0 + r]:  # padding: output 0, the state stays
                zero_p(po, i * H, H)
                continue
            hp, hoff = (ph0, (r0 + r) * H) if t == 0 else (po, (i - B) * H)
            pn, noff = (pk, i * H) if keep else (pgh, r * G + 2 * H)
            _cell_forward(pa, i * G, pbi, pgh, r * G, hp, hoff, po, i * H, pn, noff, H, split)
    for r in range(r0, r1):
        copy_into(h_n[r], out[lengths[r] - 1, r])


@jit_parallel
def gru_recurrence(out, h_n, gates, ghn, h0, w_hh_t, b_ih, b_hh, lengths, serial):
    """Run the recurrence.

    out (T, B, H), h_n (B, H) written (h_n: each row's state at its last step); gates
    (T, B, 3H) projection in, r, z, n out; ghn (T, B, H) written (or (0, B, H) to keep
    nothing); h0 (B, H); w_hh_t = tiles.pack_t(w_hh) for w_hh (3H, H) (packed by the
    caller, as in ``elman_recurrence``); b_ih, b_hh (3H,); lengths (B,) int64 in 1..T
    (steps from lengths[r] on are padding: output 0).
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _forward_chunk(out, h_n, gates, ghn, h0, w_hh_t, b_ih, b_hh, lengths, c * size,
                           min(B, (c + 1) * size))
    else:
        for c in prange(n_chunks(B, size)):
            _forward_chunk(out, h_n, gates, ghn, h0, w_hh_t, b_ih, b_hh, lengths, c * size,
                           min(B, (c + 1) * size))


@jit_calls_parallel
def gru_forward(out, h_n, gates, ghn, x, h0, w_ih, w_hh, b_ih, b_hh):
    """Whole forward pass (T >= 1): ``gru_project`` then ``gru_recurrence``."""
    gru_project(gates, x, w_ih, _bool(False))
    gru_recurrence(out, h_n, gates, ghn, h0, pack_t(w_hh), b_ih, b_hh,
                   np.full(x.shape[1], x.shape[0], np.int64), _bool(False))


# --------------------------------------------------------------------------------------
# backward


def _emit_cell_backward(e, xs):
    # from dL/dh_t (d) to the gradients of gi (r, z, n columns) and of gh (the same but
    # dgh_n = da_n r), and the direct part of dL/dh_{t-1}, d z (dh_prev)
    _, _, _, _, _, _, _, d, r, z, n, ghn, h_prev = xs
    one = e.c(1.0)
    omz = e.sub(one, z)
    da_n = e.mul(e.mul(d, omz), e.fma(e.neg(n), n, one))  # h = (1 - z) n + z h_prev
    da_z = e.mul(e.mul(d, e.sub(h_prev, n)), e.mul(z, omz))
    da_r = e.mul(e.mul(da_n, ghn), e.mul(r, e.sub(one, r)))  # n = tanh(gi_n + r gh_n)
    return [da_r, da_z, da_n, da_r, da_z, e.mul(da_n, r), e.mul(d, z)] + [None] * 6


_cell_backward_rows = rowmap(_emit_cell_backward)


@jit_inline
def _cell_backward(dgi, dgh, dh_prev, dh, a, ghn, h_prev, H):
    # one row, one pass of full-width vectors: dgi, dgh (3H) written; dh_prev (H) written
    # (may alias dh); dh, ghn, h_prev (H); a (3H) gate activations r, z, n
    pi = _data(dgi)
    ph = _data(dgh)
    pa = _data(a)
    _cell_backward_rows((pi, pi, pi, ph, ph, ph, _data(dh_prev), _data(dh), pa, pa, pa,
                         _data(ghn), _data(h_prev)),
                        (0, H, 2 * H, 0, H, 2 * H, 0, 0, 0, H, 2 * H, 0, 0), H)


@jit
def _backward_chunk(dgi, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, lengths, r0, r1):
    T, B, H = out.shape
    R = r1 - r0
    dh = np.zeros((R, H), dgi.dtype)  # dL/dh_t from later steps
    G = 3 * H
    dgh2 = dgh.reshape(T * B, G)  # row t*B + r is dgh[t, r]
    # rows by pointer and offset (see _forward_chunk)
    pi, ph, pdh, pdo, pa, pk, ph0, po = (_data(dgi), _data(dgh), _data(dh), _data(dout),
                                         _data(gates), _data(ghn), _data(h0), _data(out))
    for t in range(T - 1, -1, -1):
        for r in range(R):
            L = lengths[r0 + r]
            i = t * B + r0 + r  # row of dgi, dgh, gates, ghn, out and dout
            if t >= L:  # padding
                zero_p(pi, i * G, G)
                zero_p(ph, i * G, G)
                zero_p(pdh, r * H, H)
                continue
            add_p(pdh, r * H, pdo, i * H, H)
            if t == L - 1:
                add_into(dh[r], dh_n[r0 + r])  # h_n is the state at the row's last step
            pp, hp = (ph0, (r0 + r) * H) if t == 0 else (po, (i - B) * H)  # h_{t-1}
            a = i * G
            _cell_backward_rows((pi, pi, pi, ph, ph, ph, pdh, pdh, pa, pa, pa, pk, pp),
                                (a, a + H, a + 2 * H, a, a + H, a + 2 * H, r * H, r * H, a,
                                 a + H, a + 2 * H, i * H, hp), H)
        # gh_t = W_hh h_{t-1} + b_hh  ->  dh_{t-1} = dh_t z + dgh_t W_hh
        matmul(dh, 0, dgh2, t * B + r0, R, w_hh_p, True)
    copy_rows(dh0[r0:r1], dh)


@jit_parallel
def gru_backward_recurrence(dgi, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, lengths,
                            serial):
    """Backward through the recurrence (full BPTT).

    dgi, dgh (T, B, 3H) written: gradients of W_ih x_t + b_ih and of W_hh h_{t-1} + b_hh;
    dh0 (B, H) written; dout (T, B, H); dh_n (B, H); gates, ghn from the forward;
    h0 (B, H); out (T, B, H); w_hh_p = tiles.pack(w_hh) for w_hh (3H, H) (packed by the
    caller, as in ``elman_backward_recurrence``); lengths (B,) as in the forward.
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _backward_chunk(dgi, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, lengths,
                            c * size, min(B, (c + 1) * size))
    else:
        for c in prange(n_chunks(B, size)):
            _backward_chunk(dgi, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, lengths,
                            c * size, min(B, (c + 1) * size))


# Truncated BPTT(k): as in elman.py, the live windows (entered at steps t..t+k-1) are
# stacked by age and propagated together; dout (T, A, B, H) enters by age and the
# per-window input-side gate gradients can be written out by age (dgi_ages), for stacks.


@jit
def _truncated_chunk(dgi, dgi_ages, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, lengths,
                     r0, r1, k):
    T, B, H = out.shape
    R = r1 - r0
    gh = np.empty((2, k + 1, R, H), dgi.dtype)  # dL/dh per window by age; age k: discard
    wi = np.empty((k, R, 3 * H), dgi.dtype)  # per-window gradients of gi
    wh = np.empty((k, R, 3 * H), dgi.dtype)  # per-window gradients of gh
    gh2 = gh.reshape(2 * (k + 1) * R, H)  # row (p*(k+1) + age)*R + r is gh[p, age, r]
    wh2 = wh.reshape(k * R, 3 * H)  # row age*R + r is wh[age, r]
    G = 3 * H
    pi, ph, pwi, pwh, pgh, pa, pk, ph0, po = (_data(dgi), _data(dgh), _data(wi), _data(wh),
                                              _data(gh), _data(gates), _data(ghn), _data(h0),
                                              _data(out))
    p = 0
    n_prop = _int(0)  # (a literal 0 compiled window_entries once more)
    for t in range(T - 1, -1, -1):
        hs = gh[p]
        n_live = window_entries(hs, dout, t, r0, r1, n_prop)
        for r in range(R):
            L = lengths[r0 + r]
            i = t * B + r0 + r  # row of dgi, dgh, gates, ghn and out
            if t >= L:  # padding: nothing flows here
                for a in range(n_live):
                    zero(wi[a, r])
                    zero(wh[a, r])
                    zero(gh[1 - p, a + 1, r])
            else:
                if t == L - 1:
                    add_into(hs[0, r], dh_n[r0 + r])  # dh_n enters with the row's last step
                pp, hp = (ph0, (r0 + r) * H) if t == 0 else (po, (i - B) * H)  # h_{t-1}
                for a in range(n_live):  # window a's rows by offset (see _backward_chunk)
                    w = (a * R + r) * G  # wi[a, r] and wh[a, r]
                    hn = (((1 - p) * (k + 1) + a + 1) * R + r) * H  # gh[1 - p, a + 1, r]
                    hw = ((p * (k + 1) + a) * R + r) * H  # gh[p, a, r]
                    _cell_backward_rows((pwi, pwi, pwi, pwh, pwh, pwh, pgh, pgh, pa, pa, pa, pk,
                                         pp),
                                        (w, w + H, w + 2 * H, w, w + H, w + 2 * H, hn, hw, i * G,
                                         i * G + H, i * G + 2 * H, i * H, hp), H)
            sum_windows_p(pi, i * G, pwi, r * G, R * G, n_live, G)
            sum_windows_p(ph, i * G, pwh, r * G, R * G, n_live, G)
            if dgi_ages.shape[0] > 0:
                for a in range(dgi_ages.shape[1]):
                    if a < n_live:
                        copy_into(dgi_ages[t, a, r0 + r], wi[a, r])
                    else:
                        zero(dgi_ages[t, a, r0 + r])
        if t == 0:
            # every live window reaches h0: dh0 = sum_a dh_a z + dgh_0 W_hh
            for r in range(R):
                sum_windows(dh0[r0 + r], gh[1 - p, 1:, r], n_live)
            matmul(dh0, r0, dgh.reshape(T * B, 3 * H), r0, R, w_hh_p, True)
            break
        n_prop = min(n_live, k - 1)  # age k-1 expires at this step
        if n_prop > 0:
            matmul(gh2, ((1 - p) * (k + 1) + 1) * R, wh2, 0, n_prop * R, w_hh_p, True)
        p = 1 - p


@jit_parallel
def gru_truncated_recurrence(dgi, dgi_ages, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p, k,
                             lengths, serial):
    """``gru_backward_recurrence`` truncated to windows of ``k`` steps (1 <= k < T), with
    dout (T, A, B, H) entering by age (1 <= A <= k) and the per-window gradients of gi
    written to dgi_ages (T, k, B, 3H) by age, or pass a (0, k, B, 3H) array."""
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _truncated_chunk(dgi, dgi_ages, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p,
                             lengths, c * size, min(B, (c + 1) * size), k)
    else:
        for c in prange(n_chunks(B, size)):
            _truncated_chunk(dgi, dgi_ages, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p,
                             lengths, c * size, min(B, (c + 1) * size), k)


@jit_calls_parallel
def gru_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, dgi, dgh, x, h0, w_ih, out, serial):
    """The whole-sequence products: dx (T, B, I), dw_ih (3H, I), dw_hh (3H, H),
    db_ih, db_hh (3H,) written."""
    T, B, I = x.shape
    G = dgi.shape[2]
    H = out.shape[2]
    TB = T * B
    dgi2 = dgi.reshape(TB, G)
    par_matmul(dx.reshape(TB, I), dgi2, pack(w_ih), serial)
    # (dgh equals dgi in the reset and update gates' columns)
    linear_grads(dw_ih, dw_hh, db_ih, db_hh, dgi2, dgh.reshape(TB, G), 2 * H, x.reshape(TB, I),
                 h0, out.reshape(TB, H)[: TB - B], serial)


@jit_calls_parallel
def gru_backward(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dout, dh_n, x, h0, w_ih, w_hh, out,
                 gates, ghn, k):
    """Whole backward pass: the gradient of ``sum(out * dout) + sum(h_n * dh_n)``;
    ``k <= 0`` or ``k >= T``: full BPTT, else truncated to k steps. ``gates`` and
    ``ghn`` as left by ``gru_forward`` (ghn with T rows)."""
    T, B, _ = x.shape
    H = out.shape[2]
    dgi = np.empty_like(gates)
    dgh = np.empty_like(gates)
    lengths = np.full(B, T, np.int64)
    w_hh_p = pack(w_hh)
    if k <= 0 or k >= T:
        gru_backward_recurrence(dgi, dgh, dh0, dout, dh_n, gates, ghn, h0, out, w_hh_p,
                                lengths, _bool(False))
    else:
        gru_truncated_recurrence(dgi, np.empty((0, k, B, 3 * H), out.dtype), dgh, dh0,
                                 dout.reshape(T, 1, B, H), dh_n, gates, ghn, h0, out, w_hh_p, k,
                                 lengths, _bool(False))
    gru_weight_grads(dx, dw_ih, dw_hh, db_ih, db_hh, dgi, dgh, x, h0, w_ih, out, _bool(False))


# --------------------------------------------------------------------------------------
# one step, for a user's own @njit loop (simulations); weights transposed
# (``fastrnn.step_weights``), no allocation, outputs must not alias inputs.


@jit
def gru_step(h_out, gates, x, h, w_ih_t, w_hh_t, b_ih, b_hh):
    """One step.

    h_out (B, H) written; gates (B, 6H) written: r, z, n, then W_hh h + b_hh (what
    ``gru_step_backward`` needs); x (B, I); h (B, H); w_ih_t (I, 3H) = W_ih^T;
    w_hh_t (H, 3H) = W_hh^T; b_ih, b_hh (3H,).
    """
    H = h.shape[1]
    G = 3 * H
    pg, px, ph, po = _data(gates), _data(x), _data(h), _data(h_out)
    pbi, pbh = _data(b_ih), _data(b_hh)
    B = x.shape[0]
    sg = _row_stride(gates)  # rows by offset: no views (see _forward_chunk)
    for r in range(B):
        zero_p(pg, r * sg, G)  # b_ih is added by the cell
        copy_p(pg, r * sg + G, pbh, 0, G)
    vecmat_rows(pg, 0, sg, px, 0, _row_stride(x), B, w_ih_t, True)
    vecmat_rows(pg, G, sg, ph, 0, _row_stride(h), B, w_hh_t, True)
    for r in range(B):
        gi = r * sg
        gh = gi + G
        hr = r * _row_stride(h)
        _cell_forward(pg, gi, pbi, pg, gh, ph, hr, po, r * _row_stride(h_out), pg, gh + 2 * H, H,
                      B < MR // 2)


@jit
def gru_step_backward(dx, dh, dgates, dw_ih_t, dw_hh_t, db_ih, db_hh, dh_out, x, h, gates,
                      w_ih_t, w_hh_t):
    """Backward of ``gru_step`` from dh_out (B, H).

    dx (B, I), dh (B, H) written: dL/dx, dL/dh; dgates (B, 6H) written: the gradients
    of W_ih x + b_ih and of W_hh h + b_hh; dw_ih_t (I, 3H), dw_hh_t (H, 3H), db_ih,
    db_hh (3H,) accumulated (+=); the rest as in the step.
    """
    H = h.shape[1]
    for r in range(x.shape[0]):
        dgi = dgates[r, : 3 * H]
        dgh = dgates[r, 3 * H :]
        _cell_backward(dgi, dgh, dh[r], dh_out[r], gates[r, : 3 * H], gates[r, 5 * H :], h[r], H)
        vecmat_t(dh[r], w_hh_t, dgh, _bool(True))  # dh = dh_out z + dgh W_hh
        vecmat_t(dx[r], w_ih_t, dgi, _bool(False))
        add_into(db_ih, dgi)
        add_into(db_hh, dgh)
    G = 3 * H  # the rows' updates in row order, one pass over each
    outer_acc_rows(dw_ih_t, x, dgates[:, :G])
    outer_acc_rows(dw_hh_t, h, dgates[:, G:])
