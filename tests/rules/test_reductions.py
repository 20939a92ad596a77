"""Reductions, scans, sorting, pooling and scatters against the nested-jacfwd oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from tests.conftest import forbid_fallback
from tests.oracle import (
    assert_jet_matches_jax,
    backend_tolerance,
    case_tests,
    check_collapsed_against,
    collapsed,
    random_directions,
)


def normal(shape, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def with_zeros(shape, *positions, seed=0):
    x = normal(shape, seed)
    for p in positions:
        x = x.at[p].set(0.0)
    return x


def max_pool(x, window=(2, 2), strides=(2, 2), padding="VALID"):
    return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)


def min_pool(x):
    return lax.reduce_window(x, jnp.inf, lax.min, (2, 3), (1, 1), "SAME",
                             window_dilation=(1, 2))


def sums_of_powers(x, axes=(1,)):
    """``lax.reduce`` of two operands (JAX's ``reduce``, not ``reduce_sum``): Σ sin(x)·x, Σ x²."""
    return jnp.stack(lax.reduce((jnp.sin(x) * x, x * x), (0.0, 0.0),
                                lambda a, b: (a[0] + b[0], a[1] + b[1]), axes))


def reduce_logaddexp(x):
    """A reducer JAX does not turn into a monoid reduction (5 entries: an odd count)."""
    return lax.reduce(jnp.sin(x) * x, -jnp.inf, jnp.logaddexp, (0,))


def max_with_index(x):
    """A variadic arg-max reduction: the maximum's value and its (integer) position."""
    def larger(a, b):
        first = a[0] >= b[0]
        return lax.select(first, a[0], b[0]), lax.select(first, a[1], b[1])
    position = lax.broadcasted_iota(jnp.int32, x.shape, 1)
    return lax.reduce((x, position), (-jnp.inf, jnp.int32(0)), larger, (1,))


def layer_norm(x, eps=1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


def sort_several(x):
    """Two keys (the first piecewise constant, so ties are broken by the second),
    a jet operand and an integer operand."""
    coarse = jnp.floor(2 * x)
    iota = lax.broadcasted_iota(jnp.int32, x.shape, 1)
    k1, k2, values, perm = lax.sort((coarse, jnp.sin(x) * x, jnp.cos(x), iota),
                                    dimension=1, num_keys=2)
    return jnp.stack([k1 * x, k2, values, perm.astype(x.dtype) * x])


# (name, function, primals factory, K, R); K = 1..6 and R = 1..8 are all covered.
CASES = [
    ("max_axis0", lambda x: jnp.max(jnp.sin(x) * x, axis=0), lambda: (normal((3, 4)),), 4, 3),
    ("min_all", lambda x: jnp.min(jnp.sin(x) * x), lambda: (normal((4,)),), 6, 1),
    ("max_axes_0_2", lambda x: jnp.max(jnp.exp(x) * x, axis=(0, 2)),
     lambda: (normal((2, 3, 2)),), 2, 8),
    ("prod_axis1", lambda x: jnp.prod(jnp.sin(x) + x, axis=1), lambda: (normal((3, 4)),), 3, 5),
    ("prod_one_zero", lambda x: jnp.prod(jnp.sin(x), axis=0),
     lambda: (with_zeros((3, 4), (1, 2)),), 4, 2),
    ("prod_two_zeros_all", lambda x: jnp.prod(jnp.sin(x) * 2),
     lambda: (with_zeros((5, 1), (1, 0), (3, 0)),), 3, 3),
    ("cumprod", lambda x: jnp.cumprod(jnp.sin(x) + 0.5, axis=1), lambda: (normal((2, 5)),), 3, 4),
    ("cumprod_reverse_zero", lambda x: lax.cumprod(jnp.sin(x), axis=0, reverse=True),
     lambda: (with_zeros((4, 2), (2, 1)),), 2, 6),
    ("cummax", lambda x: lax.cummax(jnp.sin(x) * x, axis=1), lambda: (normal((2, 5)),), 3, 2),
    ("cummin_reverse", lambda x: lax.cummin(jnp.sin(3 * x), axis=0, reverse=True),
     lambda: (normal((5, 2)),), 2, 7),
    ("cumlogsumexp", lambda x: lax.cumlogsumexp(jnp.sin(x) * x, axis=1),
     lambda: (normal((2, 3)),), 2, 2),
    ("lax_sort", lambda x: lax.sort(jnp.sin(x) * x, dimension=1), lambda: (normal((3, 4)),), 5, 3),
    ("jnp_sort", lambda x: jnp.sort(jnp.exp(x) - 2 * x, axis=0), lambda: (normal((4, 3)),), 2, 4),
    ("sort_num_keys_2", sort_several, lambda: (normal((3, 5)),), 3, 3),
    ("argsort_take", lambda x: jnp.take_along_axis(jnp.sin(x), jnp.argsort(x, axis=1), axis=1),
     lambda: (normal((3, 4)),), 2, 3),
    ("top_k", lambda x: lax.top_k(jnp.sin(x) * x, 2)[0], lambda: (normal((3, 5)),), 4, 3),
    ("approx_max_k", lambda x: lax.approx_max_k(jnp.cos(x) * x, 2)[0],
     lambda: (normal((2, 6)),), 2, 2),
    ("argmax_index", lambda x: jnp.sin(x)[jnp.argmax(x)] * x, lambda: (normal((4,)),), 3, 2),
    ("max_pool_2d", lambda x: max_pool(jnp.sin(x) * x), lambda: (normal((4, 4)),), 3, 4),
    ("max_pool_same_min_pool_dilated", lambda x: jnp.concatenate([
        max_pool(jnp.tanh(x) * x, (2, 2), (1, 1), "SAME").ravel(),
        min_pool(jnp.sin(x) * x).ravel()]), lambda: (normal((3, 5)),), 2, 8),
    ("max_pool_grad", lambda x: jax.grad(lambda y: jnp.sum(max_pool(jnp.sin(y)) ** 2))(x) * x,
     lambda: (normal((4, 4)),), 2, 2),
    ("max_pool_jvp", lambda x: jax.jvp(max_pool, (jnp.sin(x),), (x * x,))[1],
     lambda: (normal((4, 4)),), 2, 2),
    ("logsumexp", lambda x: jax.nn.logsumexp(jnp.sin(x) * x, axis=0),
     lambda: (normal((3, 4)),), 4, 2),
    ("softmax", lambda x: jax.nn.softmax(jnp.sin(x) * x, axis=1), lambda: (normal((2, 4)),), 3, 3),
    ("layer_norm", lambda x: layer_norm(jnp.sin(x) + x), lambda: (normal((2, 4)),), 3, 4),
    ("norm", lambda x: jnp.append(jnp.linalg.norm(jnp.sin(x) * x, axis=1), jnp.linalg.norm(x)),
     lambda: (normal((3, 4)),), 4, 5),
    ("scatter_set", lambda x: x.at[jnp.array([0, 2])].set(jnp.sin(x[:2]) * x[1:3]),
     lambda: (normal((3, 4)),), 3, 2),
    ("scatter_set_duplicates", lambda x: jnp.sin(x).at[jnp.array([1, 1])].set(x[:2] ** 2),
     lambda: (normal((3, 2)),), 2, 3),
    ("scatter_mul_unique", lambda x: jnp.sin(x).at[jnp.array([0, 2])].mul(
        jnp.exp(x[:2]), unique_indices=True), lambda: (normal((3, 4)),), 3, 2),
    ("scatter_mul_constant_duplicates",
     lambda x: jnp.sin(x).at[jnp.array([0, 0])].mul(jnp.arange(1.0, 9.0).reshape(2, 4)),
     lambda: (normal((3, 4)),), 2, 2),
    ("scatter_max_min", lambda x: jnp.stack([
        jnp.sin(x).at[jnp.array([0, 2, 0])].max(jnp.exp(x) - 1.5),
        jnp.cos(x).at[jnp.array([1, 0])].min(x[1:] * x[1:] - 0.5, unique_indices=True)]),
     lambda: (normal((3, 2)),), 1, 1),
    ("reduce_two_operands", sums_of_powers, lambda: (normal((3, 4)),), 3, 2),
    ("reduce_all_axes", lambda x: sums_of_powers(x, (0, 1)), lambda: (normal((3, 3)),), 5, 3),
    ("reduce_logaddexp", reduce_logaddexp, lambda: (normal((5, 2)),), 4, 2),
    ("stack_unstack", lambda x: jnp.stack([*lax.unstack(jnp.sin(x), axis=1), x[:, 0] ** 2]),
     lambda: (normal((3, 2)),), 3, 2),
]


MAX_POOL_ACCELERATOR_TOLERANCE = 1e-5
"""Max-pool derivatives (JAX's ``select_and_gather_add``/``select_and_scatter_add``, used by
stde's rule and the oracle alike) agreed only at reduced precision on an H200 in float64;
on the CPU they agree to 1e-9."""

test_against_oracle, test_cases_cover_every_order_and_direction_count = case_tests(
    CASES,
    accelerator_tolerance={name: MAX_POOL_ACCELERATOR_TOLERANCE for name, *_ in CASES
                           if name.startswith("max_pool")},
    cpu_only={"scatter_set_duplicates": "which of the duplicate updates a scatter-set keeps "
                                        "is unspecified on GPUs (the CPU applies them in order), "
                                        "so stde and the oracle may keep different ones"})


@pytest.mark.parametrize("f", [
    lambda x: jnp.max(jnp.sin(x) * x, axis=1),
    lambda x: jnp.min(jnp.cos(x) + x, axis=0),
    lambda x: lax.cummax(jnp.sin(x) * x, axis=1),
    lambda x: lax.cummin(jnp.sin(x) * x, axis=0),
    lambda x: jnp.cumprod(jnp.sin(x) + x, axis=1),
    lambda x: jnp.stack([jnp.sin(x), x * x]),
], ids=["reduce_max", "reduce_min", "cummax", "cummin", "cumprod", "stack"])
def test_matches_jax_experimental_jet(x64, f):
    x = normal((2, 3))
    series = [normal((2, 3), seed) for seed in (1, 2, 3)]
    assert_jet_matches_jax(f, (x,), (series,))


@pytest.mark.parametrize("f", [
    lambda x: jnp.cumprod(x + 2.0),
    lambda x: lax.cumlogsumexp(x),
    lambda x: lax.cummax(x * x),
], ids=["cumprod", "cumlogsumexp", "cummax"])
def test_cumulative_laplacian_with_sparse_directions(x64, f):
    # The Laplacian's one-hot directions are sparse (indexed in value_grad_laplacian); the
    # cumulative rules' compositions (an associative scan) slice them down to empty arrays.
    g = lambda x: jnp.sum(f(x) * jnp.sin(x))  # noqa: E731
    x = jnp.linspace(-0.65, 0.95, 4)
    want = jax.jit(lambda x: jnp.trace(jax.hessian(g)(x)))(x)
    np.testing.assert_allclose(jax.jit(stde.laplacian(g))(x), want, rtol=1e-10)
    _, grad, laplacian = jax.jit(stde.value_grad_laplacian(g))(x)
    np.testing.assert_allclose(laplacian, want, rtol=1e-10)
    np.testing.assert_allclose(grad, jax.grad(g)(x), rtol=1e-12)


def test_scatter_mul_duplicate_indices_with_jets_is_a_clear_error(x64):
    x = normal((3, 2))
    f = lambda x: x.at[jnp.array([0, 0])].mul(jnp.sin(x[:2]))  # noqa: E731
    with pytest.raises(NotImplementedError, match="unique_indices=True"):
        stde.jet(f, (x,), ((jnp.ones_like(x), jnp.zeros_like(x)),))


def test_empty_reduction_is_a_constant(x64):
    x = normal((0, 3))
    primal, (y1, y2) = stde.jet(lambda x: lax.reduce_max(jnp.sin(x), (0,)), (x,),
                                ((jnp.ones_like(x), jnp.ones_like(x)),))
    assert np.all(np.isneginf(primal))
    np.testing.assert_array_equal(y1, 0.0)
    np.testing.assert_array_equal(y2, 0.0)


def test_reduce_with_one_operand_linear_in_x(x64):
    # x's second coefficient is a symbolic zero; x²'s is not. The nested-JVP fallback
    # (JAX's JVP of `reduce`) failed on the zero tangent ("Zero ... passed to reshape").
    def f(x):
        total, squares = lax.reduce((x, x * x), (0.0, 0.0),
                                    lambda a, b: (a[0] + b[0], a[1] + b[1]), (0,))
        return squares ** 2 + total
    x = normal((4,))
    want = jnp.trace(jax.hessian(f)(x))
    with forbid_fallback():
        np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-12)
        _, grad, laplacian = jax.jit(stde.value_grad_laplacian(f))(x)   # indexed directions
    np.testing.assert_allclose(laplacian, want, rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(f)(x), rtol=1e-12)


def test_variadic_arg_max_reduction(x64):
    # JAX's own JVP of this `reduce` fails (the integer operand's zero tangent), so the
    # oracle is the same maximum through `reduce_max` and `argmax`.
    def f(x):
        value, position = max_with_index(jnp.sin(x) * x)
        return value * position.astype(x.dtype)
    def reference(x):
        y = jnp.sin(x) * x
        return jnp.max(y, axis=1) * jnp.argmax(y, axis=1).astype(x.dtype)
    x = normal((3, 5))
    with forbid_fallback():
        check_collapsed_against(f, reference, [x], 3, 2, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(jnp.asarray(stde.jet(lambda x: max_with_index(x)[1], (x,),
                                                       ((x,),))[0]),
                                  jnp.argmax(x, axis=1))


def test_reduce_of_nothing_is_its_initial_values(x64):
    x = normal((0, 3))
    primal, (y1, y2) = stde.jet(lambda x: sums_of_powers(x, (0,)) + 1.0, (x,),
                                ((jnp.ones_like(x), jnp.ones_like(x)),))
    np.testing.assert_array_equal(primal, 1.0)
    np.testing.assert_array_equal(y1, 0.0)
    np.testing.assert_array_equal(y2, 0.0)


def test_reduce_with_a_moving_initial_value_is_a_clear_error(x64):
    f = lambda x: lax.reduce(x, x[0], lax.max, (0,))  # noqa: E731
    with pytest.raises(NotImplementedError, match="initial values that depend on the input"):
        stde.jet(f, (normal((3,)),), ((jnp.ones(3),),))


# reduce_window with a reducer that is not a sum, max or min (JAX's generic primitive)

_WINDOW = {"window_dimensions": (2, 2), "window_strides": (1, 2), "padding": ((1, 0), (0, 1)),
           "base_dilation": (1, 2), "window_dilation": (2, 1)}


def _pooled(x, initial, reducer):
    return lax.reduce_window(x, initial, reducer, **_WINDOW)


def _positive(x):
    return jnp.exp(jnp.sin(x)) + 0.5


@pytest.mark.parametrize("order, count", [(2, 3), (4, 2)])
def test_product_pooling_is_the_sum_of_logs_pooled(x64, order, count):
    """Product pooling, with padding, strides and both dilations (their holes hold the
    initial value); the oracle pools the logs with ``reduce_window_sum``."""
    with forbid_fallback():
        check_collapsed_against(
            lambda x: _pooled(_positive(x), 1.0, lax.mul),
            lambda x: jnp.exp(_pooled(jnp.log(_positive(x)), 0.0, lax.add)),
            [normal((3, 4))], order, count, jax.random.PRNGKey(order))


def test_variadic_window_sums_with_a_linear_operand(x64):
    # x's second coefficient is a symbolic zero beside x²'s, as in the reduce test above.
    def sums(x):
        return lax.reduce_window((x, x * x), (0.0, 0.0),
                                 lambda a, b: (a[0] + b[0], a[1] + b[1]), (2, 3), (1, 1), "SAME")
    f = lambda x: jnp.sum(sums(x)[1] ** 2 + sums(x)[0])  # noqa: E731
    reference = lambda x: jnp.sum(  # noqa: E731
        lax.reduce_window(x * x, 0.0, lax.add, (2, 3), (1, 1), "SAME") ** 2
        + lax.reduce_window(x, 0.0, lax.add, (2, 3), (1, 1), "SAME"))
    x = normal((3, 4))
    want = jnp.trace(jax.hessian(reference)(x).reshape(12, 12))
    with forbid_fallback():
        np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-12)
        _, grad, laplacian = jax.jit(stde.value_grad_laplacian(f))(x)   # indexed directions
        check_collapsed_against(lambda x: sums(x)[1] * sums(x)[0], lambda x: (
            lax.reduce_window(x * x, 0.0, lax.add, (2, 3), (1, 1), "SAME")
            * lax.reduce_window(x, 0.0, lax.add, (2, 3), (1, 1), "SAME")),
            [x], 3, 2, jax.random.PRNGKey(5))
    np.testing.assert_allclose(laplacian, want, rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(reference)(x), rtol=1e-12)


def test_arg_max_pooling(x64):
    """A variadic (value, position) max pool: the value's coefficients are max pooling's."""
    def arg_max_pool(y):
        def larger(a, b):
            first = a[0] >= b[0]
            return lax.select(first, a[0], b[0]), lax.select(first, a[1], b[1])
        position = lax.broadcasted_iota(jnp.int32, y.shape, 1)
        return lax.reduce_window((y, position), (-jnp.inf, jnp.int32(0)), larger, (1, 2),
                                 (1, 1), "VALID")

    def f(x):
        value, position = arg_max_pool(jnp.sin(x) * x)
        return value * position.astype(x.dtype)

    def reference(x):
        y = jnp.sin(x) * x
        position = arg_max_pool(lax.stop_gradient(y))[1]
        return max_pool(y, (1, 2), (1, 1)) * position.astype(x.dtype)
    with forbid_fallback():
        check_collapsed_against(f, reference, [normal((3, 5))], 3, 2, jax.random.PRNGKey(2))


def test_reduce_window_edge_cases(x64):
    x = normal((3,))
    series = ((jnp.ones(3), jnp.ones(3)),)
    # A window longer than the input: no output at all.
    primal, (y1, y2) = stde.jet(lambda x: _pooled_1d(x, 4), (x,), series)
    assert primal.shape == y1.shape == y2.shape == (0,)
    # Reducing the non-empty axis of an empty array (lax.reduce): no output either.
    empty = jnp.ones((0, 3))
    primal, (y1,) = stde.jet(sums_of_powers, (empty,), ((empty,),))
    assert primal.shape == y1.shape == (2, 0)
    with pytest.raises(NotImplementedError, match="reduce_window with initial values"):
        stde.jet(lambda x: lax.reduce_window(x, x[0], lax.mul, (2,), (1,), "VALID"), (x,),
                 series)


def _pooled_1d(x, window):
    return lax.reduce_window(x, 1.0, lax.mul, (window,), (1,), "VALID")


# x.at[i].apply(f): a scatter with an update function, which JAX cannot differentiate

_APPLIED = {   # (x.at[index].apply(f), the same written with set)
    "scalar": (lambda x: x.at[1].apply(jnp.sin), lambda x: x.at[1].set(jnp.sin(x[1]))),
    "window": (lambda x: x.at[1:, ::2].apply(jnp.exp),
               lambda x: x.at[1:, ::2].set(jnp.exp(x[1:, ::2]))),
    "unique_array": (lambda x: x.at[jnp.array([2, 0])].apply(jnp.tanh, unique_indices=True),
                     lambda x: x.at[jnp.array([2, 0])].set(jnp.tanh(x[jnp.array([2, 0])]))),
    "out_of_bounds": (lambda x: x.at[7].apply(jnp.log), lambda x: x),   # dropped
}


@pytest.mark.parametrize("name", _APPLIED)
def test_scatter_apply(x64, name):
    applied, reference = _APPLIED[name]
    f = lambda x: jnp.cos(applied(jnp.sin(x) * x)) * x  # noqa: E731
    with forbid_fallback():
        check_collapsed_against(f, lambda x: jnp.cos(reference(jnp.sin(x) * x)) * x,
                                [normal((3, 4))], 3, 3, jax.random.PRNGKey(4))


def test_scatter_apply_through_the_operators(x64):
    applied, reference = _APPLIED["window"]
    f, g = (lambda x, h=h: jnp.sum(jnp.tanh(h(x * x)) ** 2) for h in (applied, reference))
    x = normal((3, 4))
    want = jnp.trace(jax.hessian(g)(x).reshape(12, 12))
    with forbid_fallback():
        _, grad, laplacian = jax.jit(stde.value_grad_laplacian(f))(x)   # indexed directions
        gradient = jax.grad(stde.laplacian(f))(x)
    np.testing.assert_allclose(laplacian, want, rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(g)(x), rtol=1e-12)
    np.testing.assert_allclose(gradient, jax.grad(lambda x: jnp.trace(
        jax.hessian(g)(x).reshape(12, 12)))(x), rtol=1e-10)


def test_scatter_apply_at_indices_not_promised_unique_is_a_clear_error(x64):
    f = lambda x: x.at[jnp.array([1, 1])].apply(jnp.sin)  # noqa: E731  (sin applied twice)
    with pytest.raises(NotImplementedError, match="unique_indices=True"):
        stde.jet(f, (normal((3,)),), ((jnp.ones(3),),))


def test_selection_rules_compose_with_grad_and_vmap(x64):
    """Training through the operator: grad of the collapsed top w.r.t. the primal."""
    def f(x):
        return jnp.sum(max_pool(jnp.sin(x) * x)) + jnp.max(lax.sort(jnp.cos(x), 0) * x)

    x = normal((2, 4))
    directions = random_directions(jax.random.PRNGKey(3), (x,), 2, 1)

    def stde_top(x):
        return stde.collapsed_jet(f, (x,), (tuple(directions[0][:-1]),),
                                  (directions[0][-1].sum(0),))[2]

    def oracle_top(x):
        return collapsed(f, (x,), directions)[1]

    rtol = backend_tolerance(1e-9, MAX_POOL_ACCELERATOR_TOLERANCE)
    np.testing.assert_allclose(jax.jit(jax.grad(stde_top))(x), jax.jit(jax.grad(oracle_top))(x),
                               rtol=rtol)
    batch = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.jit(jax.vmap(stde_top))(batch),
                               jax.jit(jax.vmap(oracle_top))(batch), rtol=rtol)
