"""collapsed_jet composes with jit, vmap, grad, nesting, pmap and sharded jit."""

import os
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
from stde.pinn.harness import init_mlp, mlp


def laplacian(f, x):
    _, _, lap = stde.collapsed_jet(f, (x,), ((jnp.eye(x.shape[0], dtype=x.dtype),),), (None,))
    return lap


@pytest.fixture
def data(x64):
    """Parameters, one point and a batch of points, in float64."""
    return types.SimpleNamespace(params=init_mlp(jax.random.PRNGKey(0), (3, 8, 8, 1), bias=0.1),
                                 x=jnp.array([0.2, -0.4, 0.6]),
                                 points=jax.random.normal(jax.random.PRNGKey(1), (5, 3)))


def exact_laplacian(params, x):
    return jnp.trace(jax.hessian(lambda y: mlp(params, y))(x))


def test_jit_matches_eager(data):
    eager = laplacian(lambda x: mlp(data.params, x), data.x)
    jitted = jax.jit(lambda x: laplacian(lambda y: mlp(data.params, y), x))(data.x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    np.testing.assert_allclose(eager, exact_laplacian(data.params, data.x), rtol=1e-10)


def test_vmap_over_points(data):
    got = jax.vmap(lambda x: laplacian(lambda y: mlp(data.params, y), x))(data.points)
    want = jax.vmap(lambda x: exact_laplacian(data.params, x))(data.points)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_vmap_over_directions(data):
    f = lambda y: mlp(data.params, y)
    directions = jax.random.normal(jax.random.PRNGKey(2), (4, 2, 3))  # 4 sets of R=2

    def quadratic_forms(v):
        return stde.collapsed_jet(f, (data.x,), ((v,),), (None,))[2]

    hessian = jax.hessian(f)(data.x)
    want = jnp.einsum("sri,ij,srj->s", directions, hessian, directions)
    np.testing.assert_allclose(jax.vmap(quadratic_forms)(directions), want, rtol=1e-10)


def test_grad_through_collapsed_jet_wrt_parameters(data):
    def loss(params):
        laps = jax.vmap(lambda x: laplacian(lambda y: mlp(params, y), x))(data.points)
        return jnp.mean((laps - 1.0) ** 2)

    def loss_nested(params):
        return jnp.mean((jax.vmap(lambda x: exact_laplacian(params, x))(data.points) - 1.0) ** 2)

    got = jax.jit(jax.grad(loss))(data.params)
    want = jax.grad(loss_nested)(data.params)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_nested_collapsed_jet_is_biharmonic(data):
    f = lambda y: mlp(data.params, y)
    biharmonic = laplacian(lambda x: laplacian(f, x), data.x)
    fourth = jax.jacfwd(jax.jacfwd(jax.hessian(f)))(data.x)
    np.testing.assert_allclose(biharmonic, jnp.einsum("iijj->", fourth), rtol=1e-9)


_MULTI_DEVICE = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import stde
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, jax.devices()
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    f = lambda x: jnp.sum(jnp.tanh(x @ w) ** 2)
    lap = lambda x: stde.collapsed_jet(f, (x,), ((jnp.eye(3),),), (None,))[2]
    exact = jax.vmap(lambda x: jnp.trace(jax.hessian(f)(x)))
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    want = exact(xs)
    got = jax.pmap(jax.vmap(lap))(xs.reshape(2, 2, 3)).reshape(4)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    mesh = Mesh(np.array(jax.devices()), ("points",))
    sharded = jax.device_put(xs, NamedSharding(mesh, P("points")))
    out = jax.jit(jax.vmap(lap))(sharded)
    np.testing.assert_allclose(out, want, rtol=1e-10)
    assert len(out.sharding.device_set) == 2
    print("multi-device ok")
""")


def test_pmap_and_named_sharding_on_two_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "multi-device ok" in result.stdout
