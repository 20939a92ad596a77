"""collapsed_jet composes with jit, vmap, grad, nesting, pmap and sharded jit.

The transformation tests run as ``chex.variants``: eagerly, under ``jax.jit`` and under
``jax.pmap``. A process has one CPU device unless XLA is told otherwise before JAX
starts, so the ``pmap`` variants (skipped on one device) and a sharded ``jit`` run in
subprocesses with two CPU devices.
"""

import textwrap

import chex
import jax
import jax.numpy as jnp

import stde
from stde.pinn.harness import init_mlp, mlp
from tests.conftest import on_two_cpu_devices, rerun_on_two_cpu_devices


def laplacian(f, x):
    _, _, lap = stde.collapsed_jet(f, (x,), ((jnp.eye(x.shape[0], dtype=x.dtype),),), (None,))
    return lap


def exact_laplacian(params, x):
    return jnp.trace(jax.hessian(lambda y: mlp(params, y))(x))


class TransformationTest(chex.TestCase):
    """Each test's function is run by ``self.variant``: without jit, with jit, under pmap."""

    def setUp(self):
        super().setUp()
        self.enter_context(jax.enable_x64(True))
        self.params = init_mlp(jax.random.PRNGKey(0), (3, 8, 8, 1), bias=0.1)
        self.x = jnp.array([0.2, -0.4, 0.6])
        self.points = jax.random.normal(jax.random.PRNGKey(1), (5, 3))

    def f(self, y):
        return mlp(self.params, y)

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    def test_laplacian_matches_hessian(self):
        got = self.variant(lambda x: laplacian(self.f, x))(self.x)
        chex.assert_trees_all_close(got, exact_laplacian(self.params, self.x), rtol=1e-10)

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    def test_vmap_over_points(self):
        got = self.variant(jax.vmap(lambda x: laplacian(self.f, x)))(self.points)
        want = jax.vmap(lambda x: exact_laplacian(self.params, x))(self.points)
        chex.assert_trees_all_close(got, want, rtol=1e-10)

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    def test_vmap_over_directions(self):
        directions = jax.random.normal(jax.random.PRNGKey(2), (4, 2, 3))  # 4 sets of R=2

        def quadratic_forms(v):
            return stde.collapsed_jet(self.f, (self.x,), ((v,),), (None,))[2]

        hessian = jax.hessian(self.f)(self.x)
        want = jnp.einsum("sri,ij,srj->s", directions, hessian, directions)
        chex.assert_trees_all_close(self.variant(jax.vmap(quadratic_forms))(directions), want,
                                    rtol=1e-10)

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    def test_grad_through_collapsed_jet_wrt_parameters(self):
        def loss(params):
            laps = jax.vmap(lambda x: laplacian(lambda y: mlp(params, y), x))(self.points)
            return jnp.mean((laps - 1.0) ** 2)

        def loss_nested(params):
            laps = jax.vmap(lambda x: exact_laplacian(params, x))(self.points)
            return jnp.mean((laps - 1.0) ** 2)

        chex.assert_trees_all_close(self.variant(jax.grad(loss))(self.params),
                                    jax.grad(loss_nested)(self.params), rtol=1e-9, atol=1e-12)

    @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
    def test_nested_collapsed_jet_is_biharmonic(self):
        biharmonic = self.variant(lambda x: laplacian(lambda y: laplacian(self.f, y), x))(self.x)
        fourth = jax.jacfwd(jax.jacfwd(jax.hessian(self.f)))(self.x)
        chex.assert_trees_all_close(biharmonic, jnp.einsum("iijj->", fourth), rtol=1e-9)


_NAMED_SHARDING = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import stde
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, jax.devices()
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    f = lambda x: jnp.sum(jnp.tanh(x @ w) ** 2)
    lap = lambda x: stde.collapsed_jet(f, (x,), ((jnp.eye(3),),), (None,))[2]
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    want = jax.vmap(lambda x: jnp.trace(jax.hessian(f)(x)))(xs)
    mesh = Mesh(np.array(jax.devices()), ("points",))
    sharded = jax.device_put(xs, NamedSharding(mesh, P("points")))
    out = jax.jit(jax.vmap(lap))(sharded)
    np.testing.assert_allclose(out, want, rtol=1e-10)
    assert len(out.sharding.device_set) == 2
    print("named sharding ok")
""")


def test_pmap_variantson_two_cpu_devices():
    """The ``with_pmap`` variants, skipped on one device, run over two devices."""
    output = rerun_on_two_cpu_devices("-rs", f"{__file__}::TransformationTest", "-k", "with_pmap")
    assert "5 passed" in output and "skipped" not in output, output[-3000:]


def test_named_shardingon_two_cpu_devices():
    result = on_two_cpu_devices("-c", _NAMED_SHARDING)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "named sharding ok" in result.stdout
