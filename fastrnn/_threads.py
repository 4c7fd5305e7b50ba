"""When fastrnn's kernels may start a parallel region, and when they run serially.

Numba runs ``prange`` loops on one process-wide threading layer (the first available of
TBB, OpenMP, workqueue, unless ``NUMBA_THREADING_LAYER`` says otherwise):

- TBB and OpenMP accept parallel launches from several Python threads at once.
- workqueue does not: a second concurrent launch aborts the process. fastrnn therefore
  lets one call at a time launch there; a call that finds another one running runs its
  kernels serially instead (the same chunks on the calling thread).
- GNU OpenMP does not survive ``fork``: a child of a process that used it aborts on its
  first parallel launch. In such a child fastrnn runs every kernel serially.

Serial and parallel runs give bit-identical results (``kernels/parallel.py``), so none of this
changes a number, only how many cores a call uses. The threading layer itself is
Numba's choice and the user's (``NUMBA_THREADING_LAYER``); fastrnn never changes it.
"""

import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_forked_from_gnu_openmp = False


def threading_layer():
    """The layer Numba has started, or None before the first parallel region."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _gnu_openmp():
    try:
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except ImportError:  # pragma: no cover
        return True


def _after_fork_in_child():
    global _lock, _forked_from_gnu_openmp
    _lock = threading.Lock()  # a lock held by another thread at fork time would never open
    if threading_layer() == "omp" and _gnu_openmp():
        _forked_from_gnu_openmp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def kernel_launch():
    """Wrap a group of kernel calls: yields ``serial``, the value to pass to their last
    argument."""
    if _forked_from_gnu_openmp:
        yield True
        return
    if threading_layer() in ("omp", "tbb"):
        yield False
        return
    # workqueue (or not started yet, and maybe workqueue): one parallel caller at a time
    if _lock.acquire(blocking=False):
        try:
            yield False
        finally:
            _lock.release()
    else:
        yield True
