"""Operators at a point whose coordinates are sharded over an explicit mesh (float64).

Under ``jax.set_mesh`` with ``AxisType.Explicit`` axes, an array's sharding is part of
its type, and a gather from a sharded array, or the flattening ``reshape`` of one, has
no unambiguous result sharding. The sparse directions read primals and weight rows at
sampled indices, so before the fix the operators failed on a sharded point
("Use `.at[...].get(out_sharding=)`"), as ``jax.hessian`` does ("select `which` must
... have the same sharding"). The oracle is ``jax.hessian`` of the same function on
unsharded copies (nested for the biharmonic). The checks run in a process with two CPU devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
from stde import operators as ops
from tests.conftest import rerun_on_two_cpu_devices

W = np.random.default_rng(0).normal(size=(4, 6)) / 2


def _functions(rows_sharded_weight):
    """Functions of a sharded point; the second pair's first layer is sharded by rows."""
    return {
        "elementwise": lambda x: jnp.sum(jnp.sin(x) ** 2) * jnp.exp(-jnp.sum(x * x)),
        "mlp": lambda x: jnp.sum(jnp.tanh(jnp.tanh(x.reshape(-1)) @ W)),
        "mlp_rows": lambda x: jnp.sum(jnp.tanh(jnp.dot(jnp.tanh(x.reshape(-1)),
                                                       rows_sharded_weight,
                                                       out_sharding=jax.sharding.PartitionSpec()))),
    }


def laplacian_of(f):
    """The oracle: the trace of ``jax.hessian`` (twice for the biharmonic)."""
    return lambda x: jnp.trace(jax.hessian(f)(x).reshape(x.size, x.size))


def test_operators_at_a_sharded_point(x64):
    if jax.device_count() < 2:
        pytest.skip("needs two devices (test_on_two_devices runs it with two CPU devices)")
    from jax.sharding import AxisType
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((2,), ("i",), axis_types=(AxisType.Explicit,))
    plain = _functions(W)
    with jax.set_mesh(mesh):
        functions = _functions(jax.device_put(W, P("i", None)))
        # A 2-D point only for the elementwise function: its flattening is the new part.
        for name, shape, spec in (("elementwise", (2, 2), P("i", None)),
                                  ("elementwise", (4,), P("i")), ("mlp", (4,), P("i")),
                                  ("mlp_rows", (4,), P("i"))):
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


def test_on_two_devices():
    if jax.device_count() > 1:
        pytest.skip("this process already has several devices")
    output = rerun_on_two_cpu_devices(__file__, "-k", "test_operators_at_a_sharded_point")
    assert "1 passed" in output, output[-3000:]
