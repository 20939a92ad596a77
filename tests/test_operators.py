"""Exact operators against einsum contractions of nested jax.jacfwd tensors (float64)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
import stde.operators as ops
from stde import passes, sampling
from stde.lowering import basis_vectors, random_tangents

RTOL = 1e-9


def tanh_net(seed, dim, width=6, out=1):
    keys = jax.random.split(jax.random.key(seed), 6)
    params = {
        "w1": jax.random.normal(keys[0], (dim, width)) / jnp.sqrt(dim),
        "b1": 0.1 * jax.random.normal(keys[1], (width,)),
        "w2": jax.random.normal(keys[2], (width, width)) / jnp.sqrt(width),
        "b2": 0.1 * jax.random.normal(keys[3], (width,)),
        "w3": jax.random.normal(keys[4], (width, out)) / jnp.sqrt(width),
    }

    def apply(p, x):
        h = jnp.tanh(x.reshape(-1) @ p["w1"] + p["b1"])
        h = jnp.tanh(h @ p["w2"] + p["b2"])
        y = h @ p["w3"]
        return y[0] if out == 1 else y

    return params, apply


def derivative(f, x, order):
    """The order-``order`` derivative tensor by nested jax.jacfwd (jitted: eager is slow)."""
    g = f
    for _ in range(order):
        g = jax.jacfwd(g)
    return jax.jit(g)(x)


def nested(f, order):
    for _ in range(order):
        f = jax.jacfwd(f)
    return f


def point(seed, dim):
    return 0.5 * jax.random.normal(jax.random.key(100 + seed), (dim,))


# ----------------------------------------------------------------------------- algebra

def test_algebra_repr_and_merging():
    op = ops.laplacian() - 2 * ops.partial(0, 1, 1) + 0.5 * ops.biharmonic()
    assert repr(op) == "laplacian() - 2 * partial(0, 1, 1) + 0.5 * biharmonic()"
    assert repr(-ops.diagonal(3)) == "-diagonal(3)"
    assert repr(ops.partial(3, 0, 0)) == "partial(0, 0, 3)"
    assert ops.partial(1, 0) == ops.partial(0, 1)
    assert ops.laplacian() == ops.diagonal(2)
    assert ops.laplacian() + ops.laplacian() == 2 * ops.laplacian()
    assert (ops.laplacian() - ops.laplacian()).terms == ()
    assert repr(ops.laplacian() - ops.laplacian()) == "Operator(0)"
    assert ops.from_terms({(0, 0): 1.0, (0, 1, 1): -2.0}) == ops.partial(0, 0) - 2 * ops.partial(
        0, 1, 1)
    assert (ops.laplacian() * np.float64(3.0)).terms[0][1] == 3.0
    assert (ops.laplacian() / 4).terms[0][1] == 0.25
    sigma = np.ones((3, 2))
    w = ops.weighted_laplacian(sigma)
    assert len((w + w).terms) == 1 and (w + w).terms[0][1] == 2
    assert len((w + ops.weighted_laplacian(sigma)).terms) == 2  # identity, not value, equality
    assert "weighted_laplacian" in repr(w)
    assert op.order == 4


def test_algebra_errors():
    with pytest.raises(TypeError, match="scalars only"):
        ops.laplacian() * ops.laplacian()
    with pytest.raises(TypeError, match="concrete real numbers"):
        ops.laplacian() * "2"
    with pytest.raises(ValueError, match="non-negative integers"):
        ops.partial(0, -1)
    with pytest.raises(ValueError, match="non-negative integers"):
        ops.partial(0.5)
    with pytest.raises(ValueError, match="order >= 1"):
        ops.diagonal(0)
    with pytest.raises(TypeError, match="mapping"):
        ops.from_terms([(0, 0)])


# ----------------------------------------------------------------------------- families

def _weighted_sigma(dim):
    return jax.random.normal(jax.random.key(7), (dim, 3))


FAMILIES = {
    "laplacian": (lambda d: ops.laplacian(), 2, lambda t, d: jnp.einsum("ii", t)),
    "diagonal1": (lambda d: ops.diagonal(1), 1, lambda t, d: t.sum()),
    "diagonal3": (lambda d: ops.diagonal(3), 3, lambda t, d: jnp.einsum("iii", t)),
    "diagonal4": (lambda d: -ops.diagonal(4), 4, lambda t, d: -jnp.einsum("iiii", t)),
    "weighted": (lambda d: 2.5 * ops.weighted_laplacian(_weighted_sigma(d)), 2,
                 lambda t, d: 2.5 * jnp.einsum("ij,ir,jr", t, _weighted_sigma(d),
                                               _weighted_sigma(d))),
    "weighted_callable": (
        lambda d: ops.weighted_laplacian(lambda x: jnp.outer(jnp.cos(x), jnp.ones(2))), 2,
        None),
    "biharmonic": (lambda d: ops.biharmonic(), 4, lambda t, d: jnp.einsum("iijj", t)),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_matches_jacfwd(name, x64):
    make, order, contract = FAMILIES[name]
    dim = 4
    params, apply = tanh_net(1, dim)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(1, dim)
    tensor = derivative(f, x, order)
    if contract is None:  # σ(x) = cos(x) 1ᵀ: Σ_r σ_rᵀ H σ_r = 2 cos(x)ᵀ H cos(x)
        want = 2 * jnp.cos(x) @ tensor @ jnp.cos(x)
    else:
        want = contract(tensor, dim)
    got = jax.jit(stde.operator(f, make(dim)))(x)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12)


def test_biharmonic_methods_agree_and_bad_method(x64):
    params, apply = tanh_net(2, 3)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(2, 3)
    want = jnp.einsum("iijj", derivative(f, x, 4))
    for method in ("nested", "interpolation"):
        got = jax.jit(stde.operator(f, 3 * ops.biharmonic(), biharmonic_method=method))(x)
        np.testing.assert_allclose(got, 3 * want, rtol=RTOL)
    with pytest.raises(ValueError, match="biharmonic_method"):
        stde.operator(f, ops.biharmonic(), biharmonic_method="fast")
    with pytest.raises(ValueError, match="partial_method"):
        stde.operator(f, ops.biharmonic(), partial_method="fast")


# ----------------------------------------------------------------------------- explicit partials

def random_terms(seed, dim, max_order):
    rng = np.random.default_rng(seed)
    terms = {}
    for order in range(1, max_order + 1):
        for _ in range(2):
            indices = tuple(int(i) for i in rng.integers(0, dim, order))
            terms[indices] = float(rng.normal())
    terms[(0, 1, 2)] = 0.7  # three distinct coordinates
    terms[(0, 1, 2, 2)] = -1.3
    terms[(0, 1, 2, 3)] = 0.4
    terms[(1, 1, 3, 3)] = 2.0
    return terms


def reference(f, x, terms):
    tensors = {k: derivative(f, x, k) for k in {len(i) for i in terms}}
    return sum(c * tensors[len(i)][i] for i, c in terms.items())


@pytest.mark.parametrize("seed, method", [(0, "auto"), (1, "interpolation"), (2, "auto")])
def test_random_multi_index_combinations_match_jacfwd(seed, method, x64):
    dim = 4
    params, apply = tanh_net(seed, dim)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(seed, dim)
    terms = random_terms(seed, dim, 4)
    got = jax.jit(stde.operator(f, ops.from_terms(terms), partial_method=method))(x)
    np.testing.assert_allclose(got, reference(f, x, terms), rtol=RTOL, atol=1e-12)


def test_slot_construction_matches_jacfwd(x64):
    dim = 3
    params, apply = tanh_net(5, dim, width=4)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(5, dim)
    terms = {(0, 1): 1.5, (0, 0, 2): -0.5, (1, 2): 2.0, (2, 2, 2): 1.0}
    got = jax.jit(stde.operator(f, ops.from_terms(terms), partial_method="slots"))(x)
    np.testing.assert_allclose(got, reference(f, x, terms), rtol=RTOL, atol=1e-12)


def test_mixed_sum_and_identity_term(x64):
    dim = 4
    params, apply = tanh_net(3, dim)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(3, dim)
    op = (ops.laplacian() - 0.5 * ops.partial(0, 1) + ops.partial(2) + 3 * ops.partial()
          + ops.biharmonic() - ops.diagonal(3))
    t1, t2, t3, t4 = (derivative(f, x, k) for k in range(1, 5))
    want = (jnp.trace(t2) - 0.5 * t2[0, 1] + t1[2] + 3 * f(x) + jnp.einsum("iijj", t4)
            - jnp.einsum("iii", t3))
    np.testing.assert_allclose(jax.jit(stde.operator(f, op))(x), want, rtol=RTOL)


def test_terms_of_one_order_share_one_collapsed_pass(x64):
    """Laplacian + weighted + ∂0∂1: one order-2 pass per sign, equal directions merged."""
    dim = 3
    rows = passes.SparseRows()
    for i in range(dim):
        rows.add(2, ((1, passes.basis(i)),), 1)
    ops.Partial((0, 1)).add_rows(rows, 1, "interpolation")
    # 2e_0 merges into e_0 (weight 1 - 1/2), 2e_1 into e_1: directions e_0, e_1, e_2, e_0+e_1
    assert len(rows.rows[2]) == 4
    directions = rows.directions(dim, jnp.float64)
    directions += passes.scaled(2, [jnp.ones((2, dim))], 1.0)
    merged = passes.merge(directions)
    assert [(d.order, d.sign, d.count) for d in merged] == [(2, 1, 6)]


# ----------------------------------------------------------------------------- a new term

@dataclasses.dataclass(frozen=True)
class NeighbourPairs(ops.Term):
    """``Σ_i ∂_i ∂_{i+1}``: the recipe "a new operator" of docs/design.md, as one class."""

    order = 2

    def size(self, dim, argument):
        return dim - 1

    def exact(self, c, plan):
        for i in range(plan.dim - 1):
            ops.Partial((i, i + 1)).add_rows(plan.rows, c, plan.partial_method)

    def sample_sparse(self, c, count, key, plan):
        # ∂_i∂_{i+1} = [y_2(e_i + e_{i+1}) - y_2(e_i) - y_2(e_{i+1})] / 2, weighted (D-1)/S
        first = sampling.without_replacement(key, plan.dim - 1, count)
        weight = float(c) * (plan.dim - 1) / (2 * count)
        for indices, sign in ((jnp.stack([first, first + 1], axis=1), 1), (first, -1),
                              (first + 1, -1)):
            plan.add_directional(2, basis_vectors(indices, plan.dim, plan.dtype), sign * weight)

    def has_dense(self):
        return True

    def sample_dense(self, c, count, key, plan, distribution):
        # w_j = u_{j-1}: E[u_a w_b] = δ_{b,a+1}, so E[uᵀ∇²w] = Σ_a ∂_a∂_{a+1} (polarised)
        u = random_tangents(key, (count, plan.dim), distribution, plan.dtype)
        w = jnp.pad(u[:, :-1], ((0, 0), (1, 0)))
        for v, sign in ((u + w, 1), (u, -1), (w, -1)):
            plan.add_directional(2, v, sign * float(c) / (2 * count))

    def __repr__(self):
        return "neighbour_pairs()"


def neighbour_pairs(hessian):
    return jnp.trace(hessian, offset=1)


def test_a_new_term_class_is_a_new_operator(x64):
    params, apply = tanh_net(21, 5)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(21, 5)
    hessian = jax.jit(jax.hessian(f))(x)
    op = ops.Operator([(NeighbourPairs(), 1.5)]) - ops.laplacian()
    assert repr(op) == "1.5 * neighbour_pairs() - laplacian()"
    want = 1.5 * neighbour_pairs(hessian) - jnp.trace(hessian)
    for method in ("auto", "interpolation", "slots"):
        np.testing.assert_allclose(jax.jit(stde.operator(f, op, partial_method=method))(x),
                                   want, rtol=RTOL)
    exact = stde.stochastic_operator(f, op, 9, method="sparse")  # 4 + 5 members: exact
    np.testing.assert_allclose(jax.jit(exact)(x, jax.random.key(0)), want, rtol=RTOL)


# ----------------------------------------------------------------------------- shapes / args

def test_vector_output_argnums_and_with_value(x64):
    params, apply = tanh_net(4, 4, out=3)

    def f(scale, x):  # x is (2, 2): indices refer to x.ravel()
        return scale * apply(params, x)

    x = point(4, 4).reshape(2, 2)
    g = stde.operator(f, ops.laplacian() + ops.partial(0, 3), argnums=1, with_value=True)
    value, got = jax.jit(g)(2.0, x)
    hess = jax.jacfwd(jax.jacfwd(lambda y: f(2.0, y.reshape(2, 2))))(x.reshape(-1))
    want = jnp.einsum("oii->o", hess) + hess[:, 0, 3]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=RTOL)
    np.testing.assert_allclose(value, f(2.0, x), rtol=RTOL)


def assert_trees_close(got, want):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=RTOL)


HAS_AUX_OPERATORS = {
    "operator": lambda f, **kw: stde.operator(f, ops.laplacian() + ops.partial(0, 1), **kw),
    "laplacian": lambda f, **kw: stde.laplacian(f, **kw),
    "biharmonic": lambda f, **kw: stde.biharmonic(f, **kw),
    "stochastic": lambda f, **kw: stde.stochastic_operator(
        f, ops.laplacian(), 3, method="sparse", **kw),
}


@pytest.mark.parametrize("name", sorted(HAS_AUX_OPERATORS))
def test_has_aux_returns_aux_beside_the_result_as_jax_grad_does(x64, name):
    params, apply = tanh_net(11, 3)
    xs = jax.random.normal(jax.random.key(2), (4, 3))

    def f(p, x):
        return apply(p, x), {"features": jnp.tanh(x), "norm": jnp.sum(x ** 2)}

    build = HAS_AUX_OPERATORS[name]
    extra = (jax.random.key(5),) if name == "stochastic" else ()
    aux_of = jax.vmap(lambda x: f(params, x)[1])

    def batched(g):
        return jax.jit(jax.vmap(lambda x: g(x, *extra)))(xs)

    plain = batched(build(lambda x: apply(params, x)))
    got, aux = batched(build(lambda x: f(params, x), has_aux=True))
    np.testing.assert_allclose(got, plain, rtol=RTOL)
    assert set(aux) == {"features", "norm"}
    assert_trees_close(aux, aux_of(xs))
    (value, aux), got = batched(build(lambda x: f(params, x), has_aux=True, with_value=True))
    np.testing.assert_allclose(value, jax.vmap(lambda x: apply(params, x))(xs), rtol=RTOL)
    np.testing.assert_allclose(got, plain, rtol=RTOL)
    np.testing.assert_allclose(aux["norm"], jnp.sum(xs ** 2, axis=1), rtol=RTOL)
    if name == "laplacian":  # the oracle, and jax.grad through the pair
        hessians = jax.vmap(jax.hessian(lambda x: apply(params, x)))(xs)
        np.testing.assert_allclose(got, jnp.trace(hessians, axis1=1, axis2=2), rtol=RTOL)

        def loss(p, has_aux):
            g = build((lambda x: f(p, x)) if has_aux else (lambda x: apply(p, x)),
                      has_aux=has_aux)
            out = jax.vmap(g)(xs)
            return jnp.sum((out[0] if has_aux else out) ** 2)

        grad = jax.jit(jax.grad(loss), static_argnums=1)
        assert_trees_close(grad(params, True), grad(params, False))


def test_has_aux_needs_a_pair():
    x = jnp.ones(3)
    for g in (stde.laplacian(lambda x: x.sum(), has_aux=True),
              stde.value_grad_laplacian(lambda x: (x.sum(), 1.0, 2.0), has_aux=True)):
        with pytest.raises(TypeError, match=r"must return a pair \(output, aux\), got "
                                            r"(one array of shape \(\)|a tuple of length 3)"):
            g(x)


def test_jit_vmap_grad(x64):
    dim = 3
    params, apply = tanh_net(6, dim)
    xs = jax.random.normal(jax.random.key(9), (5, dim))
    op = ops.laplacian() + 0.3 * ops.partial(0, 1, 2)

    def loss(p):
        g = stde.operator(lambda x: apply(p, x), op)
        return jnp.sum(jax.jit(jax.vmap(g))(xs) ** 2)

    def loss_ref(p):
        def one(x):
            f = lambda y: apply(p, y)  # noqa: E731
            t2, t3 = nested(f, 2)(x), nested(f, 3)(x)
            return jnp.trace(t2) + 0.3 * t3[0, 1, 2]
        return jnp.sum(jax.vmap(one)(xs) ** 2)

    np.testing.assert_allclose(jax.jit(loss)(params), jax.jit(loss_ref)(params), rtol=RTOL)
    grads, grads_ref = jax.jit(jax.grad(loss))(params), jax.jit(jax.grad(loss_ref))(params)
    for k in params:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-8, atol=1e-12)


def test_shorthands_exact(x64):
    params, apply = tanh_net(8, 3)
    f = lambda x: apply(params, x)  # noqa: E731
    x = point(8, 3)
    np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), jnp.trace(derivative(f, x, 2)),
                               rtol=RTOL)
    np.testing.assert_allclose(jax.jit(stde.biharmonic(f))(x),
                               jnp.einsum("iijj", derivative(f, x, 4)), rtol=RTOL)


# ----------------------------------------------------------------------------- errors

def test_errors_are_clear():
    f = lambda x: jnp.tanh(x).sum()  # noqa: E731
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="only 3 flattened coordinates"):
        stde.operator(f, ops.partial(0, 3))(x)
    with pytest.raises(TypeError, match="Operator"):
        stde.operator(f, "laplacian")
    with pytest.raises(ValueError, match="out of range"):
        stde.operator(f, ops.laplacian(), argnums=2)(x)
    with pytest.raises(TypeError, match="argnums"):
        stde.operator(f, ops.laplacian(), argnums=(0,))(x)
    with pytest.raises(TypeError, match="floating-point"):
        stde.operator(f, ops.laplacian())(jnp.arange(3))
    with pytest.raises(ValueError, match=r"shape \(D, R\)"):
        stde.operator(f, ops.weighted_laplacian(jnp.ones((2, 2))))(x)
