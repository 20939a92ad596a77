"""Operators and jets with arrays sharded over an explicit mesh (float64).

Under ``jax.set_mesh`` with ``AxisType.Explicit`` axes, an array's sharding is part of
its type, and a gather from a sharded array, or the flattening ``reshape`` of one, has
no unambiguous result sharding. The sparse directions read primals and weight rows at
sampled indices, so before the fix the operators failed on a sharded point
("Use `.at[...].get(out_sharding=)`"), as ``jax.hessian`` does ("select `which` must
... have the same sharding"). The oracle is ``jax.hessian`` of the same function on
unsharded copies (nested for the biharmonic).

``collapsed_jet`` may also be given directions sharded over the mesh (``R`` split across
devices). Before the fix, every nonlinear operation failed on them: the sum over
directions added halves of the direction axis, slices that a sharded axis does not have
("slicing on sharded dims ... is not implemented"), and linear solves and JVP rules
mapped over sharded directions with an unbatched primal, which JAX's batching rules
reshape. The oracle is :func:`tests.oracle.collapsed` on unsharded copies.

The checks run in a process with two CPU devices.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import stde
from stde import operators as ops
from tests.conftest import rerun_on_two_cpu_devices
from tests.oracle import collapsed, random_directions

W = np.random.default_rng(0).normal(size=(4, 6)) / 2
V = np.random.default_rng(1).normal(size=6)


@pytest.fixture
def mesh():
    """Two devices on one explicit mesh axis ``i`` (skips in a one-device process)."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (test_on_two_devices runs it with two CPU devices)")
    return jax.make_mesh((2,), ("i",), axis_types=(jax.sharding.AxisType.Explicit,))


def _functions(shard):
    """Functions of a sharded point, with weights placed by ``shard(array, *spec)``.

    ``mlp_rows``' first layer is sharded by rows (the point's coordinates);
    ``mlp_features``' by columns, so its hidden layer is sharded by features and meets
    the sampled coordinates' rows in every sparse rule after the first layer.
    """
    replicated = jax.sharding.PartitionSpec()
    return {
        "elementwise": lambda x: jnp.sum(jnp.sin(x) ** 2) * jnp.exp(-jnp.sum(x * x)),
        "mlp": lambda x: jnp.sum(jnp.tanh(jnp.tanh(x.reshape(-1)) @ W)),
        "mlp_rows": lambda x: jnp.sum(jnp.tanh(jnp.dot(jnp.tanh(x.reshape(-1)),
                                                       shard(W, "i", None),
                                                       out_sharding=replicated))),
        "mlp_features": lambda x: jnp.tanh(jnp.dot(
            jnp.tanh(jnp.tanh(x) @ shard(W, None, "i")) ** 2, shard(V, "i"),
            out_sharding=replicated)),
    }


def laplacian_of(f):
    """The oracle: the trace of ``jax.hessian`` (twice for the biharmonic)."""
    return lambda x: jnp.trace(jax.hessian(f)(x).reshape(x.size, x.size))


def test_operators_at_a_sharded_point(x64, mesh):
    plain = _functions(lambda array, *spec: array)
    with jax.set_mesh(mesh):
        functions = _functions(lambda array, *spec: jax.device_put(array, P(*spec)))
        # A 2-D point only for the elementwise function: its flattening is the new part.
        for name, shape, spec in (("elementwise", (2, 2), P("i", None)),
                                  ("elementwise", (4,), P("i")), ("mlp", (4,), P("i")),
                                  ("mlp_rows", (4,), P("i")), ("mlp_features", (4,), P("i"))):
            point = np.linspace(0.1, 1.0, 4).reshape(shape)
            x = jax.device_put(point, spec)
            f, reference = functions[name], plain[name]
            want = jax.jit(laplacian_of(reference))(point)
            np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-10,
                                       err_msg=f"laplacian {name} {shape}")
            _, grad, laplacian = jax.jit(stde.value_grad_laplacian(f))(x)
            np.testing.assert_allclose(laplacian, want, rtol=1e-10, err_msg=name)
            np.testing.assert_allclose(grad, jax.jit(jax.grad(reference))(point), rtol=1e-10)
            np.testing.assert_allclose(jax.jit(stde.biharmonic(f))(x),
                                       jax.jit(laplacian_of(laplacian_of(reference)))(point),
                                       rtol=1e-9,
                                       err_msg=f"biharmonic {name} {shape}")
            every_coordinate = stde.stochastic_operator(f, ops.laplacian(), 4,
                                                        method="sparse")
            np.testing.assert_allclose(jax.jit(every_coordinate)(x, jax.random.key(0)),
                                       want, rtol=1e-10, err_msg=f"stochastic {name}")


def test_operators_over_a_sharded_batch(x64, mesh):
    """Data parallel: ``vmap`` over points sharded over the mesh, and a loss's gradient."""
    def model(weight):
        return lambda x: jnp.sum(jnp.tanh(jnp.tanh(x) @ weight) ** 2)

    def loss(weight, points, laplacian):
        return jnp.mean(jax.vmap(laplacian(model(weight)))(points) ** 2)

    points = np.random.default_rng(2).normal(size=(4, 4))
    want = jax.jit(jax.vmap(laplacian_of(model(W))))(points)
    want_grad = jax.jit(jax.grad(loss), static_argnums=2)(W, points, laplacian_of)
    with jax.set_mesh(mesh):
        batch = jax.device_put(points, P("i", None))
        keys = jax.device_put(jax.random.split(jax.random.key(0), 4), P("i"))
        every_coordinate = stde.stochastic_operator(model(W), ops.laplacian(), 4, method="sparse")
        got = {"laplacian": jax.jit(jax.vmap(stde.laplacian(model(W))))(batch),
               "stochastic": jax.jit(jax.vmap(every_coordinate))(batch, keys)}
        grad = jax.jit(jax.grad(loss), static_argnums=2)(W, batch, stde.laplacian)
    for name, value in got.items():
        assert value.sharding.spec[0] == "i", f"{name}: the batch is no longer sharded"
        np.testing.assert_allclose(value, want, rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9)


def _matrix(x):
    """An invertible matrix that depends on every coordinate of ``x``."""
    return jnp.diag(2.0 + jnp.tanh(x)) + 0.1 * jnp.outer(jnp.sin(x), jnp.cos(x))


DIRECTION_FUNCTIONS = {
    # every nonlinear operation sums its top coefficient over the directions
    "mlp": lambda x: jnp.tanh(jnp.tanh(x) @ W),
    # linear_solve maps the solve over the directions
    "solve": lambda x: jnp.linalg.solve(_matrix(x), jnp.cos(x)),
    # a custom_jvp (slogdet's) goes through its JVP rule, mapped over the directions
    "slogdet": lambda x: jnp.linalg.slogdet(_matrix(x))[1] * jnp.sin(x),
}


def test_collapsed_jet_with_sharded_directions(x64, mesh):
    x = np.linspace(0.1, 1.0, 4)
    # pairwise sums over directions (R <= 8) and one reduction (R > 8)
    for (order, count), (name, f) in itertools.product(
            [(2, 12), (3, 4), (4, 6)], sorted(DIRECTION_FUNCTIONS.items())):
        directions = random_directions(jax.random.key(order), [x], order, count)[0]
        want_lower, want_top = collapsed(f, [x], [directions])
        with jax.set_mesh(mesh):
            lower = [jax.device_put(d, P("i", None)) for d in directions[:-1]]
            value, got_lower, top = jax.jit(functools.partial(stde.collapsed_jet, f))(
                (x,), (lower,), (directions[-1].sum(0),))
        case = f"{name} (K, R) = ({order}, {count})"
        np.testing.assert_allclose(value, f(x), rtol=1e-12, err_msg=case)
        for k, (got, want) in enumerate(zip(got_lower, want_lower), start=1):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=f"{case} y_{k}")
            assert got.sharding.spec[0] == "i", f"{case} y_{k}: directions no longer sharded"
        np.testing.assert_allclose(top, want_top, rtol=1e-9, atol=1e-12, err_msg=case)


def test_on_two_devices():
    if jax.device_count() > 1:
        pytest.skip("this process already has several devices")
    output = rerun_on_two_cpu_devices(__file__, "-k", "sharded")
    assert "3 passed" in output, output[-3000:]
