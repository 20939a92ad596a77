"""Stochastic operators: unbiasedness (mean within 4 standard errors), exactness, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
import stde.operators as ops
from tests.test_operators import NeighbourPairs, derivative, point, tanh_net

N_KEYS = 4000


def estimates(g, x, n_keys=N_KEYS):
    keys = jax.random.split(jax.random.key(1234), n_keys)
    return np.asarray(jax.jit(jax.vmap(g, (None, 0)))(x, keys))


def assert_unbiased(samples, want):
    mean = samples.mean()
    standard_error = samples.std(ddof=1) / np.sqrt(len(samples))
    assert standard_error > 0, "estimates do not vary with the key"
    assert abs(mean - want) <= 4 * standard_error, (mean, want, standard_error)


@pytest.fixture
def net(x64):
    params, apply = tanh_net(11, 4)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(11, 4)
    return f, x


SIGMA = np.array([[1.0, 0.2, -0.5], [0.3, -1.0, 0.1], [0.0, 0.4, 0.8], [0.7, 0.1, 0.2]])

CASES = [
    ("laplacian-dense-rademacher", lambda: ops.laplacian(), 3, "dense", "rademacher"),
    ("laplacian-dense-normal", lambda: 2 * ops.laplacian(), 3, "dense", "normal"),
    ("laplacian-sparse", lambda: -ops.laplacian(), 2, "sparse", "rademacher"),
    ("weighted-dense", lambda: ops.weighted_laplacian(SIGMA), 2, "dense", "normal"),
    ("weighted-sparse", lambda: ops.weighted_laplacian(SIGMA), 2, "sparse", "rademacher"),
    ("biharmonic-dense", lambda: ops.biharmonic(), 3, "dense", "rademacher"),
    ("biharmonic-sparse", lambda: ops.biharmonic(), 5, "sparse", "rademacher"),
    ("diagonal3-sparse", lambda: ops.diagonal(3), 2, "sparse", "rademacher"),
    ("pool-sparse", lambda: ops.from_terms({(0, 1): 1.0, (2, 2): -2.0, (1, 3): 0.5,
                                             (0, 1, 2): 0.8, (1, 1, 3): -0.3}), 3,
     "sparse", "rademacher"),
    ("mixed-auto", lambda: ops.laplacian() + ops.partial(0, 1, 1) - ops.partial(2, 3)
     + ops.partial(1), 3, "auto", "rademacher"),
    ("new-term-sparse", lambda: ops.Operator([(NeighbourPairs(), 1.5)]), 2, "sparse",
     "rademacher"),
    ("new-term-dense", lambda: ops.Operator([(NeighbourPairs(), -1.0)]), 2, "dense", "normal"),
]


def exact(f, x, op):
    return float(jax.jit(stde.operator(f, op))(x))


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_mean_within_four_standard_errors(name, net):
    _, make, n_samples, method, distribution = next(c for c in CASES if c[0] == name)
    f, x = net
    op = make()
    g = stde.stochastic_operator(f, op, n_samples, method=method, distribution=distribution)
    assert_unbiased(estimates(g, x), exact(f, x, op))


def test_exact_value_is_independent_of_jacfwd(net):
    """The reference of the unbiasedness tests is itself checked against jacfwd."""
    f, x = net
    np.testing.assert_allclose(exact(f, x, ops.biharmonic()),
                               jnp.einsum("iijj", derivative(f, x, 4)), rtol=1e-9)
    np.testing.assert_allclose(exact(f, x, ops.weighted_laplacian(SIGMA)),
                               jnp.einsum("ij,ir,jr", derivative(f, x, 2), SIGMA, SIGMA),
                               rtol=1e-9)


@pytest.mark.parametrize("op, n_samples", [
    (ops.laplacian(), 4),
    (ops.weighted_laplacian(SIGMA), 3),
    (ops.biharmonic(), 16),
    (ops.diagonal(3) - 0.5 * ops.partial(0, 1, 2) + ops.partial(1, 2) + ops.partial(0), 6),
])
def test_sparse_sampling_every_term_is_exact(op, n_samples, net):
    f, x = net
    g = stde.stochastic_operator(f, op, n_samples, method="sparse")
    samples = estimates(g, x, n_keys=3)
    np.testing.assert_allclose(samples, exact(f, x, op), rtol=1e-9)


def test_different_keys_give_different_estimates(net):
    f, x = net
    for method in ("sparse", "dense"):
        g = jax.jit(stde.stochastic_operator(f, ops.laplacian(), 2, method=method))
        a, b = g(x, jax.random.key(0)), g(x, jax.random.key(1))
        c = g(x, jax.random.key(0))
        assert a == c
        assert a != b or g(x, jax.random.key(2)) != a


def test_jit_vmap_grad_and_with_value(net):
    params, apply = tanh_net(12, 3)
    xs = jax.random.normal(jax.random.key(3), (4, 3))
    key = jax.random.key(5)
    op = ops.laplacian() + ops.partial(0, 1, 2)
    for method in ("sparse", "dense"):
        this_op = ops.laplacian() + ops.partial(0) if method == "dense" else op

        def loss(p, method=method, this_op=this_op):
            g = stde.stochastic_operator(lambda x: apply(p, x), this_op, 3, method=method)
            return jnp.sum(jax.vmap(g, (0, None))(xs, key) ** 2)

        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        # directional finite difference of the (fixed-key) estimator
        direction = jax.tree_util.tree_map(jnp.ones_like, params)
        eps = 1e-6
        shifted = lambda s: jax.tree_util.tree_map(lambda a, d: a + s * d, params, direction)  # noqa: E731, B023
        fd = (jax.jit(loss)(shifted(eps)) - jax.jit(loss)(shifted(-eps))) / (2 * eps)
        analytic = sum(jnp.sum(g) for g in jax.tree_util.tree_leaves(grads))
        np.testing.assert_allclose(analytic, fd, rtol=1e-5)
        assert np.isfinite(value)
    g = stde.stochastic_operator(lambda x: apply(params, x), op, 3, with_value=True)
    y, est = jax.jit(g)(xs[0], key)
    np.testing.assert_allclose(y, apply(params, xs[0]), rtol=1e-12)
    assert est.shape == ()


def test_shorthands_stochastic(net):
    f, x = net
    g = stde.laplacian(f, 4, method="sparse")
    np.testing.assert_allclose(g(x, jax.random.key(0)), exact(f, x, ops.laplacian()), rtol=1e-9)
    samples = estimates(stde.biharmonic(f, 2), x, n_keys=2000)
    assert_unbiased(samples, exact(f, x, ops.biharmonic()))


def test_vector_output(x64):
    params, apply = tanh_net(13, 3, out=2)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(13, 3)
    g = stde.stochastic_operator(f, ops.laplacian(), 3, method="sparse")
    np.testing.assert_allclose(g(x, jax.random.key(0)),
                               jnp.einsum("oii->o", derivative(f, x, 2)), rtol=1e-9)


def test_errors_are_clear():
    f = lambda x: jnp.tanh(x).sum()  # noqa: E731
    x, key = jnp.ones(3), jax.random.key(0)
    with pytest.raises(ValueError, match="at least 1"):
        stde.stochastic_operator(f, ops.laplacian(), 0)
    with pytest.raises(TypeError, match="integer"):
        stde.stochastic_operator(f, ops.laplacian(), 2.5)
    with pytest.raises(ValueError, match="unknown method"):
        stde.stochastic_operator(f, ops.laplacian(), 2, method="fast")
    with pytest.raises(ValueError, match="unknown distribution"):
        stde.stochastic_operator(f, ops.laplacian(), 2, distribution="uniform")
    with pytest.raises(ValueError, match="method='sparse'"):
        stde.stochastic_operator(f, ops.diagonal(4), 2, method="dense")(x, key)
    with pytest.raises(ValueError, match="method='sparse'"):
        stde.stochastic_operator(f, ops.partial(0, 1), 2, method="dense")(x, key)
    with pytest.raises(ValueError, match="n_samples >= 2"):
        stde.stochastic_operator(f, ops.laplacian() + ops.diagonal(3), 1)(x, key)
    with pytest.raises(ValueError, match="only 3 flattened coordinates"):
        stde.stochastic_operator(f, ops.partial(5), 2)(x, key)
    with pytest.raises(TypeError, match="key is missing"):
        stde.stochastic_operator(f, ops.laplacian(), 2)()


def test_key_is_positional_or_keyword_and_a_missing_key_is_named():
    f = lambda x: jnp.sum(jnp.sin(x))
    x = jnp.array([0.1, 0.2, 0.3])
    g = stde.stochastic_operator(f, ops.laplacian(), 2)
    key = jax.random.key(0)
    np.testing.assert_allclose(g(x, key=key), g(x, key))
    np.testing.assert_allclose(g(x, key=jax.random.PRNGKey(0)), g(x, jax.random.PRNGKey(0)))
    for call in (lambda: g(x), lambda: g(x, x), lambda: g()):
        with pytest.raises(TypeError, match="random key is missing"):
            call()


def test_pytree_argument_says_how_to_pass_it():
    f = lambda p: jnp.sum(jnp.sin(p["x"]))
    with pytest.raises(TypeError, match="dict.*own argument"):
        stde.stochastic_operator(f, ops.laplacian(), 2)({"x": jnp.ones(3)}, jax.random.key(0))
    with pytest.raises(TypeError, match="dict.*ravel_pytree"):
        stde.operator(f, ops.laplacian())({"x": jnp.ones(3)})
