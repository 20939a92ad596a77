"""The benchmark harness at a micro size: every suite and method runs and agrees."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from benchmarks import common, methods, report
from benchmarks.common import fit_slope
from benchmarks.run import run
from benchmarks.suites import SIZES, SUITES, TRAINING_SUITES
from tests.conftest import compiles_optimised, rerun_optimised

MICRO = dataclasses.replace(SIZES["tiny"], name="micro", hidden=(4,), batches=(2,),
                            samples=(2,), pinn_dims=(6,), pinn_hidden=(4,), repeats=1,
                            scale_dims=(6,))
CORE = {"nested", "taylor", "stde_jet", "stde_collapsed", "sdgd_hvp", "stde_sparse",
        "stde_collapsed_lap2", "folx", "folx_sparse"}


# The VMC suites compile a FermiNet-like wavefunction once per method: vmc_gradient (grad
# of the kinetic energy) takes 100 s here, vmc 11 s. The default run leaves both to
# test_vmc_suite_runs_and_methods_agree (slow); tests/test_vmc.py checks the same
# kinetic energies against jax.hessian, and test_vmc_ab_times_and_checks_accuracy below
# times them. The training suite (stde_paper) has its own tests in tests/test_stde_paper.py.
VMC_SUITES = {"vmc", "vmc_gradient"}


@pytest.fixture(scope="module")
def result():
    return run([s for s in SUITES if s not in VMC_SUITES and s not in TRAINING_SUITES], MICRO,
               quiet=True, command="test")


def assert_methods_agree(result):
    for name, suite in result["suites"].items():
        variable = suite["variable"]
        methods_seen = {row["method"] for row in suite["rows"]}
        assert {"nested", "stde_collapsed"} <= methods_seen or \
            {"sdgd_hvp", "stde_sparse"} <= methods_seen or \
            {"primal", "stde_sparse", "stde_dense_one_hot"} <= methods_seen, name
        for row in suite["rows"]:
            if row["method"] not in CORE:
                continue
            assert "error" not in row, (name, row)
            assert row["median_s"] > 0 and row["flops"] > 0 and row["temp_bytes"] >= 0
            assert row["rel_diff"] < 1e-4, (name, row[variable], row["method"], row["rel_diff"])
            assert "time_ratio" in row


def test_every_suite_runs_and_methods_agree(result):
    assert set(result["suites"]) == set(SUITES) - {*VMC_SUITES, *TRAINING_SUITES}
    assert_methods_agree(result)


@pytest.mark.slow
def test_vmc_suite_runs_and_methods_agree():
    # At the suite's fast compiles (level 0), float32 nested AD moves by 2e-4 from the
    # other methods, which agree with it to 3e-6 at XLA's default level: run at that.
    if not compiles_optimised():
        assert "1 passed" in rerun_optimised(
            "-m", "slow", f"{__file__}::test_vmc_suite_runs_and_methods_agree")
        return
    assert_methods_agree(run(["vmc"], MICRO, quiet=True, command="test"))


def test_slopes_targets_and_outputs(result, tmp_path):
    lap = result["suites"]["laplacian"]
    assert set(lap["slopes"]) >= {"nested", "stde_collapsed"}  # NaN with one sweep value
    assert any(row.get("grad_temp_bytes") for row in lap["rows"])
    targets = report.evaluate_targets(result["suites"])
    assert {t["target"].split(":")[0] for t in targets} >= {
        "laplacian", "stochastic_laplacian", "stochastic_biharmonic", "biharmonic", "pinn",
        "scale"}
    paths = report.write(result, tmp_path, "micro", figure=True)
    assert [p.suffix for p in paths] == [".json", ".md", ".png"]
    loaded = json.loads(paths[0].read_text())
    assert loaded["machine"]["cpu_count"] >= 1 and loaded["machine"]["jax"]
    text = paths[1].read_text()
    assert "## laplacian" in text and "| batch | method |" in text and "slope" in text


def test_training_steps_donate_their_state_and_measure_their_memory(result):
    """scale's train_* rows: Adam's step updates parameters and moments in place (XLA
    aliases all of their bytes), in a process of its own whose peak RSS is recorded."""
    rows = [r for r in result["suites"]["scale"]["rows"] if r["method"].startswith("train_")]
    assert {r["method"] for r in rows} == {"train_primal", "train_stde_sparse",
                                           "train_stde_sparse_row_blocks"}
    for row in rows:
        assert "error" not in row, row
        assert row["alias_bytes"] == row["state_bytes"] > 0, row
        assert row["peak_rss_bytes"] >= row["runtime_rss_bytes"] > 0, row
        assert row["peak_rss_ratio"] == row["peak_rss_bytes"] / row["state_bytes"]
    targets = {(t["target"], t["method"]) for t in report.evaluate_targets(result["suites"])}
    for method in ("train_stde_sparse", "train_stde_sparse_row_blocks"):
        assert ("scale: peak RSS ≤ 1.5× params + Adam state", method) in targets


def test_fit_slope_recovers_a_line():
    slope, intercept = fit_slope([1, 2, 4, 8], [3.0 + 0.5 * x for x in [1, 2, 4, 8]])
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(3.0)
    assert math.isnan(fit_slope([2], [1.0])[0])


def test_interpolation_directions_reproduce_polarisation():
    directions, weights, order = methods.interpolation_directions({(0, 1): 1.0}, 3)
    assert order == 2
    table = {tuple(d.astype(int)): w for d, w in zip(directions, weights)}
    # ∂0∂1 = [y2(e0+e1)·1 - y2(2e0)/4 - y2(2e1)/4] / 2!
    assert table == {(2, 0, 0): pytest.approx(-1 / 8), (1, 1, 0): pytest.approx(1 / 2),
                     (0, 2, 0): pytest.approx(-1 / 8)}
    with pytest.raises(ValueError, match="common order"):
        methods.interpolation_directions({(0, 1): 1.0, (0, 0, 1): 1.0}, 3)


def test_biharmonic_directions_merge_shared_pure_terms():
    dim = 3
    directions, weights, _ = methods.interpolation_directions(methods.biharmonic_terms(dim), dim)
    assert len(directions) == dim + 3 * dim * (dim - 1) // 2
    assert len({tuple(d) for d in directions}) == len(directions)
    assert np.all(np.isfinite(weights))


def test_nested_hvp_and_jvp_forms_agree(x64):
    import jax
    import jax.numpy as jnp

    from stde.pinn.harness import init_mlp, mlp

    params = init_mlp(jax.random.PRNGKey(0), [3, 5, 1])
    x = jnp.array([0.3, -0.2, 0.5])
    v = jnp.array([1.0, -2.0, 0.5])
    for order in (1, 2, 3, 4):
        hvp = methods.nested_hvp_directional(mlp, params, x, v, order)
        jvp = methods.nested_directional(mlp, params, x, v, order)
        np.testing.assert_allclose(hvp, jvp, rtol=1e-10)


def test_compiler_options_reach_every_compilation_and_the_report(tmp_path):
    from benchmarks import common

    bogus = run(["stochastic_laplacian"], MICRO, quiet=True,
                compiler_options={"xla_no_such_option": "1"})
    rows = bogus["suites"]["stochastic_laplacian"]["rows"]
    assert rows and all("xla_no_such_option" in row.get("error", "") for row in rows)
    options = {"xla_cpu_experimental_ynn_fusion_type": ""}
    result = run(["stochastic_laplacian"], MICRO, quiet=True, compiler_options=options)
    assert all("error" not in row for row in result["suites"]["stochastic_laplacian"]["rows"])
    assert common.COMPILER_OPTIONS == {}
    assert result["compiler_options"] == options
    text = report.write(result, tmp_path, "opts", figure=False)[1].read_text()
    assert "xla_cpu_experimental_ynn_fusion_type=" in text


def test_interleaved_timing_gives_every_method_its_rounds():
    from benchmarks.common import Prepared, measure_interleaved

    calls = []
    prepared = {name: Prepared(lambda name=name: calls.append(name), 1.0, 0, 0.0, name)
                for name in ("a", "b", "c")}
    measured = measure_interleaved(prepared, repeats=3)
    assert sorted(calls) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["b", "c", "a"]
    assert all(m.output == name for name, m in measured.items())


@pytest.mark.parametrize("version, preset, expected", [
    ("0.10.2", "", common.JAXLIB_0_10_CPU_DEADLOCK),
    ("0.10.2", "--xla_cpu_enable_concurrency_optimized_scheduler=true",
     "--xla_cpu_enable_concurrency_optimized_scheduler=true"),
    ("0.12.0", "--xla_force_host_platform_device_count=2",
     "--xla_force_host_platform_device_count=2"),
])
def test_runtime_workarounds_only_on_jaxlib_0_10_and_never_over_the_user(
        monkeypatch, version, preset, expected):
    import jaxlib

    monkeypatch.setattr(jaxlib, "__version__", version)
    monkeypatch.setenv("XLA_FLAGS", preset)
    added = common.runtime_workarounds()
    assert added == ([common.JAXLIB_0_10_CPU_DEADLOCK] if expected != preset else [])
    assert os.environ["XLA_FLAGS"] == expected


def test_targets_beyond_the_sweep_read_its_largest_value_once():
    """A smaller size stops before a target's ``at``: the largest value measured stands
    in, but once per (target, method), not once per such target."""
    rows = [{"electrons": e, "method": m, "median_s": t} for e, m, t in (
        (4, "folx", 2.0), (4, "folx_sparse", 2.0), (4, "stde_collapsed", 1.0),
        (16, "folx", 4.0), (16, "folx_sparse", 3.0), (16, "stde_collapsed", 2.7))]
    suites = {"vmc": {"variable": "electrons", "rows": rows}}
    sparse = [t for t in report.evaluate_targets(suites) if "folx_sparse" in t["target"]]
    assert [(t["at"], round(t["ratio"], 3)) for t in sparse] == [("electrons=16", 0.9)]


def test_vmc_ab_times_and_checks_accuracy(capsys, monkeypatch):
    """``python -m benchmarks.vmc_ab``: interleaved medians with ratios to the last
    method, and per-method float32 errors against float64 ``jax.hessian``."""
    from benchmarks import vmc_ab

    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))   # its workarounds

    common = ["--electrons", "4", "--walkers", "2", "--width", "8",
              "--methods", "stde_collapsed,nested"]
    vmc_ab.main([*common, "--rounds", "3"])
    vmc_ab.main([*common, "--accuracy"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("nested: median") and "(1.000x nested)" in lines[2]
    errors = [float(line.split("median ")[1].split(",")[0]) for line in lines[4:6]]
    # float32-sized (nested AD's median is 1.2e-4 on jax 0.12.1 without LLVM's passes)
    assert all(0 <= e < 1e-3 for e in errors), lines
    with pytest.raises(SystemExit):
        vmc_ab.main(["--methods", "stde_collapsed,unknown"])
