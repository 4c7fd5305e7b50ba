"""The runnable examples under examples/ work."""

import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sine_tbptt_learns():
    losses = _load("sine_tbptt").train(iterations=200, log=None)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
