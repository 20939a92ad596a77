"""The benchmark harness at a micro size: every suite and method runs and agrees."""

import dataclasses
import json
import math

import numpy as np
import pytest

from benchmarks import methods, report
from benchmarks.common import fit_slope
from benchmarks.run import run
from benchmarks.suites import SIZES, SUITES

MICRO = dataclasses.replace(SIZES["tiny"], name="micro", hidden=(4,), batches=(2,),
                            samples=(2,), pinn_dims=(6,), pinn_hidden=(4,), repeats=1)
CORE = {"nested", "taylor", "stde_jet", "stde_collapsed", "sdgd_hvp", "stde_sparse",
        "stde_collapsed_lap2", "folx"}


@pytest.fixture(scope="module")
def result():
    return run(list(SUITES), MICRO, quiet=True, command="test")


def test_every_suite_runs_and_methods_agree(result):
    assert set(result["suites"]) == set(SUITES)
    for name, suite in result["suites"].items():
        variable = suite["variable"]
        methods_seen = {row["method"] for row in suite["rows"]}
        assert {"nested", "stde_collapsed"} <= methods_seen or \
            {"sdgd_hvp", "stde_sparse"} <= methods_seen, name
        for row in suite["rows"]:
            if row["method"] not in CORE:
                continue
            assert "error" not in row, (name, row)
            assert row["median_s"] > 0 and row["flops"] > 0 and row["temp_bytes"] >= 0
            assert row["rel_diff"] < 1e-4, (name, row[variable], row["method"], row["rel_diff"])
            assert "time_ratio" in row


def test_slopes_targets_and_outputs(result, tmp_path):
    lap = result["suites"]["laplacian"]
    assert set(lap["slopes"]) >= {"nested", "stde_collapsed"}  # NaN with one sweep value
    assert any(row.get("grad_temp_bytes") for row in lap["rows"])
    targets = report.evaluate_targets(result["suites"])
    assert {t["target"].split(":")[0] for t in targets} >= {
        "laplacian", "stochastic_laplacian", "stochastic_biharmonic", "biharmonic", "pinn"}
    paths = report.write(result, tmp_path, "micro", figure=True)
    assert [p.suffix for p in paths] == [".json", ".md", ".png"]
    loaded = json.loads(paths[0].read_text())
    assert loaded["machine"]["cpu_count"] >= 1 and loaded["machine"]["jax"]
    text = paths[1].read_text()
    assert "## laplacian" in text and "| batch | method |" in text and "slope" in text


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
