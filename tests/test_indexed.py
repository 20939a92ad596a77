"""``stde.indexed``: every operation on indexed coefficients against the dense path (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from stde import indexed
from stde.indexed import IndexedCoefficient, Slots

pytestmark = pytest.mark.usefixtures("x64")

R = 8


def _params(function, *args):
    """The parameters of the last equation of ``function``'s jaxpr (this JAX's spelling)."""
    return dict(jax.make_jaxpr(function)(*args).eqns[-1].params)


def _coefficient(seed, shape, entries=3, empty=0.3, duplicates=False, directions=None):
    """A random indexed coefficient ``(R, *shape)`` and its dense form."""
    R = directions or globals()["R"]
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, R, (entries, *shape)).astype(np.int32)
    if not duplicates:   # distinct per element: a permutation's first rows
        slots = np.argsort(rng.random((R, *shape)), axis=0)[:entries].astype(np.int32)
    slots = np.where(rng.random(slots.shape) < empty, -1, slots)
    values = jnp.asarray(np.where(slots >= 0, rng.normal(size=slots.shape), 0.0))
    c = IndexedCoefficient(values, Slots(slots), R)
    dense = np.zeros((R, *shape))
    for k in range(entries):
        for position in np.ndindex(*shape):
            if slots[(k, *position)] >= 0:
                dense[(slots[(k, *position)], *position)] += values[(k, *position)]
    return c, jnp.asarray(dense)


def _close(c, dense):
    np.testing.assert_allclose(indexed.densify(c), dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("duplicates", [False, True])
def test_densify_and_sum_directions(duplicates):
    c, dense = _coefficient(0, (4, 5), duplicates=duplicates)
    _close(c, dense)
    np.testing.assert_allclose(indexed.sum_directions(c), dense.sum(0), rtol=1e-12)


def test_densify_of_rows_that_follow_one_axis():
    """Slots ``3i + k`` along axis 1 (an electron's rows, as an envelope's): the 0/1
    factor is ``(R, 1, n, 1)``, and no select reaches XLA."""
    shape = (2, 4, 5)
    electron, coordinate = np.arange(4).reshape(1, 1, 4, 1), np.arange(3).reshape(3, 1, 1, 1)
    slots = np.broadcast_to(3 * electron + coordinate, (3, *shape)).astype(np.int32)
    slots = np.concatenate([slots, np.full((1, *shape), 7, np.int32)])   # one constant row
    values = jnp.asarray(np.random.default_rng(5).normal(size=slots.shape))
    c = IndexedCoefficient(values, Slots(slots), 12)
    dense = np.zeros((12, *shape))
    for k, position in np.ndindex(4, int(np.prod(shape))):
        index = np.unravel_index(position, shape)
        dense[(slots[(k, *index)], *index)] += values[(k, *index)]
    _close(c, dense)
    assert indexed._one_hot(slots[0], 12).shape == (12, 1, 4, 1)
    assert "select_n" not in str(jax.make_jaxpr(lambda v: indexed.densify(
        IndexedCoefficient(v, Slots(slots), 12)))(values))


def test_basis_is_the_identity():
    np.testing.assert_array_equal(indexed.densify(indexed.basis(5, jnp.float64)), np.eye(5))


def test_times_array_scale_and_broadcast():
    c, dense = _coefficient(1, (4, 1))
    factor = jnp.arange(4.0).reshape(4, 1) - 1.5
    _close(indexed.times_array(c, factor), dense * factor[None])
    _close(indexed.scale(c, -2.5), -2.5 * dense)
    _close(indexed.broadcast_to(c, (2, 4, 3)), jnp.broadcast_to(dense[:, None], (R, 2, 4, 3)))


@pytest.mark.parametrize("same", [True, False])
@pytest.mark.parametrize("duplicates", [False, True])
def test_times_lower_and_plus(same, duplicates):
    u, du = _coefficient(2, (3, 4), duplicates=duplicates)
    v, dv = (u, du) if same else _coefficient(3, (3, 4), entries=2, duplicates=duplicates)
    _close(indexed.times_lower(u, v), du * dv)
    _close(indexed.times_lower(u, dv), du * dv)          # a dense factor
    for sign in (1, -1):
        total = indexed.plus(u, v, sign)
        np.testing.assert_allclose(indexed.densify(total), du + sign * dv, atol=1e-12)
    np.testing.assert_allclose(indexed.plus(u, dv), du + dv, atol=1e-12)


def test_merged_keeps_the_value_and_densifies_past_the_fraction():
    c, dense = _coefficient(4, (6,), entries=3, duplicates=True)
    out = indexed.merged(c)
    _close(out, dense) if indexed.is_indexed(out) else np.testing.assert_allclose(out, dense)
    wide, wide_dense = _coefficient(5, (6,), entries=R, empty=0.0)
    assert not indexed.is_indexed(indexed.merged(wide))      # 8 of 8 directions: dense
    np.testing.assert_allclose(indexed.merged(wide), wide_dense, atol=1e-12)


def test_shared_slots_are_distinct_and_faithful():
    u, du = _coefficient(6, (5,), duplicates=True)
    v, dv = _coefficient(7, (5,), entries=2)
    su, sv = indexed.on_shared_slots([u, v])
    assert su.slots == sv.slots and su.slots.distinct
    _close(su, du)
    _close(sv, dv)


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 1)])
def test_reduce_sum(axes):
    c, dense = _coefficient(8, (3, 4), entries=2)
    params = _params(lambda a: jnp.sum(a, axes), dense[0])
    out = indexed.index_map(lax.reduce_sum_p, c, params)
    np.testing.assert_allclose(indexed.densify(out), dense.sum(tuple(a + 1 for a in axes)),
                               atol=1e-12)


@pytest.mark.parametrize("indexed_first", [True, False])
@pytest.mark.parametrize("constant_along", [True, False])
def test_dot_general_with_a_constant_operand(indexed_first, constant_along):
    c, dense = _coefficient(9, (3, 4), entries=2, directions=32)
    if constant_along:   # every entry's slot the same along the contracted axis
        slots = np.repeat(c.slots.array[:, :, :1], 4, axis=2)
        values = jnp.where(slots >= 0, c.values, 0)
        c = IndexedCoefficient(values, Slots(slots), 32)
        dense = indexed.densify(c)
    weights = jnp.asarray(np.random.default_rng(10).normal(size=(4, 5)))
    if indexed_first:
        numbers = (((1,), (0,)), ((), ()))
        want = jnp.einsum("rac,cf->raf", dense, weights)
    else:
        weights = weights.T
        numbers = (((1,), (1,)), ((), ()))
        want = jnp.einsum("fc,rac->rfa", weights, dense)
    params = _params(lambda a, b: lax.dot_general(a, b, numbers), *(
        (dense[0], weights) if indexed_first else (weights, dense[0])))
    out = indexed.dot_general(c, weights, params, indexed_first)
    assert indexed.is_indexed(out)
    np.testing.assert_allclose(indexed.densify(out), want, atol=1e-12)


@pytest.mark.parametrize("indexed_first", [True, False])
@pytest.mark.parametrize("copies", [1, 2])
def test_dot_general_into_a_dense_result_places_weights_by_direction(
        indexed_first, copies, monkeypatch):
    """A dense layer on the basis directions (``W @ x``, every output element depending
    on all ``R`` of them) places the pairs' weights in their directions' rows instead of
    multiplying the weights by a one-hot matrix: no densify, the same dense result. With
    ``copies = 2`` every direction holds two pairs (``x`` concatenated with itself),
    and some elements hold none (a constant entry)."""
    directions, width = 6, 5
    slots = np.concatenate([np.arange(directions)] * copies + [[-1]]).astype(np.int32)
    values = jnp.asarray(np.where(slots >= 0, np.linspace(0.5, 2.0, slots.size), 0.0))
    c = IndexedCoefficient(values[None], Slots(slots[None]), directions)
    dense = indexed.densify(c)
    weights = jnp.asarray(np.random.default_rng(13).normal(size=(slots.size, width)))
    if indexed_first:
        numbers, want = (((0,), (0,)), ((), ())), dense @ weights
    else:
        weights = weights.T
        numbers, want = (((1,), (0,)), ((), ())), jnp.einsum("fc,rc->rf", weights, dense)
    params = _params(lambda a, b: lax.dot_general(a, b, numbers), *(
        (dense[0], weights) if indexed_first else (weights, dense[0])))
    monkeypatch.setattr(indexed, "densify", lambda c: pytest.fail("densified"))
    out = indexed.dot_general(c, weights, params, indexed_first)
    assert not indexed.is_indexed(out)
    np.testing.assert_allclose(out, want, atol=1e-12)


def test_value_grad_laplacian_of_a_dense_first_layer():
    """An MLP on all coordinates: the first layer's dense coefficient is ``W``'s columns."""
    w1 = jax.random.normal(jax.random.key(1), (12, 16), jnp.float64) / 3
    w2 = jax.random.normal(jax.random.key(2), (16,), jnp.float64)
    f = lambda w, x: jnp.tanh(jnp.tanh(x @ w) @ w.T) @ w @ w2  # noqa: E731
    x = jnp.linspace(-1.0, 1.0, 12)
    value, grad, lap = jax.jit(stde.value_grad_laplacian(f, argnums=1))(w1, x)
    np.testing.assert_allclose(value, f(w1, x), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(f, 1)(w1, x), rtol=1e-10)
    hessian_trace = lambda w: jnp.trace(jax.hessian(f, 1)(w, x))  # noqa: E731
    np.testing.assert_allclose(lap, hessian_trace(w1), rtol=1e-10)
    grad_of_lap = jax.grad(lambda w: stde.value_grad_laplacian(f, argnums=1)(w, x)[2])
    np.testing.assert_allclose(jax.jit(grad_of_lap)(w1), jax.grad(hessian_trace)(w1),
                               rtol=1e-9)


def test_index_maps_and_concatenate():
    c, dense = _coefficient(11, (3, 4))
    moved = indexed.index_map(lax.transpose_p, c, _params(lambda a: a.T, dense[0]))
    _close(moved, jnp.transpose(dense, (0, 2, 1)))
    sliced = indexed.index_map(lax.slice_p, c, _params(lambda a: a[1:3], dense[0]))
    _close(sliced, dense[:, 1:3])
    other, other_dense = _coefficient(12, (3, 2), entries=1)
    _close(indexed.concatenate([c, other], 1), jnp.concatenate([dense, other_dense], 2))


def _pair_function(x):
    """Pair differences, their norms, a mean over particles, a transpose and a sort-free
    determinant: the index maps and the reductions of the indexed layout."""
    r = x.reshape(4, 2)
    diff = r[:, None, :] - r[None, :, :]
    dist = jnp.sqrt(jnp.sum(diff ** 2, -1) + 1.0)
    features = jnp.concatenate([diff, dist[..., None]], -1) @ jnp.arange(6.0).reshape(3, 2)
    h = jnp.tanh(features).mean(1) + r
    return jnp.linalg.slogdet(h[:2].T @ h[2:] + jnp.eye(2))[1] + jnp.sum(jnp.triu(dist, 1))


def test_value_grad_laplacian_indexed_matches_dense_and_hessian():
    x = jax.random.normal(jax.random.key(0), (8,), jnp.float64)
    value, grad, lap = jax.jit(stde.value_grad_laplacian(_pair_function, sparse=True))(x)
    np.testing.assert_allclose(value, _pair_function(x), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(_pair_function)(x), rtol=1e-9)
    hessian_trace = jax.jit(lambda y: jnp.trace(jax.hessian(_pair_function)(y)))
    np.testing.assert_allclose(lap, hessian_trace(x), rtol=1e-9)
    dense = jax.jit(stde.value_grad_laplacian(_pair_function, sparse=False))(x)
    np.testing.assert_allclose(lap, dense[2], rtol=1e-12)
    grad_of_lap = jax.grad(lambda y: stde.value_grad_laplacian(_pair_function, sparse=True)(y)[2])
    np.testing.assert_allclose(jax.jit(grad_of_lap)(x), jax.jit(jax.grad(hessian_trace))(x),
                               rtol=1e-8)
