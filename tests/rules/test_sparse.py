"""Sparse lower coefficients: every sparse rule against the dense path, in float64.

Each case interprets a function twice on the same jet, once with the lower
coefficients as :class:`stde.sparse.SparseCoefficient` and once densified, and requires
equal outputs. Index lists have repeated indices within a direction and, for ``K > 2``,
a second coefficient on other indices, so merging and coalescing are exercised. The
cases whose result should stay sparse are also checked to do so.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from stde import sparse
from stde.core import JetValue
from stde.interpreter import Interpreter
from stde.jets import evaluate_jets
from stde.rules import control_flow, registry

D, R = 6, 3
RNG = np.random.default_rng(0)
W = RNG.normal(size=(D, 4))
W3 = RNG.normal(size=(2, 3, 5))
INDICES = np.array([[0, 3, 3], [5, 1, 2], [4, 4, 0]])
SECOND = np.array([[2], [2], [5]])


def positive(x):
    return 1.5 + jnp.tanh(x)


CASES = {
    # index maps
    "reshape": lambda x: jnp.sin(x.reshape(2, 3)) * x.reshape(2, 3),
    "squeeze": lambda x: jnp.cos(lax.squeeze(x.reshape(1, D), (0,))),
    "convert": lambda x: jnp.exp(x.astype(jnp.float32).astype(jnp.float64)),
    "reduce_sum": lambda x: jnp.sin(jnp.sum(x.reshape(2, 3) ** 2, axis=0)),
    "reduce_all": lambda x: jnp.tanh(jnp.sum(x)),
    "broadcast_rank": lambda x: jnp.sin(jnp.broadcast_to(x, (1, D))),
    "broadcast_copies": lambda x: jnp.tanh(jnp.broadcast_to(x.reshape(2, 1, 3), (2, 2, 3))),
    "broadcast_dense": lambda x: jnp.sin(jnp.broadcast_to(jnp.sum(x), (5,))),
    "slice": lambda x: jnp.sin(x[1:5]) * x[:4],
    "slice_strided": lambda x: jnp.cos(x.reshape(2, 3)[:, ::2]),
    "concatenate": lambda x: jnp.tanh(jnp.concatenate([x, jnp.ones(2), x[:3]])),
    "slice_empty": lambda x: jnp.concatenate([jnp.sin(x[2:2]) * x[1:1], x[:2] ** 2]),
    "cumprod": lambda x: jnp.cumprod(positive(x)),   # its composition slices to empty
    # sums and products
    "add_shared": lambda x: jnp.sin(x + 2.0 * x),
    "add_shifted": lambda x: jnp.sin(x[:-1] + x[1:]),
    "sub_neg": lambda x: jnp.exp(-(x[:-1] - jnp.cos(x[1:]))),
    "add_broadcast": lambda x: jnp.sin(x.reshape(2, 1, 3) + x.reshape(1, 2, 3)),
    "pair_difference": lambda x: jnp.tanh(jnp.sum(
        (x.reshape(3, 2)[:, None, :] - x.reshape(3, 2)[None, :, :]) ** 2, -1)),
    "mul_broadcast": lambda x: (jnp.sin(x.reshape(2, 1, 3) * x.reshape(1, 2, 3))
                                * x.reshape(2, 1, 3)),
    "div": lambda x: jnp.sin(x[1:]) / positive(x[:-1] * x[1:]),
    "abs_sign_rem": lambda x: jnp.abs(x) * jnp.sign(x) + lax.rem(x, 0.3),
    "log2_expansion": lambda x: jnp.log2(positive(x)),
    "mul_constant": lambda x: jnp.sin(x * jnp.arange(D, dtype=x.dtype)),
    "mul_jets": lambda x: jnp.sum(x[1:] * jnp.cos(x[:-1]) * x[:-1]),
    "mul_scalar_jet": lambda x: (1 - jnp.sum(x ** 2)) * jnp.sum(jnp.sin(x)),
    "two_body": lambda x: jnp.sum(jnp.sin(x[:-1] + jnp.cos(x[1:]) + x[1:] * jnp.cos(x[:-1]))),
    # dot_general
    "dot_lhs": lambda x: jnp.tanh(x @ W + 1.0),
    "dot_rhs": lambda x: jnp.tanh(W.T @ x),
    "dot_matrix": lambda x: jnp.tanh(jnp.einsum("ij,ijk->k", x.reshape(2, 3), W3)),
    "dot_free_axis": lambda x: jnp.tanh(x.reshape(2, 3) @ W3[0]),
    "dot_two_jets": lambda x: jnp.sin(x @ x),
    "dot_per_row": lambda x: jnp.tanh(x.reshape(3, 2) @ W3[0, :2] + 1.0),
    "dot_per_row_densifies": lambda x: jnp.tanh(x.reshape(3, 2) @ W3[0, :2]) @ W3[1].T,
    "dot_per_row_3d": lambda x: jnp.sin(jnp.einsum("ijc,cf->ijf", x.reshape(3, 1, 2),
                                                   W3[0, :2, :3])),
    # unary elementwise
    "exp": jnp.exp, "exp2": jnp.exp2, "expm1": jnp.expm1, "tanh": jnp.tanh, "tan": jnp.tan,
    "logistic": jax.nn.sigmoid, "sin": jnp.sin, "cos": jnp.cos, "sinh": jnp.sinh,
    "cosh": jnp.cosh, "atan": jnp.arctan, "asinh": jnp.arcsinh, "erf": jax.scipy.special.erf,
    "erfc": jax.scipy.special.erfc,
    "log": lambda x: jnp.log(positive(x)), "log1p": lambda x: jnp.log1p(positive(x)),
    "sqrt": lambda x: jnp.sqrt(positive(x)), "rsqrt": lambda x: lax.rsqrt(positive(x)),
    "cbrt": lambda x: jnp.cbrt(positive(x)),
    "atanh": lambda x: jnp.arctanh(0.5 * jnp.tanh(x)),
    "asin": lambda x: jnp.arcsin(0.5 * jnp.tanh(x)),
    "acos": lambda x: jnp.arccos(0.5 * jnp.tanh(x)),
    "acosh": lambda x: jnp.arccosh(1.0 + positive(x)),
    "erf_inv": lambda x: lax.erf_inv(0.5 * jnp.tanh(x)),
    "integer_pow": lambda x: x ** 3, "square": lambda x: lax.square(x),
    # calls and the fallback to dense
    "jit": lambda x: jax.jit(lambda y: jnp.sin(y) * y)(x),
    "custom_jvp": lambda x: jax.nn.softplus(x) * jax.nn.relu(x + 0.3),
    "checkpoint": lambda x: jax.checkpoint(lambda y: jnp.tanh(y) * y)(x),
    "dense_fallback": lambda x: jnp.cumsum(jnp.sin(x)) + jnp.max(x),
}

TOLERANCE = {"convert": 1e-6}  # float32 rounds repeated entries one by one, not their sum

STAYS_SPARSE = {"reshape", "squeeze", "convert", "reduce_sum", "reduce_all", "broadcast_rank",
                "broadcast_copies", "slice", "slice_strided", "concatenate", "add_shared",
                "add_shifted", "sub_neg", "mul_constant", "mul_jets", "mul_scalar_jet",
                "two_body", "exp", "tanh", "sin", "log", "integer_pow", "square", "jit",
                "checkpoint", "add_broadcast", "pair_difference", "mul_broadcast", "div",
                "abs_sign_rem", "log2_expansion", "dot_per_row", "dot_per_row_3d"} | {
    # every unary elementwise primitive (the registry's sparse=True rules)
    "exp2", "expm1", "tan", "logistic", "cos", "sinh", "cosh", "atan", "asinh", "erf",
    "erfc", "log1p", "sqrt", "rsqrt", "cbrt", "atanh", "asin", "acos", "acosh", "erf_inv"}


def _inputs(order, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=D) * 0.7)
    first = sparse.SparseCoefficient(jnp.asarray(INDICES), jnp.asarray(rng.normal(size=(R, 3))),
                                     (D,), distinct=False)
    lower = [first]
    if order > 2:
        lower.append(sparse.SparseCoefficient(jnp.asarray(SECOND),
                                              jnp.asarray(rng.normal(size=(R, 1))), (D,)))
    lower += [None] * (order - 1 - len(lower))
    top = jnp.asarray(rng.normal(size=D))
    return x, tuple(lower), top


HIGHER_ORDER = ("reduce_sum", "broadcast_copies", "slice_strided", "concatenate", "add_shifted",
                "mul_jets", "mul_scalar_jet", "two_body", "dot_lhs", "exp", "log", "integer_pow",
                "square", "jit", "custom_jvp", "checkpoint")
"""Cases also run at ``K = 3`` in the default suite (all of them, at ``K = 3`` and ``4``,
with ``-m slow``)."""

ORDERS = [(name, 2) for name in sorted(CASES)] + [
    pytest.param(name, order,
                 marks=() if name in HIGHER_ORDER and order == 3 else pytest.mark.slow)
    for order in (3, 4) for name in sorted(CASES)]


@pytest.fixture
def sparse_always_pays(monkeypatch):
    """Switches off the density policy (:func:`stde.sparse.pays`) for this table.

    Its shapes are small (``D = 6`` with three entries per direction, repeated indices
    included), so sparse would rarely pay, and the policy would densify most sums. The
    table checks that the rules' sparse paths are right and keep sparsity; the policy is
    checked in tests/test_sparse_cost.py, at sizes where it matters. stde's cache of
    jitted ``jit`` bodies is emptied on both sides, so a body traced under one policy is
    not reused under the other. (Only that cache: ``jax.clear_caches()`` here made every
    case recompile each primitive, 187 s for the table against 41 s, on one core.)
    """
    control_flow._jitted_bodies.clear()
    monkeypatch.setattr(sparse, "pays", lambda entries, size: True)
    yield
    monkeypatch.undo()
    control_flow._jitted_bodies.clear()


@pytest.mark.usefixtures("sparse_always_pays")
@pytest.mark.parametrize(("name", "order"), ORDERS)
def test_sparse_rule_matches_dense_path(x64, name, order):
    x, lower, top = _inputs(order)
    closed = jax.make_jaxpr(CASES[name])(x)
    (out,) = Interpreter(order, R).eval_jaxpr(closed, [JetValue(x, lower, top)])
    if name in STAYS_SPARSE:
        assert sparse.is_sparse(out.lower[0]), name
    dense_lower = tuple(sparse.densify(c) for c in lower)
    (want,) = Interpreter(order, R).eval_jaxpr(closed, [JetValue(x, dense_lower, top)])
    for u, v in zip(sparse.densify_value(out).coefficients, want.coefficients):
        assert (u is None) == (v is None)
        if u is not None:
            tol = TOLERANCE.get(name, 1e-11)
            np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def test_every_registered_rule_keeps_sparsity_or_says_why_not():
    """Sparsity is a flag of the one registry: no rule densifies without a reason.

    Only stde's own rules are walked: other tests in the same process register rules of
    their own, as users do, without declaring sparsity.
    """
    def own(primitive):
        rule = registry.lookup(primitive)
        return getattr(getattr(rule, "func", rule), "__module__", "").startswith("stde.")

    builtin = [p for p in registry.registered() if own(p)]
    assert len(builtin) > 100
    undeclared = [p if isinstance(p, str) else p.name for p in builtin
                  if registry.sparsity(p) == "undeclared"]
    assert not undeclared, f"rules that densify sparse operands without a reason: {undeclared}"
    for primitive in builtin:
        verdict = registry.sparsity(primitive)
        assert verdict == "kept" or len(verdict) > len("densified: ") + 10, (primitive, verdict)


@pytest.mark.usefixtures("sparse_always_pays")
def test_a_new_unary_rule_keeps_sparsity(x64):
    """A unary primitive registered like the built-in ones keeps sparse inputs sparse."""
    from stde.rules import elementwise

    my_exp = jax.extend.core.Primitive("my_exp_for_sparsity")
    my_exp.def_impl(jnp.exp)
    my_exp.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
    registry.register(my_exp, elementwise.unary_rule(elementwise.exp), sparse=True)
    x, lower, top = _inputs(2)
    closed = jax.make_jaxpr(lambda y: my_exp.bind(y) * y)(x)
    (out,) = Interpreter(2, R).eval_jaxpr(closed, [JetValue(x, lower, top)])
    assert sparse.is_sparse(out.lower[0])
    closed_exp = jax.make_jaxpr(lambda y: jnp.exp(y) * y)(x)
    (want,) = Interpreter(2, R).eval_jaxpr(
        closed_exp, [JetValue(x, tuple(sparse.densify(c) for c in lower), top)])
    np.testing.assert_allclose(sparse.densify(out.lower[0]), want.lower[0], rtol=1e-12)
    np.testing.assert_allclose(out.summed, want.summed, rtol=1e-12)


def test_densified_operands_are_dense(x64):
    x, lower, top = _inputs(2)
    closed = jax.make_jaxpr(CASES["dense_fallback"])(x)
    (out,) = Interpreter(2, R).eval_jaxpr(closed, [JetValue(x, lower, top)])
    assert not sparse.is_sparse(out.lower[0])


def test_coalesce_sums_repeated_indices(x64):
    c = sparse.SparseCoefficient(jnp.asarray(INDICES), jnp.ones((R, 3)), (D,), distinct=False)
    other = sparse.SparseCoefficient(jnp.asarray(SECOND), 2 * jnp.ones((R, 1)), (D,))
    merged = sparse.coalesce([c, other])
    assert all(m.distinct and m.indices is merged[0].indices for m in merged)
    np.testing.assert_allclose(sparse.densify(merged[0]), sparse.densify(c))
    np.testing.assert_allclose(sparse.densify(merged[1]), sparse.densify(other))
    nonzero = np.asarray(merged[0].values) != 0
    for r in range(R):
        kept = np.asarray(merged[0].indices)[r][nonzero[r]]
        assert len(set(kept.tolist())) == len(kept)


def test_sparse_coefficient_composes_with_jit_vmap_grad(x64):
    w = jnp.asarray(W)

    def loss(w, x, index):
        c = sparse.from_indices(index, 1.0, D, x.dtype)
        out, _ = evaluate_jets(lambda y: jnp.sum(jnp.tanh(y @ w)), (x,),
                               [JetValue(x, (c,), None)], 2, 2)
        return out[0].summed

    def dense_loss(w, x, index):
        rows = jax.nn.one_hot(index, D, dtype=x.dtype)
        out, _ = evaluate_jets(lambda y: jnp.sum(jnp.tanh(y @ w)), (x,),
                               [JetValue(x, (rows,), None)], 2, 2)
        return out[0].summed

    xs = jnp.asarray(RNG.normal(size=(4, D)))
    index = jnp.asarray([[0, 5], [1, 2], [3, 3], [4, 0]])
    mean = lambda fn: lambda w: jnp.mean(jax.vmap(fn, (None, 0, 0))(w, xs, index))  # noqa: E731
    got = jax.jit(jax.grad(mean(loss)))(w)
    want = jax.grad(mean(dense_loss))(w)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_jit_keeps_its_boundary_with_sparse_coefficients(x64):
    """Sparse coefficients cross a jit boundary as the dense ones do (the same name)."""
    def inner(y):
        return jnp.sin(y) * y

    x, lower, top = _inputs(2)
    closed = jax.make_jaxpr(lambda y: jax.jit(inner)(y) * 2)(x)

    def first_coefficient(x, lower):
        (out,) = Interpreter(2, R).eval_jaxpr(closed, [JetValue(x, lower, top)])
        return sparse.densify(out.lower[0])

    def named(lower):
        text = str(jax.make_jaxpr(lambda x: first_coefficient(x, lower))(x))
        # jax 0.10 prints jit[name=inner ...]; later versions may bind it: inner = { ... }
        return re.search(r"name=inner\b|\binner = \{", text) is not None

    if not named(tuple(sparse.densify(c) for c in lower)):
        pytest.skip("this jax version shows no name for the interpreted jit boundary")
    assert named(lower)
