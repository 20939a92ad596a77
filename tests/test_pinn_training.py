"""Short PINN training runs, the harness's estimators and data-parallel sharding of examples/."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
import train_pinn as tp  # examples/ is on the path (pyproject.toml: pythonpath)

import stde.pinn.equations as pe
from stde.pinn import harness

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples")


def fixed_batch_losses(name, method, steps=25, d=3):
    """Loss on one fixed batch before and after ``steps`` Adam steps on that batch."""
    equation = pe.make_equation(name, pe.FIXED_DIMS.get(name, d))
    loss = harness.make_loss(equation, harness.make_estimate(equation, method, 2))
    params = harness.init_mlp(jax.random.PRNGKey(0), [equation.input_dim, 8, 8, 1])
    points = equation.sample(jax.random.PRNGKey(1), 16)
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    optimizer = optax.adam(1e-2)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, points, keys)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        # steps + 1 evaluations: the last is the loss after `steps` updates (one program
        # to compile, not a second one for the final loss).
        _, values = jax.lax.scan(body, (params, optimizer.init(params)), None, steps + 1)
        return values[0], values[-1]

    return [float(v) for v in run(params)]


# The default run trains one equation per way of building a residual: the elliptic
# two-body family (allen_cahn), the terminal-value family (allen_cahn_time), heat, ridge,
# wave, Fokker-Planck, HJB-Lin, Black-Scholes-Barenblatt and kdv (the high-order path).
# The others share one of these builders (their jet recipes and forcing terms are checked
# in test_pinn_equations.py by default), or cost many jets or a quadrature; they train
# with -m slow.
TRAINED_BY_DEFAULT = {"allen_cahn", "allen_cahn_time", "heat", "ridge", "wave",
                      "fokker_planck", "hjb_lin", "bsb", "kdv"}


@pytest.mark.parametrize("name", [
    name if name in TRAINED_BY_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(pe.EQUATIONS)])
def test_short_training_decreases_the_loss(name):
    before, after = fixed_batch_losses(name, "sparse")
    assert np.isfinite(after) and after < 0.7 * before, (before, after)


@pytest.mark.parametrize("method", ["dense", "exact", "sdgd"])
def test_other_methods_train(method):
    before, after = fixed_batch_losses("allen_cahn", method)
    assert after < 0.7 * before, (before, after)


def test_estimators_agree_when_sampling_everything():
    """Sparse STDE and SDGD with n_samples = d are exact; all match stde.operator."""
    equation = pe.make_equation("fokker_planck", 3)
    params = harness.init_mlp(jax.random.PRNGKey(0), [3, 8, 1])
    u = lambda x: equation.ansatz(lambda q: harness.mlp(params, q), x)  # noqa: E731
    x = equation.sample(jax.random.PRNGKey(1), 1)[0]
    key = jax.random.PRNGKey(2)
    values = {m: harness.make_estimate(equation, m, 3)(u, x, key=key)[1]
              for m in ("exact", "sparse", "sdgd")}
    np.testing.assert_allclose(values["sparse"], values["exact"], rtol=1e-5)
    np.testing.assert_allclose(values["sdgd"], values["exact"], rtol=1e-5)


def test_shared_key_loss_is_the_per_point_loss_with_one_key_repeated():
    """key_per_point=False (the benchmark's step): every point uses the same draw."""
    equation = pe.make_equation("allen_cahn", 4)
    estimate = harness.make_estimate(equation, "sdgd", 2)
    params = harness.init_mlp(jax.random.PRNGKey(0), [4, 8, 1])
    points = equation.sample(jax.random.PRNGKey(1), 8)
    key = jax.random.PRNGKey(2)
    shared = jax.jit(harness.make_loss(equation, estimate, key_per_point=False))(
        params, points, key)
    repeated = jax.jit(harness.make_loss(equation, estimate))(params, points,
                                                              np.stack([key] * 8))
    np.testing.assert_allclose(shared, repeated, rtol=1e-6)


def test_train_writes_summary_and_plot(tmp_path):
    config = tp.Config(equation="poisson", dim=3, steps=6, batch=8, width=8, depth=1,
                       n_samples=2, n_test=64, eval_every=2, out=str(tmp_path), quiet=True)
    summary = tp.train(config)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["steps"] == 6 and (tmp_path / "curves.png").stat().st_size > 0
    for field in ("relative_l2_error", "trivial_predictor_error", "iterations_per_second",
                  "peak_rss_mib"):
        assert np.isfinite(summary[field])


def test_sharded_loss_equals_single_device_loss():
    """Two forced CPU devices: the sharded loss on the same batch equals the unsharded."""
    code = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax, train_pinn as tp
        from stde.pinn import harness
        from stde.pinn.equations import make_equation
        assert len(jax.devices()) == 2
        eq = make_equation("allen_cahn", 4)
        loss = harness.make_loss(eq, harness.make_estimate(eq, "sparse", 2))
        params = harness.init_mlp(jax.random.PRNGKey(0), [4, 8, 1])
        out = []
        for n in (1, 2):
            sharding = tp.batch_sharding(n)
            f = jax.jit(jax.value_and_grad(
                lambda p, k: loss(p, *tp.collocation(eq, k, 8, sharding))))
            value, grads = f(params, jax.random.PRNGKey(1))
            hlo = f.lower(params, jax.random.PRNGKey(1)).compile().as_text()
            out.append((float(value), float(grads[0][0].sum()), "all-reduce" in hlo))
        print(out)
        (v1, g1, r1), (v2, g2, r2) = out
        assert r2 and not r1, out
        assert abs(v1 - v2) <= 1e-5 * abs(v1) and abs(g1 - g2) <= 1e-4 * (abs(g1) + 1e-3), out
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # the two forced devices are CPU devices
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = os.pathsep.join([EXAMPLES, env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_too_many_devices_is_a_clear_error():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        tp.batch_sharding(len(jax.devices()) + 1)


@pytest.mark.slow
def test_sparse_stde_step_memory_at_high_dimension():
    """D = 10⁴: peak RSS under 2 GiB; D = 10⁵: the step runs (measure_memory.py)."""
    import measure_memory

    small = measure_memory.measure(10_000, steps=3, batch=16, n_samples=16, width=128)
    assert small["peak_rss_mib"] < 2048, small
    large = measure_memory.measure(100_000, steps=2, batch=16, n_samples=16, width=128)
    assert np.isfinite(large["iterations_per_second"]), large


def test_default_command_writes_a_summary_folder():
    config = tp.parse_args([])
    assert config.out == tp.default_out(config)
    assert config.out.startswith(os.path.join("runs", f"{config.equation}-d{config.dim}-"))
    assert tp.parse_args(["--out", ""]).out == ""


def test_block_rows_option():
    """--block-rows: chosen where the first weight is large, off otherwise; clear errors;
    a short run with row blocks trains (stde.pinn.row_blocks is tested against the
    ordinary step in test_pinn_row_blocks.py)."""
    assert tp.check_config(tp.Config(equation="poisson", dim=3)).block_rows == 0
    large = tp.check_config(tp.Config(equation="heat_averaged", dim=2 ** 18, width=64))
    assert large.block_rows == tp.BLOCK_ROWS
    assert tp.parse_args(["--block-rows", "5", "--out", ""]).block_rows == 5
    with pytest.raises(ValueError, match="--block-rows must be non-negative"):
        tp.check_config(tp.Config(block_rows=-1))
    with pytest.raises(ValueError, match="with --shard-input-layer pass --block-rows 0"):
        tp.check_config(tp.Config(equation="poisson", dim=4, block_rows=4,
                                  shard_input_layer=True, devices=2))
    summary = tp.train(tp.Config(equation="poisson", dim=5, steps=30, batch=8, width=8,
                                 depth=1, n_samples=2, n_test=64, eval_every=10, out="",
                                 quiet=True, block_rows=2))
    assert summary["loss_curve"][-1] < summary["loss_curve"][0]
