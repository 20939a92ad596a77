"""The stde_paper benchmark suite: plans, the |x|²,t baseline, a tiny run end to end, gpu.sh."""

import dataclasses
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_pinn as tp  # examples/ is on the path (pyproject.toml: pythonpath)

import stde.pinn.equations as pe
from benchmarks import report
from benchmarks.run import run
from benchmarks.suites import SIZES
from benchmarks.suites import stde_paper as sp
from stde.pinn.equations import make_equation

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def test_tiny_run_trains_both_methods_and_reports_them_beside_the_paper(tmp_path):
    result = run(["stde_paper"], "tiny", quiet=True, command="test")
    suite = result["suites"]["stde_paper"]
    assert {r["method"] for r in suite["rows"]} == {"sparse", "sdgd"}
    for row in suite["rows"]:
        assert "error" not in row, row
        assert row["iterations_per_second"] > 0 and row["peak_rss_mib"] > 0
        assert math.isfinite(row["relative_l2_error"])
        assert 0 < row["radial_time_error"] < 1.5 * row["trivial_predictor_error"]
        assert row["points_per_dim"] == row["steps"] * sp.PAPER_NETWORK["batch"] / row["dim"]
    [comparison] = suite["comparisons"]
    assert comparison["speed_up"] > 0 and comparison["memory_ratio"] > 0
    text = report.write(result, tmp_path, "stde-paper-tiny")[1].read_text()
    assert "| allen_cahn | 10 | sparse | 4 | 3 | 30 |" in text
    assert "paper it/s" in text and "speed-up" in text and "Time: median" not in text


def test_a_run_past_its_limit_is_stopped_and_a_failing_run_reports_its_error():
    with pytest.raises(sp.RunFailed, match="over its 0.5 s limit"):
        sp.in_fresh_process(sp.Run("allen_cahn", 10, "sparse", 4, 100_000), limit_s=0.5)
    with pytest.raises(sp.RunFailed, match="ValueError: unknown method 'no_such_method'"):
        sp.in_fresh_process(sp.Run("allen_cahn", 10, "no_such_method", 4, 3))


def test_a_run_whose_process_dies_is_reported_as_such(monkeypatch):
    # XLA aborts the new process while reading its flags: it ends without a word
    monkeypatch.setenv("XLA_FLAGS", "--no_such_xla_flag")
    with pytest.raises(sp.RunFailed, match=r"its process died \(exit code -?\d+\)"):
        sp.in_fresh_process(sp.Run("allen_cahn", 10, "sparse", 4, 3))


def test_a_spent_time_budget_skips_the_remaining_runs_and_still_reports(tmp_path):
    size = dataclasses.replace(SIZES["tiny"], time_budget_s=1e-3)
    result = run(["stde_paper"], size, quiet=True, command="test")
    suite = result["suites"]["stde_paper"]
    # the first run starts with the budget's last millisecond and is stopped; the rest wait
    assert all(row["error"].startswith("stopped: over its") for row in suite["rows"])
    assert len(suite["rows"]) <= 1
    assert len(suite["rows"]) + len(suite["skipped"]) == len(sp.PLANS["tiny"])
    assert all("over the 0 s time budget" in note for note in suite["skipped"])
    assert "time budget" in report.write(result, tmp_path, "budget")[1].read_text()


def _with_exact(name, dim, exact):
    return dataclasses.replace(make_equation(name, dim), exact=exact)


def test_baseline_is_exact_when_the_solution_depends_on_radius_and_time_only():
    radial = _with_exact("allen_cahn", 4,
                         lambda x: (1 - jnp.sum(x ** 2)) * jnp.cos(jnp.sum(x ** 2)))
    assert pe.sampled_radial_baseline_error(radial, jax.random.PRNGKey(0), 300) < 1e-5
    timed = _with_exact("heat", 3, lambda z: jnp.exp(-z[-1]) * (1 - jnp.sum(z[:-1] ** 2)))
    assert pe.sampled_radial_baseline_error(timed, jax.random.PRNGKey(0), 300) < 1e-5


def test_baseline_beats_the_trivial_predictor_and_chunking_changes_nothing():
    equation = make_equation("allen_cahn", 6)
    points = equation.sample(jax.random.PRNGKey(3), 4000)
    target = jax.vmap(equation.exact)(points)
    trivial = float(jnp.linalg.norm(jax.vmap(equation.trivial)(points) - target)
                    / jnp.linalg.norm(target))
    whole = pe.sampled_radial_baseline_error(equation, jax.random.PRNGKey(0))
    chunked = pe.sampled_radial_baseline_error(equation, jax.random.PRNGKey(0), chunk_floats=6 * 64)
    assert whole < 1.05 * trivial
    # fold_in keys per chunk draw different points: same statistic, not the same digits
    assert chunked == pytest.approx(whole, rel=0.1)


def test_features_span_the_tensor_polynomials():
    coordinates = np.random.default_rng(0).uniform(0, 0.5, (50, 2))
    features, _, _ = pe.radial_features(coordinates, degree=3)
    assert features.shape == (50, 10)
    assert np.linalg.matrix_rank(features) == 10


def test_runnable_skips_unregistered_names_and_rejected_dimensions():
    plan = (sp.Run("allen_cahn", 3, "sparse", 2, 1), sp.Run("no_such_equation", 3, "sparse", 2, 1),
            sp.Run("kdv", 2, "sparse", 2, 1))
    kept, notes = sp.runnable(plan, log=lambda _: None)
    assert kept == [plan[0]]
    assert "no_such_equation d=3: not in" in notes[0] and "kdv d=2" in notes[1]


def test_compare_methods_pairs_sdgd_with_stde_at_the_same_settings():
    rows = [{"equation": "e", "dim": 10, "n_samples": 4, "method": "sparse",
             "iterations_per_second": 50.0, "peak_rss_mib": 400.0},
            {"equation": "e", "dim": 10, "n_samples": 4, "method": "sdgd",
             "iterations_per_second": 5.0, "peak_rss_mib": 700.0},
            {"equation": "e", "dim": 10, "n_samples": 8, "method": "sdgd",
             "iterations_per_second": 1.0, "peak_rss_mib": 900.0}]
    [entry] = sp.compare_methods(rows, idle_mib=300.0)
    assert entry["speed_up"] == 10.0 and entry["memory_ratio"] == 1.75
    assert entry["memory_ratio_above_idle"] == 4.0 and "device_memory_ratio" not in entry


def test_plans_use_the_trainers_options_and_cover_the_papers_figures():
    fields = set(tp.Config.__dataclass_fields__)
    assert set(sp.PAPER_NETWORK) <= fields
    tp.check_config(tp.Config(equation="allen_cahn", dim=10, steps=2, **sp.PAPER_NETWORK))
    for plan in sp.PLANS.values():
        assert all(r.method in ("sparse", "sdgd") and r.steps >= 2 for r in plan)
        assert all(r.n_samples <= r.dim for r in plan if r.method == "sdgd")
    gpu = {(r.equation, r.dim, r.method, r.n_samples) for r in sp.PLANS["gpu"]}
    assert set(sp.PAPER_FIGURES) <= gpu
    # ridge's dense directions take about d points to learn: some run must see more
    for size in ("small", "paper", "gpu"):
        assert any(r.equation == "ridge" and r.steps * sp.PAPER_NETWORK["batch"] >= 3 * r.dim
                   and r.dim >= 10_000 for r in sp.PLANS[size]), size
    with pytest.raises(ValueError, match="unknown schedule"):
        tp.check_config(tp.Config(schedule="step"))


@pytest.mark.slow
def test_gpu_script_runs_its_pipeline_with_tiny_sizes_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh"), "--tiny",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = {p.name for p in tmp_path.iterdir()}
    for stem in ("laplacian-tiny", "biharmonic-tiny", "stochastic_laplacian-tiny",
                 "stochastic_biharmonic-tiny", "stde-paper-tiny"):
        assert {f"{stem}.json", f"{stem}.md"} <= names, names
    assert "jax" in (tmp_path / "env.txt").read_text()
