"""Keep BLAS single-threaded while fastrnn's own threads call it.

Kernels call SciPy's BLAS (``kernels/blas.py``) from inside their own parallel loops
(``prange``), each thread on its own chunk. If BLAS also ran its own threads, the two
thread pools would fight over the cores: OpenBLAS's idle workers spin after a call
and steal the cores Numba's threads need (measured: 3-4x slower on 2 cores). So
while a fastrnn call runs, SciPy's OpenBLAS is limited to one thread, and restored
afterwards: all parallelism inside fastrnn is its own.

The limit is process-wide for SciPy's OpenBLAS (NumPy's own BLAS is a separate library
and is never touched). It is reference-counted, so concurrent fastrnn calls from
several Python threads keep it until the last one leaves. When SciPy's BLAS is not an
OpenBLAS this module finds, nothing is changed (results are the same, only the two
thread pools may compete).
"""

import ctypes
import glob
import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_saved = None
_lib = None  # (get, set) ctypes functions, False when unavailable, None before lookup


def _find_openblas():
    import scipy

    root = os.path.dirname(os.path.dirname(scipy.__file__))
    candidates = (glob.glob(os.path.join(root, "scipy.libs", "*openblas*"))
                  + glob.glob(os.path.join(os.path.dirname(scipy.__file__), ".dylibs", "*openblas*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            get = getattr(lib, prefix + "_get_num_threads", None)
            set_ = getattr(lib, prefix + "_set_num_threads", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                get.argtypes = []
                set_.restype = None
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return False


def _functions():
    global _lib
    if _lib is None:
        try:
            _lib = _find_openblas()
        except Exception:  # an unusual SciPy build: leave BLAS alone
            _lib = False
    return _lib


@contextmanager
def single_threaded_blas(active=True):
    """Limit SciPy's OpenBLAS to one thread inside the block (no-op if ``not active``)."""
    global _users, _saved
    fns = _functions() if active else False
    if not fns:
        yield
        return
    get, set_ = fns
    with _lock:
        if _users == 0:
            _saved = get()
            if _saved != 1:
                set_(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved != 1:
                set_(_saved)
