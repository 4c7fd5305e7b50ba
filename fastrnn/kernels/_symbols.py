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

import inspect

from llvmlite import binding as llvm_binding
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._config import jit


def compiled_once(name, signatures):
    """Decorator: compile ``fn`` for ``signatures`` ({dtype: signature}, each
    returning void) under the symbols ``name.format(dtype)``; returns an intrinsic
    that calls the one for the dtype of its first argument (an array or a pointer; the
    other arguments are cast to that signature's types).
    The decorated function stays available as the intrinsic's ``compiled``."""

    def decorate(fn):
        compiled = jit(list(signatures.values()))(fn)
        if hasattr(compiled, "overloads"):  # (NUMBA_DISABLE_JIT: nothing is compiled)
            for dtype, sig in signatures.items():
                cres = compiled.overloads[sig.args]
                address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
                llvm_binding.add_symbol(name.format(dtype), address)

        def call(typingctx, *args):
            dtype = getattr(args[0], "dtype", None)
            if dtype not in signatures:
                return None
            sig = signatures[dtype]

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
        return call

    return decorate
