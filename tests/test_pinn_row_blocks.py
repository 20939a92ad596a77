"""Row-block optimiser steps (stde.pinn.row_blocks) and row-block initialisation.

Oracle: the ordinary step (``jax.value_and_grad``, ``optimizer.update``,
``optax.apply_updates``) on the same parameters, state and batch, in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stde
import stde.operators as ops
from stde.pinn.harness import init_mlp, mlp
from stde.pinn.row_blocks import optimizer_step

pytestmark = pytest.mark.usefixtures("x64")

DIM, BATCH = 10, 3


def sparse_laplacian_loss(samples: int = 3):
    """Mean square of sparse STDE Laplacian plus value: W read by a dot and a row gather."""
    estimate = stde.stochastic_operator(mlp, ops.laplacian(), samples, argnums=1,
                                        method="sparse")

    def loss(params, points, keys):
        per_point = jax.vmap(lambda x, k: estimate(params, x, k) + mlp(params, x))
        return jnp.mean(per_point(points, keys) ** 2)
    return loss


def exact_laplacian_loss(params, points, keys):
    """Dense tangents: W read by dots with the points and with the identity's rows."""
    del keys
    laplacian = stde.operator(lambda x: mlp(params, x), ops.laplacian())
    return jnp.mean(jax.vmap(laplacian)(points) ** 2)


def problem():
    params = init_mlp(jax.random.PRNGKey(0), [DIM, 6, 5, 1], bias=0.1)
    points = jax.random.normal(jax.random.PRNGKey(1), (BATCH, DIM))
    keys = jax.random.split(jax.random.PRNGKey(2), BATCH)
    return params, points, keys


def run(step, params, optimizer, points, keys, steps=3):
    state = optimizer.init(params)
    values = []
    for _ in range(steps):
        params, state, value = jax.jit(step)(params, state, points, keys)
        values.append(value)
    return params, state, values


LOSSES = {"sparse_stde": sparse_laplacian_loss(), "exact": exact_laplacian_loss}
OPTIMIZERS = {"adam": optax.adam(1e-2), "momentum": optax.sgd(1e-2, momentum=0.9),
              "adamw": optax.adamw(1e-2, weight_decay=0.1)}
# The default run: every block size with both losses, every optimizer with both losses
# (and with two block sizes); the remaining 16 of the 24 combinations run with -m slow.
DEFAULT_GRID = {("sparse_stde", "adam", 1), ("sparse_stde", "momentum", 3),
                ("sparse_stde", "adamw", 4), ("sparse_stde", "adam", 64),
                ("exact", "momentum", 1), ("exact", "adamw", 3), ("exact", "adam", 4),
                ("exact", "momentum", 64)}


@pytest.mark.parametrize("loss, optimizer, block_rows", [
    pytest.param(loss, optimizer, block_rows, id=f"{block_rows}-{optimizer}-{loss}",
                 marks=() if (loss, optimizer, block_rows) in DEFAULT_GRID else pytest.mark.slow)
    for loss in LOSSES for optimizer in OPTIMIZERS for block_rows in (1, 3, 4, 64)])
def test_row_blocks_equal_the_ordinary_step(loss, optimizer, block_rows):
    """Three steps: parameters, optimiser state and losses as the ordinary step's; blocks
    that divide D, that leave a remainder, and one larger than D."""
    loss, optimizer = LOSSES[loss], OPTIMIZERS[optimizer]
    params, points, keys = problem()
    want = run(optimizer_step(loss, optimizer), params, optimizer, points, keys)
    got = run(optimizer_step(loss, optimizer, block_rows), params, optimizer, points, keys)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    assert float(want[2][-1]) < float(want[2][0])  # the steps did train


def test_the_ordinary_step_is_value_and_grad_then_update():
    params, points, keys = problem()
    loss, optimizer = sparse_laplacian_loss(), optax.adam(1e-2)
    state = optimizer.init(params)
    value, grads = jax.value_and_grad(loss)(params, points, keys)
    updates, want_state = optimizer.update(grads, state, params)
    got = optimizer_step(loss, optimizer)(params, state, points, keys)
    want = (optax.apply_updates(params, updates), want_state, value)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(g, w)


def test_gradient_of_the_weight_is_never_whole():
    """XLA's memory analysis: the ordinary step's temporaries hold the first layer's
    gradient; with row blocks they are a fraction of it, and the donated parameters and
    state are updated in place (aliased), with no copy of the weight."""
    dim, width, optimizer = 4096, 64, optax.adam(1e-3)
    params = jax.eval_shape(lambda k: init_mlp(k, [dim, width, 1], dtype=jnp.float32),
                            jax.random.PRNGKey(0))
    state = jax.eval_shape(optimizer.init, params)
    points = jax.ShapeDtypeStruct((4, dim), jnp.float32)
    keys = jax.eval_shape(lambda k: jax.random.split(k, 4), jax.random.PRNGKey(0))
    weight_bytes = dim * width * 4

    def memory(block_rows):
        step = optimizer_step(sparse_laplacian_loss(4), optimizer, block_rows)
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, points,
                                                              keys).compile()
        return compiled.memory_analysis()

    whole, blocks = memory(None), memory(256)
    assert whole.temp_size_in_bytes >= weight_bytes
    assert blocks.temp_size_in_bytes < 0.5 * weight_bytes
    assert blocks.alias_size_in_bytes == whole.alias_size_in_bytes >= 3 * weight_bytes


def test_unsupported_use_of_the_weight_falls_back_with_a_warning():
    """An L2 penalty reads W outside a dot or a row gather: the ordinary step, said so."""
    params, points, keys = problem()
    optimizer = optax.adam(1e-2)
    penalised = lambda p, x, k: exact_laplacian_loss(p, x, k) + jnp.sum(p[0][0] ** 2)
    state = optimizer.init(params)
    with pytest.warns(UserWarning, match=r"read by integer_pow.*updating it whole"):
        got = optimizer_step(penalised, optimizer, 4)(params, state, points, keys)
    want = optimizer_step(penalised, optimizer)(params, state, points, keys)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(g, w)


def test_negative_block_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="block_rows must be a positive number of rows"):
        optimizer_step(exact_laplacian_loss, optax.adam(1e-2), -1)


@pytest.mark.parametrize("block_rows", [7, 100, 1000])
def test_init_by_row_blocks(block_rows):
    """Glorot-normal weights drawn block by block: reproducible, the right scale, every
    block its own numbers; other layers as without blocks; one block of temporaries."""
    sizes = [1000, 16, 4, 1]
    draw = jax.jit(lambda k: init_mlp(k, sizes, block_rows=block_rows))
    params, again = draw(jax.random.PRNGKey(0)), draw(jax.random.PRNGKey(0))
    plain = jax.jit(lambda k: init_mlp(k, sizes))(jax.random.PRNGKey(0))
    weight = np.asarray(params[0][0])
    np.testing.assert_array_equal(weight, again[0][0])
    assert weight.shape == (1000, 16)
    assert abs(weight.std() * np.sqrt((1000 + 16) / 2) - 1) < 0.05
    assert len(np.unique(weight)) == weight.size
    for got, want in zip(jax.tree.leaves(params[1:]), jax.tree.leaves(plain[1:]), strict=True):
        np.testing.assert_array_equal(got, want)
    if block_rows >= 1000:
        np.testing.assert_allclose(weight, jax.random.normal(
            jax.random.fold_in(jax.random.split(jax.random.PRNGKey(0), 3)[0], 0), (1000, 16))
            * np.sqrt(2 / 1016), rtol=1e-14)


def test_init_by_row_blocks_needs_one_block_of_temporaries():
    sizes = (100_000, 64, 1)
    temp = lambda **kw: jax.jit(lambda k: init_mlp(k, sizes, dtype=jnp.float32, **kw)).lower(
        jax.random.PRNGKey(0)).compile().memory_analysis().temp_size_in_bytes
    weight_bytes = 100_000 * 64 * 4
    assert temp() >= weight_bytes > 4 * temp(block_rows=2048)  # about 6 blocks
