"""Numba's on-disk cache cannot serve stale fastrnn kernels."""

import numpy as np

from fastrnn import _config
from fastrnn.kernels import lstm


def test_every_kernel_cache_key_covers_all_kernel_sources():
    assert _config.CACHE_FINGERPRINT_INSTALLED
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    loc = impl._locator_classes[0].from_function(lstm._cell_forward.py_func,
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
