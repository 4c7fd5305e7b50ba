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
  next process. Numba's cache does not notice changes in *other* modules: a user's
  own cached ``@njit`` function that calls a fastrnn kernel keeps the old inlined
  code after a fastrnn upgrade until the user clears its cache.
"""

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


#: Decorator for kernels with ``prange`` loops (cacheable: they take no function arguments).
jit_parallel = numba.njit(parallel=True, **_FLAGS)

#: Options for ``numba.extending.overload`` implementations (compiled into their callers).
OVERLOAD_OPTIONS = dict(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
