"""Echo-state network: a fixed random tanh reservoir driven by the Lorenz system, both
stepped inside one @njit loop, and a linear read-out fitted by ridge regression that
predicts the Lorenz state one step ahead.

    python examples/reservoir_lorenz.py
"""

import numpy as np
import scipy.linalg
from numba import njit

import fastrnn
from fastrnn.kernels import TANH, elman_step


@njit(cache=True)
def _lorenz_rhs(s, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    return np.array([sigma * (s[1] - s[0]), s[0] * (rho - s[2]) - s[1], s[0] * s[1] - beta * s[2]])


@njit(cache=True)
def simulate(n, dt, s0, w_ih_t, w_hh_t, b, scale):
    """Integrate Lorenz (RK4) and drive the reservoir with it, n steps.

    Returns the Lorenz states (n + 1, 3) and the reservoir states (n, H) after each
    input. Reservoir buffers are allocated once; each step is one ``elman_step``.
    """
    H = w_hh_t.shape[0]
    traj = np.empty((n + 1, 3))
    states = np.empty((n, H))
    x = np.empty((1, 3))
    h = np.zeros((1, H))
    h_next = np.empty((1, H))
    s = s0.copy()
    traj[0] = s
    for t in range(n):
        x[0] = s * scale  # the reservoir sees the current state
        elman_step(h_next, x, h, w_ih_t, w_hh_t, b, TANH)
        h[0] = h_next[0]
        states[t] = h[0]
        k1 = _lorenz_rhs(s)
        k2 = _lorenz_rhs(s + 0.5 * dt * k1)
        k3 = _lorenz_rhs(s + 0.5 * dt * k2)
        k4 = _lorenz_rhs(s + dt * k3)
        s = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        traj[t + 1] = s
    return traj, states


@njit(cache=True)
def free_run(n, h0, s0, w_ih_t, w_hh_t, b, scale, w_out):
    """Autonomous forecast: the reservoir is fed its own read-out, n steps from state h0
    with last input s0. Returns the predicted trajectory (n, 3)."""
    H = w_hh_t.shape[0]
    out = np.empty((n, 3))
    x = np.empty((1, 3))
    h = h0.reshape(1, H).copy()
    h_next = np.empty((1, H))
    s = s0.copy()
    for t in range(n):
        x[0] = s * scale
        elman_step(h_next, x, h, w_ih_t, w_hh_t, b, TANH)
        h[0] = h_next[0]
        s = w_out[:H].T @ h[0] + w_out[H]
        out[t] = s
    return out


def run(n_train=6000, n_test=2000, washout=200, hidden=300, dt=0.02, ridge=1e-6, seed=0,
        log=print):
    """Fit the read-out on the first ``n_train`` steps, test on the next ``n_test``.

    Returns (NRMSE of the one-step-ahead prediction on the test steps, the number of
    steps an autonomous forecast from the end of the test stays within 0.4 normalised
    error).
    """
    rng = np.random.default_rng(seed)
    w_hh = rng.standard_normal((hidden, hidden)) * (rng.random((hidden, hidden)) < 0.05)
    w_hh *= 0.9 / np.max(np.abs(np.linalg.eigvals(w_hh)))  # spectral radius 0.9
    w_ih = rng.uniform(-0.5, 0.5, (hidden, 3))
    b = rng.uniform(-0.2, 0.2, hidden)
    w = fastrnn.step_weights(w_ih, w_hh, b, np.zeros(hidden))  # transposed, for the steps

    n = n_train + n_test
    traj, states = simulate(n, dt, np.array([1.0, 1.0, 1.0]), w.w_ih_t, w.w_hh_t, w.b, 1 / 20)
    target = traj[1:]  # predict the next state from the reservoir state
    feats = np.hstack([states, np.ones((n, 1))])
    tr = slice(washout, n_train)
    a = feats[tr]
    w_out = scipy.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ target[tr],
                               assume_a="pos")
    pred = feats[n_train:] @ w_out
    err = pred - target[n_train:]
    nrmse = float(np.sqrt(np.mean(err ** 2)) / np.std(target[n_train:]))
    # forecast beyond the data: continue the true system for reference
    horizon = 1000
    truth, _ = simulate(horizon, dt, traj[-1], w.w_ih_t, w.w_hh_t, w.b, 1 / 20)
    fc = free_run(horizon, states[-1], traj[-1], w.w_ih_t, w.w_hh_t, w.b, 1 / 20, w_out)
    norm_err = np.linalg.norm(fc - truth[1:], axis=1) / np.sqrt(np.mean(np.sum(
        (traj - traj.mean(0)) ** 2, axis=1)))
    valid = int(np.argmax(norm_err > 0.4)) if np.any(norm_err > 0.4) else horizon
    if log:
        log(f"reservoir H={hidden}, {n} driven steps; one-step prediction NRMSE on {n_test} "
            f"test steps: {nrmse:.2e}; autonomous forecast valid for {valid} steps "
            f"({valid * dt * 0.906:.1f} Lyapunov times)")
    return nrmse, valid


if __name__ == "__main__":
    run()
