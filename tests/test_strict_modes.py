"""Every oracle case traced under JAX's strict modes (``tests.conftest.strict_modes``).

``jax_numpy_rank_promotion="raise"`` and ``jax_numpy_dtype_promotion="strict"`` only
refuse implicit promotions, and ``jax_enable_checks`` type-checks every jaxpr built, all
while tracing: so tracing each case's ``collapsed_jet`` under them catches every rule
that leans on implicit promotion, without compiling (the values are checked against the
oracle by the cases' own tests). A few cases are also checked against the oracle under
the strict modes, end to end. ``pytest --strict-modes`` runs the whole suite so.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
from stde.core import JetValue
from stde.interpreter import Interpreter
from stde.pinn.harness import init_mlp, mlp
from tests.conftest import strict_modes
from tests.oracle import check_collapsed
from tests.rules import test_elementwise, test_reductions, test_sparse, test_structural

pytestmark = pytest.mark.usefixtures("x64")


def _elementwise_cases():
    for name, pairs in test_elementwise.DEFAULT.items():
        f, primals = test_elementwise._case(name)
        for order, count in pairs:
            yield (f"{name}-K{order}-R{count}", f, lambda p=primals: p, order, count)


# Cases whose own function relies on implicit promotion (not stde's doing).
NOT_STRICT = {
    "slicing": "adds shapes (2, 2) and (2,)",
    "pow_constant_array_exponent": "a float32 constant exponent meets a float64 base",
    "pow_constant_base": "lax.pow of a Python float (float32) and a float64 array",
}
CASES = [case for case in [*test_structural.CASES, *test_reductions.CASES,
                           *_elementwise_cases()]
         if case[0].split("-")[0] not in NOT_STRICT]


def _abstract(primals, order, count):
    series = tuple(tuple(jax.ShapeDtypeStruct((count, *np.shape(x)), jnp.result_type(x))
                         for _ in range(order - 1)) for x in primals)
    summed = tuple(jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)) for x in primals)
    return series, summed


@pytest.mark.parametrize("name, f, make_primals, order, count", CASES,
                         ids=[case[0] for case in CASES])
def test_rules_trace_under_strict_modes(name, f, make_primals, order, count):
    primals = tuple(make_primals())
    series, summed = _abstract(primals, order, count)
    jet = lambda p, s, t: stde.collapsed_jet(f, p, s, t)  # noqa: E731
    want = jax.eval_shape(jet, primals, series, summed)
    with strict_modes():
        jax.eval_shape(f, *primals)  # the case itself is strict-clean ...
        got = jax.eval_shape(jet, primals, series, summed)  # ... so stde must be too
    chex.assert_trees_all_equal_shapes_and_dtypes(got, want)


@pytest.mark.parametrize("order, count", [(3, 2)])
def test_mlp_matches_nested_jacfwd_under_strict_modes(strict, order, count):
    params = init_mlp(jax.random.PRNGKey(0), [3, 6, 5, 1], bias=0.1)
    x = jnp.array([0.3, -0.2, 0.5])
    check_collapsed(lambda x: mlp(params, x), [x], order, count, jax.random.PRNGKey(order))


def test_scalar_literals_under_strict_modes(strict):
    f = lambda x: jnp.minimum(jnp.sin(x), 0.5) * 1.1 + jnp.arctan2(1.0, x) * x ** 2.5  # noqa: E731
    check_collapsed(f, [jnp.array([0.4, 1.2, 2.0])], 3, 2, jax.random.PRNGKey(0))


@pytest.mark.parametrize("name", sorted(test_sparse.CASES))
def test_sparse_rules_trace_under_strict_modes(name):
    """The sparse coefficients of ``stde.laplacian``'s one-hot directions, rule by rule."""
    f = test_sparse.CASES[name]
    x, lower, top = test_sparse._inputs(2)

    def jet(x, lower, top):
        closed = jax.make_jaxpr(f)(x)
        return Interpreter(2, test_sparse.R).eval_jaxpr(closed, [JetValue(x, lower, top)])

    want = jax.eval_shape(jet, x, lower, top)
    with strict_modes():
        jax.eval_shape(f, x)  # the case itself is strict-clean ...
        got = jax.eval_shape(jet, x, lower, top)  # ... so stde must be too
    chex.assert_trees_all_equal_shapes_and_dtypes(got, want)


def test_per_row_layer_operators_under_strict_modes(strict):
    """A per-row layer (as per electron in VMC): sparse and indexed per-row rules."""
    w = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5)))
    f = lambda x: jnp.sum(jnp.tanh(x.reshape(3, 2) @ w + 0.5) ** 2)  # noqa: E731
    x = jnp.array([0.3, -0.2, 0.5, 0.1, -0.7, 0.9])
    want = jnp.trace(jax.jit(jax.hessian(f))(x))
    np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-10)
    _, grad, laplacian = jax.jit(stde.value_grad_laplacian(f))(x)
    np.testing.assert_allclose(laplacian, want, rtol=1e-10)
    np.testing.assert_allclose(grad, jax.jit(jax.grad(f))(x), rtol=1e-12)
