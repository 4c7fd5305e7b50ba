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


def test_no_compiled_helper_is_called_with_a_literal():
    # Numba types a constant argument, or a global, as a literal of its value and compiles
    # the callee once more for each mix of literal values and plain types it meets (cold:
    # _transpose_into three times, ~1 s each); kernels pass tiles._int(0), _int(KC),
    # _bool(False). Checked: int and bool constants and module globals passed to a compiled
    # kernel function by name (inlined helpers and intrinsics compile nothing of their own).
    # Not checked: a variable first assigned a literal (n_prop in the truncated chunks).
    import importlib

    compiled = set()
    trees = {path: ast.parse(path.read_text()) for path in _sources("kernels")}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                    ast.unparse(d).split("(")[0] in ("jit", "jit_parallel", "jit_calls_parallel")
                    for d in node.decorator_list):
                compiled.add(node.name)
    assert {"_transpose_into", "_row", "linear_grads", "elman_recurrence"} <= compiled

    def literal(a, module, local):
        if isinstance(a, ast.UnaryOp) and isinstance(a.op, ast.USub):
            a = a.operand
        if isinstance(a, ast.Constant):
            return type(a.value) in (int, bool)
        return (isinstance(a, ast.Name) and a.id not in local
                and type(getattr(module, a.id, None)) in (int, bool))

    for path, tree in trees.items():
        module = importlib.import_module(f"fastrnn.kernels.{path.stem}")
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            local = {a.arg for a in fn.args.args} | {
                n.id for n in ast.walk(fn)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in compiled:
                    for a in node.args + [k.value for k in node.keywords]:
                        assert not literal(a, module, local), (
                            f"{path.name}:{node.lineno} passes {ast.unparse(a)} to "
                            f"{node.func.id}: wrap it in tiles._int or tiles._bool")
