"""Functions compiled once and called by name: large helpers many kernels share.

A Numba function called by another is linked into the caller's code and optimized
and compiled again there, and a parallel kernel is five such modules (the kernel, its
loop body and two wrappers of it, each linking all it calls): a helper of a few
thousand lines of LLVM IR then costs seconds of compilation in every kernel that
calls it (the tiles' product: a cell's forward 6-12 s cold with it linked in, 3-7 s
without; the weight gradients: 14 s against 3.4 s compiled once, measured).

``compiled_once`` compiles a function eagerly, one signature per dtype, and
registers each compiled function's address under a fixed symbol, where the JIT
resolves callers' references to it (from the cache too: code loaded later is linked
then). Its caller, an intrinsic, emits a call by that symbol with Numba's calling
convention and nothing of the callee's code. The status the callee returns is
ignored, so such a function must not raise (no allocation, no checked errors).

The symbols carry a version, bumped when a signature changes (not the sources' hash:
a user's own cached function that calls a fastrnn kernel would then fail to load after
an upgrade). Two copies of fastrnn imported in one process share the functions of the
one imported last.
"""

import functools
import inspect
import os

from llvmlite import binding as llvm_binding
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit


#: For ``compile_shared``: a function per (compiled-once function, dtype) registering it.
_REGISTERS = []


def compile_shared():
    """Compile (or load from the disk cache) every function that fastrnn's kernels call
    by symbol, for both dtypes, and register the symbols.

    fastrnn's own calls need not: a kernel compiled for a dtype registers what it calls
    then, and what the cache holds is registered at import. A cached ``@njit`` function
    of yours that calls fastrnn's whole-sequence kernels is loaded without that: call
    this once after ``import fastrnn`` and before it, or a fresh fastrnn cache leaves
    its symbols unresolved (the process aborts). The step kernels need nothing."""
    for register in _REGISTERS:
        register()


def compiled_once(name, signatures):
    """Decorator: compile ``fn`` for ``signatures`` ({dtype: signature}, each
    returning void) under the symbols ``name.format(dtype)``; returns an intrinsic
    that calls the one for the dtype of its first argument (an array or a pointer; the
    other arguments are cast to that signature's types).
    The decorated function stays available as the intrinsic's ``compiled``.

    Each dtype's function is compiled when a caller for that dtype is first compiled
    (the intrinsic's typing), not at import: a process that runs only float32
    forwards compiles nothing else (the four such functions took 4.4 s of a cold
    import). At import, what the disk cache holds for this version of the sources is
    loaded: a caller loaded from the cache is linked against the symbol without being
    typed. Numba keeps one source stamp per cache index, so another version's run
    (another checkout) replaces the index of ``fn`` but not those of callers it did not
    compile, which may refer to any dtype: an index of another version registers every
    dtype (a missing symbol aborts the process), and the index written then holds them
    all for the next switch back.
    """

    def decorate(fn):
        compiled = jit(fn)
        registered = set()

        def register(dtype):
            # compile (or load) the function for dtype and publish its address
            if dtype in registered or not hasattr(compiled, "overloads"):
                return  # (NUMBA_DISABLE_JIT: nothing is compiled)
            args = signatures[dtype].args
            compiled.compile(args)
            cres = compiled.overloads[args]
            address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            llvm_binding.add_symbol(name.format(dtype), address)
            registered.add(dtype)

        state = _disk_state(compiled)
        for dtype in signatures:
            if state is False or state and _in_disk_cache(compiled, signatures[dtype].args):
                register(dtype)

        def call(typingctx, *args):
            dtype = getattr(args[0], "dtype", None)
            if dtype not in signatures:
                return None
            sig = signatures[dtype]
            register(dtype)

            def codegen(context, builder, sig_, args):
                fnty = context.call_conv.get_function_type(types.void, sig.args)
                fn_ = cgutils.get_or_insert_function(builder.module, fnty, name.format(dtype))
                context.call_conv.call_function(builder, fn_, types.void, sig.args, args)
                return context.get_dummy_value()

            return sig, codegen

        # the parameters Numba folds the call's arguments into: fn's own
        params = [inspect.Parameter("typingctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        call.__signature__ = inspect.Signature(
            params + list(inspect.signature(fn).parameters.values()))
        call = intrinsic(call)
        call.compiled = compiled
        _REGISTERS.extend(functools.partial(register, dtype) for dtype in signatures)
        return call

    return decorate


def _disk_state(dispatcher):
    """None: no cache index of ``dispatcher`` on disk; True: an index of this version of
    the sources; False: of another version (or unknown Numba internals)."""
    try:
        cache_file = dispatcher._cache._cache_file
        if not os.path.exists(cache_file._index_path):
            return None
        return bool(cache_file._load_index())  # (empty: another version's stamp)
    except Exception:
        return False


def _in_disk_cache(dispatcher, args):
    """Whether the on-disk cache holds ``dispatcher`` compiled for ``args`` (compiling
    it then only loads it)."""
    try:
        return dispatcher._cache.load_overload(args, dispatcher.targetctx) is not None
    except Exception:
        return True
