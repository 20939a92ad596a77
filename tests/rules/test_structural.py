"""Linear and structural primitives inside nonlinear functions, against the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental import jet as jax_jet

import stde
from tests.oracle import assert_jet_matches_jax, case_tests, check_collapsed

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 4))  # constant operands (float64 NumPy arrays)
BATCH_W = RNG.normal(size=(2, 3, 4))
KERNEL_1D = RNG.normal(size=(2, 1, 3))  # (out channels, in channels, width)
KERNEL_HWIO = RNG.normal(size=(2, 2, 1, 2))
MASK = RNG.normal(size=(3, 4)) > 0
GATHER_ROWS = np.array([2, 0, 2])
SCATTER_ROWS = np.array([1, 0, 1, 1])  # duplicates: scatter-add accumulates


def normal(shape, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def conv_1d(x):
    """A jet input against a constant kernel, SAME padding, stride 1."""
    y = lax.conv_general_dilated(jnp.sin(x)[None, None], KERNEL_1D, (1,), "SAME")
    return jnp.tanh(y)


def conv_2d(x, w):
    """Both operands jets; strides, dilation and two feature groups (NCHW / OIHW)."""
    y = lax.conv_general_dilated(jnp.sin(x), w * w, window_strides=(2, 1),
                                 padding=((1, 0), (0, 1)), rhs_dilation=(1, 2),
                                 feature_group_count=2)
    return y * jnp.cos(y)


def conv_2d_nhwc_transposed(x):
    """NHWC layout and lhs dilation (a transposed convolution), constant kernel."""
    y = lax.conv_general_dilated(jnp.exp(x), KERNEL_HWIO, (1, 1), ((1, 1), (0, 1)),
                                 lhs_dilation=(2, 2),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y * y


# (name, function, primals factory, K, R); K = 1..6 and R = 1..8 are all covered.
CASES = [
    ("reshape", lambda x: jnp.sin(x).reshape(4, 3) * x.reshape(4, 3),
     lambda: (normal((3, 4)),), 3, 2),
    ("broadcast", lambda x: jnp.sin(x)[None, :] * x[:, None] + jnp.broadcast_to(
        (x * x).sum(), (3, 3)) + lax.broadcast_in_dim(jnp.cos(x), (3, 2, 3), (0,)).sum(1),
     lambda: (normal((3,)),), 2, 4),
    ("transpose", lambda x: jnp.transpose(jnp.sin(x), (1, 2, 0)) * jnp.moveaxis(x, 0, 2),
     lambda: (normal((2, 3, 2)),), 4, 1),
    ("slicing", lambda x: x[1:, ::2] * jnp.sin(x[:-1, 1::2]) + jnp.squeeze(x[:1, :2] ** 2, 0),
     lambda: (normal((3, 4)),), 5, 2),
    ("dynamic_slice", lambda x: lax.dynamic_slice(jnp.sin(x), (jnp.argmax(x[:, 0]) % 2, 1),
                                                  (2, 2)) * lax.dynamic_slice(x, (0, 2), (2, 2)),
     lambda: (normal((3, 4)),), 3, 3),
    ("dynamic_update_slice", lambda x: jnp.cos(lax.dynamic_update_slice(jnp.sin(x), x[:1] ** 2,
                                                                        (1, 0))),
     lambda: (normal((3, 4)),), 3, 5),
    ("gather_rows", lambda x: jnp.sin(x)[GATHER_ROWS] * x[GATHER_ROWS[::-1]],
     lambda: (normal((3, 2)),), 4, 3),
    ("gather_2d_fancy", lambda x: jnp.exp(x[GATHER_ROWS, np.array([0, 3, 1])]) * x[1, 2],
     lambda: (normal((3, 4)),), 2, 6),
    ("scatter_add", lambda x, y: jnp.sin(x.at[SCATTER_ROWS].add(jnp.sin(y) * y)),
     lambda: (normal((2, 3)), normal((4, 3), 1)), 3, 4),
    ("concatenate", lambda x: jnp.concatenate([jnp.sin(x), x * x, x[:, :1]], axis=1) ** 2,
     lambda: (normal((3, 2)),), 3, 2),
    ("pad_interior_negative", lambda x: lax.pad(jnp.sin(x), 0.5, ((1, 2, 1), (0, -1, 0))) * 3.0,
     lambda: (normal((3, 4)),), 2, 3),
    ("jnp_pad_modes", lambda x: jnp.concatenate([
        jnp.pad(jnp.sin(x), 1, constant_values=2.0).ravel(),
        jnp.pad(x * x, ((1, 1), (0, 2)), mode="reflect").ravel(),
        jnp.pad(jnp.cos(x), 1, mode="edge").ravel()]), lambda: (normal((3, 3)),), 2, 2),
    ("rev", lambda x: jnp.flip(jnp.sin(x), axis=0) * x[:, ::-1], lambda: (normal((3, 2)),), 6, 1),
    ("cumsum", lambda x: jnp.cumsum(jnp.sin(x), axis=1) * lax.cumsum(x, axis=0, reverse=True),
     lambda: (normal((3, 4)),), 2, 7),
    ("where_constant_mask", lambda x: jnp.where(MASK, jnp.sin(x), x ** 2),
     lambda: (normal((3, 4)),), 4, 2),
    ("where_primal_predicate", lambda x: jnp.where(x > 0, jnp.sin(x), x ** 3),
     lambda: (normal((3, 4)),), 5, 2),
    ("clip_minimum_maximum", lambda x: jnp.stack([
        jnp.clip(jnp.sin(x) * 3, -1, 1) * x,
        jnp.maximum(jnp.sin(x), jnp.cos(x)),
        jnp.minimum(x, 0.3) ** 2]), lambda: (normal((3, 4)),), 3, 3),
    ("vector_dot_vector", lambda x: jnp.dot(jnp.sin(x), x), lambda: (normal((4,)),), 4, 3),
    ("constant_matrix_vector", lambda x: jnp.tanh(W @ jnp.sin(x)), lambda: (normal((4,)),), 3, 8),
    ("matrix_vector_both_jets", lambda a, v: jnp.sin(a) @ (v * v),
     lambda: (normal((3, 4)), normal((4,), 1)), 3, 2),
    ("batched_matmul", lambda a, b: jnp.einsum("bij,bjk->bik", jnp.sin(a), jnp.cos(b)),
     lambda: (normal((2, 2, 3)), normal((2, 3, 2), 1)), 3, 3),
    ("batched_constant_matvec", lambda x: jnp.einsum("bij,bj->bi", BATCH_W, jnp.sin(x)) ** 2,
     lambda: (normal((2, 4)),), 2, 5),
    ("constant_left_moving_right",
     lambda h: jnp.cos(jnp.einsum("iw,dwj->dij", jnp.sin(h), BATCH_W)),
     lambda: (normal((2, 3)),), 2, 3),
    ("moving_right_uneven_precision", lambda h: jnp.sin(lax.dot_general(
        BATCH_W, jnp.sin(h), (((2,), (2,)), ((0,), (0,))),
        precision=(lax.Precision.HIGHEST, lax.Precision.DEFAULT))),
     lambda: (normal((2, 5, 4)),), 3, 2),
    ("contract_two_axes", lambda a, b: jnp.einsum("ijk,jkl->il", jnp.sin(a), b * b),
     lambda: (normal((2, 3, 2)), normal((3, 2, 2), 1)), 2, 4),
    ("batch_dims_in_the_middle", lambda a, b: jnp.einsum("ibj,jbk->bik", jnp.exp(a), b),
     lambda: (normal((2, 2, 3)), normal((3, 2, 2), 1)), 2, 2),
    ("self_attention_scores", lambda h: jax.nn.softmax((h @ W[:3, :3]) @ jnp.sin(h).T) @ h,
     lambda: (normal((4, 3)),), 4, 3),
    ("conv_1d_constant_kernel", conv_1d, lambda: (normal((6,)),), 3, 2),
    ("conv_2d_both_jets", conv_2d,
     lambda: (normal((1, 2, 4, 4)), normal((4, 1, 2, 2), 1)), 2, 3),
    ("conv_2d_nhwc_lhs_dilation", conv_2d_nhwc_transposed,
     lambda: (normal((1, 3, 3, 1)) * 0.5,), 1, 3),
]


test_against_oracle, test_cases_cover_every_order_and_direction_count = case_tests(CASES)


def test_convert_element_type_round_trip(x64):
    """f64 → f32 → f64 rounds the coefficients like the primal (compared at f32 precision)."""
    def f(x):
        y = lax.convert_element_type(jnp.sin(x), jnp.float32)
        return lax.convert_element_type(y * y, jnp.float64) * x
    check_collapsed(f, (normal((3,)),), 3, 2, jax.random.PRNGKey(0), rtol=1e-5, atol=1e-6)


JET_CASES = {
    "reshape_transpose": lambda x: jnp.sin(x).reshape(2, 2, 3).transpose(2, 0, 1) * 2.0,
    "slice_rev_concatenate": lambda x: jnp.concatenate([jnp.sin(x[::-1, 1:]), x[:, :1] ** 2], 1),
    "gather": lambda x: jnp.exp(x)[GATHER_ROWS] * x[GATHER_ROWS[::-1]],
    "pad_cumsum": lambda x: jnp.cumsum(lax.pad(jnp.sin(x), 0.0, ((1, 0, 1), (0, 1, 0))), axis=0),
    "dot_general": lambda x: jnp.tanh(W @ jnp.sin(x).T) @ x,
    "conv_1d": lambda x: conv_1d(x.ravel()),
    # jax.experimental.jet's min/max rules reject scalar operands, so no clip here.
    "where_maximum": lambda x: jnp.where(MASK, jnp.maximum(jnp.sin(x), jnp.cos(x)), x * x),
}


@pytest.mark.parametrize("f", list(JET_CASES.values()), ids=list(JET_CASES))
def test_matches_jax_experimental_jet(x64, f):
    x = normal((3, 4))
    series = [normal((3, 4), seed) for seed in (1, 2, 3)]
    assert_jet_matches_jax(f, (x,), (series,))


def test_add_scalar_jet_to_array_jet(x64):
    check_collapsed(lambda x: jnp.sin(x) + jnp.sum(x * x), (normal((3,)),), 2, 3,
                    jax.random.PRNGKey(0))


def test_reshard_matches_jax_experimental_jet(x64):
    mesh = jax.make_mesh((1,), ("a",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        f = lambda x: jnp.sin(jax.sharding.reshard(x * x, jax.P("a")))  # noqa: E731
        x, series = normal((4,)), [normal((4,), seed) for seed in (1, 2)]
        want_primal, want = jax_jet.jet(f, (x,), (series,))
        got_primal, got = stde.jet(f, (x,), (series,))
    np.testing.assert_allclose(got_primal, want_primal, rtol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-9)
