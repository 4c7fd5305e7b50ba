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
