"""``lax.ragged_dot`` and ``lax.ragged_dot_general`` against a dense reference (float64).

JAX cannot ``vmap`` a ragged dot (nor take its ``jax.hessian``), so the oracle is a dense
reimplementation (``take`` of each row's group matrix and ``einsum``) differentiated
by ``jax.hessian`` and nested ``jax.jacfwd``. Every test runs with the nested-JVP
fallback forbidden: without the Taylor rule each one fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import stde
from stde.rules import arithmetic
from tests import oracle
from tests.conftest import forbid_fallback, rerun_on_two_cpu_devices

pytestmark = pytest.mark.skipif(arithmetic.ragged_dot_general_p is None,
                                reason="this JAX has no 'ragged_dot_general' primitive")

ROWS, FEATURES, INNER, GROUPS, OUTER = 6, 2, 3, 3, 2
SIZES = np.array([2, 1, 3], np.int32)
SPARSE_SIZES = np.array([3, 0, 1], np.int32)   # an empty group; rows 4 and 5 in none
BATCHED = lax.RaggedDotDimensionNumbers(
    dot_dimension_numbers=(((2,), (2,)), ((0,), (0,))),
    lhs_ragged_dimensions=(1,), rhs_group_dimensions=(1,))
BATCHED_SIZES = np.array([[2, 0, 3], [1, 3, 1]], np.int32)   # per batch element, sums 5


def _normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


W_IN = _normal(0, (FEATURES, INNER))
X = _normal(1, (ROWS, FEATURES))
W = _normal(2, (GROUPS, INNER, OUTER))


def dense_ragged_dot(lhs, rhs, group_sizes):
    """``out[i] = lhs[i] @ rhs[group of row i]``; rows past ``Σ group_sizes`` are zero."""
    sizes = np.asarray(group_sizes)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    covered = jnp.einsum("ik,ikn->in", lhs[:len(groups)], jnp.take(rhs, groups, axis=0))
    rest = jnp.zeros((lhs.shape[0] - len(groups), rhs.shape[-1]), covered.dtype)
    return jnp.concatenate([covered, rest])


def dense_batched(lhs, rhs, group_sizes):
    """:data:`BATCHED`'s ``ragged_dot_general`` with group sizes per batch element."""
    return jnp.stack([dense_ragged_dot(a, b, s) for a, b, s in zip(lhs, rhs, group_sizes)])


def ragged_batched(lhs, rhs, group_sizes):
    return lax.ragged_dot_general(lhs, rhs, jnp.asarray(group_sizes), BATCHED)


def ragged(lhs, rhs, group_sizes):
    return lax.ragged_dot(lhs, rhs, jnp.asarray(group_sizes))


def mlp(product, x, w, sizes=SIZES):
    """``tanh(product(tanh(x W_in), w)).sum()``: a layer of per-group weights."""
    return jnp.tanh(product(jnp.tanh(x @ W_IN), w, sizes)).sum()


def split(v):
    """A flat vector as ``(x, w)``, so one Laplacian differentiates both operands."""
    return v[:X.size].reshape(X.shape), v[X.size:].reshape(W.shape)


def dense_laplacian(f):
    """The oracle's Laplacian: the trace of ``jax.hessian``."""
    return lambda x: jnp.trace(jax.hessian(f)(x).reshape(x.size, x.size))


def check_laplacian(f, reference, x):
    with forbid_fallback():
        got = jax.jit(stde.laplacian(f))(x)
    want = jax.jit(dense_laplacian(reference))(x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def check_jet(f, reference, primals, order, seed=3):
    series = [[_normal(seed + 10 * i + k, np.shape(p)) for k in range(order)]
              for i, p in enumerate(primals)]
    with forbid_fallback():
        value, got = jax.jit(lambda p, s: stde.jet(f, p, s))(tuple(primals), tuple(series))
    want = jax.jit(lambda p, s: oracle.taylor(reference, p, s))(primals, series)
    np.testing.assert_allclose(value, want[0], rtol=1e-10, atol=1e-10)
    for k, (g, w) in enumerate(zip(got, want[1:]), start=1):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10, err_msg=f"y_{k}")
    return got


def test_laplacian_with_only_lhs_moving(x64):
    check_laplacian(lambda x: mlp(ragged, x, W), lambda x: mlp(dense_ragged_dot, x, W), X)


def test_laplacian_with_only_rhs_moving(x64):
    check_laplacian(lambda w: mlp(ragged, X, jnp.sin(w)),
                    lambda w: mlp(dense_ragged_dot, X, jnp.sin(w)), W)


def test_laplacian_with_both_operands_moving(x64):
    """The cross terms ``∂²/∂x∂w`` pair a coefficient of each operand."""
    v = np.concatenate([X.ravel(), W.ravel()])
    check_laplacian(lambda v: mlp(ragged, *split(v)), lambda v: mlp(dense_ragged_dot, *split(v)),
                    v)


@pytest.mark.parametrize("moving", ["lhs", "rhs", "both"])
def test_jet_to_order_four(x64, moving):
    x, w = jnp.tanh(X @ W_IN), W

    def on(product):
        if moving == "lhs":
            return lambda x: product(jnp.sin(x), w, SIZES)
        if moving == "rhs":
            return lambda w: product(x, jnp.sin(w), SIZES)
        return lambda x, w: product(jnp.sin(x), jnp.cos(w), SIZES) ** 2

    primals = {"lhs": [x], "rhs": [w], "both": [x, w]}[moving]
    check_jet(on(ragged), on(dense_ragged_dot), primals, 4)


def test_batched_ragged_dot_general(x64):
    """Explicit batch dimensions and group sizes per batch element."""
    lhs, rhs = _normal(4, (2, 5, INNER)), _normal(5, (2, GROUPS, INNER, OUTER))

    def f(product):
        return lambda a, b: jnp.tanh(product(jnp.sin(a), b * b, BATCHED_SIZES))

    check_jet(f(ragged_batched), f(dense_batched), [lhs, rhs], 3)
    v = np.concatenate([lhs.ravel(), rhs.ravel()])
    unpack = lambda v: (v[:lhs.size].reshape(lhs.shape), v[lhs.size:].reshape(rhs.shape))
    check_laplacian(lambda v: f(ragged_batched)(*unpack(v)).sum(),
                    lambda v: f(dense_batched)(*unpack(v)).sum(), v)


def test_empty_groups_and_rows_in_no_group(x64):
    """Rows past the sum of the group sizes are zero in JAX, and so are their coefficients."""
    x, w = jnp.tanh(X @ W_IN), W
    np.testing.assert_array_equal(ragged(x, w, SPARSE_SIZES)[4:], 0.0)
    coefficients = check_jet(lambda x, w: ragged(jnp.sin(x), w * w, SPARSE_SIZES),
                             lambda x, w: dense_ragged_dot(jnp.sin(x), w * w, SPARSE_SIZES),
                             [x, w], 4)
    for c in coefficients:
        np.testing.assert_array_equal(c[4:], 0.0)
    v = np.concatenate([X.ravel(), W.ravel()])
    check_laplacian(lambda v: mlp(ragged, *split(v), SPARSE_SIZES),
                    lambda v: mlp(dense_ragged_dot, *split(v), SPARSE_SIZES), v)


def test_grad_of_the_laplacian_with_respect_to_rhs(x64):
    """Reverse mode through the rule's ragged dots (the training step of a PINN)."""
    def loss(product, laplacian):
        return lambda w: laplacian(lambda x: mlp(product, x, w))(X) ** 2

    with forbid_fallback():
        got = jax.jit(jax.grad(loss(ragged, stde.laplacian)))(W)
    want = jax.jit(jax.grad(loss(dense_ragged_dot, dense_laplacian)))(W)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_ragged_contracting_dimension(x64):
    """The ragged dimension contracts: one partial product per group, ``[g, m, n]``."""
    dimensions = lax.RaggedDotDimensionNumbers(
        dot_dimension_numbers=(((1,), (0,)), ((), ())),
        lhs_ragged_dimensions=(1,), rhs_group_dimensions=())

    def dense(lhs, rhs):
        groups = np.repeat(np.arange(len(SPARSE_SIZES)), SPARSE_SIZES)
        member = np.zeros((len(SPARSE_SIZES), lhs.shape[1]))
        member[groups, np.arange(len(groups))] = 1.0
        return jnp.einsum("mk,gk,kn->gmn", lhs, member, rhs)

    def f(product):
        return lambda a, b: jnp.tanh(product(jnp.sin(a), b * b))

    ragged_contracting = lambda a, b: lax.ragged_dot_general(
        a, b, jnp.asarray(SPARSE_SIZES), dimensions)
    with forbid_fallback():
        oracle.check_collapsed_against(f(ragged_contracting), f(dense),
                                       [_normal(6, (3, ROWS)), _normal(7, (ROWS, OUTER))], 3, 2,
                                       jax.random.PRNGKey(0), rtol=1e-10, atol=1e-10)


def test_ragged_batch_dimension(x64):
    """The ragged dimension is a batch one (and ``rhs`` has no group dimension)."""
    dimensions = lax.RaggedDotDimensionNumbers(
        dot_dimension_numbers=(((2,), (1,)), ((0,), (0,))),
        lhs_ragged_dimensions=(0,), rhs_group_dimensions=())

    def f(product):
        return lambda a, b: jnp.tanh(product(jnp.sin(a), b * b))

    ragged_batch = lambda a, b: lax.ragged_dot_general(a, b, jnp.asarray([1, 2]), dimensions)
    dense = lambda a, b: jnp.einsum("bmk,bkn->bmn", a, b)
    with forbid_fallback():
        oracle.check_collapsed_against(f(ragged_batch), f(dense),
                                       [_normal(8, (3, 4, 2)), _normal(9, (3, 2, OUTER))], 3, 2,
                                       jax.random.PRNGKey(1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("moving", ["lhs", "rhs", "both"])
def test_out_sharding_under_an_explicit_mesh(moving):
    """An ``out_sharding`` keeps its spec, with the direction axis unsharded.

    Abstract evaluation only: JAX's CPU lowering of a ragged dot rejects explicit
    shardings. On two devices (:func:`test_out_sharding_on_two_devices`) a spec that
    missed a new axis would shard the direction axis of one Leibniz term and the rows
    of another, and their sum would fail.
    """
    count = jax.device_count()
    mesh = jax.make_mesh((count,), ("i",), axis_types=(AxisType.Explicit,))
    sizes = jnp.asarray([count, 0, 3 * count])
    basic = lax.RaggedDotDimensionNumbers((((1,), (1,)), ((), ())), (0,), (0,))
    contracting = lax.RaggedDotDimensionNumbers((((1,), (0,)), ((), ())), (1,), ())
    cases = [(basic, (4 * count, 3), (3, 3, 2), P("i", None)),     # R merged into rows / n
             (basic, (4 * count, 3), (3, 3), P("i")),              # rhs gains an axis for R
             (contracting, (2 * count, 4 * count), (4 * count, 2), P(None, "i", None))]
    with jax.set_mesh(mesh), forbid_fallback():
        for dimensions, lhs_shape, rhs_shape, spec in cases:
            lhs = jax.device_put(np.ones(lhs_shape), P())
            rhs = jax.device_put(np.ones(rhs_shape), P())

            def f(a, b, dimensions=dimensions, spec=spec):
                return jnp.sin(lax.ragged_dot_general(jnp.sin(a), jnp.sin(b), sizes,
                                                      dimensions, out_sharding=spec))

            def directions(x, moves):
                return (jnp.ones((2, *x.shape)) if moves else None,) * 2

            series = (directions(lhs, moving != "rhs"), directions(rhs, moving != "lhs"))
            _, lower, top = jax.eval_shape(
                lambda a, b, s, f=f: stde.collapsed_jet(f, (a, b), s, (a, b)), lhs, rhs, series)
            assert top.sharding.spec == spec
            assert [c.sharding.spec for c in lower] == [P(None, *spec)] * 2


def test_out_sharding_on_two_devices():
    if jax.device_count() > 1:
        pytest.skip("this process already has several devices")
    output = rerun_on_two_cpu_devices(__file__, "-k", "test_out_sharding_under_an_explicit_mesh")
    assert "3 passed" in output, output[-3000:]
