"""The JAX functions users write, each through stde's operators, against nested AD in float64.

Each function of ``R⁴ → R`` goes through ``stde.laplacian`` (sparse one-hot directions),
``stde.value_grad_laplacian`` (indexed directions), the gradient of the Laplacian, and
``stde.jet`` at order 4 along a seeded random curve; the oracles are nested
forward mode (``jax.jacfwd``, and ``jax.jvp`` in ``tests/oracle.py``), or ``jax.hessian``
for ``custom_vjp``, and
``jax.experimental.jet`` where it works (17 of the 55 functions on jax 0.12.1, 19 on
0.12.0 and 0.10.2; on the others it raises). The
functions are everyday calls (``jax.nn``, ``jax.scipy.special``, ``jnp.linalg``, control
flow, calls, transforms inside the function), not single primitives, so rules meet each
other as they do in user code. This sweep found that ``cumprod``'s associative scan
sliced sparse directions to empty arrays and that ``betainc``'s JVP rule refuses a
tangent for its constant operands, and, on jax 0.12.1, that a ``vmap``-ped while loop
(``hyp1f1``, a ``fori_loop`` with per-element trip counts) failed and that ``betaln``'s
``sinpi`` had no rule.

The whole module is a slow check (a few minutes on one core): the bugs it found have
their own tests in the default run (``tests/rules/test_reductions.py``,
``tests/rules/test_fallback.py``, ``tests/rules/test_interpreted_jvp.py``,
``tests/rules/test_control_flow.py``, ``tests/rules/test_elementwise.py``).
"""

import warnings

import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
import pytest
from jax import lax
from jax.experimental import jet

import stde
from tests import oracle
from tests.conftest import OPTIMISED

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("x64")]

_A = np.random.default_rng(0).normal(size=(4, 4))
SPD = _A @ _A.T + 4 * np.eye(4)


def _spd():
    return jnp.asarray(SPD)


@jax.custom_vjp
def _sin_custom_vjp(x):
    return jnp.sin(x)


_sin_custom_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (jnp.cos(x) * g,))

FUNCTIONS = {
    # control flow and calls
    "scan": lambda x: lax.scan(lambda c, xi: (c * jnp.sin(xi) + xi ** 2, c), 1.0, x)[0],
    "fori_loop": lambda x: lax.fori_loop(0, 3, lambda i, c: jnp.tanh(c) * x, x).sum(),
    "while_loop": lambda x: lax.while_loop(lambda c: c[1] < 3,
                                           lambda c: (jnp.sin(c[0]) + x, c[1] + 1),
                                           (x, 0))[0].sum(),
    "vmap_fori_loop": lambda x: jax.vmap(  # per-element trip counts: a batched predicate
        lambda n, y: lax.fori_loop(0, n, lambda i, c: jnp.sin(c) * y + i, y))(
            jnp.array([1, 3, 0, 2]), x).sum(),
    "cond": lambda x: lax.cond(x.sum() > 0, lambda y: jnp.exp(y).sum(),
                               lambda y: jnp.cos(y).sum(), x),
    "switch": lambda x: lax.switch(1, [jnp.sin, jnp.cos, jnp.tanh], x).sum(),
    "checkpoint": lambda x: jax.checkpoint(lambda y: jnp.sin(y @ _spd()) * y,
                                           policy=jax.checkpoint_policies.nothing_saveable
                                           )(x).sum(),
    "custom_vjp": lambda x: (_sin_custom_vjp(x) * x).sum(),
    "jit_inside": lambda x: jax.jit(lambda y: jnp.tanh(y) ** 2)(x).sum(),
    "vmap_inside": lambda x: jax.vmap(lambda y: jnp.sin(y) * x)(x).sum(),
    "grad_inside": lambda x: jax.grad(lambda y: jnp.sum(jnp.sin(y) ** 3))(x).sum(),
    "hessian_inside": lambda x: jnp.trace(jax.hessian(lambda y: jnp.sum(jnp.sin(y) ** 3))(x)),
    # jax.nn and jax.scipy.special (custom_jvp rules, expansions, the fallback)
    "softmax": lambda x: (jax.nn.softmax(x) * jnp.arange(4.0)).sum(),
    "logsumexp": lambda x: jsp.special.logsumexp(x * 2),
    "gelu": lambda x: jax.nn.gelu(x).sum() + jax.nn.gelu(x, approximate=False).sum(),
    "silu_softplus": lambda x: (jax.nn.silu(x) * jax.nn.softplus(x)).sum(),
    "erf_erfinv": lambda x: (jsp.special.erf(x) + jsp.special.erfinv(x / 2)).sum(),
    "gammaln_digamma": lambda x: (jsp.special.gammaln(x + 2) * jsp.special.digamma(x + 2)).sum(),
    "betainc": lambda x: (jsp.special.betainc(2.0, 3.0, jax.nn.sigmoid(x)) * x).sum(),
    "hyp1f1": lambda x: jsp.special.hyp1f1(1.2, 2.3, x).sum(),
    "betaln": lambda x: jsp.special.betaln(x + 2, 1.5).sum(),
    "i0e": lambda x: jsp.special.i0e(x).sum(),
    "xlogy_entr": lambda x: (jsp.special.xlogy(x, x ** 2 + 1)
                             + jsp.special.entr(jnp.abs(x) + 0.1)).sum(),
    "logit_expit": lambda x: jsp.special.logit(jsp.special.expit(x) * 0.9).sum(),
    # reductions, cumulative and selections
    "norm": lambda x: jnp.linalg.norm(x) + jnp.var(x) * jnp.std(x),
    "cumsum": lambda x: jnp.cumsum(x ** 3).sum() * x[0],
    "cumprod": lambda x: jnp.cumprod(x + 2).sum() * x[0],
    "cumlogsumexp": lambda x: lax.cumlogsumexp(x).sum() * x[1],
    "sort": lambda x: (jnp.sort(x ** 3) * jnp.arange(4.0)).sum(),
    "top_k": lambda x: lax.top_k(x ** 2, 2)[0].sum() * x[2],
    "max": lambda x: jnp.max(x ** 2 + jnp.arange(4.0)) * x[0],
    "take_along_axis": lambda x: jnp.take_along_axis(x ** 3, jnp.argsort(x), 0)[::2].sum(),
    # indexing
    "dynamic_slice": lambda x: lax.dynamic_slice(x ** 2, (1,), (2,)).sum() * x[3],
    "gather": lambda x: (x[jnp.array([0, 2, 2])] ** 2).prod(),
    "scatter_add": lambda x: jnp.zeros(3).at[jnp.array([0, 1, 1, 2])].add(x ** 2).prod(),
    "where_clip": lambda x: jnp.where(x > 0, x ** 3, jnp.sin(x)).sum()
                            + jnp.clip(x, -0.5, 0.5).sum() * x.sum(),
    # elementwise with two operands
    "pow": lambda x: (jnp.abs(x) ** 2.5).sum() + (jnp.abs(x[0]) + 1) ** x[1] * x[2],
    "atan2_hypot": lambda x: jnp.arctan2(x[0], x[1] + 2) * x[2] + jnp.hypot(x[0], x[1]) * x[3],
    "logaddexp": lambda x: jnp.logaddexp(x, x[::-1]).sum(),
    "cbrt_sinc": lambda x: (jnp.cbrt(x + 2) + jnp.sinc(x)).sum(),
    # linear algebra
    "eigh": lambda x: jnp.linalg.eigh(_spd() + jnp.outer(x, x))[0][-1],
    "qr": lambda x: jnp.linalg.qr(_spd() + jnp.outer(x, x))[1].sum(),
    "svd": lambda x: jnp.linalg.svd(_spd() + jnp.outer(x, jnp.sin(x)), compute_uv=False).sum(),
    "cholesky": lambda x: jnp.linalg.cholesky(_spd() + jnp.outer(x, x)).sum(),
    "slogdet": lambda x: jnp.linalg.slogdet(_spd() + jnp.outer(x, jnp.cos(x)))[1],
    "inv": lambda x: jnp.linalg.inv(_spd() + jnp.diag(x)).sum(),
    "solve": lambda x: jnp.linalg.solve(_spd() + jnp.diag(x), x).sum(),
    "lstsq": lambda x: jnp.linalg.lstsq(_spd() + jnp.diag(x), x)[0].sum(),
    "expm": lambda x: jsp.linalg.expm(0.1 * (_spd() + jnp.diag(x))).sum(),
    "cho_solve": lambda x: jsp.linalg.cho_solve(
        jsp.linalg.cho_factor(_spd() + jnp.diag(x ** 2)), x).sum(),
    # FFT, complex numbers, convolutions
    "fft": lambda x: jnp.abs(jnp.fft.fft(x * x)).sum(),
    "rfft": lambda x: (jnp.fft.irfft(jnp.fft.rfft(x ** 2) * 2, n=4) * x).sum(),
    "complex": lambda x: jnp.real(jnp.exp(1j * x) * (x + 1j)).sum(),
    "convolve": lambda x: jnp.convolve(x, jnp.sin(x), mode="same").sum(),
    "einsum": lambda x: jnp.einsum("i,ij,j->", x, _spd(), jnp.tanh(x)),
}

def _oracles(name):
    """Gradient and Hessian by nested AD, and the gradient taken of stde's Laplacian:
    forward mode (reverse mode cannot go through ``while_loop``), reverse first for
    ``custom_vjp`` (forward mode cannot go through it)."""
    if name == "custom_vjp":
        return jax.grad, jax.hessian
    return jax.jacfwd, lambda f: jax.jacfwd(jax.jacfwd(f))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_operators_match_nested_ad(name):
    f = FUNCTIONS[name]
    x = jnp.linspace(-0.7, 0.9, 4) + 0.05   # float64: the x64 fixture is on by now
    gradient, hessian = _oracles(name)
    # XLA's level-0 code for JAX's JVP of reduce_max returns NaN (tests/conftest.py).
    # Only a top-level jit takes compiler options (JAX 0.10 refuses them nested in grad).
    laplacian = lambda x: jnp.trace(hessian(f)(x))  # noqa: E731
    want = jax.jit(laplacian, compiler_options=OPTIMISED)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the fallback's one-time warning
        np.testing.assert_allclose(jax.jit(stde.laplacian(f))(x), want, rtol=1e-9, atol=1e-11)
        _, grad, lap = jax.jit(stde.value_grad_laplacian(f))(x)
        np.testing.assert_allclose(lap, want, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(grad, gradient(f)(x), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(jax.jit(gradient(stde.laplacian(f)))(x),
                                   jax.jit(gradient(laplacian), compiler_options=OPTIMISED)(x),
                                   rtol=1e-7, atol=1e-9)
        if name != "custom_vjp":   # the Taylor oracle is nested jvp
            rng = np.random.default_rng(list(FUNCTIONS).index(name))
            series = [jnp.asarray(rng.normal(size=4) * 0.3) for _ in range(4)]
            primal, coefficients = jax.jit(lambda x, s: stde.jet(f, (x,), (s,)))(x, series)
            for got, expected in zip([primal, *coefficients], oracle.taylor(f, [x], [series])):
                np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
            peer = _experimental_jet(f, x, series)
            if peer is not None:   # where jax.experimental.jet works, the same result
                assert type(peer[1]) is type(coefficients)
                for got, expected in zip([primal, *coefficients], [peer[0], *peer[1]]):
                    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def _experimental_jet(f, x, series):
    """``jax.experimental.jet.jet``'s result, or ``None`` where it raises (most of them:
    a missing rule's ``KeyError``, ``AttributeError`` or ``UnexpectedTracerError``)."""
    try:
        return jet.jet(f, (x,), (series,))
    except Exception:   # the peer's gaps, which stde.jet fills
        return None
