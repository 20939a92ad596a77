"""``custom_jvp`` functions and ``call_hi_primitive``: derivatives come from the JVP rule.

The oracle (nested ``jax.jvp``) differentiates the JVP rule exactly as
``jax.hessian`` does, so ``check`` compares stde with JAX's own semantics.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from tests import oracle

KEY = jax.random.PRNGKey(11)
check = oracle.check_collapsed


def _x(*values):
    return np.array(values, np.float64)


@jax.custom_jvp
def straight_through_round(x):
    """``round`` with the identity as its derivative (a straight-through estimator)."""
    return jnp.round(x)


straight_through_round.defjvp(lambda p, t: (straight_through_round(p[0]), t[0]))


@jax.custom_jvp
def clipped_cube(x):
    """``x³`` whose derivative is clipped to ``[-1, 1]``: the rule is not the body's."""
    return x ** 3


clipped_cube.defjvp(lambda p, t: (clipped_cube(p[0]), jnp.tanh(3 * p[0] ** 2) * t[0]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def scaled_product(x, y, scale):
    """``x·y`` whose rule (with symbolic zeros) adds ``scale`` times a surrogate term."""
    return x * y


def _scaled_product_jvp(scale, primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    out = x * y
    tangent = jnp.zeros_like(out)
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        tangent = tangent + jnp.cos(y) * dx * scale
    if not isinstance(dy, jax.custom_derivatives.SymbolicZero):
        tangent = tangent + jnp.sin(x) * dy
    return out, tangent


scaled_product.defjvp(_scaled_product_jvp, symbolic_zeros=True)


FUNCTIONS = {
    "sinc": jnp.sinc,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "straight_through_round": lambda x: straight_through_round(x) * jnp.sin(x),
    "clipped_cube": lambda x: clipped_cube(jnp.sin(x)) * x,
}


@pytest.mark.parametrize("name, order", [
    ("sinc", 1), ("sinc", 2), ("sinc", 3), ("sinc", 4), ("relu", 2), ("softplus", 3),
    ("gelu", 4), ("silu", 3), ("straight_through_round", 1), ("straight_through_round", 2),
    ("straight_through_round", 4), ("clipped_cube", 2), ("clipped_cube", 3),
    ("clipped_cube", 4),
])
def test_custom_jvp_functions_follow_their_rule(x64, name, order):
    f = FUNCTIONS[name]
    check(lambda x: f(x) * x, [_x(0.0, 0.31, -0.77, 1.4)], order, 3, KEY)


def test_sinc_hessian_at_zero_matches_jax_hessian(x64):
    """``jnp.sinc``'s derivatives at 0 come from its Maclaurin JVP rule."""
    x = jnp.zeros(2, jnp.float64)
    f = lambda x: jnp.sinc(2 * x[0] + x[1]) * jnp.cos(x[1])  # noqa: E731
    hessian = jax.hessian(f)(x)
    _, _, laplacian = stde.collapsed_jet(f, (x,), ((jnp.eye(2),),), (jnp.zeros(2),))
    np.testing.assert_allclose(laplacian, jnp.trace(hessian), rtol=1e-10)
    assert abs(float(jnp.trace(hessian))) > 1  # far from the body's answer


def test_symbolic_zeros_rule_sees_the_constant_argument(x64):
    """Only ``x`` moves: the rule sees ``dy`` as a symbolic zero, as under ``jax.jvp``."""
    y = jnp.float64(0.4)
    check(lambda x: scaled_product(x, y * x[0], 2.5), [_x(0.3, -0.6)], 3, 2, KEY)
    check(lambda x: scaled_product(x, y, 2.5), [_x(0.3, -0.6)], 3, 2, KEY)


def test_custom_jvp_of_two_arguments_both_moving(x64):
    check(lambda x, y: scaled_product(jnp.sin(x), y, 0.5), [_x(0.3, -0.6), _x(1.1, 0.2)],
          4, 3, KEY)


def test_custom_jvp_only_in_the_top_coefficient(x64):
    """A primal with no lower coefficients (only the summed top) enters linearly."""
    oracle.check_collapsed_against(
        lambda x, y: clipped_cube(x) * y, lambda x, y: clipped_cube(x) * y,
        [_x(0.3, -0.6), _x(1.1, 0.2)], 3, 2, KEY, lower=[True, False])


def test_custom_root_uses_its_tangent_solve(x64):
    """``lax.custom_root`` (``custom_jvp`` on JAX 0.10, ``call_hi_primitive`` on 0.12)."""
    def f(x):
        def solve(g, y0):
            return lax.fori_loop(0, 3, lambda i, y: y - g(y) / (3 * y ** 2 + 1), y0)
        return lax.custom_root(lambda y: y ** 3 + y - x, x / 2, solve,
                               lambda g, y: y / g(jnp.ones_like(y)))
    check(f, [_x(0.5, 2.0, 3.0)], 3, 2, KEY)


def _primitive_operand_shapes(jaxpr, name):
    """Shapes of the first operand of every ``name`` equation, sub-jaxprs included."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            shapes.append(tuple(eqn.invars[0].aval.shape))
        for param in eqn.params.values():
            for value in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    shapes += _primitive_operand_shapes(inner, name)
    return shapes


@pytest.mark.parametrize("size", [2, 4])
def test_slogdet_rule_is_differentiated_once_per_primal(x64, size):
    """``slogdet`` is a ``custom_jvp`` function (a closed form at n = 2, LU above).

    Its derivatives match nested jacfwd, and the nested JVPs of its rule share the primal
    point across directions: every ``lu`` factorises an unbatched ``n × n`` matrix, not one
    per direction (5 here).
    """
    a = jax.random.normal(KEY, (size, size), jnp.float64) + 3 * jnp.eye(size)
    f = lambda a: jnp.linalg.slogdet(a)[1]
    check(f, [a], 2, 5, KEY)
    check(f, [a], 3, 2, KEY)
    directions = jnp.ones((5, size, size))
    jaxpr = jax.make_jaxpr(lambda a, d: stde.collapsed_jet(f, (a,), ((d,),), (d[0],)))(
        a, directions)
    shapes = _primitive_operand_shapes(jaxpr.jaxpr, "lu")
    assert bool(shapes) == (size > 2)          # n = 2 has no LU at all
    assert all(shape == (size, size) for shape in shapes), shapes
