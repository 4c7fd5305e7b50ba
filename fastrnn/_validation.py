"""Argument checking and conversion for the functional API (shared by every cell).

Every check raises ``ValueError`` (wrong shape, size or value) or ``TypeError`` (wrong
type or dtype) with a message that names the function, the argument, what was
expected and what was given. After these checks, arrays handed to a kernel are
C-contiguous, aligned, writeable (Numba compiles read-only or unaligned arrays as
separate types) and of the one working dtype: nothing unchecked reaches a kernel.
"""

import functools
import numbers

import numpy as np


def to_array(fn, name, value):
    """``value`` as an ndarray of a supported dtype (not yet cast to the working dtype).

    Accepts anything ``np.asarray`` turns into an array of bool, int or float16/32/64.
    Complex, object, string, datetime and extended-precision dtypes are refused.
    """
    if isinstance(value, np.ndarray):
        a = value
    else:
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{fn}: {name} must be an array of real numbers, "
                            f"got {type(value).__name__} that NumPy cannot convert ({e})") from None
    kind = a.dtype.kind
    if kind in "biu" or (kind == "f" and a.dtype.itemsize <= 8):
        return a
    if kind == "f":
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}; extended precision is not "
                        f"supported, cast to float64 first")
    raise TypeError(f"{fn}: {name} must have a real numeric dtype (float32, float64, int or "
                    f"bool), got {a.dtype}")


def _float_dtype(dtype):
    # bool and int compute in float64; float16 computes in float32
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.itemsize < 4:
        return np.dtype(np.float32)
    return np.dtype(dtype.type)  # native byte order


def working_dtype(*arrays):
    """The dtype every array is converted to: NumPy's promotion of the float dtypes of
    ``arrays`` (``None`` entries skipped), with int and bool counted as float64 and
    float16 as float32."""
    dtypes = {a.dtype for a in arrays if a is not None}
    if len(dtypes) == 1:  # the common case, cheaply: one dtype for everything
        return _float_dtype(dtypes.pop())
    return np.dtype(np.result_type(*[_float_dtype(d) for d in dtypes]).type)


def for_kernel(a, dtype):
    """``a`` as a C-contiguous, aligned, writeable array of ``dtype``; copies only if needed.

    The kernels only read their input arrays, but a read-only or unaligned array would
    make Numba compile a separate specialisation of every kernel.
    """
    if a.dtype == dtype and a.flags.carray:  # C-contiguous, aligned and writeable
        return a
    return np.array(a, dtype=dtype, order="C")


@functools.lru_cache(maxsize=None)
def _layout_ndim(layout):
    return len([axis for axis in layout.strip("()").split(",") if axis.strip()])


def check_ndim(fn, name, a, layout):
    """``a.ndim`` must equal the number of axes named in ``layout`` (e.g. ``"(T, B, I)"``)."""
    ndim = _layout_ndim(layout)
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dimensions {layout}, "
                         f"got {a.ndim} with shape {a.shape}")


def check_shape(fn, name, a, layout, expected):
    """``a.shape`` must equal ``expected``; ``layout`` names the axes (e.g. ``"(B, H)"``)."""
    check_ndim(fn, name, a, layout)
    if a.shape != tuple(expected):
        raise ValueError(f"{fn}: {name} must have shape {layout} = {tuple(expected)}, "
                         f"got {a.shape}")


def check_positive_size(fn, what, value, source):
    """A size read off an argument must be at least 1."""
    if value < 1:
        raise ValueError(f"{fn}: {what} must be at least 1, got {value} (from {source})")


def check_choice(fn, name, value, choices):
    """``value`` must be one of the strings in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{fn}: {name} must be a string, one of {sorted(choices)}, "
                        f"got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {sorted(choices)}, got {value!r}")


def check_flag(fn, name, value):
    """``value`` must be a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {type(value).__name__}")


def check_truncate(fn, truncate):
    """``truncate`` must be None or an integer >= 1 (bool refused); returns it as int."""
    if truncate is None:
        return None
    if isinstance(truncate, (bool, np.bool_)) or not isinstance(truncate, numbers.Integral):
        raise TypeError(f"{fn}: truncate must be None or an integer >= 1, "
                        f"got {type(truncate).__name__} {truncate!r}")
    if truncate < 1:
        raise ValueError(f"{fn}: truncate must be None or an integer >= 1, got {truncate}")
    return int(truncate)


def check_checkpoint(fn, checkpoint, T):
    """``checkpoint``: None, "sqrt" or an integer >= 1; returns the segment length in steps,
    0 for "keep every step" (None, or a segment as long as the sequence)."""
    if checkpoint is None:
        return 0
    if isinstance(checkpoint, str) and checkpoint == "sqrt":
        k = int(np.ceil(np.sqrt(T)))
    elif isinstance(checkpoint, (bool, np.bool_)) or not isinstance(checkpoint, numbers.Integral):
        raise TypeError(f"{fn}: checkpoint must be None, 'sqrt' or an integer >= 1, "
                        f"got {type(checkpoint).__name__} {checkpoint!r}")
    elif checkpoint < 1:
        raise ValueError(f"{fn}: checkpoint must be None, 'sqrt' or an integer >= 1, "
                         f"got {checkpoint}")
    else:
        k = int(checkpoint)
    return k if 1 <= k < T else 0


def check_lengths(fn, lengths, T, B):
    """``lengths``: None, or B integers in 1..T (one per sequence); returns an int64
    array (B,) or None."""
    if lengths is None:
        return None
    a = np.asarray(lengths)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: lengths must be integers (one per sequence), got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{fn}: lengths must have shape (B,) = ({B},), got {a.shape}")
    if B and (a.min() < 1 or a.max() > T):
        raise ValueError(f"{fn}: lengths must be in 1..T = 1..{T}, got values from {a.min()} "
                         f"to {a.max()}")
    return np.ascontiguousarray(a, dtype=np.int64)
