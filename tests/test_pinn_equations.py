"""Exact solutions, forcing terms and jet recipes of stde/pinn/equations.py, in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
import stde.pinn.equations as pe
from stde.pinn.harness import make_estimate

NAMES = sorted(pe.EQUATIONS)
REFERENCE_NAMES = sorted(pe.REFERENCE_VALUES)
EXACT_NAMES = [name for name in NAMES if name not in pe.REFERENCE_VALUES]
BOX_NAMES = sorted(pe.FIXED_DIMS)
TERMINAL_NAMES = ["hjb_lin", "hjb_lqg", "bsb"]
GPINN_NAMES = ["poisson_gpinn", "allen_cahn_gpinn", "sine_gordon_gpinn"]


def dim_of(name, d=5):
    """``d``, or the equation's own dimension where it has a fixed one."""
    return pe.FIXED_DIMS.get(name, d)


def exact_estimate(equation):
    """(f, L f) with the library's exact operator (stde.operator)."""
    return make_estimate(equation, "exact", 1)


def nested(f, *axes):
    """``∂^n f / ∂z_{axes[0]} .. ∂z_{axes[-1]}`` by nested ``jax.jacfwd`` (the oracle)."""
    for axis in axes:
        f = (lambda g, k: lambda z: jax.jacfwd(g)(z)[k])(f, axis)
    return f


@pytest.mark.parametrize("make", [lambda: pe.make_solution(6, 2, seed=3),
                                  lambda: pe.make_solution(6, 3, seed=3),
                                  lambda: pe.houman_solution(6)],
                         ids=["two-body", "three-body", "houman"])
def test_closed_form_derivatives_match_jax_hessian(x64, make):
    sol = make()
    x = pe.sample_ball(jax.random.PRNGKey(0), 3, 6, jnp.float64)
    value, grad, hessdiag = jax.jit(jax.vmap(sol.value_grad_hessdiag))(x)
    np.testing.assert_allclose(value, jax.jit(jax.vmap(sol.value))(x), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.jit(jax.vmap(jax.grad(sol.value)))(x), rtol=1e-10,
                               atol=1e-12)
    hessians = jax.jit(jax.vmap(jax.hessian(sol.value)))(x)
    np.testing.assert_allclose(hessdiag, jnp.diagonal(hessians, axis1=1, axis2=2),
                               rtol=1e-10, atol=1e-12)


def test_houman_solution_is_the_reference_codes():
    """(1 - |x|²) Σ tanh(4i/(d-1) - 2) sin(x_i + 3 cos x_{i+1} + x_{i+1} cos x_i)."""
    x = np.array([0.1, -0.3, 0.2, 0.4])
    c = np.tanh(4 * np.arange(3) / 3 - 2)
    a, b = x[:-1], x[1:]
    want = (1 - x @ x) * np.sum(c * np.sin(a + 3 * np.cos(b) + b * np.cos(a)))
    np.testing.assert_allclose(pe.houman_solution(4).value(jnp.asarray(x)), want, rtol=1e-6)


@pytest.mark.parametrize("name", EXACT_NAMES)
def test_exact_solution_has_zero_residual(x64, name):
    """The forcing term equals the exact operator applied to u* (float64, random points).

    For the gPINN equations ``key=None`` makes the gradient terms exact (all ``d²`` jets).
    """
    equation = pe.make_equation(name, dim_of(name), seed=1)
    points = equation.sample(jax.random.PRNGKey(7), 4).astype(jnp.float64)
    estimate = exact_estimate(equation)
    residual = jax.jit(jax.vmap(
        lambda z: equation.residual(equation.exact, z, None, estimate)))(points)
    scale = float(jnp.max(jnp.abs(jax.vmap(equation.exact)(points)))) + 1.0
    assert residual.shape[0] == 4
    np.testing.assert_allclose(residual, 0.0, atol=1e-9 * scale)


@pytest.mark.parametrize("name", ["allen_cahn", "allen_cahn_gpinn", "ridge", "kdv_2d"])
def test_wrong_solution_is_detected(x64, name):
    """The residual test can fail: a perturbed solution leaves a residual."""
    equation = pe.make_equation(name, dim_of(name, 4))
    z = equation.sample(jax.random.PRNGKey(0), 1)[0].astype(jnp.float64)
    wrong = lambda x: equation.exact(x) * 1.01  # noqa: E731
    estimate = exact_estimate(equation)
    residual = jax.jit(lambda z: equation.residual(wrong, z, None, estimate))(z)
    assert float(jnp.max(jnp.abs(residual))) > 1e-4


def smooth_test_function(z):
    """A function with nonzero mixed partials of every order in every coordinate."""
    weights = jnp.arange(1.0, z.shape[-1] + 1.0, dtype=z.dtype) / z.shape[-1]
    return jnp.sin(z @ weights + 0.3) * jnp.exp(0.5 * z[0] * z[-1]) + z[0] ** 3 * z[1]


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_reference_value_residual_matches_nested_jacfwd(x64, name):
    """u_t + Δu + N(u) on an arbitrary function, against jax.hessian (no exact solution)."""
    d = 4
    equation = pe.make_equation(name, d)
    nonlinearity = {"semilinear_heat_time": lambda u: (1 - u ** 2) / (1 + u ** 2),
                    "allen_cahn_time": lambda u: u - u ** 3,
                    "sine_gordon_time": lambda u: d * jnp.sin(u / d)}[name]
    for z in equation.sample(jax.random.PRNGKey(3), 3).astype(jnp.float64):
        u = smooth_test_function
        want = (jax.grad(u)(z)[-1] + jnp.trace(jax.hessian(u)(z)[:d, :d])
                + nonlinearity(u(z)))
        got = equation.residual(u, z, None, exact_estimate(equation))
        np.testing.assert_allclose(got, [want], rtol=1e-10)


def test_reference_values_are_the_papers():
    assert float(pe.make_equation("allen_cahn_time", 1000).exact(jnp.zeros(1001))) == \
        pytest.approx(1.09100)
    assert float(pe.make_equation("sine_gordon_time", 100).exact(jnp.zeros(101))) == \
        pytest.approx(0.0528368 * 100)
    assert math.isnan(float(pe.make_equation("allen_cahn_time", 7).exact(jnp.zeros(8))))


def test_test_points_are_the_reference_point_or_fresh_samples():
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(pe.make_equation("allen_cahn_time", 10).test_points(key, 9),
                                  np.zeros((1, 11)))
    equation = pe.make_equation("ridge", 3)
    np.testing.assert_array_equal(equation.test_points(key, 9), equation.sample(key, 9))


def test_gpinn_third_order_terms_match_nested_jacfwd(x64):
    x = jnp.array([0.3, -0.2, 0.5, 0.1])
    for i, j in [(0, 1), (2, 2), (3, 0)]:
        u_ii, u_j, u_iij = pe.third_order_terms(smooth_test_function, x, i, j)
        np.testing.assert_allclose(u_ii, nested(smooth_test_function, i, i)(x), rtol=1e-10)
        np.testing.assert_allclose(u_j, nested(smooth_test_function, j)(x), rtol=1e-10)
        np.testing.assert_allclose(u_iij, nested(smooth_test_function, i, i, j)(x), rtol=1e-10)


@pytest.mark.parametrize("name", [GPINN_NAMES[0], *(pytest.param(name, marks=pytest.mark.slow)
                                                   for name in GPINN_NAMES[1:])])
def test_gpinn_gradient_residual_is_unbiased(x64, name):
    """d·u_iij with a random i averages to Σ_i u_iij: with all d columns sampled, the sum
    of the gradient components averages (over keys) to the exact one, within 4 standard
    errors; the first component, r, is exact with an exact estimate."""
    d = 3
    equation = pe.make_equation(name, d, seed=2)
    x = equation.sample(jax.random.PRNGKey(1), 1)[0].astype(jnp.float64)
    u = lambda y: equation.exact(y) + 0.1 * smooth_test_function(y)  # noqa: E731
    estimate = exact_estimate(equation)
    exact = jax.jit(lambda y: equation.residual(u, y, None, estimate))(x)
    keys = jax.random.split(jax.random.PRNGKey(5), 800)
    sampled = jax.jit(jax.vmap(lambda k: equation.residual(u, x, k, estimate)))(keys)
    np.testing.assert_allclose(sampled[:, 0], exact[0], rtol=1e-10)
    totals = np.asarray(sampled[:, 1:].sum(-1))
    assert sampled.shape[1] == 1 + d
    assert abs(totals.mean() - float(exact[1:].sum())) < 4 * totals.std() / math.sqrt(800)
    assert totals.std() > 0  # the estimate is random: the test is not vacuous


def test_paper_kdv2d_divisor_is_wrong_and_1260_right(x64):
    """The 9-jet's y_9 = 1260 u_xxxy + 280 u_yyy (the paper divides by 840).

    (stde.jet itself is checked against nested jacfwd in test_jets.py; nine nested
    jacfwd along the curve would take minutes.)
    """
    z = jnp.array([0.2, -0.4, 0.3])
    e_x, e_y, zero = jnp.eye(3)[0], jnp.eye(3)[1], jnp.zeros(3)
    _, y = stde.jet(smooth_test_function, (z,), ((zero, e_x, e_y) + (zero,) * 6,))
    y = [None, *y]
    u_xxxy = nested(smooth_test_function, 0, 0, 0, 1)(z)
    u_yyy = nested(smooth_test_function, 1, 1, 1)(z)
    np.testing.assert_allclose(y[9], 1260 * u_xxxy + 280 * u_yyy, rtol=1e-9)
    assert abs((y[9] - 280 * u_yyy) / 840 - u_xxxy) > 0.1 * abs(u_xxxy)


def test_paper_13_jet_mixes_terms(x64):
    """e_x, e_y, e_t in slots 3, 4, 7: y_7 = 35 u_xy + u_t, y_13 = 200200 u_xxxy + 17160 u_xxt."""
    z = jnp.array([0.2, -0.4, 0.3])
    e_x, e_y, e_t, zero = jnp.eye(3)[0], jnp.eye(3)[1], jnp.eye(3)[2], jnp.zeros(3)
    series = [zero] * 13
    series[2], series[3], series[6] = e_x, e_y, e_t
    _, y = stde.jet(smooth_test_function, (z,), (tuple(series),))
    f = smooth_test_function
    np.testing.assert_allclose(y[6], 35 * nested(f, 0, 1)(z) + nested(f, 2)(z), rtol=1e-9)
    np.testing.assert_allclose(y[12], 200200 * nested(f, 0, 0, 0, 1)(z)
                               + 17160 * nested(f, 0, 0, 2)(z), rtol=1e-8)


@pytest.mark.parametrize("derivatives", [pe.kdv_2d_derivatives, pe.kp_derivatives],
                         ids=["kdv_2d", "kp"])
def test_2d_jet_derivatives_match_nested_jacfwd(x64, derivatives):
    z = jnp.array([0.2, -0.4, 0.3])
    axes = {"u_x": (0,), "u_y": (1,), "u_xx": (0, 0), "u_xy": (0, 1), "u_yy": (1, 1),
            "u_ty": (2, 1), "u_xt": (0, 2), "u_xxxy": (0, 0, 0, 1), "u_xxxx": (0, 0, 0, 0)}
    terms = derivatives(smooth_test_function, z)
    np.testing.assert_allclose(terms["u"], smooth_test_function(z), rtol=1e-12)
    for name, value in terms.items():
        if name != "u":
            np.testing.assert_allclose(value, nested(smooth_test_function, *axes[name])(z),
                                       rtol=1e-9, atol=1e-9, err_msg=name)


def test_kdv_jet_derivatives_match_nested_grad(x64):
    z = jnp.array([-0.3, 0.4])
    terms = pe.kdv_derivatives(pe.kdv_soliton, z)
    expected = {"u_x": (0,), "u_xx": (0, 0), "u_xxx": (0, 0, 0), "u_xxxx": (0, 0, 0, 0),
                "u_t": (1,), "u_xt": (0, 1), "u_tt": (1, 1), "u_xxxt": (0, 0, 0, 1)}
    for name, axes in expected.items():
        np.testing.assert_allclose(terms[name], nested(pe.kdv_soliton, *axes)(z), rtol=1e-9,
                                   atol=1e-9, err_msg=name)
    np.testing.assert_allclose(pe.kdv_residuals(terms), 0.0, atol=1e-9)


def test_hjb_lqg_solution_matches_monte_carlo_and_terminal_cost(x64):
    """-log E[2/(1 + |x + √2 W_{1-t}|²)] by 4·10⁵ samples; the terminal cost to 1e-10."""
    x = jnp.array([0.5, -1.0, 0.3])
    t = 0.4
    w = jax.random.normal(jax.random.PRNGKey(0), (400_000, 3), jnp.float64)
    y = x[None, :] + math.sqrt(2 * (1 - t)) * w
    monte_carlo = -jnp.log(jnp.mean(2 / (1 + jnp.sum(y ** 2, -1))))
    got = pe.hjb_lqg_solution(jnp.concatenate([x, jnp.array([t])]))
    np.testing.assert_allclose(got, monte_carlo, rtol=3e-3)
    for r2 in [0.0, 0.5, 30.0, 1e4]:
        z = jnp.array([math.sqrt(r2), 0.0, 1.0])
        np.testing.assert_allclose(pe.hjb_lqg_solution(z), math.log((1 + r2) / 2), atol=1e-10)


def test_ridge_solution_varies_with_x_and_time():
    """Baselines at d = 10⁴: the radial one ~1, the trivial (initial condition) ~0.56."""
    equation = pe.make_equation("ridge", 10_000)
    points = equation.sample(jax.random.PRNGKey(0), 600)
    target = jax.vmap(equation.exact)(points)
    trivial = jax.vmap(equation.trivial)(points)
    assert float(jnp.linalg.norm(trivial - target) / jnp.linalg.norm(target)) > 0.45
    assert pe.radial_baseline_error(equation, points) > 0.9


def test_radial_baseline_recovers_radial_solutions_and_handles_single_points():
    bsb = pe.make_equation("bsb", 4)
    points = bsb.sample(jax.random.PRNGKey(0), 300)
    assert pe.radial_baseline_error(bsb, points) < 1e-4
    held_out = bsb.sample(jax.random.PRNGKey(1), 300)
    assert pe.radial_baseline_error(bsb, held_out, fit_points=points) < 1e-4
    reference = pe.make_equation("allen_cahn_time", 10)
    assert math.isnan(pe.radial_baseline_error(reference, reference.test_points(None, 1)))


def constrained_points(equation, n=3):
    """Points where the ansatz must equal ``u*`` (walls, initial or terminal time)."""
    name, d = equation.name, equation.dim
    key = jax.random.PRNGKey(0)
    if name in pe.FIXED_DIMS:
        z = equation.sample(key, 2 * d + 1)
        walls = [z.at[k, k // 2].set(1.0 if k % 2 else -1.0) for k in range(2 * d)]
        return jnp.stack([w[k] for k, w in enumerate(walls)] + [z[-1].at[-1].set(0.0)])
    if name in pe.REFERENCE_VALUES:
        return equation.sample(key, n).at[:, -1].set(pe.PARABOLIC_HORIZON)
    if name in TERMINAL_NAMES:
        return equation.sample(key, n).at[:, -1].set(1.0)
    if name in ("ridge", "wave"):
        return equation.sample(key, n).at[:, -1].set(0.0)
    x = pe.sample_ball(key, n, d)
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    if equation.time_dependent:  # heat: on the sphere at any time, and at t = 0 inside
        inside = equation.sample(key, n).at[:, -1].set(0.0)
        return jnp.concatenate([jnp.concatenate([x, jnp.full((n, 1), 0.6)], -1), inside])
    return x


@pytest.mark.parametrize("name", NAMES)
def test_ansatz_meets_boundary_and_initial_conditions(name):
    equation = pe.make_equation(name, dim_of(name, 4))
    net = lambda z: 1.0 + jnp.sum(jnp.sin(z))  # noqa: E731
    edges = constrained_points(equation)
    want = jax.jit(jax.vmap(equation.trivial if name in pe.REFERENCE_VALUES
                            else equation.exact))(edges)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda z: equation.ansatz(net, z)))(edges),
                               want, rtol=1e-5, atol=1e-5)


def test_wave_ansatz_has_zero_initial_velocity():
    equation = pe.make_equation("wave", 3)
    net = lambda z: 1.0 + jnp.sum(jnp.sin(z))  # noqa: E731
    z = equation.sample(jax.random.PRNGKey(0), 1)[0].at[-1].set(0.0)
    assert float(jax.grad(lambda q: equation.ansatz(net, q))(z)[-1]) == 0.0


def test_fixed_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="two-dimensional"):
        pe.make_equation("kp", 3)


@pytest.mark.parametrize("name", NAMES)
def test_each_equation_sets_its_default_dimension(name):
    equation = pe.make_equation(name)  # built in its default dimension
    assert equation.dim == equation.default_dim == pe.default_dim(name)
    other = pe.make_equation(name, dim_of(name))
    assert other.default_dim == equation.default_dim


def test_unknown_equation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown equation"):
        pe.make_equation("navier_stokes", 3)


NEW_NAMES = ["poisson_houman", "poisson_3body", "allen_cahn_3body", "poisson_gpinn",
             "allen_cahn_gpinn", "sine_gordon_gpinn", "ridge", "wave", "hjb_lin", "hjb_lqg",
             "bsb", "semilinear_heat_time", "allen_cahn_time", "sine_gordon_time", "kdv_2d",
             "kp"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_NAMES)
def test_train_pinn_runs_every_new_equation(name):
    """``--equation NAME`` end to end: two steps of train_pinn.train per new equation."""
    import train_pinn as tp

    d = pe.FIXED_DIMS.get(name, 10)
    summary = tp.train(tp.Config(equation=name, dim=d, steps=2, batch=4, width=8, depth=1,
                                 n_samples=2, n_test=32, eval_every=1, out="", quiet=True))
    assert np.isfinite(summary["relative_l2_error"]), summary
