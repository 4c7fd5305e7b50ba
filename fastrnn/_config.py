"""One place for the Numba compilation flags of every fastrnn kernel.

Kernels never spell out ``fastmath=`` or other flags themselves; they use the
decorators defined here (a test enforces it).

- ``FASTMATH`` holds only flags that cannot change the meaning of NaN or inf and
  cannot reorder the range reductions of the activation functions: ``contract``
  (fused multiply-add) and ``nsz`` (ignore the sign of zero). No ``nnan``/``ninf``
  (NaN in must give NaN out), no ``reassoc`` (it would break Cody-Waite range
  reduction and make summation order depend on the compiler), no ``arcp``/``afn``.
- ``error_model="numpy"``: a division by zero gives inf/NaN instead of raising,
  which is what lets LLVM vectorise loops that divide.
- ``nogil=True``: kernels release the GIL, so Python threads can run them at once.
- ``cache=True``: compiled code is written next to the sources and reused by the
  next process. Numba keys each cached function on its own source file only, but a
  kernel's compiled code contains the code of every helper it calls, from other
  modules: after a change to a helper, such a kernel would load stale code (seen
  here: a segfault). So every fastrnn kernel's cache key also includes a hash of all
  of fastrnn's kernel sources (``_install_cache_fingerprint``): any change to any of
  them recompiles everything. A user's own cached ``@njit`` function that calls a
  fastrnn kernel is keyed on the user's source only: clear its cache after upgrading.
"""

import hashlib
import os

import numba

FASTMATH = frozenset({"contract", "nsz"})

_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath=set(FASTMATH))


def jit(fn_or_signatures=None):
    """Decorator for serial kernels and helpers: ``@jit`` (compiled lazily for the
    types it is called with) or ``@jit(signatures)`` (compiled eagerly, only those)."""
    if callable(fn_or_signatures):
        return numba.njit(**_FLAGS)(fn_or_signatures)
    if fn_or_signatures is None:
        return numba.njit(**_FLAGS)
    return numba.njit(fn_or_signatures, **_FLAGS)


#: Decorator for small helpers that take arrays and run once per step: inlined into the
#: caller (Numba IR) so that no array crosses a call. A compiled function takes a
#: reference to each array argument on entry and drops it on exit, atomic counts that
#: cost about 10 ns each; Numba's pruning pass leaves them in branchy functions.
jit_inline = numba.njit(inline="always", **_FLAGS)

#: Decorator for kernels with ``prange`` loops (cacheable: they take no function arguments).
jit_parallel = numba.njit(parallel=True, **_FLAGS)

#: Decorator for functions that call a ``prange`` kernel. Never cached: a cached
#: function that calls a parallel one refers to the callee's parallel-region function by
#: a name Numba derives from an object hash, which another process's compilation can
#: give to different code; loading such a cache segfaulted here. So only the parallel
#: kernels themselves (and what they call) are cached, and fastrnn's own Python code
#: calls the parallel kernels directly.
jit_calls_parallel = numba.njit(**dict(_FLAGS, cache=False))

#: Options for ``numba.extending.overload`` implementations (compiled into their callers).
OVERLOAD_OPTIONS = dict(nogil=True, error_model="numpy", fastmath=set(FASTMATH))


# --------------------------------------------------------------------------------------
# cache keys that cover every kernel source

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _sources_fingerprint():
    h = hashlib.sha256()
    files = [os.path.join(_PACKAGE, "_config.py")]
    kernels = os.path.join(_PACKAGE, "kernels")
    files += sorted(os.path.join(kernels, f) for f in os.listdir(kernels) if f.endswith(".py"))
    for path in files:
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read())
    return h.hexdigest()


def _install_cache_fingerprint():
    """Make Numba's cache key of every function defined in fastrnn include the hash of
    all kernel sources. Uses Numba's cache-locator hook (an internal API): if it is
    missing, caching keeps Numba's default per-file keys."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover
        return False
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    base = getattr(caching, "_CacheLocator", None)
    if impl is None or base is None or not isinstance(getattr(impl, "_locator_classes", None),
                                                      list):
        return False
    if any(getattr(c, "_fastrnn", None) == _PACKAGE for c in impl._locator_classes):
        return True
    fingerprint = _sources_fingerprint()
    defaults = list(impl._locator_classes)

    class FastRNNLocator(base):
        """Numba's own locator for the file, with the sources' hash in the stamp."""

        _fastrnn = _PACKAGE  # one locator per copy of fastrnn imported

        def __init__(self, inner):
            self._inner = inner
            # Numba's "cannot cache" warning names the locator's file (it crashed
            # with an AttributeError without it)
            self._py_file = getattr(inner, "_py_file", "")

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), fingerprint)

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
                return None
            for locator in defaults:
                inner = locator.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
            return None

    impl._locator_classes.insert(0, FastRNNLocator)
    return True


CACHE_FINGERPRINT_INSTALLED = _install_cache_fingerprint()
