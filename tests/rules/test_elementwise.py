"""Elementwise transcendental rules against nested forward mode and jax.experimental.jet.

The oracle (nested ``jax.jvp``, ``tests/oracle.py``) doubles its program with each order
``K``, so the default run checks each primitive at one or two ``(K, R)`` pairs that together cover
``K = 1..6`` and ``R = 1..8``; the primitives are also compared with
``jax.experimental.jet`` at ``K = 4`` (those jet has) and at ``K = 6`` (directly, or
through an identity built from primitives jet has). The full grid is ``slow``.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental import jet as jax_jet

import stde
from stde.rules import fallback
from tests.conftest import forbid_fallback
from tests.oracle import check_collapsed

pytestmark = pytest.mark.usefixtures("x64")

ANY = (0.3, -0.7, 1.1)        # no restriction
POSITIVE = (0.4, 1.3, 2.2)    # log, sqrt, rsqrt, pow with a moving or fractional exponent
UNIT = (0.3, -0.6, 0.1)       # asin, acos, atanh, erf_inv
SHIFTED = (-0.4, 0.3, 1.7)    # log1p
ABOVE_ONE = (1.4, 2.0, 3.1)   # acosh
SIGNED = (0.7, -1.3, 2.2)     # cbrt on both signs
OPEN_UNIT = (0.2, 0.55, 0.9)  # betainc

UNARY = {
    "exp": (jnp.exp, ANY),
    "exp2": (jnp.exp2, ANY),
    "expm1": (jnp.expm1, ANY),
    "log": (jnp.log, POSITIVE),
    "log1p": (jnp.log1p, SHIFTED),
    "sin": (jnp.sin, ANY),
    "cos": (jnp.cos, ANY),
    "tan": (jnp.tan, ANY),
    "sinh": (jnp.sinh, ANY),
    "cosh": (jnp.cosh, ANY),
    "tanh": (jnp.tanh, ANY),
    "asin": (jnp.arcsin, UNIT),
    "acos": (jnp.arccos, UNIT),
    "atan": (jnp.arctan, ANY),
    "asinh": (jnp.arcsinh, ANY),
    "acosh": (jnp.arccosh, ABOVE_ONE),
    "atanh": (jnp.arctanh, UNIT),
    "logistic": (jax.nn.sigmoid, ANY),
    "erf": (jax.scipy.special.erf, ANY),
    "erfc": (jax.scipy.special.erfc, ANY),
    "erf_inv": (jax.scipy.special.erfinv, UNIT),
    "sqrt": (jnp.sqrt, POSITIVE),
    "rsqrt": (lax.rsqrt, POSITIVE),
    "cbrt": (jnp.cbrt, SIGNED),
    "pow_fractional": (lambda x: x ** 2.5, POSITIVE),
    "pow_negative": (lambda x: x ** -1.5, POSITIVE),
    "pow_float_integer_at_zero": (lambda x: x ** 2.0, (0.0, -1.3, 2.2)),
    "pow_float_integer": (lambda x: x ** 3.0, POSITIVE),  # jet's pow is nan at x <= 0
    "pow_int_exponent_at_zero": (lambda x: jnp.power(x, 3), (0.0, -1.3, 2.2)),
    "pow_constant_array_exponent": (lambda x: x ** jnp.array([0.5, 2.0, -1.0]), POSITIVE),
    "pow_constant_base": (lambda x: lax.pow(2.0, x), ANY),
    # distribution functions in x, their shape parameters constant
    "igamma": (lambda x: jax.scipy.special.gammainc(2.5, x), POSITIVE),
    "igammac": (lambda x: jax.scipy.special.gammaincc(jnp.asarray([0.6, 2.5, 4.0], x.dtype), x),
                POSITIVE),
    "betainc": (lambda x: jax.scipy.special.betainc(2.0, jnp.asarray([0.7, 3.5, 2.0], x.dtype),
                                                    x), OPEN_UNIT),
}

BINARY = {
    "atan2": (jnp.arctan2, ANY, POSITIVE),
    "atan2_negative_b": (jnp.arctan2, ANY, (-0.5, 0.8, -2.0)),
    "pow": (lax.pow, POSITIVE, ANY),
    "atan2_size1": (lambda a, b: lax.atan2(a, b), ANY, (0.6,)),
    "pow_size1": (lambda a, b: lax.pow(a, b), POSITIVE, (1.7,)),
}

# Scalar literals in the jaxpr (`atan2 1.0:f64[] x`, `pow x 2.0:f64[]`) are in UNARY too.
UNARY.update({
    "atan2_literal_a": (lambda x: jnp.arctan2(1.0, x), ANY),
    "atan2_literal_b": (lambda x: jnp.arctan2(x, 2.0), ANY),
})

# Default (K, R) per case, chosen so the run covers K = 1..6 and R = 1..8 while staying
# cheap: the eager oracle costs about R · 2^K per primitive.
DEFAULT = {
    "exp": [(1, 1), (6, 1)], "exp2": [(3, 1)], "expm1": [(2, 2)], "log": [(3, 2)],
    "log1p": [(2, 3)], "sin": [(3, 1)], "cos": [(2, 2)], "tan": [(5, 1)],
    "sinh": [(2, 8)], "cosh": [(3, 1)], "tanh": [(2, 2)], "asin": [(4, 1)],
    "acos": [(1, 5)], "atan": [(3, 2)], "asinh": [(1, 6)], "acosh": [(3, 1)],
    "atanh": [(1, 7)], "logistic": [(3, 2)], "erf": [(3, 1)], "erfc": [(2, 3)],
    "erf_inv": [(4, 1)], "sqrt": [(4, 1)], "rsqrt": [(2, 4)], "cbrt": [(3, 2)],
    "pow_fractional": [(4, 1)], "pow_negative": [(2, 3)],
    "pow_float_integer_at_zero": [(2, 3)], "pow_float_integer": [(1, 2)],
    "pow_int_exponent_at_zero": [(3, 1)],
    "pow_constant_array_exponent": [(3, 1)], "pow_constant_base": [(3, 2)],
    "atan2_literal_a": [(3, 1)], "atan2_literal_b": [(2, 2)],
    "atan2": [(3, 2)], "atan2_negative_b": [(2, 2)], "pow": [(3, 2)],
    "atan2_size1": [(2, 2)], "pow_size1": [(2, 2)],
    # igammac is igamma's rule with the opposite sign: in the default run only through
    # test_distribution_functions_have_rules_not_the_fallback (K = 2, R = 3).
    "igamma": [(5, 1)], "igammac": [], "betainc": [(3, 2)],
}
# JAX 0.12's exactly rounded π- and 2-based functions (absent on older JAX).
SINCE_JAX_0_12 = {
    "sinpi": (ANY, [(4, 2)]), "cospi": (ANY, [(3, 3)]), "tanpi": ((0.1, -0.3, 0.2), [(5, 1)]),
    "asinpi": (UNIT, [(3, 2)]), "acospi": (UNIT, [(2, 4)]), "atanpi": (ANY, [(6, 1)]),
    "exp2m1": (ANY, [(3, 2)]), "log2p1": (SHIFTED, [(4, 1)]),
}
if hasattr(lax, "sinpi"):
    for _name, (_x, _grid) in SINCE_JAX_0_12.items():
        UNARY[_name] = (getattr(lax, _name), _x)
        DEFAULT[_name] = _grid
    BINARY["atan2pi"] = (lax.atan2pi, ANY, POSITIVE)
    DEFAULT["atan2pi"] = [(3, 2)]

FULL_GRID = [(1, 1), (2, 3), (4, 2), (6, 1), (2, 8)]
# jax's own pow JVP (hence the oracle) is nan at x = 0 from the third derivative on for a
# float exponent; stde's integer path is exact there (test_pow_integer_exponent_...).
ORACLE_MAX_ORDER = {"pow_float_integer_at_zero": 2}


def _case(name):
    if name in UNARY:
        f, x = UNARY[name]
        return f, [jnp.array(x)]
    f, a, b = BINARY[name]
    return f, [jnp.array(a), jnp.array(b)]


def _params(grid):
    return [pytest.param(name, order, count, id=f"{name}-K{order}-R{count}")
            for name in [*UNARY, *BINARY] for order, count in grid(name)]


def test_default_grid_covers_every_order_and_direction_count():
    pairs = {pair for pairs in DEFAULT.values() for pair in pairs}
    assert {k for k, _ in pairs} == set(range(1, 7))
    assert {r for _, r in pairs} == set(range(1, 9))
    assert set(DEFAULT) == {*UNARY, *BINARY}


@pytest.mark.parametrize("name,order,count", _params(lambda name: DEFAULT[name]))
def test_matches_nested_jacfwd(name, order, count):
    f, primals = _case(name)
    check_collapsed(f, primals, order, count, jax.random.PRNGKey(10 * order + count))


@pytest.mark.slow
@pytest.mark.parametrize("name,order,count", _params(lambda name: [
    (k, r) for k, r in FULL_GRID if k <= ORACLE_MAX_ORDER.get(name, 6)]))
def test_matches_nested_jacfwd_full_grid(name, order, count):
    f, primals = _case(name)
    check_collapsed(f, primals, order, count, jax.random.PRNGKey(10 * order + count))


# ---------------------------------------------------------------------- composites

def mix(x):
    a, b, c = x[0], x[1], x[2]
    return (jnp.exp(a) * jnp.log(1 + b ** 2) / jnp.sqrt(c + 2.0)
            + (c ** 2 + 0.5) ** 1.5 - jnp.sqrt(jnp.exp(b) + a ** 2) ** a
            + jnp.arctan2(a, c + 3.0) * jnp.tanh(b) / (1 + jnp.cosh(c)))


def sin_sin(x):
    return jnp.sin(jnp.sin(x)) * x


COMPOSITE_X = (0.3, -0.4, 0.9)


@pytest.mark.parametrize("order,count", [
    (2, 3), pytest.param(4, 3, marks=pytest.mark.slow), pytest.param(6, 1, marks=pytest.mark.slow)])
def test_mix_matches_nested_jacfwd(order, count):
    check_collapsed(mix, [jnp.array(COMPOSITE_X)], order, count, jax.random.PRNGKey(order))


@pytest.mark.parametrize("order,count", [(4, 2), pytest.param(6, 2, marks=pytest.mark.slow)])
def test_sin_of_sin_matches_nested_jacfwd(order, count):
    check_collapsed(sin_sin, [jnp.array(COMPOSITE_X)], order, count, jax.random.PRNGKey(order))


# ------------------------------------------------------------ jax.experimental.jet

def _unit_root(x):
    return jnp.sqrt(1 - x ** 2)


JET_HAS = ["exp", "expm1", "log", "log1p", "sin", "cos", "sinh", "cosh", "tanh", "asinh",
           "acosh", "atanh", "logistic", "erf", "erfc", "erf_inv", "sqrt", "rsqrt",
           "pow_fractional", "pow_negative", "pow_float_integer", "pow_constant_base",
           "atan2", "atan2_negative_b", "pow"]

# Identities through primitives jax.experimental.jet has, for the ones it lacks (and a few
# it has), checked at K = 6: (primitive, identity, primal). The primitive's own name
# selects the identity in the order-six test.
IDENTITIES = {
    "exp2": (jnp.exp2, lambda x: jnp.exp(x * math.log(2)), ANY),
    "tan": (jnp.tan, lambda x: jnp.sin(x) / jnp.cos(x), ANY),
    "asin": (jnp.arcsin, lambda x: jnp.arctan2(x, _unit_root(x)), UNIT),
    "acos": (jnp.arccos, lambda x: jnp.arctan2(_unit_root(x), x), UNIT),
    "atan": (jnp.arctan, lambda x: jnp.arctan2(x, jnp.ones_like(x)), ANY),
    "cbrt": (jnp.cbrt, lambda x: x ** (1 / 3), POSITIVE),
    "erfc": (jax.scipy.special.erfc, lambda x: 1 - jax.scipy.special.erf(x), ANY),
    "acosh": (jnp.arccosh, lambda x: jnp.log(x + jnp.sqrt(x ** 2 - 1)), ABOVE_ONE),
    "asinh": (jnp.arcsinh, lambda x: jnp.log(x + jnp.sqrt(x ** 2 + 1)), ANY),
    "atanh": (jnp.arctanh, lambda x: 0.5 * (jnp.log1p(x) - jnp.log1p(-x)), UNIT),
    "logistic": (jax.nn.sigmoid, lambda x: 1 / (1 + jnp.exp(-x)), ANY),
    "sinh": (jnp.sinh, lambda x: (jnp.exp(x) - jnp.exp(-x)) / 2, ANY),
}


def _compare_with_jet(cases, order, rtol):
    """``stde.jet`` of ``f`` against ``jax.experimental.jet.jet`` of ``reference``.

    ``cases`` maps a name to ``(f, reference, primals)``; every mismatch is reported.
    """
    keys = dict(zip(cases, jax.random.split(jax.random.PRNGKey(3), len(cases))))
    primals = {name: tuple(case[2]) for name, case in cases.items()}
    series = {name: tuple(tuple(jax.random.normal(k, (order, *x.shape)))
                          for k, x in zip(jax.random.split(keys[name], len(p)), p))
              for name, p in primals.items()}

    @jax.jit
    def both(primals, series):
        return ({name: stde.jet(f, primals[name], series[name])
                 for name, (f, _, _) in cases.items()},
                {name: jax_jet.jet(reference, primals[name], series[name])
                 for name, (_, reference, _) in cases.items()})

    got, want = both(primals, series)
    failures = []
    for name in cases:
        (value, coefficients), (want_value, want_coefficients) = got[name], want[name]
        try:
            np.testing.assert_allclose(value, want_value, rtol=rtol, atol=rtol, err_msg="y_0")
            for k, (c, w) in enumerate(zip(coefficients, want_coefficients), start=1):
                np.testing.assert_allclose(c, w, rtol=rtol, atol=rtol, err_msg=f"y_{k}")
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)


def _jet_case(name):
    if name in IDENTITIES:
        f, reference, x = IDENTITIES[name]
        return f, reference, [jnp.array(x)]
    if name in ("mix", "sin_sin"):
        f = globals()[name]
        return f, f, [jnp.array(COMPOSITE_X)]
    f, primals = _case(name)
    return f, f, primals


@pytest.mark.parametrize("name", JET_HAS)
def test_matches_jax_experimental_jet_at_order_four(name):
    _compare_with_jet({name: _jet_case(name)}, 4, rtol=1e-10)


@pytest.mark.parametrize("name", [
    *(name if name not in JET_HAS else pytest.param(name, marks=pytest.mark.slow)
      for name in IDENTITIES),
    "sin", "erf_inv", "sqrt", "pow", "atan2", "log1p", "mix", "sin_sin"])
def test_matches_jax_experimental_jet_at_order_six(name):
    _compare_with_jet({name: _jet_case(name)}, 6, rtol=1e-9)


def test_jet_comparison_reports_a_wrong_rule():
    with pytest.raises(AssertionError, match="tan_as_sin"):
        _compare_with_jet({"tan_as_sin": (jnp.tan, jnp.sin, [jnp.array(ANY)])}, 2, rtol=1e-9)


# ------------------------------------------------------------------------ edge cases

def test_pow_with_a_traced_exponent_inside_jit():
    """An exponent only known at run time takes the general ``u y' = p y u'`` path."""
    x = jnp.array(POSITIVE)
    series = ((jnp.ones(3), jnp.zeros(3), jnp.zeros(3)),)

    @jax.jit
    def run(p):
        return stde.jet(lambda x: x ** p, (x,), series)

    value, coefficients = run(jnp.float64(2.5))
    _, want = jax_jet.jet(lambda x: x ** 2.5, (x,), series)
    np.testing.assert_allclose(value, x ** 2.5, rtol=1e-12)
    chex.assert_trees_all_close(list(coefficients), list(want), rtol=1e-12)


def test_pow_integer_exponent_is_exact_at_zero_and_fractional_is_singular():
    x = jnp.array([0.0, -2.0])
    series = ((jnp.ones(2),) + (jnp.zeros(2),) * 5,)      # x(t) = x0 + t, K = 6
    _, coefficients = stde.jet(lambda x: x ** 3.0, (x,), series)
    expected = [3 * x ** 2, 6 * x, jnp.full(2, 6.0), *[jnp.zeros(2)] * 3]
    for got, want in zip(coefficients, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    _, coefficients = stde.jet(lambda x: x ** 2.5, (jnp.array([0.0]),), ((jnp.ones(1),),))
    assert not np.isfinite(coefficients[0]).all()


def test_sin_and_cos_share_the_coupled_recurrence_with_sinh_and_cosh():
    from stde.rules import elementwise

    x = [jnp.array(0.4), jnp.ones(2), jnp.full(2, 0.5), None]
    sin, cos = elementwise.sin_cos(x, 3)
    sinh, cosh = elementwise.sinh_cosh(x, 3)
    # Along x(t) = 0.4 + t + 0.25 t^2: d/dt sin(x) = cos(x) x' = cos(0.4) per direction.
    np.testing.assert_allclose(sin[1], jnp.full(2, np.cos(0.4)))
    np.testing.assert_allclose(cosh[1], jnp.full(2, np.sinh(0.4)))
    assert sin[3].shape == cos[3].shape == sinh[3].shape == ()


@pytest.mark.skipif(not hasattr(lax, "sinpi"), reason="JAX 0.12's π- and 2-based functions")
def test_pi_and_two_based_functions_have_rules_and_exact_primals():
    """sinpi & co. (jax.scipy.special.beta uses sinpi) run through their own rules, not the
    nested-JVP fallback, keep JAX's exactly rounded primal, and give Laplacians that
    equal jax.hessian's through the sparse directions of stde.laplacian."""
    from stde.rules import registry

    names = [*SINCE_JAX_0_12, "atan2pi"]
    assert all(registry.lookup(getattr(lax, f"{name}_p")) for name in names)
    x = jnp.array([0.5, 1.0, -0.25])
    value, _ = stde.jet(lax.sinpi, (x,), ((jnp.ones(3),),))
    np.testing.assert_array_equal(value, lax.sinpi(x))  # exactly 1, 0, -sin(π/4)
    for name in names:
        function = getattr(lax, name)
        if name == "atan2pi":
            f = lambda z: jnp.sum(function(z, 1.5 - z) ** 2)  # noqa: E731, B023
        else:
            f = lambda z: jnp.sum(function(0.3 * z) ** 2)  # noqa: E731, B023
        np.testing.assert_allclose(stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x)),
                                   rtol=1e-10, err_msg=name)


def test_distribution_functions_have_rules_not_the_fallback():
    """gammainc, gammaincc, betainc and the distribution functions built on them
    (jax.scipy.stats' chi2.cdf, gamma.cdf's igamma with a computed a, and beta.sf) run
    through their own rules, never the nested-JVP fallback, and give jax.hessian's
    Laplacian (stde.laplacian's sparse directions, densified for these rules)."""
    special, stats = jax.scipy.special, jax.scipy.stats

    def f(x):
        return jnp.sum(special.gammainc(2.5, x) * special.gammaincc(0.7, x)
                       + special.betainc(2.0, 3.5, x / 4)
                       + stats.chi2.cdf(x ** 2, 3.0) * stats.beta.sf(x / 4, 0.8, 2.0))

    with forbid_fallback():
        got, want = jax.jit(lambda x: (stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x))))(
            jnp.array(POSITIVE))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_moving_shape_parameter_is_left_to_the_fallback(monkeypatch):
    """With a moving a (or b) the rules defer to the nested-JVP fallback, so stde does what
    JAX does: igamma's first derivative in a, and JAX's errors beyond."""
    fell_back = []
    monkeypatch.setattr(fallback, "_warn_once", fell_back.append)
    gammainc, betainc = jax.scipy.special.gammainc, jax.scipy.special.betainc
    a = jnp.array(POSITIVE)
    ones, zeros = jnp.ones(3), jnp.zeros(3)

    def g(a):
        return gammainc(a, 2.0 * a)

    got, want = jax.jit(lambda a: (stde.jet(g, (a,), ((ones,),))[1][0],
                                   jax.jvp(g, (a,), (ones,))[1]))(a)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(NotImplementedError, match="igamma_grad_a"):
        jax.jit(lambda a: stde.jet(lambda a: gammainc(a, 2.0), (a,), ((ones, zeros),)))(a)
    with pytest.raises(ValueError, match="Betainc gradient"):
        jax.jit(lambda b: stde.jet(lambda b: betainc(2.0, b, 0.3), (b,), ((ones,),)))(a)
    # betainc's 1-jet is the one JVP of the linear part, JAX's error included: no nested
    # JVPs ran for it, so the fallback did not warn.
    assert set(fell_back) == {"igamma"}
