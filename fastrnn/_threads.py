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

_lock = threading.Lock()
_forked_from_gnu_openmp = False
_layer = None  # the layer, once Numba has started one (it never changes after that)
_parallel = None  # numba.np.ufunc.parallel, imported on first use


def threading_layer():
    """The layer Numba has started, or None before the first parallel region."""
    global _layer, _parallel
    if _layer is None:
        if _parallel is None:
            from numba.np.ufunc import parallel as _parallel
        # Numba's threading_layer() raises before the start (0.3 us per call, in every
        # call of a program that never starts the threads); its module variable does not
        _layer = getattr(_parallel, "_threading_layer", None)
        if _layer is None and not hasattr(_parallel, "_threading_layer"):  # pragma: no cover
            import numba

            try:
                _layer = numba.threading_layer()
            except ValueError:
                pass
    return _layer


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


class kernel_launch:
    """Wrap a group of kernel calls (``with kernel_launch() as serial:``): ``serial`` is
    the value to pass to their last argument. (A class, not a generator-based context
    manager: 0.4 us per call instead of 1.3, in every forward and backward.)"""

    __slots__ = ("_held",)

    def __enter__(self):
        self._held = None  # the lock this call holds
        if _forked_from_gnu_openmp:
            return True
        if threading_layer() in ("omp", "tbb"):
            return False
        # workqueue (or not started yet, and maybe workqueue): one parallel caller at a time
        lock = _lock
        if lock.acquire(blocking=False):
            self._held = lock
            return False
        return True

    def __exit__(self, *exc):
        if self._held is not None:
            self._held.release()
        return False
