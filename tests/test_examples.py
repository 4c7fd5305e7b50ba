"""The runnable examples under examples/ work."""

import importlib.util
import pathlib
import sys

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Numba's cache finds the module of a cached function by name
    spec.loader.exec_module(mod)
    return mod


def test_sine_tbptt_learns():
    losses = _load("sine_tbptt").train(iterations=200, log=None)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])


def test_reservoir_predicts_lorenz():
    nrmse, valid = _load("reservoir_lorenz").run(n_train=3000, n_test=1000, hidden=200, log=None)
    assert nrmse < 1e-3  # one step ahead
    assert valid > 100  # autonomous forecast steps within 0.4 normalised error


def test_pendulum_controller_learns():
    first, last, steps = _load("pendulum_controller").train(iterations=30, log=None)
    assert steps == 30 * 2 * 24 * 4 * 200
    assert last > first + 30
