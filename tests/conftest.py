"""Shared helpers: random problems with contractive recurrences, dtype tolerances."""

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
NONLINEARITIES = ["tanh", "relu", "sigmoid", "identity"]

# (T, B, I, H): sizes of 1, odd sizes, batches below and above the hand-loop /
# BLAS threshold (4 rows) and batches split into several parallel chunks.
SHAPES = [
    (1, 1, 1, 1),
    (7, 1, 3, 5),
    (5, 3, 4, 6),
    (9, 5, 4, 7),
    (6, 70, 5, 4),
    (13, 33, 17, 31),
]


def rtol(dtype):
    """The numerical contract: float64 ~1e-12, float32 ~1e-5 relative."""
    return 1e-12 if np.dtype(dtype) == np.float64 else 1e-5


def assert_close(actual, expected, dtype, scale=1.0, what=""):
    """Elementwise |actual - expected| <= tol * (|expected| + max|expected|) * scale.

    Errors are measured relative to the array's magnitude: entries that are tiny
    because of cancellation carry the absolute rounding error of the whole sum.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (what, actual.dtype, dtype)
    tol = rtol(dtype) * scale
    mag = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(mag, 1e-30),
                               err_msg=what)


def make_elman(T, B, I, H, dtype=np.float64, seed=0, bias=True, radius=0.8):
    """Inputs of an Elman problem whose recurrence is contractive (spectral norm
    of w_hh = radius < 1), so rounding differences are not amplified."""
    rng = np.random.default_rng(seed)
    w_hh = rng.standard_normal((H, H))
    w_hh *= radius / max(np.linalg.norm(w_hh, 2), 1e-12)
    p = {
        "x": rng.standard_normal((T, B, I)),
        "h0": 0.5 * rng.standard_normal((B, H)),
        "w_ih": rng.standard_normal((H, I)) / np.sqrt(I),
        "w_hh": w_hh,
        "b_ih": 0.1 * rng.standard_normal(H) if bias else None,
        "b_hh": 0.1 * rng.standard_normal(H) if bias else None,
    }
    return {k: None if a is None else a.astype(dtype) for k, a in p.items()}


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return request.param
