"""Numba's on-disk cache cannot serve stale fastrnn kernels."""

import os

import numpy as np
import pytest

from fastrnn import _config
from fastrnn.kernels import lstm


def test_every_kernel_cache_key_covers_all_kernel_sources():
    assert _config.CACHE_FINGERPRINT_INSTALLED
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    loc = impl._locator_classes[0].from_function(lstm._forward_chunk.py_func,
                                                 lstm.__file__)
    assert loc is not None
    stamp = loc.get_source_stamp()
    assert stamp[1] == _config._sources_fingerprint()
    # a function outside fastrnn keeps Numba's own locator
    assert impl._locator_classes[0].from_function(np.sum, np.__file__) is None


def test_fingerprint_changes_with_any_kernel_source(tmp_path, monkeypatch):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(_config._PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_config, "_PACKAGE", str(pkg))
    before = _config._sources_fingerprint()
    with open(pkg / "kernels" / "parallel.py", "a") as f:
        f.write("\n# an edit\n")
    assert _config._sources_fingerprint() != before


def _kernel_dispatchers():
    import importlib
    import pkgutil

    import numba.core.registry

    import fastrnn.kernels as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"fastrnn.kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__:
                yield module, name, obj


def test_no_cached_function_calls_a_parallel_kernel():
    """A cached function that calls a ``prange`` kernel names the callee's parallel region
    by a per-process hash; loading it in another process segfaulted. Such callers must
    use ``jit_calls_parallel`` (uncached) — checked on every kernel's source."""
    import numba.core.caching

    bad = []
    for module, name, disp in _kernel_dispatchers():
        cached = not isinstance(disp._cache, numba.core.caching.NullCache)
        callees = [vars(module).get(n) for n in disp.py_func.__code__.co_names]
        calls_parallel = [c.py_func.__name__ for c in callees
                          if getattr(c, "targetoptions", {}).get("parallel")]
        if cached and calls_parallel:
            bad.append((module.__name__, name, calls_parallel))
    assert not bad


_RUN_CELLS = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import fastrnn
assert fastrnn.__file__.startswith(sys.argv[1]), fastrnn.__file__
from tests.test_cache import kernel_cache_stats, run_every_cell
np.savez(sys.argv[2], *run_every_cell())
hits, misses = kernel_cache_stats()
print(hits, misses)
"""


def run_every_cell():
    """Every cell (f32/f64): forward, backward, truncated backward, streamed forward."""
    from tests.cells import CELLS

    results = []
    for name in ("rnn_tanh", "lstm", "lstm_proj", "gru"):
        for dtype in (np.float32, np.float64):
            cell = CELLS[name]
            p = cell.make(9, 70, 5, 4, dtype=dtype)
            out, fin, cache = cell.forward(p)
            rng = np.random.default_rng(1)
            dfin = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in fin.items()}
            grads = cell.backward(cache, rng.standard_normal(out.shape).astype(dtype), dfin)
            results += [out, *fin.values(), *(g for g in grads.values() if g is not None)]
            grads = cell.backward(cache, np.ones_like(out), dfin, truncate=3)
            results += [g for g in grads.values() if g is not None]
            results.append(cell.forward(p, cache=False)[0])
    return results


def kernel_cache_stats():
    """(signatures loaded from the on-disk cache, signatures compiled) over fastrnn's
    cached kernels in this process."""
    import numba.core.caching

    hits = misses = 0
    for _, _, disp in _kernel_dispatchers():
        if not isinstance(disp._cache, numba.core.caching.NullCache):
            hits += len(disp.stats.cache_hits)
            misses += len(disp.stats.cache_misses)
    return hits, misses


def test_caches_written_by_one_process_load_in_another(tmp_path):
    """Every cell (f32/f64, forward, backward, streamed) compiled here writes the on-disk
    cache (the rest of the suite reuses these compilations); a second process loads every
    kernel from it, compiles none, and gives the same results, without crashing."""
    import subprocess
    import sys

    here = run_every_cell()
    root = os.path.dirname(_config._PACKAGE)
    script = tmp_path / "run.py"
    script.write_text(_RUN_CELLS)
    npz = tmp_path / "loaded.npz"
    proc = subprocess.run([sys.executable, str(script), root, str(npz)], capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    hits, misses = map(int, proc.stdout.split()[-2:])
    assert hits > 0 and misses == 0, (hits, misses)
    loaded = np.load(npz)
    assert len(loaded.files) == len(here) > 0
    for i, key in enumerate(loaded.files):
        np.testing.assert_array_equal(loaded[key], here[i])


def test_each_copy_of_fastrnn_keys_its_own_cache(tmp_path, monkeypatch):
    """A second copy of the package imported in the same process (another checkout, a
    vendored copy) installs its own locator: with the first copy's only, its kernels
    would be keyed on their own file alone and load stale code after a helper changed."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    monkeypatch.setattr(impl, "_locator_classes", list(impl._locator_classes))
    assert _config._install_cache_fingerprint()
    assert len(impl._locator_classes) == len(set(impl._locator_classes))
    before = list(impl._locator_classes)
    assert _config._install_cache_fingerprint()  # this copy again: nothing added
    assert impl._locator_classes == before
    other = tmp_path / "other" / "fastrnn"
    (other / "kernels").mkdir(parents=True)
    (other / "_config.py").write_text("# another copy\n")
    source = other / "kernels" / "lstm.py"
    source.write_text("def f():\n    pass\n")
    monkeypatch.setattr(_config, "_PACKAGE", str(other))
    assert _config._install_cache_fingerprint()
    assert len(impl._locator_classes) == len(before) + 1
    namespace = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    loc = impl._locator_classes[0].from_function(namespace["f"], str(source))
    assert loc is not None and loc.get_source_stamp()[1] == _config._sources_fingerprint()


_COMPILED_ONCE = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import fastrnn
from fastrnn.kernels import grads, tiles

def compiled():
    return [sorted(str(args[0].dtype) for args in call.compiled.overloads)
            for call in (tiles._matmul_call, grads._grad_columns_call, grads._grad_rows_call)]

print(compiled())
x, w = np.ones((3, 1, 2), np.float32), np.ones((4, 2), np.float32)
fastrnn.elman_forward(x, None, w, np.ones((4, 4), np.float32))
print(compiled())
fastrnn.kernels.compile_shared()
print(compiled())
"""


@pytest.mark.slow
def test_shared_products_compile_per_dtype_on_first_use(tmp_path):
    """The functions compiled once and called by symbol (the product, the weight
    gradients' two forms) compile when a kernel for their dtype first needs them, not at
    import, or all at once with compile_shared(); a later process loads what the disk
    cache holds at import."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(_COMPILED_ONCE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    root = os.path.dirname(_config._PACKAGE)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script), root], capture_output=True,
                              text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(proc.stdout.split("\n")[:3])
    cold, warm = runs
    every = str([["float32", "float64"]] * 3)  # after compile_shared()
    assert cold == ["[[], [], []]", "[['float32'], [], []]", every]  # a float32 forward: its product
    assert warm == [every] * 3  # loaded at import


_FORWARD_BACKWARD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import fastrnn
assert fastrnn.__file__.startswith(sys.argv[1]), fastrnn.__file__
x, w = np.ones((3, 2, 2), np.float32), np.ones((4, 2), np.float32)
out, h_n, cache = fastrnn.elman_forward(x, None, w, np.ones((4, 4), np.float32))
if sys.argv[2] == "backward":
    fastrnn.elman_backward(cache, np.ones_like(out))
print("ok")
"""


@pytest.mark.slow
def test_cached_callers_find_the_shared_products_after_another_version_ran(tmp_path):
    """Numba keeps one source stamp per cache index: another version of the kernels
    (here: one source edited, then restored) replaces the product's cached entries but
    not those of kernels it did not run. The next process then loads such a kernel
    (the weight gradients' columns, which call the product by its symbol) from the
    cache: the product must be registered before (a missing symbol aborted it)."""
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "src" / "fastrnn"
    shutil.copytree(_config._PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "run.py"
    script.write_text(_FORWARD_BACKWARD)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    source = pkg / "kernels" / "parallel.py"
    original = source.read_text()

    def run(mode):
        proc = subprocess.run([sys.executable, str(script), str(pkg.parent), mode],
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", (mode, proc.returncode,
                                                                      proc.stderr[-3000:])

    run("backward")  # caches the product, the columns and the cell's kernels
    source.write_text(original + "\n# another version\n")
    run("forward")  # replaces the product's entries (and the forward's), not the columns'
    source.write_text(original)
    run("backward")
