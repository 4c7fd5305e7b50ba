"""Project rules that keep the layers honest."""

import ast
import pathlib

import fastrnn

ROOT = pathlib.Path(fastrnn.__file__).parent


def _sources(sub):
    return sorted((ROOT / sub).glob("*.py"))


def test_kernels_take_numba_flags_from_config_only():
    # no kernel hard-codes fastmath/cache/parallel: one place decides (_config.py)
    for path in _sources("kernels"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("fastmath", "cache", "parallel",
                                                              "error_model"):
                raise AssertionError(f"{path.name}:{node.value.lineno} sets {node.arg}=")
            if isinstance(node, ast.Attribute) and node.attr in ("njit", "jit"):
                raise AssertionError(f"{path.name}:{node.lineno} uses numba.{node.attr}")


def test_fastmath_keeps_nan_and_inf_meaningful():
    from fastrnn import _config

    assert not {"fast", "nnan", "ninf", "reassoc", "arcp", "afn"} & set(_config.FASTMATH)


def test_reference_never_imports_a_kernel_or_numba():
    for path in _sources("reference"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            for n in names:
                assert "kernels" not in n and "numba" not in n, (path.name, n)


def test_no_compiled_helper_is_called_with_an_int_literal():
    # Numba types a constant argument as a literal and compiles the callee once more for
    # each mix of literal and int arguments (cold: _transpose_into three times, ~1 s
    # each); kernels pass tiles._int(0). (Inlined helpers are exempt: no compile of their
    # own.) A variable first assigned a literal does the same: see n_prop in the
    # truncated chunks.
    compiled = set()
    trees = {path: ast.parse(path.read_text()) for path in _sources("kernels")}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                    ast.unparse(d).split("(")[0] in ("jit", "jit_parallel", "jit_calls_parallel")
                    for d in node.decorator_list):
                compiled.add(node.name)
    assert {"_transpose_into", "_row", "linear_grads"} <= compiled  # the scan sees them
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in compiled:
                for a in node.args:
                    if isinstance(a, ast.Constant) and type(a.value) is int:
                        raise AssertionError(f"{path.name}:{node.lineno} passes {a.value} to "
                                             f"{node.func.id}: pass _int({a.value})")
