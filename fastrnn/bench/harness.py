"""The comparison harness behind ``python -m fastrnn.bench``.

Each framework runs in its own process: PyTorch, Numba and OpenBLAS each keep a pool
of threads that spin for a while after a parallel region, and on a machine with few
cores one framework's idle pool slows the next one down (measured here: torch 2x
slower after fastrnn had run in the same process, and fastrnn 1.8x slower after
torch). The processes start one after another; each, for every (cell, size, mode),
builds the problem, runs it once and checks the results against the float64 NumPy
reference (a framework that disagrees is reported and not timed), and records that
first call's time apart (it includes compilation). Then the timing runs in rounds
(``ROUNDS``): in each, case by case, every framework in turn takes its share of the
``repeats`` samples after a warm-up call, so that a drift of the machine's speed
during the run reaches all frameworks alike. A row's median is over all its samples.
Results go to a table, a JSON file and, with matplotlib installed, a PNG.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import problems
from .frameworks import FRAMEWORKS, Unsupported, reference_results
from .report import format_summary, format_table, markdown, plot, summarize

#: relative error allowed against the float64 reference, per dtype
CHECK_TOL = {"float32": 1e-3, "float64": 1e-9}


# --------------------------------------------------------------------------------------
# machine


def set_threads(n):
    """Pin this process to ``n`` CPUs, and torch, Numba and BLAS (all libraries
    threadpoolctl finds) to ``n`` threads.

    The CPU affinity bounds what no thread setting reaches: XLA's CPU client ignores
    ``intra_op_parallelism_threads`` and sizes its pool by the affinity mask (JAX 0.10
    ran the deepbench forward on 2 cores with the flag, 1.9x the wall time in CPU time).
    torch first: ``torch.set_num_threads`` called after Numba's OpenMP pool has started
    made torch 60x slower here (two OpenMP runtimes in one process).
    Returns the threadpoolctl limiter to keep alive (None without threadpoolctl).
    """
    if hasattr(os, "sched_setaffinity"):  # Linux; children inherit the mask
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            os.sched_setaffinity(0, cpus[:n])
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    limiter = None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(n)
    except ImportError:
        pass
    return limiter


def blas_info():
    """The BLAS libraries loaded in this process (threadpoolctl's view)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "install threadpoolctl to see which BLAS ran"}]
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer",
            "num_threads", "filepath")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


def machine_info(threads):
    import numba

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "avx512f": " avx512f" in flags,
        "avx2": " avx2" in flags,
        "cores": os.cpu_count(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OPENBLAS_NUM_THREADS") if k in os.environ},
    }


def gemm_peak(dtype, n=2048, repeats=3):
    """Best GFLOP/s of NumPy's ``n x n x n`` matrix product: this machine's GEMM peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------
# measuring


def check(results, expected):
    """Largest relative error of any result array against the float64 reference."""
    worst = 0.0
    for name, want in expected.items():
        got = np.asarray(results[name], dtype=np.float64)
        scale = max(float(np.max(np.abs(want))), 1e-30)
        err = float(np.max(np.abs(got - want))) / scale
        worst = max(worst, err if np.isfinite(err) else np.inf)
    return worst


def measure(fn, repeats, min_sample=0.02, inner=None):
    """Median seconds per call: ``repeats`` samples, each of ``inner`` calls (None: one
    warm-up call, then as many calls as take ``min_sample`` seconds)."""
    if inner is None:
        one = _timed(fn)  # warm-up
        inner = max(1, int(min_sample / max(one, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples), samples


class Worker:
    """One framework's cases, prepared and checked once, then timed on request.

    ``prepare()`` builds every case's problem, runs it once (the first call's time,
    compilation included, is recorded apart), checks the results against the float64
    NumPy reference (a framework that disagrees is reported and not timed) and
    returns the rows; ``time(i, samples)`` adds timed samples to case i's row.
    """

    def __init__(self, name, cases, dtype, threads, peak):
        if name == "jax" and threads == 1:  # XLA reads its flags when jax is first imported
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                                       "=false intra_op_parallelism_threads=1").strip()
        import fastrnn  # noqa: F401  (imported before the threads start, as in run())

        self.limiter = set_threads(threads)  # before any framework's pool starts
        FRAMEWORKS["onnxruntime"].threads = threads
        self.name, self.cases, self.dtype, self.peak = name, cases, dtype, peak
        self.fns = {}  # case index -> the prepared call, for the cases that passed the check
        self.inner = {}  # case index -> calls per sample (fixed at the first timing)
        self.rows = []

    def prepare(self):
        problems_ = {c: problems.make_problem(c[0], c[1], self.dtype) for c in self.cases}
        expected = {c: reference_results(c[0], c[2], problems_[c]) for c in self.cases}
        time.sleep(0.3)  # let the reference's BLAS threads go idle before timing
        fw = FRAMEWORKS[self.name]
        for i, (cell, size, mode) in enumerate(self.cases):
            row = {"cell": cell, "size": size, "shape": problems.shape(cell, size),
                   "mode": mode, "dtype": np.dtype(self.dtype).name, "framework": self.name}
            self.rows.append(row)
            p = problems_[(cell, size, mode)]
            try:
                t0 = time.perf_counter()
                fn = fw.prepare(cell, mode, p)
                res = fn()
                row["first_call_s"] = time.perf_counter() - t0
            except Unsupported as e:
                row.update(ok=None, error=f"n/a: {e}")
                continue
            except Exception as e:  # a framework that cannot run this case is reported
                row.update(ok=False, error=f"{type(e).__name__}: {e}")
                continue
            row["check_error"] = check(res, expected[(cell, size, mode)])
            row["ok"] = row["check_error"] <= CHECK_TOL[row["dtype"]]
            if row["ok"]:
                self.fns[i] = fn
                row.update(samples_s=[], cpu_s=0.0, wall_s=0.0)
        return self.rows

    def time(self, i, samples, min_sample=0.02):
        """``samples`` more timed samples of case i (after one warm-up call); returns
        its row with the median of all its samples so far."""
        fn, row = self.fns[i], self.rows[i]
        one = _timed(fn)  # warm-up: another process may have run since this case last did
        if i not in self.inner:
            self.inner[i] = max(1, int(min_sample / max(one, 1e-9)))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        _, new = measure(fn, samples, inner=self.inner[i])
        # the cores the framework kept busy (CPU time over wall time), to show that the
        # thread settings held
        row["cpu_s"] += time.process_time() - cpu1
        row["wall_s"] += time.perf_counter() - wall1
        row["samples_s"].extend(new)
        med = statistics.median(row["samples_s"])
        fl = problems.flops(row["cell"], row["size"], row["mode"])
        row.update(median_s=med, cores=row["cpu_s"] / row["wall_s"], gflops=fl / med / 1e9,
                   peak_fraction=fl / med / 1e9 / self.peak if self.peak else None)
        return row


def run_framework(name, cases, dtype, threads, repeats, peak):
    """Check and time one framework on every case, in this process, case after case."""
    w = Worker(name, cases, dtype, threads, peak)
    w.prepare()
    for i in w.fns:
        w.time(i, repeats)
    return w.rows


#: Each case's samples are taken in this many rounds (fewer when --repeats is smaller),
#: the frameworks in turn within a round: a machine whose speed drifts over minutes
#: (shared, thermal) then slows every framework alike instead of the one that happened
#: to run at the time.
ROUNDS = 3

_REPLY = "@@fastrnn-bench "  # prefix of the worker's replies (libraries may print too)


def rounds(repeats, n_rounds=ROUNDS):
    """Samples per round: ``repeats`` split as evenly as possible, the larger first."""
    n = max(1, min(repeats, n_rounds))
    return [repeats // n + (r < repeats % n) for r in range(n)]


def schedule(n_cases, frameworks, repeats):
    """(round, case, framework, samples) in the order they run: round by round, case by
    case, the frameworks in turn, each round starting with a different framework."""
    order = []
    for r, samples in enumerate(rounds(repeats)):
        turn = [frameworks[(r + k) % len(frameworks)] for k in range(len(frameworks))]
        order.extend((r, i, fw, samples) for i in range(n_cases) for fw in turn)
    return order


def worker_main(spec):
    """Entry point of ``python -m fastrnn.bench --worker SPEC``: prepares and checks the
    cases, replies with the rows, then times what each line of stdin asks for
    ({"case": i, "samples": n}) until stdin closes; one JSON reply line per request."""
    a = json.loads(spec)
    w = Worker(a["framework"], [tuple(c) for c in a["cases"]], a["dtype"], a["threads"],
               a["peak"])
    _reply(w.prepare())
    for line in sys.stdin:
        req = json.loads(line)
        _reply(w.time(req["case"], req["samples"]))


def _reply(obj):
    sys.stdout.write(_REPLY + json.dumps(obj, default=float) + "\n")
    sys.stdout.flush()


class _WorkerProcess:
    """The coordinator's end of a worker: ``python -m fastrnn.bench --worker``."""

    def __init__(self, name, cases, dtype, threads, peak):
        self.name, self.cases, self.dtype = name, cases, dtype
        spec = json.dumps({"framework": name, "cases": cases, "dtype": dtype, "threads": threads,
                           "peak": peak})
        self.err = tempfile.TemporaryFile(mode="w+")  # a pipe left unread could fill up
        self.proc = subprocess.Popen([sys.executable, "-m", "fastrnn.bench", "--worker", spec],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        self.rows = None
        self.error = None

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])
        self.proc.wait()
        self.err.seek(0)
        lines = self.err.read().strip().splitlines() or ["no output"]
        raise RuntimeError(f"worker failed: {lines[-1]}")

    def prepare(self):
        try:
            self.rows = self._read()
        except RuntimeError as e:
            self.fail(str(e))
        return self.rows

    def time(self, i, samples):
        if self.error is not None:
            return
        try:
            self.proc.stdin.write(json.dumps({"case": i, "samples": samples}) + "\n")
            self.proc.stdin.flush()
            self.rows[i] = self._read()
        except (RuntimeError, OSError) as e:
            self.fail(e if isinstance(e, RuntimeError) else f"worker failed: {e}")

    def timed(self, i):
        return self.error is None and bool(self.rows[i].get("ok"))

    def fail(self, error):
        """Report every case of a worker that died as failed (and stop it)."""
        self.error = str(error)
        self.rows = [{"cell": c, "size": s, "shape": problems.shape(c, s), "mode": m,
                      "dtype": self.dtype, "framework": self.name, "ok": False,
                      "error": self.error} for c, s, m in self.cases]
        self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.err.close()


def run(cells, sizes, modes, frameworks, dtype="float32", threads=None, repeats=7,
        json_path=None, plot_path=None, peak_size=2048, log=print, markdown_path=None):
    """Run the comparison; returns the JSON-able report."""
    threads = threads or os.cpu_count()
    frameworks = [f for f in frameworks if FRAMEWORKS[f].available()]
    limiter = set_threads(threads)  # noqa: F841 (keeps the BLAS limits alive)
    info = machine_info(threads)
    info["blas"] = blas_info()
    peak = gemm_peak(dtype, peak_size)
    probes = [peak]
    log(f"fastrnn benchmark: {info['cpu']} ({'AVX-512' if info['avx512f'] else 'AVX2' if info['avx2'] else 'no AVX2'}), "
        f"{threads} thread(s), {dtype}, frameworks: {', '.join(frameworks)}")
    for lib in info["blas"]:
        if "filepath" in lib:
            log(f"BLAS: {lib['internal_api']} {lib['version']} ({lib['architecture']}, "
                f"{lib['threading_layer']}, {lib['num_threads']} threads) {lib['filepath']}")
    if info["openblas_env"]:
        log(f"warning: OpenBLAS environment set for this run: {info['openblas_env']}")
    log(f"GEMM peak ({peak_size}^3 NumPy matmul), first probe: {peak:.1f} GFLOP/s\n")
    cases = [(c, s, m) for c in cells for s in sizes for m in modes]
    workers = {}
    try:
        for name in frameworks:  # one at a time: the first calls (compilation) alone
            log(f"preparing {name} ...")
            workers[name] = _WorkerProcess(name, cases, dtype, threads, peak)
            workers[name].prepare()
        n_rounds, last = len(rounds(repeats)), None
        for r, i, name, samples in schedule(len(cases), frameworks, repeats):
            if r != last:
                if last is not None:
                    probes.append(gemm_peak(dtype, peak_size))
                log(f"timing, round {r + 1} of {n_rounds} ...")
                last = r
            if workers[name].timed(i):
                # another framework's pool may still be spinning on the CPUs
                time.sleep(0.2 if threads > 1 else 0.01)
                workers[name].time(i, samples)
        probes.append(gemm_peak(dtype, peak_size))
    finally:
        for w in workers.values():
            w.close()
    # the peak under the timings' conditions: the median of the probes before, between
    # and after the rounds (the speed of this shared host drifts over minutes, and the
    # first probe alone put every % peak off by the drift: 266 GFLOP/s at the start of
    # a run whose timings all ran 5-10% slower than the previous run's)
    peak = statistics.median(probes)
    info["gemm_peak_gflops"] = peak
    info["gemm_peak_probes_gflops"] = probes
    log(f"GEMM peak: {peak:.1f} GFLOP/s, the median of {len(probes)} probes "
        f"({min(probes):.1f} to {max(probes):.1f}) before, between and after the rounds")
    by_fw = {name: w.rows for name, w in workers.items()}
    for r in (r for rs in by_fw.values() for r in rs if r.get("gflops")):
        r["peak_fraction"] = r["gflops"] / peak
    rows = []
    for i in range(len(cases)):  # table order: case by case, frameworks side by side
        case_rows = [by_fw[name][i] for name in frameworks]
        base = next((r for r in case_rows if r["framework"] == "fastrnn" and r.get("median_s")),
                    None)
        for r in case_rows:
            if base and r.get("median_s"):
                r["fastrnn_speedup"] = r["median_s"] / base["median_s"]
        rows.extend(case_rows)
    log("")
    log(format_table(rows))
    summary = summarize(rows)
    log("")
    log(format_summary(summary))
    report = {"machine": info, "results": rows, "summary": summary}
    if markdown_path:
        os.makedirs(os.path.dirname(os.path.abspath(markdown_path)), exist_ok=True)
        with open(markdown_path, "w") as f:
            f.write(markdown(rows, summary) + "\n")
        log(f"\nwrote {markdown_path}")
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1, default=float)
        log(f"\nwrote {json_path}")
    if plot_path:
        os.makedirs(os.path.dirname(os.path.abspath(plot_path)), exist_ok=True)
        if plot(rows, plot_path):
            log(f"wrote {plot_path}")
        else:
            log("matplotlib is not installed: no plot (pip install matplotlib)")
    return report
