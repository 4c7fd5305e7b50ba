"""pytest-benchmark suites: ``pytest benchmarks/ --benchmark-group-by=param``.

Options: ``--bench-sizes tiny,small`` (or ``all``), ``--bench-threads N``.
"""

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--bench-sizes", default="tiny,small",
                     help="comma list of fastrnn.bench.SIZES names, or 'all'")
    parser.addoption("--bench-threads", type=int, default=None,
                     help="threads for Numba, BLAS and torch (default: all cores)")


def pytest_configure(config):
    # torch's thread count must be set before Numba starts its OpenMP pool
    from fastrnn.bench.harness import set_threads

    config._fastrnn_limiter = set_threads(config.getoption("--bench-threads") or os.cpu_count())


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        from fastrnn.bench import CELLS, MODES, SIZES

        opt = metafunc.config.getoption("--bench-sizes")
        sizes = list(SIZES) if opt == "all" else opt.split(",")
        cases = [(c, s, m) for c in CELLS for s in sizes for m in MODES]
        metafunc.parametrize("case", cases, ids=["-".join(c) for c in cases])


@pytest.fixture
def problem(case):
    from fastrnn.bench import problems
    from fastrnn.bench.frameworks import reference_results

    cell, size, mode = case
    p = problems.make_problem(cell, size, "float32")
    return p, reference_results(cell, mode, p)
