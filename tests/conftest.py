"""Shared helpers: random problems with contractive recurrences, dtype tolerances."""

import os

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


def _process_threads():
    """The CPUs this process may run on, and Numba's thread count once its threading
    layer has started (asking earlier would start it, ahead of torch's OpenMP pool)."""
    from numba.np.ufunc import parallel

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    threads = None
    if getattr(parallel, "_is_initialized", False):
        import numba

        threads = numba.get_num_threads()
    return cpus, threads


@pytest.fixture(autouse=True)
def _threads_left_as_found():
    # a test that pins the process (the bench's set_threads) or leaves Numba at another
    # thread count would run every later test on one core and skip their parallel paths.
    # The restore is partial (threads started while pinned keep their mask; torch's and
    # BLAS's thread counts are not checked): the failure is what counts
    before = _process_threads()
    yield
    after = _process_threads()
    import numba

    threads = before[1] if before[1] is not None else numba.config.NUMBA_NUM_THREADS
    if before[0] != after[0]:
        os.sched_setaffinity(0, before[0])
    if after[1] is not None and after[1] != threads:
        numba.set_num_threads(threads)
    assert after[0] == before[0], f"the test left the CPU affinity at {after[0]}"
    assert after[1] is None or after[1] == threads, \
        f"the test left Numba at {after[1]} threads (was {threads})"
