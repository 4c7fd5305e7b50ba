"""Side-by-side timings per case: one test function per framework, so that
``--benchmark-group-by=param`` puts every framework of a case in one table.

Each framework's result is checked against the float64 reference before it is timed.
Note: in one process, frameworks' idle thread pools can slow each other down on
machines with few cores; ``python -m fastrnn.bench`` runs each framework in its own
process and is the number to quote.
"""

import pytest

from fastrnn.bench.frameworks import FRAMEWORKS, Unsupported
from fastrnn.bench.problems import flops
from fastrnn.bench.harness import CHECK_TOL, check


def _bench(benchmark, name, case, problem):
    fw = FRAMEWORKS[name]
    if not fw.available():
        pytest.skip(f"{name} is not installed")
    p, expected = problem
    try:
        fn = fw.prepare(case[0], case[2], p)
    except Unsupported as e:
        pytest.skip(f"{name}: {e}")
    assert check(fn(), expected) <= CHECK_TOL["float32"]
    benchmark.extra_info["flops"] = flops(*case)
    benchmark(fn)


def test_fastrnn(benchmark, case, problem):
    _bench(benchmark, "fastrnn", case, problem)


def test_numpy(benchmark, case, problem):
    _bench(benchmark, "numpy", case, problem)


def test_torch(benchmark, case, problem):
    _bench(benchmark, "torch", case, problem)


def test_jax(benchmark, case, problem):
    _bench(benchmark, "jax", case, problem)


def test_onnxruntime(benchmark, case, problem):
    _bench(benchmark, "onnxruntime", case, problem)
