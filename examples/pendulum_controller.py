"""An LSTM policy balancing an inverted pendulum: the LSTM step and the physics run
together in one @njit loop, for many episodes, and the policy is trained by evolution
strategies (each iteration evaluates dozens of perturbed policies on several episodes).

    python examples/pendulum_controller.py
"""

import numpy as np
from numba import njit

import fastrnn
from fastrnn.kernels import lstm_step

H = 16  # LSTM units
OBS = 3  # cos(theta), sin(theta), angular velocity


@njit(cache=True)
def episode_return(w_ih_t, w_hh_t, b, v, c, theta0, steps, dt):
    """One episode from angle theta0 (0 = upright): returns the summed reward
    cos(theta) - 0.01 u**2. The torque is u = 2 tanh(v . h + c) from the LSTM state h."""
    x = np.empty((1, OBS))
    h = np.zeros((1, H))
    cs = np.zeros((1, H))
    h2 = np.empty((1, H))
    c2 = np.empty((1, H))
    gates = np.empty((1, 4 * H))
    theta, omega, total = theta0, 0.0, 0.0
    for _ in range(steps):
        x[0, 0] = np.cos(theta)
        x[0, 1] = np.sin(theta)
        x[0, 2] = omega
        lstm_step(h2, c2, gates, x, h, cs, w_ih_t, w_hh_t, b, np.zeros((0, 0)))
        h[0] = h2[0]
        cs[0] = c2[0]
        u = 2.0 * np.tanh(np.dot(v, h[0]) + c)
        # inverted pendulum (g/l = 10), light damping, semi-implicit Euler
        omega += dt * (10.0 * np.sin(theta) - 0.1 * omega + u)
        theta += dt * omega
        total += np.cos(theta) - 0.01 * u * u
    return total


@njit(cache=True)
def mean_return(w_ih_t, w_hh_t, b, v, c, starts, steps, dt):
    total = 0.0
    for theta0 in starts:
        total += episode_return(w_ih_t, w_hh_t, b, v, c, theta0, steps, dt)
    return total / starts.shape[0]


def _unpack(theta):
    n1, n2, n3 = OBS * 4 * H, H * 4 * H, 4 * H
    w_ih_t = theta[:n1].reshape(OBS, 4 * H)
    w_hh_t = theta[n1:n1 + n2].reshape(H, 4 * H)
    b = theta[n1 + n2:n1 + n2 + n3]
    v = theta[n1 + n2 + n3:-1]
    return w_ih_t, w_hh_t, b, v, theta[-1]


def train(iterations=100, population=24, sigma=0.1, lr=0.05, episodes=4, steps=200, dt=0.05,
          seed=0, log=print):
    """Evolution strategies (antithetic, rank-normalised). Returns (initial mean return,
    final mean return, number of simulated steps)."""
    rng = np.random.default_rng(seed)
    # start from a random LSTM with PyTorch's initialisation, in the steps' layout
    lstm = fastrnn.LSTM(OBS, H, dtype=np.float64, seed=seed)
    w = fastrnn.step_weights_from(lstm)
    theta = np.concatenate([w.w_ih_t.ravel(), w.w_hh_t.ravel(), w.b,
                            rng.uniform(-0.25, 0.25, H), [0.0]])
    test_starts = rng.uniform(-0.5, 0.5, 16)

    def evaluate(th, starts):
        return mean_return(*(np.ascontiguousarray(a) for a in _unpack(th)[:4]), _unpack(th)[4],
                           starts, steps, dt)

    first = evaluate(theta, test_starts)
    n_steps = 0
    for it in range(iterations):
        starts = rng.uniform(-0.5, 0.5, episodes)
        eps = rng.standard_normal((population, theta.size))
        scores = np.empty(2 * population)
        for i in range(population):
            scores[2 * i] = evaluate(theta + sigma * eps[i], starts)
            scores[2 * i + 1] = evaluate(theta - sigma * eps[i], starts)
        n_steps += 2 * population * episodes * steps
        ranks = np.argsort(np.argsort(scores)) / (scores.size - 1) - 0.5
        grad = ((ranks[0::2] - ranks[1::2])[:, None] * eps).sum(axis=0) / (population * sigma)
        theta = theta + lr * grad
        if log and (it + 1) % 20 == 0:
            log(f"iteration {it + 1:3d}: mean return {evaluate(theta, test_starts):7.1f} "
                f"(best possible {steps})")
    last = evaluate(theta, test_starts)
    if log:
        log(f"random policy {first:.1f} -> trained {last:.1f}; {n_steps:,} LSTM + physics steps")
    return first, last, n_steps


if __name__ == "__main__":
    train()
