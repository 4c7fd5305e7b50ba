"""Elman RNN kernels: forward recurrence, full BPTT and truncated BPTT.

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    h_t = act(a_t),           act in {tanh, relu, sigmoid, identity}

Dimension key: T = time steps, B = batch, I = input features, H = hidden features.

Kernels take C-contiguous arrays of one float dtype (float32 or float64; one source
serves both), write into output arrays the caller passes, and check nothing: the
functional layer (``fastrnn.functional``) validates shapes and dtypes first. Scratch
is allocated once per call (per batch chunk), before the time loop. ``b`` is the
summed bias ``b_ih + b_hh`` (zeros for a cell without bias). ``act`` is an activation
code from ``fastrnn.kernels.activations``.

A call has phases, each one parallel loop over fixed chunks (``parallel.py``): the
input projection of all steps (products over chunks of the T*B rows), the recurrence
(chunks of the batch, each with its own time loop), and for backward the
whole-sequence products (dx over chunks of rows, weight gradients over blocks of
hidden units). ``elman_forward``/``elman_backward`` chain the phases for callers in
``@njit`` code. No phase calls BLAS: the parallelism is the kernels' own.

Backward needs only the forward's outputs: every act' is a function of h_t = act(a_t),
so nothing but ``out`` is kept for training.
"""

import numpy as np
from numba import prange

from .._config import jit, jit_calls_parallel, jit_parallel
from .activations import activate, activation_backward, activation_backward_p
from .grads import linear_grads
from .linalg import (add_into, add_p, copy_into, copy_rows, zero_p, sum_windows_p,
                     window_entries, zero)
from .parallel import batch_chunk, n_chunks, par_matmul
from .tiles import MR, _bool, _data, _int, matmul, pack, pack_t, step_matmul
from .rowvec import _row_stride, outer_acc_rows, vecmat_rows, vecmat_t

# --------------------------------------------------------------------------------------
# forward


@jit_calls_parallel
def elman_project(out, x, w_ih, serial):
    """``out[t] = x[t] W_ih^T`` for all steps: one (T*B, I) x (I, H) product.

    out (T, B, H) written; x (T, B, I); w_ih (H, I).
    """
    T, B, I = x.shape
    par_matmul(out.reshape(T * B, out.shape[2]), x.reshape(T * B, I), pack_t(w_ih), serial)


@jit
def _forward_chunk(out, h_n, h0, w_hh_t, b, lengths, r0, r1, act):
    # rows r0:r1 through all T steps; out[t] holds W_ih x_t on entry
    T, B, H = out.shape
    R = r1 - r0
    split = B < MR // 2  # the whole batch: the same for any thread count (tiles.matmul)
    o2 = out.reshape(T * B, H)  # row t*B + r is out[t, r]
    po, pb = _data(out), _data(b)  # rows by offset (see gru._forward_chunk)
    for t in range(T):
        # a_t = W_ih x_t + W_hh h_{t-1} ...
        if t == 0:
            step_matmul(o2, r0, h0, r0, R, w_hh_t, True, split)
        else:
            step_matmul(o2, t * B + r0, o2, (t - 1) * B + r0, R, w_hh_t, True, split)
        for r in range(R):
            i = (t * B + r0 + r) * H
            if t >= lengths[r0 + r]:  # padding: no output, the state stays at its last step
                zero_p(po, i, H)
                continue
            activate(po, i, pb, H, act)  # h_t = act(a_t + b_ih + b_hh)
    for r in range(r0, r1):
        copy_into(h_n[r], out[lengths[r] - 1, r])


@jit_parallel
def elman_recurrence(out, h_n, h0, w_hh_t, b, act, lengths, serial):
    """Run the recurrence in place: ``out[t] = act(out[t] + W_hh h_{t-1} + b)``.

    out (T, B, H) holds the input projection on entry and h_t on exit; h_n (B, H)
    written (each row's state at its last step); h0 (B, H); w_hh_t = tiles.pack_t(w_hh)
    for w_hh (H, H) (packed by the caller: the functional layer runs a long sequence
    as several calls, one per chunk of steps); b (H,) = b_ih + b_hh; act code;
    lengths (B,) int64 in 1..T: row r's steps from lengths[r] on are padding (output 0).
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _forward_chunk(out, h_n, h0, w_hh_t, b, lengths, c * size, min(B, (c + 1) * size), act)
    else:
        for c in prange(n_chunks(B, size)):
            _forward_chunk(out, h_n, h0, w_hh_t, b, lengths, c * size, min(B, (c + 1) * size), act)


@jit_calls_parallel
def elman_forward(out, h_n, x, h0, w_ih, w_hh, b, act):
    """Whole forward pass: projection then recurrence (T >= 1).

    Parameters
    ----------
    out : (T, B, H) array, written
        h_t for every step.
    h_n : (B, H) array, written
        The last state.
    x : (T, B, I) array
    h0 : (B, H) array
    w_ih : (H, I) array
    w_hh : (H, H) array
    b : (H,) array
        ``b_ih + b_hh``.
    act : int
        Activation code.
    """
    elman_project(out, x, w_ih, _bool(False))
    elman_recurrence(out, h_n, h0, pack_t(w_hh), b, act, np.full(x.shape[1], x.shape[0], np.int64),
                     _bool(False))


# --------------------------------------------------------------------------------------
# backward: full BPTT


@jit
def _backward_chunk(da, dh0, dout, dh_n, out, w_hh_p, lengths, r0, r1, act):
    T, B, H = out.shape
    dh = np.zeros((r1 - r0, H), out.dtype)  # dL/dh_t arriving from later steps
    da2 = da.reshape(T * B, H)  # row t*B + r is da[t, r]
    # rows by pointer and offset (a row view takes and drops a reference)
    pd, pdh, pdo, po = _data(da), _data(dh), _data(dout), _data(out)
    for t in range(T - 1, -1, -1):
        for r in range(r1 - r0):
            L = lengths[r0 + r]
            i = t * B + r0 + r  # row of da, dout and out
            if t >= L:  # padding
                zero_p(pd, i * H, H)
                continue
            add_p(pdh, r * H, pdo, i * H, H)
            if t == L - 1:
                add_into(dh[r], dh_n[r0 + r])  # h_n is the state at the row's last step
            # h_t = act(a_t)  ->  da_t = (dout_t + dh_t) * act'(h_t)
            activation_backward_p(pd, i * H, pdh, r * H, po, i * H, H, act)
        # a_t = ... + W_hh h_{t-1}  ->  dh_{t-1} = da_t W_hh
        matmul(dh, 0, da2, t * B + r0, r1 - r0, w_hh_p, False)
    copy_rows(dh0[r0:r1], dh)


@jit_parallel
def elman_backward_recurrence(da, dh0, dout, dh_n, out, w_hh_p, act, lengths, serial):
    """Backward through the recurrence (full BPTT).

    da (T, B, H) written: dL/da_t; dh0 (B, H) written; dout (T, B, H); dh_n (B, H)
    (zeros for none); out (T, B, H) from the forward; w_hh_p = tiles.pack(w_hh) for
    w_hh (H, H), for dh_{t-1} = da_t W_hh (packed by the caller: a stack's backward
    packs each layer's once for both its recurrence and dx); act code; lengths (B,) as in
    the forward.
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _backward_chunk(da, dh0, dout, dh_n, out, w_hh_p, lengths, c * size,
                            min(B, (c + 1) * size), act)
    else:
        for c in prange(n_chunks(B, size)):
            _backward_chunk(da, dh0, dout, dh_n, out, w_hh_p, lengths, c * size,
                            min(B, (c + 1) * size), act)


@jit_calls_parallel
def elman_weight_grads(dx, dw_ih, dw_hh, db, da, x, h0, w_ih, out, serial):
    """The whole-sequence products of backward, each over all T*B rows at once.

    dx (T, B, I), dw_ih (H, I), dw_hh (H, H), db (H,) written; da (T, B, H) from the
    backward recurrence; x, h0, w_ih, out as in the forward.
    """
    T, B, I = x.shape
    H = h0.shape[1]
    TB = T * B
    da2 = da.reshape(TB, H)
    # a_t = W_ih x_t + ...       ->  dx_t = da_t W_ih
    par_matmul(dx.reshape(TB, I), da2, pack(w_ih), serial)
    # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh  ->  dW_ih = sum_t da_t^T x_t,
    # dW_hh = sum_t da_t^T h_{t-1} (h_{-1} = h0), db = sum over steps and batch of da_t
    db_hh = np.empty_like(db)  # equal to db for this cell
    linear_grads(dw_ih, dw_hh, db, db_hh, da2, da2, H, x.reshape(TB, I), h0,
                 out.reshape(TB, H)[: TB - B], serial)


# --------------------------------------------------------------------------------------
# backward: truncated BPTT(k)
#
# The gradient entering at step t (dout_t, plus dh_n at the row's last step) flows back
# through steps t, t-1, ..., t-k+1 only. At step s the live windows are those that
# entered at t = s..s+k-1; the window of age a = t - s carries g_a = dL_t/dh_s. The live
# windows are stacked in one (k, rows, H) array, so a step's recurrent product is one
# (ages*rows, H) x (H, H) product instead of k separate passes: O(T k) work in all.
#
# Stacks: a gradient reaching a lower layer at step s from the window that entered
# the top at t has already used t - s steps. So ``dout`` carries an age axis,
# dout[s, a] entering the window of age a, and the per-window pre-activation
# gradients can be written out by age (``da_ages``) to make the next layer's input.


@jit
def _truncated_chunk(da, da_ages, dh0, dout, dh_n, out, w_hh_p, lengths, r0, r1, act, k):
    T, B, H = out.shape
    R = r1 - r0
    g = np.empty((2, k, R, H), out.dtype)  # windows by age; g[p] at step s, g[1-p] at s-1
    g2 = g.reshape(2 * k * R, H)  # row (p*k + age)*R + r is g[p, age, r]
    pg, pd, po = _data(g), _data(da), _data(out)  # rows by offset, as in _backward_chunk
    p = 0
    n_prop = _int(0)  # (a literal 0 compiled window_entries once more)
    for t in range(T - 1, -1, -1):
        gs = g[p]
        n_live = window_entries(gs, dout, t, r0, r1, n_prop)
        for r in range(R):
            L = lengths[r0 + r]
            if t >= L:  # padding: no window carries anything here
                for age in range(n_live):
                    zero(gs[age, r])
                zero(da[t, r0 + r])
            else:
                if t == L - 1:
                    add_into(gs[0, r], dh_n[r0 + r])  # dh_n enters with the last step's window
                # h_t = act(a_t)  ->  e_a = g_a * act'(h_t) per live window;  da_t = sum_a e_a
                i = t * B + r0 + r  # row of da and out
                w = (p * k * R + r) * H  # g[p, 0, r]; g[p, age, r] is R * H further per age
                for age in range(n_live):
                    activation_backward_p(pg, w + age * R * H, pg, w + age * R * H, po, i * H, H,
                                          act)
                sum_windows_p(pd, i * H, pg, w, R * H, n_live, H)
            if da_ages.shape[0] > 0:
                for age in range(da_ages.shape[1]):
                    if age < n_live:
                        copy_into(da_ages[t, age, r0 + r], gs[age, r])
                    else:
                        zero(da_ages[t, age, r0 + r])
        if t == 0:
            # every live window reaches h0 within its k steps: dh0 = sum_a e_a W_hh
            matmul(dh0, r0, da.reshape(T * B, H), r0, R, w_hh_p, False)
            break
        # a_t = ... + W_hh h_{t-1}  ->  g_{a+1}(t-1) = e_a(t) W_hh;  age k-1 expires here
        n_prop = min(n_live, k - 1)
        if n_prop > 0:
            matmul(g2, ((1 - p) * k + 1) * R, g2, p * k * R, n_prop * R, w_hh_p, False)
        p = 1 - p


@jit_parallel
def elman_truncated_recurrence(da, da_ages, dh0, dout, dh_n, out, w_hh_p, act, k, lengths,
                               serial):
    """Backward through the recurrence with truncation to ``k`` steps (1 <= k < T).

    As ``elman_backward_recurrence``, except: dout (T, A, B, H), 1 <= A <= k, is the
    gradient entering at each step by age (A = 1: all of it enters fresh); da_ages
    (T, k, B, H) is written with the per-window dL/da_t by age (for the layer below
    in a stack), or pass a (0, k, B, H) array. For k >= T the result is full BPTT:
    call ``elman_backward_recurrence`` then, which is cheaper.
    """
    B = out.shape[1]
    size = batch_chunk(B, serial)
    if serial or n_chunks(B, size) == 1:
        for c in range(n_chunks(B, size)):
            _truncated_chunk(da, da_ages, dh0, dout, dh_n, out, w_hh_p, lengths, c * size,
                             min(B, (c + 1) * size), act, k)
    else:
        for c in prange(n_chunks(B, size)):
            _truncated_chunk(da, da_ages, dh0, dout, dh_n, out, w_hh_p, lengths, c * size,
                             min(B, (c + 1) * size), act, k)


@jit_calls_parallel
def elman_backward(dx, dh0, dw_ih, dw_hh, db, dout, dh_n, x, h0, w_ih, w_hh, out, act, k):
    """Whole backward pass: the gradient of ``sum(out * dout) + sum(h_n * dh_n)``.

    Parameters
    ----------
    dx : (T, B, I) array, written
    dh0 : (B, H) array, written
    dw_ih : (H, I) array, written
    dw_hh : (H, H) array, written
    db : (H,) array, written
        Gradient of ``b_ih`` (and, equally, of ``b_hh``).
    dout : (T, B, H) array
    dh_n : (B, H) array
        Gradient on the last state (zeros for none).
    x, h0, w_ih, w_hh : arrays
        As given to ``elman_forward``.
    out : (T, B, H) array
        As written by ``elman_forward``.
    act : int
        Activation code.
    k : int
        Truncation window; ``k <= 0`` or ``k >= T`` means full BPTT.
    """
    T, B, _ = x.shape
    da = np.empty_like(out)  # dL/da_t for every step
    lengths = np.full(B, T, np.int64)
    w_hh_p = pack(w_hh)
    if k <= 0 or k >= T:
        elman_backward_recurrence(da, dh0, dout, dh_n, out, w_hh_p, act, lengths, _bool(False))
    else:
        H = out.shape[2]
        elman_truncated_recurrence(da, np.empty((0, k, B, H), out.dtype), dh0,
                                   dout.reshape(T, 1, B, H), dh_n, out, w_hh_p, act, k, lengths,
                                   _bool(False))
    elman_weight_grads(dx, dw_ih, dw_hh, db, da, x, h0, w_ih, out, _bool(False))


# --------------------------------------------------------------------------------------
# one step, for a user's own @njit loop (simulations). Weights are transposed
# (``fastrnn.step_weights``): rows of W^T are contiguous, so a step's products are
# ``rowvec.vecmat`` (vectors of columns in registers). The arrays' rows must have unit
# stride (a row-strided slice of a larger buffer is fine). No allocation; h_out must not
# alias h.


@jit
def elman_step(h_out, x, h, w_ih_t, w_hh_t, b, act):
    """One step: ``h_out = act(x W_ih^T + h W_hh^T + b)``.

    h_out (B, H) written; x (B, I); h (B, H); w_ih_t (I, H) = W_ih^T; w_hh_t (H, H) =
    W_hh^T; b (H,) = b_ih + b_hh; act: TANH, RELU, SIGMOID or IDENTITY.
    """
    B, H = x.shape[0], h_out.shape[1]
    po, px, ph = _data(h_out), _data(x), _data(h)
    so = _row_stride(h_out)  # rows by offset: no views (see _forward_chunk)
    for r in range(B):
        zero_p(po, r * so, H)
    vecmat_rows(po, 0, so, px, 0, _row_stride(x), B, w_ih_t, True)
    vecmat_rows(po, 0, so, ph, 0, _row_stride(h), B, w_hh_t, True)
    for r in range(B):
        activate(po, r * so, _data(b), H, act)  # the bias last, as in the sequence kernels


@jit
def elman_step_backward(dx, dh, da, dw_ih_t, dw_hh_t, db, dh_out, x, h, h_out, w_ih_t, w_hh_t,
                        act):
    """Backward of ``elman_step`` from ``dh_out`` = dL/dh_out (B, H).

    dx (B, I), dh (B, H) written: dL/dx, dL/dh; da (B, H) written: dL/d(pre-activation);
    dw_ih_t (I, H), dw_hh_t (H, H), db (H,) accumulated (+=), so that a loop can sum
    them over steps; x, h, h_out, w_ih_t, w_hh_t, act as in the step.
    """
    for r in range(x.shape[0]):
        dar = da[r]
        activation_backward(dar, dh_out[r], h_out[r], act)  # h_out = act(a)
        vecmat_t(dx[r], w_ih_t, dar, _bool(False))  # a = x W_ih^T + h W_hh^T + b
        vecmat_t(dh[r], w_hh_t, dar, _bool(False))
        add_into(db, dar)
    outer_acc_rows(dw_ih_t, x, da)  # the rows' updates in row order, one pass over each
    outer_acc_rows(dw_hh_t, h, da)
