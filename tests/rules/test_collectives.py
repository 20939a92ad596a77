"""shard_map and collectives against jax.hessian and nested jacfwd, on every CPU device.

In the default run the mesh has this process's devices (one CPU device, where every
collective is trivial); test_on_two_devices runs the same tests again in a process with
two forced CPU devices, where they sum, gather and move blocks for real.
"""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import stde
import stde.operators as ops
from tests.conftest import rerun_on_two_cpu_devices

D = 8


def jacfwd_nested(f, order):
    for _ in range(order):
        f = jax.jacfwd(f)
    return f


def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("i",))


BLOCKS = P("i")


def sharded(body, in_specs=BLOCKS, out_specs=BLOCKS, **kwargs):
    return jax.shard_map(body, mesh=mesh(), in_specs=in_specs, out_specs=out_specs, **kwargs)


def ring(y):
    n = jax.device_count()
    return lax.ppermute(y, "i", [(j, (j + 1) % n) for j in range(n)])


def blocks_swapped(y):
    """all_to_all: the local block split in one piece per device, pieces exchanged."""
    n = jax.device_count()
    return lax.all_to_all(y.reshape(n, -1), "i", 0, 0, tiled=True).reshape(-1)


W = jnp.linspace(-1.0, 1.0, D)

CASES = {
    "psum": lambda x: sharded(lambda y: lax.psum(jnp.sum(jnp.sin(y) ** 2), "i"),
                              out_specs=P())(x),
    "all_gather": lambda x: jnp.sum(sharded(
        lambda y: jnp.tanh(lax.all_gather(y, "i", tiled=True))[:y.shape[0]] * jnp.sum(y ** 2)
    )(x)),
    "ppermute": lambda x: jnp.sum(sharded(lambda y: jnp.exp(ring(y)) * y ** 2)(x)),
    "all_to_all": lambda x: jnp.sum(sharded(lambda y: jnp.sin(blocks_swapped(y)) * y)(x)),
    "psum_scatter": lambda x: jnp.sum(sharded(
        lambda y: jnp.cos(lax.psum_scatter(y ** 3, "i", tiled=True)))(x) ** 2),
    "replicated_weight": lambda x: jnp.sum(sharded(   # pvary: the weight meets blocks
        lambda y, w: jnp.tanh(y * w[:y.shape[0]]) * jnp.sum(w ** 2),
        in_specs=(P("i"), P()))(x, x[::-1])),
    "axis_index": lambda x: jnp.sum(sharded(       # an integer result, a constant result
        lambda y: (jnp.sin(y) * (lax.axis_index("i") + 1).astype(y.dtype),
                   jnp.full(y.shape, lax.axis_index("i").astype(y.dtype)),
                   jnp.full(y.shape, lax.axis_index("i"))),
        out_specs=(P("i"), P("i"), P("i")))(x)[0]),
    "partial_manual": lambda x: jax.jit(jax.shard_map(   # manual over i, automatic over j
        lambda y: lax.psum(jnp.sum(jnp.cos(y) ** 2 * y), "i"),
        mesh=Mesh(np.array(jax.devices()).reshape(-1, 1), ("i", "j")), in_specs=BLOCKS,
        out_specs=P(), axis_names={"i"}))(x),
    "unchecked": lambda x: sharded(lambda y: lax.psum(jnp.sum(jnp.log1p(y ** 2)), "i"),
                                   out_specs=P(), check_vma=False)(x),
}


@pytest.fixture
def point(x64):
    return jnp.linspace(-0.9, 0.7, D)


def assert_no_fallback(run):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="stde: primitive")
        return run()


# Operators and oracles run jitted: JAX 0.10 traces and compiles an eager shard_map
# again at every call (1-2 s each). test_eager_laplacian runs one case eagerly.


@pytest.mark.parametrize("name", sorted(CASES))
def test_laplacian_matches_hessian(name, point):
    f = CASES[name]
    want = jax.jit(lambda x: jnp.trace(jax.hessian(f)(x)))(point)
    got = assert_no_fallback(lambda: jax.jit(stde.laplacian(f))(point))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_eager_laplacian(point):
    f = CASES["ppermute"]
    np.testing.assert_allclose(assert_no_fallback(lambda: stde.laplacian(f)(point)),
                               jnp.trace(jax.hessian(f)(point)), rtol=1e-10)


@pytest.mark.parametrize("name", ["ppermute", "all_to_all"])
def test_biharmonic_and_jet_match_nested_jacfwd(name, point):
    f = CASES[name]
    fourth = jax.jit(jacfwd_nested(f, 4))(point)
    want = sum(fourth[i, i, j, j] for i in range(D) for j in range(D))
    np.testing.assert_allclose(
        assert_no_fallback(lambda: jax.jit(stde.biharmonic(f))(point)), want, rtol=1e-9)
    v = jnp.cos(jnp.linspace(0.0, D - 1.0, D))
    _, (y1, y2, y3) = jax.jit(lambda x, v: stde.jet(f, (x,), ((v, 0 * v, 0 * v),)))(point, v)
    third = jax.jit(jacfwd_nested(f, 3))(point)
    np.testing.assert_allclose(y3, jnp.einsum("ijk,i,j,k", third, v, v, v), rtol=1e-9)


def test_stochastic_sparse_directions_enter_dense(point):
    """Sampling every coordinate (sparse one-hot directions) gives the exact Laplacian."""
    f = CASES["all_gather"]
    g = jax.jit(stde.stochastic_operator(f, ops.laplacian(), D, method="sparse"))
    np.testing.assert_allclose(assert_no_fallback(lambda: g(point, jax.random.key(0))),
                               jax.jit(lambda x: jnp.trace(jax.hessian(f)(x)))(point),
                               rtol=1e-10)


def test_gradient_of_the_laplacian_through_shard_map(point):
    def f(w, x):
        return sharded(lambda y, v: lax.psum(jnp.sum(jnp.tanh(v * y) ** 2), "i"),
                       in_specs=(P("i"), P()), out_specs=P())(x, w)

    def exact(w):
        return jnp.trace(jax.hessian(f, argnums=1)(w, point))

    got = assert_no_fallback(
        lambda: jax.jit(jax.grad(lambda w: stde.laplacian(f, argnums=1)(w, point)))(1.3))
    np.testing.assert_allclose(got, jax.jit(jax.grad(exact))(1.3), rtol=1e-9)


def test_on_two_devices():
    """The tests above, in a process with two CPU devices: collectives that act."""
    if jax.device_count() > 1:
        pytest.skip("this process already has several devices")
    output = rerun_on_two_cpu_devices(__file__, "-k", "not test_on_two_devices",
                                       STDE_TEST_DEVICES="2")
    assert " passed" in output and "skipped" not in output, output[-3000:]


def test_device_count_as_asked():
    asked = int(os.environ.get("STDE_TEST_DEVICES", "1"))
    assert jax.device_count() == asked
