"""The benchmark harness: checks before it times, reports, writes JSON and a plot."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn.bench import frameworks, harness, problems, report


def test_flops_formula_and_cell_sizes():
    T, B, I, H = problems.SIZES["small"]
    assert problems.flops("rnn_tanh", "small", "forward") == 2 * T * B * (I + H) * H
    assert problems.flops("lstm", "small", "train") == 3 * 2 * T * B * (I + H) * 4 * H
    assert problems.shape("rnn_tanh", "deepbench") == (50, 16, 1760, 1760)
    assert problems.shape("gru", "deepbench") == (25, 16, 512, 512)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("name", ["fastrnn", "numpy", "torch", "jax", "onnxruntime"])
def test_framework_results_agree_with_reference(name, cell):
    fw = frameworks.FRAMEWORKS[name]
    if not fw.available():
        pytest.skip(f"{name} is not installed")
    p = problems.make_problem(cell, "tiny", "float32")
    ran = 0
    for mode in problems.MODES:
        try:
            fn = fw.prepare(cell, mode, p)
        except frameworks.Unsupported:
            assert name == "onnxruntime" and mode == "train"  # forward only
            continue
        assert harness.check(fn(), frameworks.reference_results(cell, mode, p)) < 1e-4
        ran += 1
    assert ran >= 1


def test_summary_picks_the_fastest_alternative_and_checks_targets():
    def row(fw, size, t, pf=None):
        return {"cell": "lstm", "size": size, "mode": "forward", "framework": fw,
                "median_s": t, "peak_fraction": pf}

    rows = [row("fastrnn", "tiny", 1.0), row("numpy", "tiny", 9.0), row("torch", "tiny", 2.0),
            row("fastrnn", "medium", 1.0, 0.9), row("torch", "medium", 1.2),
            row("fastrnn", "small", 1.0), {**row("jax", "small", None), "error": "n/a"}]
    s = {x["size"]: x for x in report.summarize(rows)}
    assert s["tiny"]["fastest"] == "torch" and s["tiny"]["ratio"] == 0.5
    assert not s["tiny"]["met"]  # tiny needs <= 1/3
    assert s["medium"]["met"]  # 0.83 <= 0.9 and 90% of peak
    assert "fastest" not in s["small"]
    text = report.format_summary(report.summarize(rows))
    assert "NO" in text and "yes" in text and "no alternative ran" in text
    md = report.markdown(rows, report.summarize(rows)).splitlines()
    assert md[0].startswith("| cell | size | mode | fastrnn ms | numpy ms (x) | torch ms (x)")
    assert len(md) == 2 + 3 and "**missed**" in md[2] and "| met |" in md[3]


@pytest.mark.parametrize("mine, theirs, pf_mine, pf_theirs, met", [
    (0.97, 1.0, 0.94, 0.92, True),  # fastest near peak: parity at >= 90% of peak suffices
    (0.97, 1.0, 0.89, 0.92, False),  # ... but not below 90% of peak
    (1.01, 1.0, 0.95, 0.92, False),  # ... and not slower
    (0.97, 1.0, 0.90, 0.80, False),  # fastest below 85% of peak: 0.9x is the target
    (0.89, 1.0, 0.86, 0.80, True),
    (0.89, 1.0, 0.84, 0.80, False),  # and 85% of peak at the peak sizes
])
def test_near_peak_alternative_makes_parity_the_target(mine, theirs, pf_mine, pf_theirs, met):
    rows = [{"cell": "lstm", "size": "medium", "mode": "forward", "framework": fw,
             "median_s": t, "peak_fraction": pf}
            for fw, t, pf in [("fastrnn", mine, pf_mine), ("torch", theirs, pf_theirs)]]
    s = report.summarize(rows)[0]
    assert s["met"] is met
    assert s["target"] == (1.0 if pf_theirs > 0.85 else 0.9)
    assert f"<={s['target']:.2f}" in report.format_summary([s])


def test_a_wrong_framework_is_reported_and_not_timed(monkeypatch):
    class Wrong:
        name = "wrong"

        @staticmethod
        def available():
            return True

        @staticmethod
        def prepare(cell, mode, p):
            ok = frameworks.NumPy.prepare(cell, mode, p)
            return lambda: {k: v * 1.01 for k, v in ok().items()}

    monkeypatch.setitem(frameworks.FRAMEWORKS, "wrong", Wrong)
    # the worker pins its process to the threads asked for: not this one, which runs the
    # rest of the suite
    pinned = []
    monkeypatch.setattr(harness, "set_threads", pinned.append)
    rows = harness.run_framework("wrong", [("rnn_tanh", "tiny", "forward")], "float32", 1, 1,
                                 100.0)
    assert rows[0]["ok"] is False and "median_s" not in rows[0]
    assert rows[0]["check_error"] == pytest.approx(0.01, rel=1e-3)
    assert "FAILED check" in report.format_table(rows)
    assert pinned == [1]


def test_measure_takes_the_median():
    calls = []
    med, samples = harness.measure(lambda: calls.append(1), repeats=5, min_sample=0.0)
    assert len(samples) == 5 and med == sorted(samples)[2]


def test_measure_with_a_fixed_number_of_calls_per_sample():
    calls = []
    med, samples = harness.measure(lambda: calls.append(1), repeats=3, inner=4)
    assert len(samples) == 3 and len(calls) == 12  # no warm-up call


@pytest.mark.parametrize("repeats, split", [(7, [3, 2, 2]), (3, [1, 1, 1]), (2, [1, 1]),
                                            (1, [1]), (10, [4, 3, 3])])
def test_repeats_are_split_into_rounds(repeats, split):
    assert harness.rounds(repeats) == split


def test_schedule_interleaves_frameworks_case_by_case_and_rotates_who_goes_first():
    fws = ["fastrnn", "torch", "jax"]
    order = harness.schedule(2, fws, 7)
    assert [(r, i, fw) for r, i, fw, _ in order[:6]] == [
        (0, 0, "fastrnn"), (0, 0, "torch"), (0, 0, "jax"),
        (0, 1, "fastrnn"), (0, 1, "torch"), (0, 1, "jax")]
    assert [fw for r, i, fw, _ in order if i == 0] == [
        "fastrnn", "torch", "jax", "torch", "jax", "fastrnn", "jax", "fastrnn", "torch"]
    for i in range(2):  # every framework gets all the repeats of every case
        for fw in fws:
            assert sum(n for _, j, f, n in order if (j, f) == (i, fw)) == 7


def test_worker_process_adds_samples_round_after_round():
    w = harness._WorkerProcess("numpy", [["rnn_tanh", "tiny", "forward"]], "float32", 1, 100.0)
    try:
        rows = w.prepare()
        assert rows[0]["ok"] and rows[0]["first_call_s"] > 0 and "median_s" not in rows[0]
        w.time(0, 2)
        w.time(0, 1)
        row = w.rows[0]
        assert len(row["samples_s"]) == 3
        assert row["median_s"] == sorted(row["samples_s"])[1]
        assert row["gflops"] > 0 and 0 < row["cores"] <= 1.05
    finally:
        w.close()
    assert w.proc.returncode == 0


def test_a_worker_that_dies_is_reported_for_each_of_its_cases():
    cases = [["lstm", "tiny", "forward"], ["gru", "tiny", "train"]]
    w = harness._WorkerProcess("no-such-framework", cases, "float32", 1, 100.0)
    rows = w.prepare()
    assert len(rows) == 2 and not any(r["ok"] for r in rows)
    assert all("worker failed: KeyError" in r["error"] for r in rows)
    assert not w.timed(0)
    w.time(0, 1)  # a no-op
    assert rows[1]["cell"] == "gru" and rows[1]["framework"] == "no-such-framework"


@pytest.mark.slow
def test_command_line_end_to_end(tmp_path):
    out_json = tmp_path / "b.json"
    out_png = tmp_path / "b.png"
    res = subprocess.run(
        [sys.executable, "-m", "fastrnn.bench", "--sizes", "tiny", "--modes", "forward",
         "--frameworks", "numpy", "--repeats", "2", "--peak-size", "256", "--threads", "1",
         "--json", str(out_json), "--plot", str(out_png)],
        capture_output=True, text=True, check=True)
    assert "GEMM peak" in res.stdout and "fastrnn" in res.stdout and "numpy" in res.stdout
    report = json.loads(out_json.read_text())
    rows = {r["framework"]: r for r in report["results"]}
    assert rows["fastrnn"]["ok"] and rows["numpy"]["ok"]
    assert rows["numpy"]["fastrnn_speedup"] > 0 and report["machine"]["gemm_peak_gflops"] > 0
    if hasattr(os, "sched_getaffinity"):  # --threads 1 pins the processes to one CPU
        assert report["machine"]["cpus"] == 1
        assert all(r["cores"] <= 1.05 for r in rows.values())  # CPU time <= wall time
    try:
        import matplotlib  # noqa: F401
        assert out_png.stat().st_size > 1000
    except ImportError:
        assert not out_png.exists()


def test_cli_rejects_unknown_choices():
    res = subprocess.run([sys.executable, "-m", "fastrnn.bench", "--sizes", "huge"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown size" in res.stderr and "tiny" in res.stderr


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_step_bench_checks_and_times_every_installed_framework(backward, dtype, monkeypatch,
                                                              tmp_path):
    # python -m fastrnn.bench.steps: each framework's step (and its backward) agrees
    # with fastrnn's before it is timed, in float32 (batch 1) and float64 (batch 3), at
    # H = 1 and odd H
    from fastrnn.bench import steps

    pinned = []
    monkeypatch.setattr(harness, "set_threads", pinned.append)  # not this process
    out = tmp_path / "steps.json"
    batch = "1" if dtype == np.float32 else "3"
    args = ["--hidden", "1,5", "--input", "3", "--dtype", np.dtype(dtype).name, "--steps", "200",
            "--budget", "0.001", "--repeats", "2", "--json", str(out), "--batch", batch]
    assert steps.main(args + (["--backward"] if backward else [])) == 0
    rows = json.loads(out.read_text())
    fws = [f for f, fw in steps.FRAMEWORKS.items() if getattr(fw, "available", lambda: True)()]
    assert {(r["cell"], r["H"], r["framework"]) for r in rows} == {
        (c, H, f) for c in steps.CELLS for H in (1, 5) for f in fws}  # a failed check: no row
    mode = "backward" if backward else "forward"
    assert all(r["ok"] and r["us_per_step"] > 0 and r["mode"] == mode and r["B"] == int(batch)
               for r in rows)
    assert pinned == [1]
    with pytest.raises(SystemExit):
        steps.main(["--batch", "0"])


def test_step_bench_reports_a_wrong_gradient():
    from fastrnn.bench import steps

    class Wrong(steps._NumPy):
        def one(self):
            return super().one() + 0.01

    r = steps.measure(Wrong, "gru", 3, 5, np.float64, 100, 0.001, 1, backward=True)
    assert r["ok"] is False and r["check_error"] == pytest.approx(0.01)
    assert steps.measure(steps._NumPy, "gru", 3, 5, np.float64, 100, 0.001, 1, True)["ok"]
