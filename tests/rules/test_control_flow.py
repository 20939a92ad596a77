"""Calls, custom derivatives, checkpointing and control flow against the nested-jacfwd oracle."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.ad_checkpoint import checkpoint_name

import stde
from stde.rules import control_flow
from tests import oracle
from tests.conftest import forbid_fallback

KEY = jax.random.PRNGKey(3)
check = oracle.check_collapsed
check_against = oracle.check_collapsed_against


def _x(*values):
    """A float64 array (NumPy, so it stays float64 outside the ``x64`` fixture)."""
    return np.array(values, np.float64)


def _jaxpr_text(f, *args):
    return str(jax.make_jaxpr(f)(*args))


def _first_coefficient(f, x):
    """``collapsed_jet`` of ``f`` at ``x`` along the unit directions, ``K = 2``."""
    d = x.shape[0]
    return stde.collapsed_jet(f, (x,), ((jnp.eye(d, dtype=x.dtype),),), (jnp.zeros_like(x),))


# --------------------------------------------------------------------------------------
# Activations (custom_jvp, jit inside) in a small MLP
# --------------------------------------------------------------------------------------


def _mlp(activation):
    """A 3 -> 6 -> 5 -> 1 network, and its pre-activations (to keep off relu's kinks)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    w1 = jax.random.normal(keys[0], (3, 6), jnp.float64)
    w2 = jax.random.normal(keys[1], (6, 5), jnp.float64) / 2
    w3 = jax.random.normal(keys[2], (5,), jnp.float64)
    b1 = jnp.linspace(-0.3, 0.4, 6, dtype=jnp.float64)

    def preactivations(x):
        first = x @ w1 + b1
        return first, activation(first) @ w2

    def f(x):
        return activation(preactivations(x)[1]) @ w3
    return f, preactivations


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_erf": functools.partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
}


@pytest.mark.parametrize("name, order, count", [
    ("relu", 2, 8), ("softplus", 3, 2), ("gelu_tanh", 3, 3), ("gelu_erf", 3, 1),
    ("silu", 4, 2), ("relu", 1, 4),
])
def test_mlp_activations(x64, name, order, count):
    f, preactivations = _mlp(ACTIVATIONS[name])
    x = _x(0.31, -0.52, 0.77)
    assert min(float(jnp.min(jnp.abs(p))) for p in preactivations(x)) > 1e-2  # off the kinks
    check(f, [x], order, count, KEY)


def test_logaddexp(x64):
    check(jnp.logaddexp, [_x(0.2, -1.0), _x(0.5, -0.3)], 3, 4, KEY)


def test_logsumexp(x64):
    check(lambda x: jax.nn.logsumexp(jnp.sin(x)), [_x(0.2, -1.0, 0.4)], 3, 5, KEY)


# --------------------------------------------------------------------------------------
# User-defined custom_jvp: derivatives come from the rule, as in jax.hessian.
# custom_vjp: the primal body defines the coefficients
# --------------------------------------------------------------------------------------


@jax.custom_jvp
def _straight_through_sin(x):
    return jnp.sin(x)


# A surrogate first-order rule: stde must follow it (and differentiate it), not the body.
# Its primal output calls the function itself, so that nested AD sees one consistent
# derivative (a rule returning jnp.sin(x) would give jax.hessian an order-dependent mix).
_straight_through_sin.defjvp(
    lambda primals, tangents: (_straight_through_sin(primals[0]), tangents[0]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _scaled_power(x, n):
    return x ** n / n


_scaled_power.defjvp(lambda n, primals, tangents: (
    _scaled_power(primals[0], n), primals[0] ** (n - 1) * tangents[0]))


@jax.custom_vjp
def _sin_times(x, y):
    return jnp.sin(x) * y


_sin_times.defvjp(lambda x, y: (jnp.sin(x) * y, (x, y)),
                  lambda res, g: (jnp.cos(res[0]) * res[1] * g, jnp.sin(res[0]) * g))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _apply(function, x):
    return function(x)


_apply.defvjp(lambda function, x: (function(x), x),
              lambda function, x, g: (jax.vjp(function, x)[1](g)[0],))


@jax.custom_jvp
def _clipped_gradient(x):
    return jnp.sin(x) * x


_clipped_gradient.defjvp(lambda primals, tangents: (
    _clipped_gradient(primals[0]),
    jnp.clip(jnp.cos(primals[0]) * primals[0] + jnp.sin(primals[0]), -0.5, 0.5) * tangents[0]))


@pytest.mark.parametrize("order, count", [(1, 3), (2, 2), (3, 1), (4, 2)])
def test_custom_jvp_follows_its_rule(x64, order, count):
    x = _x(0.3, -0.7, 1.2)
    check(lambda x: _straight_through_sin(x) * x, [x], order, count, KEY)
    check(lambda x: jnp.exp(_clipped_gradient(x)), [x], order, count, KEY)


def test_custom_jvp_rule_is_not_the_body(x64):
    """The straight-through rule's derivative is the identity, whatever the body does."""
    x = _x(0.3, -0.7, 1.2)
    hessian = jax.hessian(lambda x: _straight_through_sin(x).sum())(x)
    gradient = jax.grad(lambda x: _straight_through_sin(x).sum())(x)
    _, (y1, y2) = stde.jet(lambda x: _straight_through_sin(x).sum(), (x,),
                           ((jnp.ones(3), jnp.zeros(3)),))
    np.testing.assert_allclose(y1, gradient.sum())
    np.testing.assert_allclose(y2, hessian.sum(), atol=1e-12)
    np.testing.assert_allclose(y1, 3.0)  # the body would give Σ cos x


@pytest.mark.parametrize("f", [jnp.sinc, jax.nn.relu, jax.nn.softplus, jax.nn.silu,
                               lambda x: jax.nn.gelu(x, approximate=False),
                               lambda x: jax.nn.logsumexp(x) * x],
                         ids=["sinc", "relu", "softplus", "silu", "gelu", "logsumexp"])
def test_custom_jvp_laplacian_matches_hessian(x64, f):
    """``jnp.sinc`` at 0: the body's series is wrong there, its custom rule is right."""
    x = jnp.array([0.0, 0.4, -1.3])
    g = lambda x: jnp.sum(f(x) * jnp.cos(x))  # noqa: E731
    got, want = jax.jit(lambda x: (stde.operator(g, stde.operators.laplacian())(x),
                                   jnp.trace(jax.hessian(g)(x))))(x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_custom_jvp_with_nondiff_argnums(x64):
    x = _x(0.3, -0.7, 1.2)
    check(lambda x: _scaled_power(x, 3) + jnp.exp(x), [x], 5, 3, KEY)


def test_custom_vjp(x64):
    check_against(_sin_times, lambda x, y: jnp.sin(x) * y, [_x(0.3, -0.7), _x(1.5, 2.0)],
                  3, 6, KEY)


def test_custom_vjp_with_nondiff_argnums(x64):
    check_against(lambda x: _apply(jnp.tanh, x * x), lambda x: jnp.tanh(x * x),
                  [_x(0.3, -0.7, 0.1)], 2, 7, KEY)


# --------------------------------------------------------------------------------------
# composite and custom_vmap: the body defines the coefficients
# --------------------------------------------------------------------------------------

_OFFSET = np.array([0.5, -0.25, 1.0])   # a constant the bodies capture


def _sin_times_plain(x, y):
    return jnp.sin(x) * y + _OFFSET, jnp.exp(-x * y)


_sin_times_composite = lax.composite(_sin_times_plain, name="stde.test.sin_times")


@jax.custom_batching.custom_vmap
def _sin_times_custom_vmap(x, y):
    return _sin_times_plain(x, y)


@_sin_times_custom_vmap.def_vmap
def _sin_times_batched(axis_size, in_batched, x, y):
    x, y = (a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip((x, y), in_batched))
    return _sin_times_plain(x, y), (True, True)


def _summed(pair_function):
    return lambda x, y: sum(pair_function(jnp.tanh(x), y * y))


@pytest.mark.parametrize("wrapped", [_sin_times_composite, _sin_times_custom_vmap],
                         ids=["composite", "custom_vmap"])
@pytest.mark.parametrize("order, count", [(2, 3), (5, 2)])
def test_body_defined_calls(x64, wrapped, order, count):
    """Coefficients of the decomposition (``composite``: JAX has no JVP, so the fallback
    failed) or of the body (``custom_vmap``: the fallback warned and nested JVPs)."""
    with forbid_fallback():
        check_against(_summed(wrapped), _summed(_sin_times_plain),
                      [_x(0.3, -0.7, 1.2), _x(1.5, 2.0, -0.4)], order, count, KEY)


@pytest.mark.parametrize("wrapped", [_sin_times_composite, _sin_times_custom_vmap],
                         ids=["composite", "custom_vmap"])
def test_body_defined_calls_under_vmap_and_grad(x64, wrapped):
    points = np.linspace(-1.0, 1.0, 6).reshape(2, 3)

    def scalar(pair_function):
        return lambda x: jnp.sum(_summed(pair_function)(x, x[::-1]))
    f, reference = scalar(wrapped), scalar(_sin_times_plain)
    laplacian = jax.jit(jax.vmap(stde.laplacian(f)))
    want = jax.vmap(lambda x: jnp.trace(jax.hessian(reference)(x)))(points)
    np.testing.assert_allclose(laplacian(points), want, rtol=1e-12)
    _, _, sparse = jax.jit(jax.vmap(stde.value_grad_laplacian(f)))(points)   # sparse directions
    np.testing.assert_allclose(sparse, want, rtol=1e-12)
    grad_of_sum = jax.grad(lambda x: stde.laplacian(f)(x))(points[0])
    want_grad = jax.grad(lambda x: jnp.trace(jax.hessian(reference)(x)))(points[0])
    np.testing.assert_allclose(grad_of_sum, want_grad, rtol=1e-10)


# --------------------------------------------------------------------------------------
# linear_call: linear in its linear arguments, with its own transpose
# --------------------------------------------------------------------------------------

_MATRIX = np.random.default_rng(4).normal(size=(3, 3))


def _matrix_times(x, scale):
    """``scale · A x`` through ``linear_call`` (``scale`` a residual), with ``Aᵀ`` as transpose."""
    callee = lambda s, t: s * (_MATRIX @ t)  # noqa: E731
    transpose = lambda s, t: s * (_MATRIX.T @ t)  # noqa: E731
    return jax.custom_derivatives.linear_call(callee, transpose, scale, x)


def _network(times):
    return lambda x: jnp.tanh(times(jnp.sin(x) * x, 0.5)) * x


@pytest.mark.parametrize("order, count", [(2, 3), (4, 2)])
def test_linear_call(x64, order, count):
    # JAX cannot batch linear_call, so jax.hessian (and the fallback) fail on it.
    with forbid_fallback():
        check_against(_network(_matrix_times), _network(lambda x, s: s * (_MATRIX @ x)),
                      [_x(0.3, -0.7, 1.2)], order, count, KEY)


def test_linear_call_under_grad_and_a_moving_residual(x64):
    f = lambda x: jnp.sum(_network(_matrix_times)(x))  # noqa: E731
    reference = lambda x: jnp.sum(_network(lambda x, s: s * (_MATRIX @ x))(x))  # noqa: E731
    x = _x(0.3, -0.7, 1.2)
    # Reverse mode through the Laplacian uses linear_call's own transpose.
    np.testing.assert_allclose(jax.grad(stde.laplacian(f))(x), jax.grad(
        lambda x: jnp.trace(jax.hessian(reference)(x)))(x), rtol=1e-10)
    with pytest.raises(NotImplementedError, match="residuals"):
        stde.laplacian(lambda x: jnp.sum(_matrix_times(x, x[0])))(x)


# --------------------------------------------------------------------------------------
# jit and checkpoint
# --------------------------------------------------------------------------------------


def _inner(x):
    return jnp.sin(x) * x


def test_nested_jit(x64):
    inner = jax.jit(_inner)
    outer = jax.jit(lambda x: jnp.tanh(inner(x)) + jax.nn.relu(x))
    check(outer, [_x(0.3, -0.7, 1.2)], 3, 3, KEY)


def test_jit_boundary_keeps_its_name():
    inner = jax.jit(_inner)
    text = _jaxpr_text(lambda x: _first_coefficient(lambda x: inner(x) * 2, x), jnp.ones(3))
    assert "name=_inner" in text


def test_jit_called_twice_eagerly_does_not_recompile():
    inner = jax.jit(lambda x: jnp.cos(x) * x)
    x = jnp.array([0.1, 0.2, 0.3])
    body = jax.make_jaxpr(inner)(x).eqns[0].params["jaxpr"]  # jit's own trace cache
    first = _first_coefficient(inner, x)
    second = _first_coefficient(inner, x)
    jitted = control_flow._jitted_bodies[body]
    assert len(jitted) == 1
    (function,) = jitted.values()
    assert function._cache_size() == 1
    chex.assert_trees_all_equal(first, second)
    _first_coefficient(inner, x + 1)  # same shapes: still one compilation
    assert function._cache_size() == 1


def test_checkpoint(x64):
    def f(x):
        y = jax.checkpoint(lambda x: jnp.sin(x) * jnp.exp(x))(x)
        z = jax.checkpoint(
            lambda y: checkpoint_name(jnp.tanh(y), "t") * y,
            policy=jax.checkpoint_policies.save_only_these_names("t"))(y)
        return z
    check(f, [_x(0.3, -0.7, 1.2)], 4, 2, KEY)
    assert "remat" in _jaxpr_text(lambda x: _first_coefficient(f, x), jnp.ones(3))


# --------------------------------------------------------------------------------------
# cond / switch
# --------------------------------------------------------------------------------------


def _cond(x):
    return lax.cond(jnp.sum(x) > 0, lambda x: jnp.ones_like(x), lambda x: jnp.sin(x) * x, x)


def _switch(x):
    index = jnp.clip(jnp.floor(jnp.sum(x)), 0, 2).astype(jnp.int32)
    branches = [lambda x: x,  # coefficients from the input only
                lambda x: jnp.exp(x) * x,
                lambda x: jnp.full_like(x, 2.0)]  # none at all
    return lax.switch(index, branches, x)


@pytest.mark.parametrize("x, order, count", [
    (_x(0.3, 0.2), 3, 2),  # constant branch
    (_x(-0.3, 0.2), 6, 1),  # sin branch
    (_x(-0.3, 0.2), 1, 3),
])
def test_cond_each_branch(x64, x, order, count):
    check(_cond, [x], order, count, KEY)


@pytest.mark.parametrize("x", [_x(0.1, 0.2), _x(0.7, 0.6), _x(1.5, 1.4)])
def test_switch_each_branch(x64, x):
    check(_switch, [x], 3, 4, KEY)


@pytest.mark.parametrize("x", [_x(0.1, 0.2), _x(-0.7, 0.2)])
def test_cond_with_symbolic_zeros_in_the_input(x64, x):
    """``jet`` with ``x_2 = x_3 = 0``: the branches' outputs have different zero patterns."""
    v = _x(0.5, -1.0)
    f = lambda x: lax.cond(jnp.sum(x) > 0, lambda x: 3 * x, jnp.sin, x)  # noqa: E731
    y, coefficients = stde.jet(f, (x,), ((v, None, None),))
    want = jax.jit(lambda x: oracle.taylor(f, [x], [[v, jnp.zeros(2), jnp.zeros(2)]]))(x)
    np.testing.assert_allclose(y, want[0], rtol=1e-12)
    chex.assert_trees_all_close(list(coefficients), list(want[1:]), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------
# scan, fori_loop, lax.map, while
# --------------------------------------------------------------------------------------

_W = np.random.default_rng(1).normal(size=(3, 3)) / 2
_U = np.random.default_rng(2).normal(size=(2, 3))
_V = np.random.default_rng(3).normal(size=(3,))


def _rnn(reverse, unroll=1):
    def f(x):
        xs = jnp.stack([jnp.sin(x), x * x], axis=1)  # (T, 2), input-dependent

        def cell(h, x_t):
            h = jnp.tanh(h @ _W + x_t @ _U)
            return h, h @ _V

        h, ys = lax.scan(cell, jnp.zeros(3, x.dtype), xs, reverse=reverse, unroll=unroll)
        return jnp.concatenate([h, ys])
    return f


@pytest.mark.parametrize("reverse, unroll, order, count", [
    (False, 1, 3, 3), (True, 2, 3, 2), (False, 1, 1, 5),
])
def test_scan_rnn(x64, reverse, unroll, order, count):
    check(_rnn(reverse, unroll), [_x(0.3, -0.7, 1.2, 0.4)], order, count, KEY)


def test_scan_scalar_carry_with_python_float_literal(x64):
    """``mul c 0.7`` in the body: a weak-typed scalar literal next to a scalar carry."""
    f = lambda x: lax.scan(lambda c, v: (jnp.tanh(c * 0.7 + v), c), 0.0, x)  # noqa: E731
    check(lambda x: jnp.concatenate([f(x)[0][None], f(x)[1]]), [_x(0.3, -0.5, 0.8)], 3, 2, KEY)


def test_training_through_control_flow(x64):
    """``grad`` and ``vmap`` of a Laplacian through checkpoint, jit, scan and cond."""
    def f(x, w):
        def inner(x):
            h, ys = lax.scan(lambda c, v: (jnp.tanh(c * w + v), c), 0.0, x)
            return lax.cond(h > 0, lambda: h * jnp.sum(ys), lambda: jnp.sin(h))
        return jax.checkpoint(jax.jit(inner))(x)

    def laplacian(x, w):
        return _first_coefficient(lambda x: f(x, w), x)[2]

    def reference(x, w):
        return jnp.trace(jax.hessian(f)(x, w))

    x, w = _x(0.3, -0.5, 0.8), 0.7
    np.testing.assert_allclose(jax.grad(laplacian, argnums=1)(x, w),
                               jax.grad(reference, argnums=1)(x, w), rtol=1e-10)
    xs = np.stack([x, -x, 2 * x])
    np.testing.assert_allclose(jax.jit(jax.vmap(laplacian, (0, None)))(xs, w),
                               jax.vmap(reference, (0, None))(xs, w), rtol=1e-10)


def test_scan_with_length_and_no_xs(x64):
    f = lambda x: lax.scan(lambda c, _: (jnp.sin(c) * x, c), x, None, length=3)[1]  # noqa: E731
    check(f, [_x(0.3, -0.7)], 3, 2, KEY)


def test_fori_loop(x64):
    f = lambda x: lax.fori_loop(0, 4, lambda i, c: jnp.cos(c) * x + i, x)  # noqa: E731
    assert "scan" in _jaxpr_text(f, _x(0.3, -0.7))
    check(f, [_x(0.3, -0.7)], 4, 3, KEY)


def test_fori_loop_with_traced_bounds_is_a_while(x64):
    def f(x):
        upper = 3 + jnp.argmax(x)  # traced: fori_loop lowers to a while loop
        return lax.fori_loop(0, upper, lambda i, c: jnp.sin(c) + x * i, jnp.ones_like(x))
    assert "while" in _jaxpr_text(f, _x(0.3, -0.7))
    check(f, [_x(0.3, -0.7)], 3, 2, KEY)


def test_lax_map(x64):
    f = lambda x: lax.map(lambda row: jnp.sin(row) @ row, x.reshape(3, 2))  # noqa: E731
    check(f, [_x(0.3, -0.7, 1.2, 0.4, -0.1, 0.9)], 2, 6, KEY)


def test_lax_map_batched(x64):
    f = lambda x: lax.map(jnp.exp, x, batch_size=2)  # noqa: E731
    check(f, [_x(0.3, -0.7, 1.2, 0.4)], 3, 2, KEY)


def _newton_sqrt(x):
    def body(carry):
        i, y = carry
        return i + 1, 0.5 * (y + x / y)
    # The predicate looks at the primal of y; the initial y has no coefficients.
    _, y = lax.while_loop(lambda c: (c[0] < 30) & jnp.all(c[1] > 0), body,
                          (0, jnp.ones_like(x)))
    return y


def _cardano(x):
    """The real root of ``y³ + y - x = 0`` in closed form."""
    s = jnp.sqrt(x ** 2 / 4 + 1 / 27)
    return jnp.cbrt(x / 2 + s) + jnp.cbrt(x / 2 - s)


def _newton_cubic_root(x):
    """The root of ``y³ + y = x`` by Newton (its inverse function is ``x = y³ + y``)."""
    def body(carry):
        i, y = carry
        return i + 1, y - (y ** 3 + y - x) / (3 * y ** 2 + 1)
    return lax.while_loop(lambda c: c[0] < 40, body, (0, x / 2))[1]


@pytest.mark.parametrize("order, count", [(2, 8), (5, 2)])
def test_while_newton_sqrt(x64, order, count):
    check_against(_newton_sqrt, jnp.sqrt, [_x(0.5, 2.0, 3.0)], order, count, KEY)


def test_while_newton_root_of_smooth_function(x64):
    x = _x(0.5, 2.0, 3.0)
    np.testing.assert_allclose(_newton_cubic_root(x), _cardano(x), rtol=1e-12)
    check_against(_newton_cubic_root, _cardano, [x], 3, 3, KEY, rtol=1e-8)


def _newton_cubic_root_per_element(x):
    """``_newton_cubic_root`` under ``vmap``, each element stopping at its own tolerance:
    the loop's predicate is batched (its ``cond_jaxpr`` returns one flag per element)."""
    def root(x):
        def body(carry):
            i, y = carry
            return i + 1, y - (y ** 3 + y - x) / (3 * y ** 2 + 1)
        return lax.while_loop(lambda c: jnp.abs(c[1] ** 3 + c[1] - x) > 1e-13 * x, body,
                              (0, x / 2))
    return jax.vmap(root)(x)


def test_vmapped_while_with_batched_predicate(x64):
    x = _x(0.5, 3.0, 30.0)
    jaxpr = jax.make_jaxpr(_newton_cubic_root_per_element)(x)
    (loop,) = [e for e in jaxpr.eqns if e.primitive.name == "while"]
    assert loop.params["cond_jaxpr"].out_avals[0].shape == (3,)
    iterations, y = _newton_cubic_root_per_element(x)
    assert len(set(np.asarray(iterations).tolist())) == 3  # each element stops on its own
    np.testing.assert_allclose(y, _cardano(x), rtol=1e-12)
    f = lambda x: _newton_cubic_root_per_element(x)[1]  # noqa: E731
    check(f, [x], 3, 3, KEY)  # the loop unrolled per element (nested jvp)
    check_against(f, _cardano, [x], 3, 3, KEY, rtol=1e-8)
    g = lambda x: jnp.sum(f(x) ** 2)  # noqa: E731
    np.testing.assert_allclose(stde.laplacian(g)(x), jnp.trace(jax.hessian(
        lambda x: jnp.sum(_cardano(x) ** 2))(x)), rtol=1e-8)


def test_nested_vmap_of_fori_loops_with_per_element_trip_counts(x64):
    """Two ``vmap``s of a ``fori_loop`` with traced bounds: a 2-D batched predicate."""
    trips = jnp.array([[1, 3, 2], [5, 0, 2]])

    def f(x):
        def loop(n, xi):
            return lax.fori_loop(0, n, lambda i, c: jnp.sin(c) * xi + i, xi)
        return jax.vmap(jax.vmap(loop))(trips, x.reshape(2, 3)).reshape(6)
    jaxpr = jax.make_jaxpr(f)(jnp.ones(6))
    (loop,) = [e for e in jaxpr.eqns if e.primitive.name == "while"]
    assert loop.params["cond_jaxpr"].out_avals[0].shape == (2, 3)
    check(f, [_x(0.3, -0.7, 1.2, 0.4, -0.1, 0.9)], 3, 2, KEY)


def test_hyp1f1_loops_with_batched_predicates(x64):
    """``jax.scipy.special.hyp1f1`` sums its series in a ``vmap``-ped while loop.

    JAX's own hyp1f1 adds a boolean to an integer, so this test opts out of
    ``--strict-modes``' dtype promotion (the Newton test above runs under it)."""
    f = lambda x: jnp.sum(jax.scipy.special.hyp1f1(1.2, 2.3, x) ** 2)  # noqa: E731
    x = _x(0.2, 0.4, 0.6, 0.8)
    with jax.numpy_dtype_promotion("standard"):
        got, want = jax.jit(lambda x: (stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x))))(x)
    np.testing.assert_allclose(got, want, rtol=1e-10)


# --------------------------------------------------------------------------------------
# custom_linear_solve
# --------------------------------------------------------------------------------------


def _system(x):
    a = jnp.eye(3) * 3 + jnp.outer(jnp.sin(x), x)
    return a, jnp.exp(x)


@pytest.mark.parametrize("order, count", [(1, 2), (3, 3)])
def test_linalg_solve_with_moving_matrix(x64, order, count):
    f = lambda x: jnp.linalg.solve(*_system(x))  # noqa: E731
    assert "custom_linear_solve" in _jaxpr_text(f, jnp.ones(3))
    check_against(f, lambda x: jnp.linalg.inv(_system(x)[0]) @ _system(x)[1],
                  [_x(0.3, -0.7, 0.2)], order, count, KEY)


def test_conjugate_gradient(x64):
    """``cg``: a ``custom_linear_solve`` whose solver is a while loop, matvec moving with x."""
    a = np.eye(3) * 3 + 0.2

    def f(x):
        matvec = lambda v: (a + jnp.diag(x ** 2)) @ v  # noqa: E731
        return jax.scipy.sparse.linalg.cg(matvec, jnp.sin(x), tol=1e-14)[0]

    check_against(f, lambda x: jnp.linalg.inv(a + jnp.diag(x ** 2)) @ jnp.sin(x),
                  [_x(0.3, -0.5, 0.8)], 3, 2, KEY, rtol=1e-7)


def test_custom_root(x64):
    """``lax.custom_root``: derivatives by the implicit function theorem, as in JAX.

    A ``custom_jvp`` on JAX 0.10 and a ``call_hi_primitive`` on JAX 0.11+; with an exact
    tangent solve its Taylor series is that of the root, with an approximate one it is
    what ``jax.hessian`` gives.
    """
    def root(x, tangent_solve):
        def solve(g, y0):
            return lax.fori_loop(0, 40, lambda i, y: y - g(y) / (3 * y ** 2 + 1), y0)
        return lax.custom_root(lambda y: y ** 3 + y - x, x / 2, solve, tangent_solve)

    exact = lambda g, y: y / g(jnp.ones_like(y))  # noqa: E731  (g: v ↦ (3y²+1) v)
    x = _x(0.5, 2.0, 3.0)
    with forbid_fallback():
        check_against(lambda x: root(x, exact), _cardano, [x], 3, 2, KEY, rtol=1e-8)
        check(lambda x: root(x, lambda g, y: y / 4.0), [x], 3, 2, KEY, rtol=1e-8)


def test_linalg_solve_with_constant_matrix(x64):
    a = jnp.eye(3) * 2 + 0.1
    check(lambda x: jnp.linalg.solve(a, jnp.sin(x)), [_x(0.3, -0.7, 0.2)], 3, 2, KEY)


# --------------------------------------------------------------------------------------
# Zero-pattern helpers
# --------------------------------------------------------------------------------------


def test_conform_rejects_a_coefficient_outside_the_pattern():
    value = stde.core.JetValue(jnp.zeros(2), (jnp.ones((1, 2)),), None)
    with pytest.raises(ValueError, match="zero pattern"):
        control_flow.conform(value, (False, False), directions=1)
