"""``custom_jvp`` at order 2: the JVP rule differentiated by stde's rules, as jax.hessian does."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from stde.core import JetValue
from stde.interpreter import Interpreter

pytestmark = pytest.mark.usefixtures("x64")


@jax.custom_jvp
def _softplus(x):
    return jnp.logaddexp(x, 0.0)


@_softplus.defjvp
def _softplus_jvp(primals, tangents):      # the derivative written as a stable sigmoid
    (x,), (t,) = primals, tangents
    return _softplus(x), jnp.where(x > 0, 1 / (1 + jnp.exp(-x)), jnp.exp(x) / (1 + jnp.exp(x))) * t


@jax.custom_jvp
def _recursive(x):
    return jnp.exp(x)


@_recursive.defjvp
def _recursive_jvp(primals, tangents):   # the rule calls the function itself
    (x,), (t,) = primals, tangents
    return _recursive(x), _recursive(x) * t


@jax.custom_jvp
def _pair(x, y):
    return jnp.sin(x) * y, jnp.cos(y) * x


@_pair.defjvp
def _pair_jvp(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return _pair(x, y), (jnp.cos(x) * y * tx + jnp.sin(x) * ty,
                         -jnp.sin(y) * x * ty + 2 * jnp.cos(y) * tx)   # 2: not the truth


def _functions():
    yield lambda z: jnp.sum(_softplus(z) * z)
    yield lambda z: jnp.sum(_recursive(z[:2] * z[1:]))
    yield lambda z: jnp.sum(jnp.stack(_pair(z[0] * z[1], jnp.tanh(z[2]))) ** 2)
    yield lambda z: jnp.linalg.slogdet(jnp.outer(z, z) + jnp.diag(1.0 + z ** 2))[1]


@pytest.mark.parametrize("index", range(4))
def test_laplacian_follows_the_jvp_rule_like_jax_hessian(index):
    f = list(_functions())[index]
    x = jnp.array([0.3, -0.7, 1.1])
    hessian_trace = jax.jit(lambda y: jnp.trace(jax.hessian(f)(y)))
    want = hessian_trace(x)
    np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-10)
    value, grad, lap = jax.jit(stde.value_grad_laplacian(f))(x)
    np.testing.assert_allclose(grad, jax.grad(f)(x), rtol=1e-10)
    np.testing.assert_allclose(lap, want, rtol=1e-10)
    grad_of_lap = jax.jit(jax.grad(lambda y: stde.value_grad_laplacian(f)(y)[2]))(x)
    np.testing.assert_allclose(grad_of_lap, jax.jit(jax.grad(hessian_trace))(x), rtol=1e-8)


@jax.custom_jvp
def _scaled_sin(a, x):
    return a * jnp.sin(x)


def _scaled_sin_jvp(primals, tangents):   # differentiable in x only, like betainc in a, b
    (a, x), (ta, tx) = primals, tangents
    if not isinstance(ta, jax.custom_derivatives.SymbolicZero):
        raise ValueError("_scaled_sin has no derivative in a")
    return _scaled_sin(a, x), a * jnp.cos(x) * tx


_scaled_sin.defjvp(_scaled_sin_jvp, symbolic_zeros=True)


def test_jvp_rule_is_not_asked_for_a_constant_operands_derivative():
    # jax.hessian holds the constant `a` fixed, so the rule never sees its tangent; the
    # interpreted rule (order 2) and the nested one (order 3) must not pass one either.
    def f(x):
        return jnp.sum(_scaled_sin(2.0, x) * x)

    x = jnp.array([0.3, -0.7, 1.1])
    want = jnp.trace(jax.hessian(f)(x))
    np.testing.assert_allclose(stde.laplacian(f)(x), want, rtol=1e-12)
    v = jnp.array([1.0, 0.5, -2.0])
    third = jax.jvp(lambda y: jax.jvp(lambda z: jax.jvp(f, (z,), (v,))[1], (y,), (v,))[1],
                    (x,), (v,))[1]
    _, (_, _, got) = stde.jet(f, (x,), ((v, jnp.zeros(3), jnp.zeros(3)),))
    np.testing.assert_allclose(got, third, rtol=1e-12)


def _dot_generals(jaxpr):
    """How many ``dot_general`` equations ``jaxpr`` holds, sub-jaxprs included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "dot_general"
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    count += _dot_generals(inner)
    return count


def test_solve_with_a_known_zero_right_hand_side_skips_a_product():
    a0 = jnp.array([[2.0, 0.3, 0.1], [0.2, 3.0, -0.4], [0.0, 0.5, 1.5]])
    a1 = jax.random.normal(jax.random.key(0), (4, 3, 3))
    b1 = jax.random.normal(jax.random.key(1), (4, 3, 2))   # transposed before the solve
    closed = jax.make_jaxpr(jnp.linalg.solve)(a0, b1[0])

    def solve(a0, a1, b1, zero_primal):
        inputs = [JetValue(a0, (a1,), None),
                  JetValue(jnp.zeros((3, 2)), (b1,), None, zero_primal)]
        (x,) = Interpreter(2, 4).eval_jaxpr(closed, inputs)
        return x

    marked, unmarked = solve(a0, a1, b1, True), solve(a0, a1, b1, False)
    assert marked.zero_primal and not unmarked.zero_primal
    for got, want in zip(marked.coefficients, unmarked.coefficients):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    counts = [_dot_generals(jax.make_jaxpr(solve, static_argnums=3)(a0, a1, b1, z).jaxpr)
              for z in (True, False)]
    assert counts[0] < counts[1], counts


def test_zero_primal_mark_follows_linear_maps_only():
    x = JetValue(jnp.zeros((2, 3)), (jnp.ones((1, 2, 3)),), None, True)
    y = JetValue(jnp.ones((3, 2)), (jnp.ones((1, 3, 2)),), None)

    def f(x, y):
        padded_max = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1), (1, 1), [(0, 0), (1, 1)])
        return x.T, x.T - 2 * x.T, x.T + y, x.T * y, padded_max

    closed = jax.make_jaxpr(f)(x.primal, y.primal)
    outs = Interpreter(2, 1).eval_jaxpr(closed, [x, y])
    # Only linear in x: the padded max is linear piecewise, and sends 0 to -inf at the pads.
    assert [o.zero_primal for o in outs] == [True, False, False, False, False]
    np.testing.assert_array_equal(outs[1].lower[0], -jnp.ones((1, 3, 2)))
    assert jnp.isneginf(outs[4].primal[:, 0]).all()


def test_a_thread_interpreting_a_jvp_rule_leaves_other_threads_alone():
    # Thread A stops inside a JVP rule met while stde interprets another JVP rule (a
    # nested level, which takes nested JVPs). Meanwhile this thread traces a Laplacian
    # whose JVP rule is at the top level: it must get the program it gets alone.
    entered, release = threading.Event(), threading.Event()

    @jax.custom_jvp
    def wait(x):
        return x

    @wait.defjvp
    def _wait_jvp(primals, tangents):
        entered.set()
        release.wait(timeout=60)
        return primals[0], tangents[0]

    @jax.custom_jvp
    def outer(x):
        return jnp.sin(x)

    @outer.defjvp
    def _outer_jvp(primals, tangents):
        return jnp.sin(primals[0]), jnp.cos(wait(primals[0])) * tangents[0]

    def softplus_program():
        return str(jax.make_jaxpr(stde.laplacian(lambda x: _softplus(x).sum()))(jnp.ones(3)))

    alone = softplus_program()
    results = {}
    other = threading.Thread(target=lambda: results.setdefault(
        "outer", stde.laplacian(lambda x: outer(x).sum())(jnp.array([0.3, -1.2]))))
    other.start()
    try:
        assert entered.wait(timeout=60)
        beside = softplus_program()
    finally:
        release.set()
        other.join(timeout=60)
    assert beside == alone
    # JAX's x64 setting is per thread: the other thread computed in float32.
    np.testing.assert_allclose(results["outer"], -np.sin([0.3, -1.2]).sum(), rtol=1e-6)
