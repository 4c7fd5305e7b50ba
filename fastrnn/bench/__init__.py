"""Benchmarks: fastrnn against the NumPy reference and, when installed, PyTorch.

Run ``python -m fastrnn.bench --help``; ``fastrnn.bench.run(...)`` does the same
from Python and returns the report.
"""

from .harness import run
from .problems import CELLS, MODES, SIZES

__all__ = ["run", "CELLS", "MODES", "SIZES"]
