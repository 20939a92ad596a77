"""The nested-JVP fallback for primitives without a Taylor rule, and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

import stde
from stde.rules import fallback, registry
from tests import oracle
from tests.conftest import forbid_fallback

KEY = jax.random.PRNGKey(7)
check = oracle.check_collapsed_against
# The fallback's one-time warning is tested on its own primitive below.
pytestmark = pytest.mark.filterwarnings("ignore:stde. primitive")


def _shaped(x):
    return jax.core.ShapedArray(np.shape(x), x.dtype)


def _unary_primitive(name, function, derivative, batchable):
    """A primitive with impl, abstract eval and JVP rule (and maybe a batching rule)."""
    primitive = Primitive(name)
    primitive.def_impl(function)
    primitive.def_abstract_eval(_shaped)
    ad.defjvp(primitive, lambda g, x: g * derivative(x))
    mlir.register_lowering(primitive, mlir.lower_fun(function, multiple_results=False))
    if batchable:
        batching.defvectorized(primitive)
    return primitive


# sinh without a Taylor rule: batched over directions by vmap, and one without a batching
# rule (evaluated one direction at a time).
SINH = _unary_primitive("stde_test_sinh", jnp.sinh, jnp.cosh, batchable=True)
SINH_UNBATCHED = _unary_primitive("stde_test_sinh_unbatched", jnp.sinh, jnp.cosh,
                                  batchable=False)


def _polar_impl(x, w, n):
    return [jnp.sin(x) * w + n.astype(x.dtype), jnp.cos(x) * w, jnp.floor(x).astype(jnp.int32)]


def _polar_abstract(x, w, n):
    return [_shaped(x), _shaped(x), jax.core.ShapedArray(np.shape(x), jnp.int32)]


def _polar_jvp(primals, tangents):
    x, w, n = primals
    dx, dw, _ = (ad.instantiate_zeros(t) for t in tangents)
    outs = POLAR.bind(x, w, n)
    d_first = jnp.cos(x) * w * dx + jnp.sin(x) * dw
    d_second = -jnp.sin(x) * w * dx + jnp.cos(x) * dw
    return outs, [d_first, d_second, ad.Zero(jax.core.ShapedArray(np.shape(x), jax.dtypes.float0))]


def _polar_batch(args, dims):
    size = next(np.shape(a)[d] for a, d in zip(args, dims) if d is not None)
    args = [jnp.broadcast_to(a, (size, *np.shape(a))) if d is None else jnp.moveaxis(a, d, 0)
            for a, d in zip(args, dims)]
    return POLAR.bind(*args), [0, 0, 0]


# Several results (one integer), a float operand and an integer operand.
POLAR = Primitive("stde_test_polar")
POLAR.multiple_results = True
POLAR.def_impl(_polar_impl)
POLAR.def_abstract_eval(_polar_abstract)
ad.primitive_jvps[POLAR] = _polar_jvp
batching.primitive_batchers[POLAR] = _polar_batch
mlir.register_lowering(POLAR, mlir.lower_fun(_polar_impl, multiple_results=True))

# No JVP rule at all.
NO_JVP = Primitive("stde_test_no_jvp")
NO_JVP.def_impl(jnp.sinh)
NO_JVP.def_abstract_eval(_shaped)
mlir.register_lowering(NO_JVP, mlir.lower_fun(jnp.sinh, multiple_results=False))


def _warnings_naming(record, name):
    return [w for w in record if name in str(w.message)]


X = jnp.array([0.3, -0.8, 1.1])


@pytest.mark.parametrize("order, count", [(1, 3), (2, 8), (4, 2)])
def test_unary_fallback_matches_oracle(x64, order, count):
    x = X.astype(jnp.float64)
    check(lambda x: jnp.tanh(SINH.bind(x) * x), lambda x: jnp.tanh(jnp.sinh(x) * x),
          [x], order, count, KEY)


def test_unary_fallback_order_six(x64):
    x = X.astype(jnp.float64)
    check(lambda x: SINH.bind(x) * x, lambda x: jnp.sinh(x) * x, [x], 6, 1, KEY)


@pytest.mark.parametrize("order, count", [(1, 1), (4, 3)])
def test_unbatched_primitive_loops_over_directions(x64, order, count):
    x = X.astype(jnp.float64)
    check(lambda x: SINH_UNBATCHED.bind(jnp.sin(x)), lambda x: jnp.sinh(jnp.sin(x)),
          [x], order, count, KEY)


@pytest.mark.parametrize("order, count", [(1, 2), (2, 5), (4, 2)])
def test_multiple_results_constant_and_integer_operands(x64, order, count):
    x = X.astype(jnp.float64)
    w = jnp.array([0.5, 2.0, -1.5])  # a constant float operand
    n = jnp.array([1, 2, 3], jnp.int32)  # an integer operand

    def f(x):
        first, second, integer = POLAR.bind(x * x, w, n)
        return first * second + integer.astype(x.dtype)

    def reference(x):
        first, second, integer = _polar_impl(x * x, w, n)
        return first * second + integer.astype(x.dtype)

    check(f, reference, [x], order, count, KEY)


def test_two_moving_operands_one_with_summed_top_only(x64):
    x = X.astype(jnp.float64)
    w = jnp.array([0.5, 2.0, -1.5])
    n = jnp.zeros(3, jnp.int32)

    def f(x, w):
        return POLAR.bind(x, w, n)[0]

    reference = lambda x, w: _polar_impl(x, w, n)[0]  # noqa: E731
    check(f, reference, [x, w], 3, 4, KEY, lower=[True, False])
    check(f, reference, [x, w], 3, 4, KEY, lower=[False, True])


@pytest.mark.parametrize("order, count", [(2, 3), (4, 2)])
def test_constant_operand_the_jvp_rule_cannot_differentiate(x64, monkeypatch, order, count):
    # betainc's JVP rule raises for a tangent in a or b, even a zero one; jax.hessian of
    # a function holding them constant works, and so must the fallback. betainc has a
    # Taylor rule (stde/rules/elementwise.py), taken out of the registry here.
    primitive = jax.lax.regularized_incomplete_beta_p
    monkeypatch.delitem(registry._RULES, primitive)
    fell_back = []
    monkeypatch.setattr(fallback, "_warn_once", fell_back.append)

    def f(x):
        return jax.scipy.special.betainc(2.0, 3.0, jax.nn.sigmoid(x)) * x

    check(f, f, [X.astype(jnp.float64)], order, count, KEY)
    assert set(fell_back) == {primitive.name}


def test_warns_exactly_once_naming_the_primitive():
    name = "stde_test_warn_once"
    primitive = _unary_primitive(name, jnp.sinh, jnp.cosh, batchable=True)
    x = jnp.array([0.1, 0.2])
    f = lambda x: primitive.bind(primitive.bind(x))  # noqa: E731  (two equations)
    with pytest.warns(UserWarning, match=name) as record:
        for _ in range(3):
            stde.collapsed_jet(f, (x,), ((jnp.ones((1, 2)),),), (jnp.zeros(2),))
    assert len(_warnings_naming(record, name)) == 1
    assert "stde.rules.register" in str(_warnings_naming(record, name)[0].message)


def test_debug_callbacks_run_once_per_call_without_a_warning(x64):
    """jax.debug.print and jax.debug.callback have no Taylor rule and no floating result:
    the fallback evaluates them, once per call as under jax.hessian, and says nothing (it
    warned of exponential cost before)."""
    seen = []

    def f(x):
        jax.debug.callback(lambda s: seen.append(float(s)), jnp.sum(x))
        jax.debug.print("stde test: |x|² = {s}", s=x @ x)
        return jnp.sum(jnp.sin(x) ** 2)

    x = jnp.array([0.1, -0.4, 0.7])
    want = jnp.trace(jax.hessian(f)(x))
    with forbid_fallback():
        got = stde.laplacian(f)(x)
        jax.effects_barrier()
        assert seen == pytest.approx([float(jnp.sum(x))] * 2)   # jax.hessian's and stde's
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(jax.jit(stde.jet, static_argnums=0)(
            f, (x,), ((x, 0 * x, 0 * x, 0 * x),))[1][3], jnp.einsum(
                "ijkl,i,j,k,l", jax.jacfwd(jax.jacfwd(jax.hessian(f)))(x), x, x, x, x),
            rtol=1e-10)


def test_registered_rule_replaces_the_fallback():
    primitive = _unary_primitive("stde_test_registered", jnp.sinh, jnp.cosh, batchable=True)
    calls = []

    def rule(ctx, inputs, **params):
        calls.append(ctx.order)
        (x,) = inputs
        return stde.core.JetValue(jnp.sinh(x.primal), x.lower, x.summed)  # deliberately wrong

    stde.rules.register(primitive, rule)
    x = jnp.array([0.1, 0.2])
    with forbid_fallback():
        _, (y1,), _ = stde.collapsed_jet(primitive.bind, (x,), ((jnp.ones((1, 2)),),),
                                         (jnp.zeros(2),))
    assert calls == [2]
    np.testing.assert_allclose(y1, jnp.ones((1, 2)))


def test_primitive_without_jvp_raises_naming_it():
    x = jnp.array([0.1, 0.2])
    with pytest.raises(stde.rules.UnsupportedPrimitiveError) as error:
        stde.collapsed_jet(lambda x: NO_JVP.bind(x) + x, (x,), ((jnp.ones((1, 2)),),),
                           (jnp.zeros(2),))
    message = str(error.value)
    assert "stde_test_no_jvp" in message
    assert "stde.rules.register" in message
    assert isinstance(error.value, NotImplementedError)


def test_values_nothing_returned_depends_on_are_not_interpreted():
    """Unused equations are skipped, eagerly too: here a rule-less primitive's result is
    discarded, or only returned as ``has_aux``'s aux (a plain call computes that)."""
    x = jnp.array([0.1, 0.2])
    _, (y1,), _ = stde.collapsed_jet(lambda x: (NO_JVP.bind(x), jnp.sin(x))[1], (x,),
                                     ((jnp.ones((1, 2)),),), (jnp.zeros(2),))
    np.testing.assert_allclose(y1, jnp.cos(x)[None])
    laplacian, aux = stde.laplacian(lambda x: (jnp.sin(x).sum(), NO_JVP.bind(x)),
                                    has_aux=True)(x)
    np.testing.assert_allclose(laplacian, -jnp.sin(x).sum())
    np.testing.assert_allclose(aux, jnp.sinh(x))


def test_primitive_without_jvp_is_fine_on_constants():
    x = jnp.array([0.1, 0.2])
    c = jnp.array([1.0, -1.0])
    _, (y1,), top = stde.collapsed_jet(lambda x: NO_JVP.bind(c) * x, (x,),
                                       ((jnp.ones((1, 2)),),), (jnp.zeros(2),))
    np.testing.assert_allclose(y1, jnp.sinh(c)[None])
    np.testing.assert_allclose(top, jnp.zeros(2))
