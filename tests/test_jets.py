"""collapsed_jet and jet: correctness against nested jacfwd, jax.experimental.jet, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental import jet as jax_jet

import stde
from stde.pinn.harness import init_mlp, mlp
from tests.oracle import check_collapsed, taylor

pytestmark = pytest.mark.usefixtures("x64")


@pytest.mark.parametrize("order,count", [(1, 1), (2, 1), (2, 8), (3, 2), (4, 5), (5, 3), (6, 4),
                                         pytest.param(6, 1, marks=pytest.mark.slow)])
def test_tanh_mlp_matches_nested_jacfwd(order, count):
    params = init_mlp(jax.random.PRNGKey(0), [3, 6, 5, 1], bias=0.1)
    x = jnp.array([0.3, -0.2, 0.5])
    check_collapsed(lambda x: mlp(params, x), [x], order, count, jax.random.PRNGKey(order))


def test_matmul_chain_of_two_jets():
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3))

    def f(x, y):
        a = jnp.outer(x, y) @ w
        return (a @ a.T @ x).sum() + (x @ w) @ jnp.sin(y)

    x, y = jnp.array([0.1, 0.4, -0.3]), jnp.array([0.2, -0.5, 0.7])
    for order, count in [(2, 3), (3, 8), (5, 2)]:
        check_collapsed(f, [x, y], order, count, jax.random.PRNGKey(order))


def test_sin_of_sin_vector_output():
    x = jnp.array([[0.1, 0.4], [-0.3, 1.2]])
    check_collapsed(lambda x: jnp.sin(jnp.sin(x)) * x, [x], 6, 3, jax.random.PRNGKey(2))


def test_summed_is_sum_of_per_direction_tops():
    f = lambda x: jnp.tanh(x).prod() + jnp.exp(x[0] * x[1])
    x = jnp.array([0.2, -0.4])
    coefficients = jax.random.normal(jax.random.PRNGKey(3), (4, 3, 2))  # (R, K, D)
    _, _, summed = stde.collapsed_jet(f, (x,), (tuple(coefficients[:, k] for k in range(2)),),
                                      (coefficients[:, 2].sum(0),))
    tops = [stde.jet(f, (x,), (tuple(c),))[1][2] for c in coefficients]
    np.testing.assert_allclose(summed, sum(tops), rtol=1e-10)


def test_order_one_is_jvp_of_the_sum():
    f = lambda x: jnp.sin(x) @ x
    x, v = jnp.array([0.3, 0.1]), jnp.array([1.0, -2.0])
    value, lower, summed = stde.collapsed_jet(f, (x,), ((),), (v,))
    assert lower == []
    np.testing.assert_allclose(summed, jax.jvp(f, (x,), (v,))[1], rtol=1e-12)
    np.testing.assert_allclose(value, f(x))


def test_laplacian_from_identity_directions():
    f = lambda x: jnp.exp(jnp.sin(x) @ x)
    x = jnp.array([0.3, -0.1, 0.2])
    _, _, lap = stde.collapsed_jet(f, (x,), ((jnp.eye(3),),), (None,))
    np.testing.assert_allclose(lap, jnp.trace(jax.hessian(f)(x)), rtol=1e-10)


@pytest.mark.parametrize("fun", [
    lambda x: jnp.tanh(x) * jnp.sin(x),
    lambda x: jnp.exp(x) / (1.0 + x ** 2),
    lambda x: jnp.log(1.0 + x ** 2) @ jnp.cos(x),
])
def test_jet_agrees_with_jax_experimental_jet(fun):
    x = jnp.array([0.3, -0.7, 1.1])
    series = tuple(jax.random.normal(k, (3,)) for k in jax.random.split(jax.random.PRNGKey(4), 4))
    want_value, want_series = jax_jet.jet(fun, (x,), (series,))
    value, got_series = stde.jet(fun, (x,), (series,))
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(np.stack(got_series), np.stack(want_series), rtol=1e-10)


def test_jet_matches_oracle_on_two_primals():
    f = lambda x, y: jnp.sin(x * y) + x ** 3
    x, y = jnp.float64(0.4), jnp.float64(-1.3)
    sx, sy = (1.0, 0.5, -0.2), (0.3, 0.0, 2.0)
    value, series = stde.jet(f, (x, y), (sx, sy))
    want = taylor(f, [x, y], [[jnp.float64(c) for c in sx], [jnp.float64(c) for c in sy]])
    np.testing.assert_allclose([value, *series], want, rtol=1e-11)


def test_jet_accepts_pytrees():
    f = lambda p: {"a": jnp.sin(p["x"]) * p["y"], "b": (p["x"] ** 2).sum()}
    primal = {"x": jnp.array([0.1, 0.2]), "y": jnp.float64(0.5)}
    series = [{"x": jnp.array([1.0, 0.0]), "y": jnp.float64(1.0)},
              {"x": jnp.array([0.0, 1.0]), "y": jnp.float64(0.0)}]
    value, out = stde.jet(f, (primal,), (series,))
    assert set(out) == {"a", "b"} and len(out["a"]) == 2
    flat = lambda t: f({"x": primal["x"] + t * series[0]["x"] + t ** 2 / 2 * series[1]["x"],
                        "y": primal["y"] + t * series[0]["y"]})
    d2 = jax.jacfwd(jax.jacfwd(flat))(0.0)
    np.testing.assert_allclose(out["a"][1], d2["a"], rtol=1e-11)
    np.testing.assert_allclose(out["b"][1], d2["b"], rtol=1e-11)


def test_collapsed_jet_pytree_output_and_none_coefficients():
    f = lambda x: (jnp.sin(x), {"s": jnp.sum(x ** 3)})
    x = jnp.array([0.2, 0.6])
    value, lower, summed = stde.collapsed_jet(f, (x,), ((jnp.eye(2), None),), (None,))
    assert lower[0][1].shape == (2, 2)  # K-1 = 2 coefficients per output leaf, each (R, *shape)
    np.testing.assert_allclose(lower[1]["s"][0], 3 * x ** 2, rtol=1e-12)  # ∂_i of Σ x³
    np.testing.assert_allclose(lower[1]["s"][1], 6 * x, rtol=1e-12)  # ∂_i²
    np.testing.assert_allclose(summed[1]["s"], 12.0, rtol=1e-12)  # Σ_i ∂_i³
    np.testing.assert_allclose(summed[0], -jnp.cos(x), rtol=1e-12)


def test_factorial_scaled_false_matches_jax_experimental_jet():
    x = jnp.array([0.3, -0.2, 0.5])
    series = [jax.random.normal(jax.random.PRNGKey(k), (3,)) for k in range(4)]
    f = lambda x: jnp.tanh(jnp.sin(x) * x)  # noqa: E731
    want_primal, want = jax_jet.jet(f, (x,), (series,), factorial_scaled=False)
    got_primal, got = stde.jet(f, (x,), (series,), factorial_scaled=False)
    np.testing.assert_allclose(got_primal, want_primal, rtol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # Plain Taylor coefficients are the derivative-scaled ones over k!.
    _, scaled = stde.jet(f, (x,), ([c * math.factorial(k) for k, c in enumerate(series, 1)],))
    for k, (c, d) in enumerate(zip(got, scaled), start=1):
        np.testing.assert_allclose(c * math.factorial(k), d, rtol=1e-12)


def test_bool_primal_with_zero_series_matches_jax_experimental_jet():
    b = jnp.array([True, False, True])
    x = jnp.array([0.3, -0.2, 0.5])
    series_x = [jnp.array([1.0, 0.5, -0.3]), jnp.array([0.2, 0.1, 0.7])]
    f = lambda b, x: jnp.where(b, jnp.sin(x), x * x)  # noqa: E731
    want_primal, want = jax_jet.jet(f, (b, x), ([jnp.zeros(3)] * 2, series_x))
    for series_b in ([None, None], [jnp.zeros(3), jnp.zeros(3)], [np.zeros(3, bool)] * 2):
        got_primal, got = stde.jet(f, (b, x), (series_b, series_x))
        np.testing.assert_array_equal(got_primal, want_primal)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_integer_primal_is_a_constant():
    n = jnp.array([2, -1, 3])
    x = jnp.array([0.3, -0.2, 0.5])
    series_x = [jnp.array([1.0, 0.5, -0.3]), jnp.array([0.2, 0.1, 0.7])]
    f = lambda n, x: jnp.sin(x) * n.astype(x.dtype)  # noqa: E731
    float0 = np.zeros(3, jax.dtypes.float0)
    want = taylor(lambda x: f(n, x), [x], [series_x])
    for series_n in ([None, None], [jnp.zeros(3, int), 0.0], [float0, float0]):
        got_primal, got = stde.jet(f, (n, x), (series_n, series_x))
        np.testing.assert_allclose(got_primal, want[0], rtol=1e-12)
        np.testing.assert_allclose(got, want[1:], rtol=1e-12)


class TestNonZeroSeriesOfAConstantPrimal:
    """A series for an integer or boolean primal is never dropped in silence."""

    def test_integer_primal_of_sin(self):
        # jax.experimental.jet pushes this series on (cos(x)·x1); stde refuses it.
        with pytest.raises(ValueError, match=r"series\[0\]\[0\] is non-zero but its primal has "
                                             r"dtype int32.*Cast the primal to a float"):
            stde.jet(jnp.sin, (jnp.arange(3, dtype=jnp.int32),),
                     ([jnp.arange(3, dtype=jnp.int32)],))

    def test_cast_primal_follows_jax_experimental_jet(self):
        x = jnp.arange(3.0)
        want = jax_jet.jet(jnp.sin, (x,), ([x],))
        got = stde.jet(jnp.sin, (x,), ([x],))
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)

    def test_bool_primal(self):
        b = jnp.array([True, False])
        with pytest.raises(ValueError, match=r"series\[0\]\[1\] is non-zero.*dtype bool"):
            stde.jet(lambda b, x: jnp.where(b, x, -x), (b, jnp.ones(2)),
                     ([None, jnp.ones(2)], [jnp.ones(2), None]))

    def test_collapsed_jet_series_and_summed(self):
        n = jnp.arange(3)
        with pytest.raises(ValueError, match=r"series\[0\]\[0\] is non-zero"):
            stde.collapsed_jet(jnp.sin, (n,), ((jnp.eye(3),),), (None,))
        with pytest.raises(ValueError, match=r"summed\[0\] is non-zero"):
            stde.collapsed_jet(jnp.sin, (n,), ((None,),), (jnp.ones(3),))

    def test_traced_series(self):
        n = jnp.arange(3)
        with pytest.raises(ValueError, match=r"traced array.*Pass None"):
            jax.jit(lambda s: stde.jet(jnp.sin, (n,), ([s],)))(jnp.zeros(3))


def test_jet_zero_order_returns_value():
    value, series = stde.jet(jnp.sin, (jnp.float64(0.5),), ((),))
    np.testing.assert_allclose(value, np.sin(0.5))
    assert series == []


class TestErrors:
    x = jnp.ones(3)

    def test_series_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"series\[0\]\[0\] has shape \(2, 4\).*\(R, \*primal"):
            stde.collapsed_jet(jnp.sin, (self.x,), ((jnp.ones((2, 4)),),), (self.x,))

    def test_jet_series_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"series\[0\]\[1\] has shape \(4,\)"):
            stde.jet(jnp.sin, (self.x,), ((self.x, jnp.ones(4)),))

    def test_different_directions(self):
        with pytest.raises(ValueError, match="share the number R"):
            stde.collapsed_jet(lambda a, b: a * b, (self.x, self.x),
                               ((jnp.ones((2, 3)),), (jnp.ones((5, 3)),)), (self.x, self.x))

    def test_integer_series_of_a_float_primal(self):
        with pytest.raises(TypeError, match=r"series\[0\]\[1\] has dtype int32.*float32 "
                                            r"primal must be floating-point.*jnp.asarray"):
            stde.jet(jnp.sin, (self.x,), ((self.x, jnp.arange(3, dtype=jnp.int32)),))

    def test_complex_series_of_a_real_primal(self):
        with pytest.raises(TypeError, match="complex .* primal is real.*imaginary part"):
            stde.jet(jnp.sin, (self.x,), ((lax.complex(jnp.zeros_like(self.x), self.x),),))

    def test_fun_returns_none(self):
        with pytest.raises(TypeError, match="fun returned None.*return"):
            stde.jet(lambda x: None, (self.x,), ((self.x,),))

    def test_fun_returns_python_int(self):
        with pytest.raises(TypeError, match=r"Python int 3.*jnp.asarray\(3.0\)"):
            stde.jet(lambda x: 3, (self.x,), ((self.x,),))

    def test_inconsistent_order(self):
        with pytest.raises(ValueError, match="same number K-1"):
            stde.collapsed_jet(lambda a, b: a * b, (self.x, self.x),
                               ((jnp.ones((2, 3)),), ()), (self.x, self.x))

    def test_summed_missing(self):
        with pytest.raises(TypeError, match="summed is missing"):
            stde.collapsed_jet(jnp.sin, (self.x,), ((jnp.ones((2, 3)),),), None)

    def test_summed_misshaped(self):
        with pytest.raises(ValueError, match=r"summed\[0\] has shape \(2,\)"):
            stde.collapsed_jet(jnp.sin, (self.x,), ((jnp.ones((2, 3)),),), (jnp.ones(2),))

    def test_summed_wrong_count(self):
        with pytest.raises(ValueError, match="summed has 2 entries but there are 1 primals"):
            stde.collapsed_jet(jnp.sin, (self.x,), ((jnp.ones((2, 3)),),), (self.x, self.x))

    def test_fun_returns_non_array(self):
        with pytest.raises(TypeError, match="fun must return an array.*str"):
            stde.jet(lambda x: "hello", (self.x,), ((self.x,),))

    def test_primals_not_a_tuple(self):
        with pytest.raises(TypeError, match="primals must be a tuple"):
            stde.jet(jnp.sin, self.x, ((self.x,),))

    def test_pytree_mismatch(self):
        with pytest.raises(ValueError, match="tree structure"):
            stde.jet(lambda p: p["a"], ({"a": self.x},), (({"b": self.x},),))

    def test_cannot_infer_directions(self):
        with pytest.raises(ValueError, match="cannot infer the number R"):
            stde.collapsed_jet(jnp.sin, (self.x,), ((None,),), (None,))


def test_single_attention_block():
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    wq, wk, wv = (jax.random.normal(k, (3, 3)) / 2 for k in keys[:3])

    def attention(x):  # x: (tokens=4, features=3)
        q, k, v = x @ wq, x @ wk, x @ wv
        weights = jax.nn.softmax(q @ k.T / jnp.sqrt(3.0), axis=-1)
        h = x + weights @ v
        h = (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-5)
        return jnp.sum(h ** 2 * jnp.arange(3.0, dtype=h.dtype)[None, :])

    x = jax.random.normal(keys[3], (4, 3))
    for order, count in [(2, 6), (4, 2)]:
        check_collapsed(attention, [x], order, count, jax.random.PRNGKey(order))


def test_scalar_jet_meets_array_jet_in_sums_and_remainders():
    def f(x):
        s = jnp.sum(x * x)
        return jnp.sin(x) + s - jnp.cos(s) * x + lax.rem(x + 3.0, s + 0.5)

    check_collapsed(f, [jnp.array([0.3, 0.9, -0.4])], 3, 3, jax.random.PRNGKey(7))
