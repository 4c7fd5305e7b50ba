"""``python -m fastrnn.bench``: compare fastrnn with NumPy, and PyTorch, JAX and ONNX Runtime
when installed, on the CPU."""

import argparse
import sys

from .frameworks import FRAMEWORKS
from .harness import run, worker_main
from .problems import CELLS, MODES, SIZES

DEFAULT_SIZES = ("tiny", "small")


def _choices(value, allowed, what):
    items = list(allowed) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or value!r}; choose from "
                                         f"{', '.join(allowed)} or 'all'")
    return items


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastrnn.bench", description=__doc__)
    ap.add_argument("--cells", default="all", help=f"comma list of {', '.join(CELLS)} or 'all'")
    ap.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                    help="comma list of " + ", ".join(f"{k} {v}" for k, v in SIZES.items())
                    + " (T, B, I, H), or 'all'")
    ap.add_argument("--modes", default="all", help="forward, train (forward+backward) or 'all'")
    ap.add_argument("--frameworks", default="all",
                    help=f"comma list of {', '.join(FRAMEWORKS)} (those installed) or 'all'")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every pool (Numba, BLAS, torch); default: all cores")
    ap.add_argument("--repeats", type=int, default=7, help="timed samples per case (median)")
    ap.add_argument("--json", default="bench-results/bench.json", help="where to write results")
    ap.add_argument("--plot", default="bench-results/bench.png",
                    help="where to write the plot (needs matplotlib); '' for none")
    ap.add_argument("--markdown", default="", help="also write the table as Markdown here")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n^3 GEMM peak probe")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one framework's process
    a = ap.parse_args(argv)
    if a.worker:
        worker_main(a.worker)
        return 0
    try:
        cells = _choices(a.cells, CELLS, "cell")
        sizes = _choices(a.sizes, SIZES, "size")
        modes = _choices(a.modes, MODES, "mode")
        fws = _choices(a.frameworks, FRAMEWORKS, "framework")
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if a.repeats < 1 or (a.threads is not None and a.threads < 1):
        ap.error("--repeats and --threads must be at least 1")
    if "fastrnn" not in fws:
        fws.insert(0, "fastrnn")
    run(cells, sizes, modes, fws, dtype=a.dtype, threads=a.threads, repeats=a.repeats,
        json_path=a.json or None, plot_path=a.plot or None, peak_size=a.peak_size,
        markdown_path=a.markdown or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
