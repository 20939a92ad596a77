"""Linear-algebra and gamma-family rules against nested forward mode (float64).

Each case runs at one ``(K, R)`` pair by default (together ``K = 1..4``, ``R = 1..5``);
the full grid ``K = 1..4`` × ``R = 1..5`` is ``slow``. Complex cases feed the real and
imaginary parts as two real primals so the oracle differentiates along a real ``t``.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.scipy import special
from jax.scipy.linalg import solve_triangular

import stde
from stde.rules import linalg
from tests.conftest import forbid_fallback
from tests.oracle import check_collapsed

pytestmark = pytest.mark.usefixtures("x64")


def _matrix(seed: int, shape: tuple[int, ...] = (3, 3), shift: float = 3.0) -> jax.Array:
    a = jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)
    return a + shift * jnp.broadcast_to(jnp.eye(shape[-2], shape[-1], dtype=jnp.float64), shape)


def _real(*shapes_and_shifts: tuple[tuple[int, ...], float]) -> list[jax.Array]:
    return [_matrix(i, shape, shift) for i, (shape, shift) in enumerate(shapes_and_shifts)]


def _spd(a: jax.Array) -> jax.Array:
    return a @ jnp.swapaxes(a, -1, -2).conj()


def _flat(*arrays: jax.Array) -> jax.Array:
    dtype = np.result_type(*(a.dtype for a in arrays))   # explicit, for the strict modes
    return jnp.concatenate([a.ravel().astype(dtype) for a in arrays])


def _signed(v: jax.Array) -> jax.Array:
    """Eigen/singular vectors with a fixed sign (first row positive)."""
    return v * jnp.sign(v[..., :1, :])


def _phased(v: jax.Array) -> jax.Array:
    """Complex eigenvectors with a fixed phase (first row real and positive).

    A complex eigenvector is defined up to a unit phase that each eigensolver (LAPACK on
    the CPU, cuSOLVER on a GPU) chooses its own way, and so are the derivatives of the
    raw vectors along a curve; with the phase fixed, the vectors and their derivatives
    are unique.
    """
    first = v[..., :1, :]
    return v * (jnp.conj(first) / jnp.abs(first).astype(first.dtype))


def _complex(f):
    return lambda re, im: f(lax.complex(re, im))


def _hermitian(f):
    return _complex(lambda a: f(_spd(a)))


def _b() -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(7), (3, 2), jnp.float64)


def _tridiagonal(batch: tuple[int, ...], size: int, columns: int) -> list[jax.Array]:
    """``dl, d, du, b`` of a diagonally dominant tridiagonal system."""
    keys = jax.random.split(jax.random.PRNGKey(8), 4)
    dl, d, du = (jax.random.normal(k, (*batch, size), jnp.float64) for k in keys[:3])
    return [dl, d + 4.0, du, jax.random.normal(keys[3], (*batch, size, columns), jnp.float64)]


def _positive() -> list[jax.Array]:
    return [jnp.array([0.4, 1.3, 2.7], jnp.float64)]


SQUARE = ((3, 3), 3.0)
IMAG = ((3, 3), 0.0)

CASES = {
    "lu": (lambda a: lax.linalg.lu(a)[0], lambda: _real(SQUARE)),
    "slogdet": (lambda a: jnp.linalg.slogdet(a)[1], lambda: _real(SQUARE)),
    "slogdet_batched": (lambda a: jnp.linalg.slogdet(a)[1], lambda: _real(((2, 3, 3), 3.0))),
    "det": (jnp.linalg.det, lambda: _real(SQUARE)),
    "solve": (jnp.linalg.solve, lambda: [*_real(SQUARE), _b()]),
    "inv": (jnp.linalg.inv, lambda: _real(SQUARE)),
    "triangular_lower": (lambda a, b: solve_triangular(a, b, lower=True),
                         lambda: [*_real(SQUARE), _b()]),
    "triangular_upper_transposed": (lambda a, b: solve_triangular(a, b, trans=1),
                                    lambda: [*_real(SQUARE), _b()]),
    "triangular_right_unit": (
        lambda a, b: lax.linalg.triangular_solve(a, b.T, left_side=False, lower=True,
                                                 unit_diagonal=True),
        lambda: [*_real(SQUARE), _b()]),
    "cholesky": (lambda a: jnp.linalg.cholesky(_spd(a)), lambda: _real(SQUARE)),
    "eigh": (lambda a: _flat(*(lambda vw: (vw[0], _signed(vw[1])))(jnp.linalg.eigh(_spd(a)))),
             lambda: _real(SQUARE)),
    "qr": (lambda a: _flat(*jnp.linalg.qr(a)), lambda: _real(SQUARE)),
    "qr_tall": (lambda a: _flat(*jnp.linalg.qr(a)), lambda: _real(((4, 2), 1.0))),
    "svd": (lambda a: (lambda u, s, vt: _flat(s, _signed(u), _signed(vt.T)))(*jnp.linalg.svd(a)),
            lambda: _real(SQUARE)),
    "svd_values": (lambda a: jnp.linalg.svd(a, compute_uv=False), lambda: _real(SQUARE)),
    "lgamma": (special.gammaln, _positive),
    "digamma": (special.digamma, _positive),
    "polygamma": (lambda x: special.polygamma(2, x), _positive),
    "complex_lu": (_complex(lambda a: lax.linalg.lu(a)[0]), lambda: _real(SQUARE, IMAG)),
    "complex_slogdet": (_complex(lambda a: _flat(*jnp.linalg.slogdet(a))),
                        lambda: _real(SQUARE, IMAG)),
    "complex_triangular": (
        _complex(lambda a: solve_triangular(a, jnp.ones((3, 2), a.dtype), lower=True, trans=2)),
        lambda: _real(SQUARE, IMAG)),
    "complex_cholesky": (_hermitian(jnp.linalg.cholesky), lambda: _real(SQUARE, IMAG)),
    "complex_eigh": (_hermitian(lambda a: (lambda w, v: _flat(w, _phased(v)))(*jnp.linalg.eigh(a))),
                     lambda: _real(SQUARE, IMAG)),
    "complex_qr": (_complex(lambda a: _flat(*jnp.linalg.qr(a))), lambda: _real(SQUARE, IMAG)),
    # dl[0] and du[-1] are random too: outside the matrix, read by neither rule nor oracle
    "tridiagonal": (lax.linalg.tridiagonal_solve, lambda: _tridiagonal((), 4, 3)),
    "tridiagonal_batched": (lambda dl, d, du, b: lax.linalg.tridiagonal_solve(
        jnp.sin(dl), d * d, du, b), lambda: _tridiagonal((2,), 5, 1)),
}

# One (K, R) per case by default; together they cover K = 1..4 and R = 1..5.
DEFAULT = dict(zip(CASES, itertools.cycle([(1, 3), (2, 5), (3, 2), (4, 1), (2, 4), (3, 1),
                                           (1, 5), (4, 2), (2, 3)])))
GRID = [(k, r) for k in range(1, 5) for r in range(1, 6)]


def _check(name: str, order: int, count: int) -> None:
    f, make = CASES[name]
    with forbid_fallback():
        check_collapsed(f, make(), order, count, jax.random.PRNGKey(order + 10 * count),
                        rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", list(CASES))
def test_rule_against_oracle(name: str) -> None:
    _check(name, *DEFAULT[name])


def test_default_pairs_cover_orders_and_directions() -> None:
    assert {k for k, _ in DEFAULT.values()} == set(range(1, 5))
    assert {r for _, r in DEFAULT.values()} == set(range(1, 6))


@pytest.mark.slow
@pytest.mark.parametrize("name, order, count",
                         [(n, k, r) for n in CASES for k, r in GRID])
def test_rule_against_oracle_full_grid(name: str, order: int, count: int) -> None:
    _check(name, order, count)


def test_rules_registered() -> None:
    names = stde.rules.registered_names()
    for name in ("lu", "triangular_solve", "tridiagonal_solve", "cholesky", "eigh", "qr",
                 "svd", "lgamma", "digamma", "polygamma"):
        assert name in names, name


def test_eigh_degenerate_eigenvalues_give_non_finite_vectors() -> None:
    """Documented behaviour: eigenvectors of a repeated eigenvalue are not differentiable."""
    a = jnp.diag(jnp.array([1.0, 1.0, 2.0]))
    direction = jnp.ones((1, 3, 3))
    _, (v1,), _ = stde.collapsed_jet(lambda a: jnp.linalg.eigh(a)[1], (a,), ((direction,),),
                                     (jnp.zeros((3, 3)),))
    assert not np.all(np.isfinite(v1))


def test_strict_promotion_and_batches() -> None:
    """The rules broadcast explicitly: batched factorizations under strict promotion."""
    a = _matrix(1, (2, 3, 3))
    spd = _spd(a)
    functions = [
        (lambda a: lax.linalg.lu(a)[0], a),
        (lambda a: lax.linalg.triangular_solve(a, a, left_side=True, lower=True), a),
        (lambda a: lax.linalg.cholesky(a, symmetrize_input=False), spd),
        (lambda a: lax.linalg.eigh(a, symmetrize_input=False)[1], spd),
        (lambda a: lax.linalg.qr(a, full_matrices=False)[0], a),
        (lambda a: lax.linalg.svd(a)[1], a),
        (lambda a: lax.linalg.tridiagonal_solve(a[..., 0], a[..., 1] + 4.0, a[..., 2], a), a),
    ]
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        for f, primal in functions:
            series = (jnp.ones((2, *primal.shape)), jnp.ones((2, *primal.shape)))
            _, lower, top = stde.collapsed_jet(f, (primal,), (series,), (jnp.ones_like(primal),))
            assert all(np.all(np.isfinite(c)) for c in lower) and np.all(np.isfinite(top))


def test_polygamma_order_must_be_constant() -> None:
    with pytest.raises(TypeError, match="not differentiable in its order"):
        stde.jet(lambda n: lax.polygamma(n, jnp.ones(2)), (jnp.ones(2),), ((jnp.ones(2),),))


@pytest.mark.parametrize("left_side", [True, False])
@pytest.mark.parametrize("count", [1, 6])
def test_triangular_solve_by_substitution_and_by_inverse(left_side: bool, count: int) -> None:
    """``R·columns < size`` folds the directions into one solve; ``≥`` multiplies by the inverse."""
    def f(a, b):
        return lax.linalg.triangular_solve(a, b if left_side else b.T, left_side=left_side,
                                           lower=False, transpose_a=True)

    primals = [_matrix(3, (5, 5)), _matrix(4, (5, 1), 0.0)]
    params = dict(left_side=left_side, lower=False, transpose_a=True, conjugate_a=False,
                  unit_diagonal=False)
    a, b = primals[0], primals[1] if left_side else primals[1].T
    assert linalg._many_right_hand_sides(a, b, params, count) == (count == 6)
    check_collapsed(f, primals, 2, count, jax.random.PRNGKey(count), rtol=1e-9, atol=1e-10)


def test_linear_solve_rewrite_keeps_signature_and_values() -> None:
    """``with_inverse_products``: same jaxpr type, signature and solution; a product
    with the inverse only where the right-hand sides are many."""
    from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

    from stde.rules.linalg import with_inverse_products

    a = _matrix(5, (4, 4))
    outer = jax.make_jaxpr(lambda b: jnp.linalg.solve(a, b))(jnp.ones(4))
    eqn = next(e for e in outer.eqns[0].params["jaxpr"].eqns
               if e.primitive.name == "custom_linear_solve")
    original = eqn.params["jaxprs"].solve

    def run(j, *args):
        return jaxpr_as_fun(j if isinstance(j, ClosedJaxpr) else ClosedJaxpr(j, []))(*args)

    lu, _, permutation = lax.linalg.lu(a)
    b = jnp.arange(4.0, dtype=jnp.float64)
    for directions, products in ((1, False), (4, True)):
        rewritten = with_inverse_products(original, directions)
        assert type(rewritten) is type(original)
        assert ("dot_general" in str(rewritten)) == products   # ``op(A)⁻¹ B``
        np.testing.assert_allclose(run(rewritten, lu, permutation, b)[0],
                                   jnp.linalg.solve(a, b), rtol=1e-12)
