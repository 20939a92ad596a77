"""Elementwise nonlinear primitives through ``O(K²)`` Taylor recurrences.

Each series function maps input series (collapsed layout, see :mod:`stde.rules.series`)
to the output series. Every primitive is defined once, by one of a few recurrences
(Griewank & Walther, *Evaluating Derivatives*, ch. 13); no primitive has hand-derived
higher derivatives:

* an ODE ``y' = a · x'`` (:func:`series.ode`) whose slope ``a`` is

  - a quadratic in ``y`` (:func:`quadratic_ode`): ``exp``, ``exp2``, ``expm1``,
    ``tanh``, ``tan``, ``logistic``;
  - a power of a quadratic in ``x`` (:func:`power_series`): ``log`` and ``log1p``
    (``(x + c)^-1``), ``atan``/``atanh`` (``(1 ± x²)^-1``),
    ``asin``/``acos``/``asinh``/``acosh`` (``(±1 ± x²)^-1/2``);
  - an exponential ``exp(h)`` (:func:`exponential_slope`): a Gaussian
    (:func:`gaussian_slope`) for ``erf``, ``erfc`` (of ``x``), ``erf_inv`` (of ``y``
    itself); a density, ``h`` its log built from ``log``'s recurrence, for the
    distribution functions ``igamma``, ``igammac`` (:func:`gamma_log_density`) and
    ``betainc`` (:func:`beta_log_density`) in ``x`` with constant ``a``, ``b``
    (:func:`distribution_function_rule`; moving ones are left to the nested-JVP
    fallback, as JAX differentiates ``igamma`` in ``a`` only once and ``betainc`` in
    ``a``, ``b`` not at all);

* a coupled pair ``s' = c x'``, ``c' = ±s x'`` (:func:`coupled_pair`): ``sin``/``cos``,
  ``sinh``/``cosh``;
* a power ``y = u^p`` from ``u y' = p y u'`` (:func:`power_series`): ``sqrt``,
  ``rsqrt``, ``cbrt``, ``pow`` with a constant exponent;
* ``pow`` with a moving exponent as ``exp(b · log a)``, ``atan2`` from
  ``z' = (b a' - a b') / (a² + b²)``.

Every product goes through :func:`series.convolve`, so the summed top coefficient is
collapsed automatically. With ``R > 1`` directions and ``K ≥ 2`` a unary rule runs the
recurrence once on a single unit direction to read off ``f^{(m)}(x_0)``, and
:func:`series.compose` applies them to all directions by Faà di Bruno's formula (exact
integer weights, shared monomials, one reduction for the top): the per-direction work
is then a few fused products instead of the recurrence's ``O(K²)`` passes (on CPU 1.8× faster
for ``tanh`` at ``K = 4``, ``R = 64``). Singular points are those of the derivative: ``sqrt``,
``rsqrt``, ``cbrt`` and ``pow`` with a non-integer exponent at ``x = 0`` give
non-finite coefficients (as the derivatives do), ``pow`` with a moving exponent needs
a positive base, ``asin``/``acos``/``atanh`` need ``|x| < 1`` and ``acosh`` ``x > 1``;
the distribution functions are singular where their density's logarithm is (``x = 0``,
and ``x = 1`` for ``betainc``), as JAX's own derivatives are.

``bessel_i0e`` and ``bessel_i1e`` have no rule here: their JVP rules hold ``sign(x)``
and ``1/x`` (with ``i1e' = 1/2`` for ``|x| ≤ eps``), so JAX's higher derivatives at
``x = 0`` are those conventions (``i0e''(0) = 1/2``, the function's being ``3/2`` on
both sides) and near it lose all digits to cancellation; a recurrence could not be
exact and equal to ``jax.hessian`` there, so they keep the fallback.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from math import comb
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stde import sparse
from stde.core import Array, Coefficient, Context, JetValue, bind_equation
from stde.rules import series
from stde.rules.arithmetic import integer_pow_rule
from stde.rules.fallback import fallback_rule
from stde.rules.linear import broadcast_coefficient
from stde.rules.registry import register

Series = series.Series
SeriesFunction = Callable[[Sequence[Any], int], Series]
BinarySeriesFunction = Callable[[Sequence[Any], Sequence[Any], int], Series]
Slope = Callable[[Series, int], Coefficient]


# --------------------------------------------------------------------------- helpers


def unary_rule(function: SeriesFunction) -> Callable[..., JetValue]:
    """Make a rule for ``y = f(x)`` from ``function(x_series, order) -> y_series``.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.rules import elementwise
      >>> rule = elementwise.unary_rule(elementwise.exp)
      >>> callable(rule)
      True

    """
    def rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
        (x,) = inputs
        if ctx.order > 1 and (ctx.directions > 1 or any(map(sparse.is_sparse, x.lower))):
            return factored(function, x, ctx.order)
        return JetValue.from_coefficients(function(x.coefficients, ctx.order))
    return rule


def factored(function: SeriesFunction, x: JetValue, order: int) -> JetValue:
    """``f(x)`` with ``f^{(m)}(x_0)`` factored out of the per-direction work.

    The derivatives are read off ``function``'s own recurrence run on one unit
    direction (direction-free cost, so each primitive keeps a single definition), and
    :func:`series.compose` combines them with the ``R`` directions. At ``K = 2`` this is
    the forward Laplacian: ``y_1 = f' x_1``, ``Σ_r y_{2,r} = f' x_2 + f'' Σ_r x_{1,r}²``.
    Sparse lower coefficients stay sparse (:func:`series.compose` computes with the
    coefficient arithmetic of :mod:`stde.rules.series`).
    """
    shape = np.shape(x.primal)
    unit = jnp.ones((1, *shape) if order > 1 else shape, jnp.result_type(x.primal))
    derivatives = function([x.primal, unit] + [None] * (order - 1), order)
    derivatives = [derivatives[0], *(d[0] for d in derivatives[1:order]), derivatives[order]]
    return JetValue.from_coefficients(series.compose(derivatives, x.coefficients, order))


def broadcast_value(value: JetValue, shape: tuple[int, ...], order: int) -> JetValue:
    """``value`` with its primal and every coefficient broadcast to ``shape``.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> x = JetValue(jnp.float32(2.0), (jnp.ones((3,)),), None)
      >>> broadcast_value(x, (2,), 2).lower[0].shape
      (3, 2)

    """
    if np.shape(value.primal) == shape:
        return value
    return JetValue.from_coefficients(
        [jnp.broadcast_to(value.primal, shape)]
        + [None if c is None else broadcast_coefficient(c, k, order, shape)
           for k, c in enumerate(value.coefficients[1:], start=1)])


def broadcast_operands(inputs: Sequence[JetValue], order: int) -> list[JetValue]:
    """Operands broadcast to their common shape (scalar literals, size-1 dimensions)."""
    shape = np.broadcast_shapes(*(np.shape(x.primal) for x in inputs))
    return [broadcast_value(x, shape, order) for x in inputs]


def binary_rule(function: BinarySeriesFunction) -> Callable[..., JetValue]:
    """Make a rule for ``z = f(a, b)`` from ``function(a_series, b_series, order)``.

    The operands are broadcast to a common shape first, so ``function`` may assume
    equal shapes: scalar literals such as ``atan2 1.0:f32[] x`` and size-1 dimensions
    work.

    Example:
      >>> from stde.rules import elementwise
      >>> rule = elementwise.binary_rule(elementwise.atan2)
      >>> callable(rule)
      True

    """
    def rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
        a, b = broadcast_operands(inputs, ctx.order)
        return JetValue.from_coefficients(function(a.coefficients, b.coefficients, ctx.order))
    return rule


def ode_terms(k: int) -> list[tuple[int, int]]:
    """Weights of ``y_k = Σ_{j=1..k} C(k-1, j-1) x_j a_{k-j}`` for ``y' = a x'``."""
    return [(j, comb(k - 1, j - 1)) for j in range(1, k + 1)]


def _times(coefficient: Coefficient, weight: float) -> Coefficient:
    """``weight · coefficient`` for a Python number, without multiplying by 0 or ±1."""
    if coefficient is None or weight == 0:
        return None
    if weight == 1:
        return coefficient
    return -coefficient if weight == -1 else coefficient * weight


def _is_constant(x: Sequence[Coefficient]) -> bool:
    """Whether a series has no coefficient beyond its primal."""
    return all(c is None for c in x[1:])


def _shifted(x: Sequence[Coefficient], shift: Array) -> Series:
    """Shift the primal: the series of ``x + shift`` for a constant ``shift``."""
    return [x[0] + shift, *x[1:]]


def _scaled(x: Sequence[Coefficient], factor: float, order: int) -> Series:
    """The series of ``factor · x`` beyond the primal (the primal is kept as it is).

    A derivative rule's driver: ``y' = g · (factor · x)'`` for the ``π``- and
    ``2``-based functions (``sinpi(x) = sin(πx)``, ``log2p1(x) = log1p(x) / log 2``),
    whose primals JAX computes exactly and which are kept.
    """
    weight = jnp.asarray(factor, jnp.result_type(x[0]))
    return [x[0], *(series.scale(c, weight, k, order) for k, c in enumerate(x[1:], start=1))]


def _signed_square(x: Sequence[Coefficient], constant: float, sign: int, order: int) -> Series:
    """Series of ``constant + sign · x²``, coefficients ``0 .. order-1`` (slopes only)."""
    return [constant + sign * x[0] ** 2] + [
        _times(series.square(x, k, order), sign) for k in range(1, order)]


# ------------------------------------------------------------------ shared recurrences


def quadratic_ode(x: Sequence[Any], y0: Array, constant: float, linear: float,
                  quadratic: float, order: int) -> Series:
    """Series of ``y`` with ``y' = (constant + linear·y + quadratic·y²) · x'``, ``y(0) = y0``.

    ``exp`` is ``(0, 1, 0)``, ``expm1`` ``(1, 1, 0)``, ``tanh`` ``(1, 0, -1)``,
    ``tan`` ``(1, 0, 1)``, ``logistic`` ``(0, 1, -1)``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = [jnp.float32(0.0), jnp.ones(1), None]        # K = 2, R = 1
      >>> y = quadratic_ode(x, jnp.float32(0.0), 1.0, 0.0, 1.0, 2)   # tan
      >>> [float(y[1][0]), float(y[2])]
      [1.0, 0.0]

    """
    def slope(y: Series, m: int) -> Coefficient:
        if m == 0:
            terms = (jnp.full_like(y[0], constant) if constant else None, _times(y[0], linear),
                     _times(y[0] ** 2, quadratic) if quadratic else None)
            return functools.reduce(series.add, terms)
        quadratic_part = _times(series.square(y, m, order), quadratic) if quadratic else None
        return series.add(_times(y[m], linear), quadratic_part)
    return series.ode(x, y0, slope, order)


def power_series(u: Sequence[Any], exponent: Array | float, order: int,
                 y0: Array | None = None, last: int | None = None) -> Series:
    """Series of ``y = u^p`` from ``u y' = p y u'`` (``p`` a constant).

    ``u_0 y_k = Σ_{j=1..k} (p C(k-1, j-1) - C(k-1, j)) u_j y_{k-j}``. Singular at
    ``u_0 = 0`` (non-finite coefficients) even where ``u^p`` is smooth there; integer
    powers that must work at zero use :func:`stde.rules.arithmetic.power`.

    Args:
      u: the base series.
      exponent: ``p``, a Python number or an array broadcastable to ``u``'s primal.
      order: ``K`` of the collapsed layout.
      y0: ``u_0^p`` when a more accurate primal is at hand (``sqrt``, ``cbrt``).
      last: the last coefficient to compute (default ``order``).

    Example:
      >>> import jax.numpy as jnp
      >>> u = [jnp.float32(4.0), jnp.ones(1), None]         # K = 2, R = 1
      >>> y = power_series(u, 0.5, 2)                      # sqrt: 2, 1/4, -1/32
      >>> [float(y[0]), float(y[1][0]), float(y[2])]
      [2.0, 0.25, -0.03125]

    """
    y: Series = [jnp.power(u[0], exponent) if y0 is None else y0]
    inverse = 1 / u[0]
    numeric = isinstance(exponent, int | float)
    for k in range(1, (order if last is None else last) + 1):
        if numeric:
            terms = [(j, w) for j in range(1, k + 1)
                     if (w := exponent * comb(k - 1, j - 1) - comb(k - 1, j)) != 0]
            total = series.convolve(u, y, k, order, terms)
        else:
            growth = series.scale(series.convolve(u, y, k, order, ode_terms(k)), exponent,
                                  k, order)
            total = series.sub(growth, series.convolve(
                u, y, k, order, [(j, comb(k - 1, j)) for j in range(1, k)]))
        y.append(series.scale(total, inverse, k, order))
    return y


def coupled_pair(x: Sequence[Any], s0: Array, c0: Array, sign: int, order: int,
                 wanted: int | None = None) -> tuple[Series, Series]:
    """Series of ``(s, c)`` with ``s' = c x'`` and ``c' = sign · s x'``.

    Args:
      x: the input series.
      s0: the primal ``s(x_0)``.
      c0: the primal ``c(x_0)``.
      sign: ``-1`` for ``(sin, cos)``, ``+1`` for ``(sinh, cosh)``.
      order: ``K`` of the collapsed layout.
      wanted: ``0`` or ``1`` to skip the top coefficient of the other member
        (``None`` in its place); ``None`` computes both.

    Example:
      >>> import jax.numpy as jnp
      >>> x = [jnp.float32(0.0), jnp.ones(1), None]
      >>> s, c = coupled_pair(x, jnp.sinh(x[0]), jnp.cosh(x[0]), 1, 2)
      >>> [float(s[1][0]), float(c[2])]
      [1.0, 1.0]

    """
    s: Series = [s0]
    c: Series = [c0]
    signed_s: Series = [_times(s0, sign)]
    for k in range(1, order + 1):
        top = k == order
        terms = ode_terms(k)
        s.append(None if top and wanted == 1 else series.convolve(x, c, k, order, terms))
        c.append(None if top and wanted == 0 else series.convolve(x, signed_s, k, order, terms))
        signed_s.append(_times(s[k], sign))
    return s, c


def exponential_slope(exponent: Slope, order: int, factor: float = 1.0) -> Slope:
    """Make a :func:`series.ode` slope ``a = factor · exp(h)``, built term by term.

    ``exponent(s, m)`` returns ``h_m`` (from ``s_0 .. s_m``); ``slope(s, m)`` must be
    called for ``m = 0, 1, ..`` in turn, and computes ``a_m`` by ``a' = a h'``:
    ``a_m = Σ_{j=1..m} C(m-1, j-1) h_j a_{m-j}``. ``s`` is whatever :func:`series.ode`'s
    caller passes (the output being built, or the input through a ``lambda``).

    Example:
      >>> import jax.numpy as jnp
      >>> h = [jnp.float32(0.0), jnp.ones(1), None]          # h(t) = t, K = 2
      >>> slope = exponential_slope(lambda _, m: h[m], 2, factor=-1.0)
      >>> [float(slope(None, 0)), float(slope(None, 1)[0])]   # -exp(t) and its t-derivative
      [-1.0, -1.0]

    """
    exponents: Series = []
    values: Series = []

    def slope(s: Series, m: int) -> Coefficient:
        exponents.append(exponent(s, m))
        if m == 0:
            values.append(_times(jnp.exp(exponents[0]), factor))
        else:
            values.append(series.convolve(exponents, values, m, order, ode_terms(m)))
        return values[m]
    return slope


def gaussian_slope(factor: float, sign: int, order: int) -> Slope:
    """Make a :func:`series.ode` slope ``a = factor · exp(sign · s²)``, built term by term.

    ``slope(s, m)`` must be called for ``m = 0, 1, ..`` in turn and needs ``s_0 .. s_m``
    only; ``s`` may be the input (``erf``) or the output being built (``erf_inv``).

    Example:
      >>> import jax.numpy as jnp
      >>> slope = gaussian_slope(2.0, -1, 3)
      >>> s = [jnp.float32(0.0), jnp.ones(1)]
      >>> float(slope(s, 0)), abs(float(slope(s, 1)[0]))
      (2.0, 0.0)

    """
    def exponent(s: Series, m: int) -> Coefficient:
        return _times(s[0] ** 2 if m == 0 else series.square(s, m, order), sign)
    return exponential_slope(exponent, order, factor)


def _ode_with_power_slope(x: Sequence[Any], y0: Array, u: Series, exponent: float,
                          order: int, negate: bool = False,
                          slope0: Array | None = None, last: int | None = None) -> Series:
    """``y' = ±u^p · x'`` for a slope base ``u`` known up to ``order - 1``.

    ``slope0`` is ``u_0^p`` when it must be computed otherwise (see :func:`acosh`);
    ``last`` (default ``order``) is the last coefficient of ``y`` to compute.
    """
    last = order if last is None else last
    slope = power_series(u, exponent, order, y0=slope0, last=last - 1)
    if negate:
        slope = [series.sub(None, c) for c in slope]
    if last == order:
        return series.ode(x, y0, series.fixed(slope), order)
    return [y0, *(series.convolve(x, slope, k, order, ode_terms(k)) for k in range(1, last + 1))]


def _gaussian_integral(x: Sequence[Any], y0: Array, factor: float, order: int) -> Series:
    """``y' = factor · exp(-x²) · x'`` (``erf``, ``erfc``)."""
    slope = gaussian_slope(factor, -1, order)
    return series.ode(x, y0, lambda _, m: slope(x, m), order)


# ----------------------------------------------------------------- the series functions


def exp(x: Sequence[Any], order: int) -> Series:
    """``exp``: ``y' = y x'``.

    Example:
      >>> import jax.numpy as jnp
      >>> y = exp([jnp.float32(0.0), jnp.ones(1), None], 2)
      >>> [float(y[0]), float(y[1][0]), float(y[2])]
      [1.0, 1.0, 1.0]

    """
    return quadratic_ode(x, jnp.exp(x[0]), 0, 1, 0, order)


def log(x: Sequence[Any], order: int) -> Series:
    """``log``: ``y' = x^-1 x'``.

    Example:
      >>> import jax.numpy as jnp
      >>> y = log([jnp.float32(1.0), jnp.ones(1), None], 2)
      >>> [float(y[0]), float(y[1][0]), float(y[2])]
      [0.0, 1.0, -1.0]

    """
    return _ode_with_power_slope(x, jnp.log(x[0]), list(x), -1, order)


@functools.cache
def _acosh_derivative_is_nan_below_minus_one() -> bool:
    """Whether this JAX's ``acosh`` JVP is ``nan`` at ``x < -1`` (outside the domain).

    JAX 0.10 differentiates ``acosh`` as ``(x² - 1)^-1/2``, finite at ``x < -1`` where
    ``acosh`` itself is ``nan``; later versions as ``(x - 1)^-1/2 (x + 1)^-1/2``, ``nan``
    there. The rule follows the installed JAX, so stde agrees with ``jax.jvp``.
    """
    with jax.ensure_compile_time_eval():
        _, tangent = jax.jvp(lax.acosh, (np.float32(-2.0),), (np.float32(1.0),))
        return bool(np.isnan(tangent))


def acosh(x: Sequence[Any], order: int) -> Series:
    """``acosh``: ``y' = (x² - 1)^-1/2 x'`` (outside ``x ≥ 1`` as JAX's own JVP).

    Example:
      >>> import jax.numpy as jnp
      >>> y = acosh([jnp.float32(2.0), jnp.ones(1), None], 2)
      >>> round(float(y[1][0]) ** -2, 4)                   # 1 / (x² - 1)
      3.0

    """
    slope0 = (lax.rsqrt(x[0] - 1) * lax.rsqrt(x[0] + 1)
              if _acosh_derivative_is_nan_below_minus_one() else None)
    return _ode_with_power_slope(x, jnp.arccosh(x[0]), _signed_square(x, -1, 1, order), -0.5,
                                 order, slope0=slope0)


def tanh(x: Sequence[Any], order: int) -> Series:
    """``tanh``: ``y' = (1 - y²) x'``.

    Example:
      >>> import jax.numpy as jnp
      >>> y = tanh([jnp.float32(0.0), jnp.ones(1), None], 2)
      >>> [float(y[1][0]), abs(float(y[2]))]
      [1.0, 0.0]

    """
    return quadratic_ode(x, jnp.tanh(x[0]), 1, 0, -1, order)


def sin_cos(x: Sequence[Any], order: int, wanted: int | None = None
            ) -> tuple[Series, Series]:
    """``(sin, cos)`` together: ``s' = c x'``, ``c' = -s x'`` (see :func:`coupled_pair`).

    Example:
      >>> import jax.numpy as jnp
      >>> s, c = sin_cos([jnp.float32(0.0), jnp.ones(1), None], 2)
      >>> [float(s[1][0]), float(c[2])]
      [1.0, -1.0]

    """
    return coupled_pair(x, jnp.sin(x[0]), jnp.cos(x[0]), -1, order, wanted)


def sinh_cosh(x: Sequence[Any], order: int, wanted: int | None = None
              ) -> tuple[Series, Series]:
    """``(sinh, cosh)`` together: ``s' = c x'``, ``c' = s x'`` (see :func:`coupled_pair`).

    Example:
      >>> import jax.numpy as jnp
      >>> s, c = sinh_cosh([jnp.float32(0.0), jnp.ones(1), None], 2)
      >>> [float(s[1][0]), float(c[2])]
      [1.0, 1.0]

    """
    return coupled_pair(x, jnp.sinh(x[0]), jnp.cosh(x[0]), 1, order, wanted)


def atan2(a: Sequence[Any], b: Sequence[Any], order: int) -> Series:
    """``atan2(a, b)``: ``z' = (b a' - a b') / (a² + b²)`` (operands of equal shape).

    Example:
      >>> import jax.numpy as jnp
      >>> a = [jnp.float32(0.0), jnp.ones(1), None]
      >>> b = [jnp.float32(1.0), None, None]
      >>> z = atan2(a, b, 2)                               # atan(a) at 0
      >>> [float(z[1][0]), abs(float(z[2]))]
      [1.0, 0.0]

    """
    norm = [a[0] ** 2 + b[0] ** 2] + [
        series.add(series.square(a, k, order), series.square(b, k, order))
        for k in range(1, order)]
    # z_k = Σ_j C(k-1, j-1) (a_j p_{k-j} - b_j q_{k-j}), p = b / norm, q = a / norm.
    p = None if _is_constant(a) else series.quotient(b, norm, order, last=order - 1)
    q = None if _is_constant(b) else series.quotient(a, norm, order, last=order - 1)
    z: Series = [jnp.arctan2(a[0], b[0])]
    for k in range(1, order + 1):
        terms = ode_terms(k)
        from_a = None if p is None else series.convolve(a, p, k, order, terms)
        from_b = None if q is None else series.convolve(b, q, k, order, terms)
        z.append(series.sub(from_a, from_b))
    return z


def pow_series(a: Sequence[Any], b: Sequence[Any], order: int) -> Series:
    """Compute ``a ** b`` (operands of equal shape) for non-integer or moving exponents.

    A constant ``b`` uses :func:`power_series` (any sign of ``a`` for integer-valued
    ``b``; singular at ``a = 0``), a constant ``a`` gives ``y' = log(a) y b'`` (``0`` where
    ``a = 0``, as in JAX), and two moving operands ``exp(b · log a)`` (needs ``a > 0``).

    Example:
      >>> import jax.numpy as jnp
      >>> a = [jnp.float32(4.0), jnp.ones(1), None]
      >>> b = [jnp.float32(0.5), None, None]
      >>> y = pow_series(a, b, 2)
      >>> [float(y[0]), float(y[1][0])]
      [2.0, 0.25]

    """
    value = jnp.power(a[0], b[0])
    if _is_constant(b):
        return power_series(a, b[0], order, y0=value)
    if _is_constant(a):  # y' = log(a) y b'; JAX's JVP takes log(a) as 0 where a = 0
        rate = jnp.log(jnp.where(a[0] == 0, jnp.ones_like(a[0]), a[0]))
        exponent = [None] + [series.scale(c, rate, k, order) for k, c in enumerate(b[1:], 1)]
    else:
        log_a = log(a, order)
        exponent = [None] + [series.leibniz(b, log_a, k, order) for k in range(1, order + 1)]
    return quadratic_ode(exponent, value, 0, 1, 0, order)


def complex_abs(z: Sequence[Any], order: int) -> Series:
    """``|z| = (z z̄)^{1/2}`` for complex ``z`` (real output; singular at ``z0 = 0``).

    Example:
      >>> import jax.numpy as jnp
      >>> y = complex_abs([jnp.complex64(3 + 4j), jnp.full((1,), 1j, jnp.complex64), None], 2)
      >>> [float(y[0]), round(float(y[1][0]), 6), round(float(y[2]), 6)]   # |3 + (4 + t)i|
      [5.0, 0.8, 0.072]

    """
    def real_product(u: Array, v: Array, u_dir: bool, v_dir: bool) -> Array:
        return jnp.real(series.multiply(u, jnp.conj(v), u_dir, v_dir))
    norm = [jnp.real(z[0] * jnp.conj(z[0]))] + [
        series.leibniz(z, z, k, order, real_product) for k in range(1, order + 1)]
    return power_series(norm, 0.5, order, y0=jnp.abs(z[0]))


def complex_sign(z: Sequence[Any], order: int) -> Series:
    """``sign(z) = z / |z|`` for complex ``z`` (singular at ``z0 = 0``)."""
    dtype = jnp.result_type(z[0])
    return series.quotient(z, [None if c is None else c.astype(dtype)
                               for c in complex_abs(z, order)], order)


# ------------------------------------------------------------------ the pow_p rule


def _concrete_integer(value: JetValue) -> int | None:
    """Return the exponent as an ``int`` if it is a constant, known, uniform integer."""
    if not value.is_constant:
        return None
    try:
        array = np.asarray(value.primal)
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    if array.size == 0 or not np.isrealobj(array) or not np.all(array == array.flat[0]):
        return None
    first = array.flat[0]
    if not np.isfinite(first) or first != np.round(first) or abs(first) > 2 ** 31:
        return None
    return int(first)


def pow_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``pow(a, b)``: either operand may be a jet or a constant (scalar literals too).

    A known integer-valued exponent (``pow x 2.0``, ``pow x 3:i32[]``) goes through
    :func:`stde.rules.arithmetic.integer_pow_rule`, exact at ``x = 0`` and for negative
    ``x``; every other case through :func:`pow_series`, where ``x = 0`` with a
    non-integer exponent is singular (non-finite coefficients).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> _, (y1, y2) = stde.jet(lambda x: x ** 2.5, (jnp.float32(1.0),), ((1.0, 0.0),))
      >>> [float(y1), float(y2)]
      [2.5, 3.75]

    """
    base, exponent = inputs
    n = _concrete_integer(exponent)
    if n is None:
        base, exponent = broadcast_operands(inputs, ctx.order)
        if not jnp.issubdtype(jnp.result_type(exponent.primal), jnp.inexact):
            exponent = JetValue.constant(
                jnp.asarray(exponent.primal, jnp.result_type(base.primal)), ctx.order)
        return JetValue.from_coefficients(
            pow_series(base.coefficients, exponent.coefficients, ctx.order))
    shape = np.broadcast_shapes(np.shape(base.primal), np.shape(exponent.primal))
    return broadcast_value(integer_pow_rule(ctx, [base], y=n), shape, ctx.order)


# ------------------------------------------------------------ lgamma and its derivatives


def polygamma_rule(first: int) -> Callable[..., JetValue]:
    """Make the rule of the derivative ``first - 1`` of ``lgamma`` (``-1`` is ``lgamma``).

    ``lgamma^{(m)} = polygamma(m - 1, ·)``, so ``lgamma`` (``first = 0``), ``digamma``
    (``1``) and ``polygamma(n, ·)`` (``n + 1``, with a constant order ``n``, the first
    operand) are :func:`series.compose` of polygammas at the primal.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> from jax.scipy.special import gammaln
      >>> _, (d1,) = stde.jet(gammaln, (jnp.float32(1.0),), ((1.0,),))
      >>> round(float(d1), 4)                        # digamma(1) = -γ
      -0.5772

    """
    def rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
        *n, x = broadcast_operands(inputs, ctx.order)
        if n and not n[0].is_constant:
            raise TypeError("stde: polygamma(n, x) is not differentiable in its order n; "
                            "pass n as a constant.")
        x0 = x.primal
        offset = n[0].primal if n else jnp.zeros_like(x0)

        def derivative(m: int) -> Array:
            order = first + m - 1
            if order == -1:
                return lax.lgamma(x0)
            return lax.digamma(x0) if order == 0 and not n else lax.polygamma(offset + order, x0)
        derivatives = [derivative(m) for m in range(ctx.order + 1)]
        return JetValue.from_coefficients(series.compose(derivatives, x.coefficients, ctx.order))
    return rule


# ------------------------------------------- incomplete gamma and beta: CDFs in x

LogDensity = Callable[[Sequence[Array], Sequence[Any], int], Series]
"""``log_density(parameters, x, order)``: coefficients ``0 .. order-1`` of ``log F'(x)``."""


def gamma_log_density(parameters: Sequence[Array], x: Sequence[Any], order: int) -> Series:
    """``h = log P'(x) = (a - 1) log x - x - lgamma(a)``: the Gamma(a) log density.

    ``P = igamma(a, ·)`` is the Gamma(a, 1) distribution function. Coefficients
    ``0 .. order-1`` (all a slope needs); ``log x`` is :func:`log`'s recurrence.

    Args:
      parameters: ``(a,)``, the constant shape: a scalar or shaped like ``x``'s primal.
      x: the input series.
      order: ``K`` of the collapsed layout.

    Example:
      >>> import jax.numpy as jnp
      >>> h = gamma_log_density([jnp.float32(3.0)], [jnp.float32(1.0), jnp.ones(1), None], 2)
      >>> [round(float(h[0]), 4), float(h[1][0])]        # log(1/2) - 1, (a - 1)/x - 1
      [-1.6931, 1.0]

    """
    (a,) = parameters
    a_minus_one = a - 1
    log_x = _ode_with_power_slope(x, jnp.log(x[0]), x, -1, order, last=order - 1)
    return [a_minus_one * log_x[0] - x[0] - lax.lgamma(a)] + [
        series.sub(series.scale(log_x[k], a_minus_one, k, order), x[k])
        for k in range(1, order)]


def beta_log_density(parameters: Sequence[Array], x: Sequence[Any], order: int) -> Series:
    """``h = log I'(x) = (a - 1) log x + (b - 1) log(1 - x) - log B(a, b)``.

    ``I = betainc(a, b, ·)`` is the Beta(a, b) distribution function. Coefficients
    ``0 .. order-1``; ``log x`` and ``log(1 - x)`` are :func:`log`'s recurrence.

    Args:
      parameters: ``(a, b)``, constants: scalars or shaped like ``x``'s primal.
      x: the input series.
      order: ``K`` of the collapsed layout.

    Example:
      >>> import jax.numpy as jnp
      >>> a, b = jnp.float32(2.0), jnp.float32(2.0)        # I'(x) = 6 x (1 - x)
      >>> h = beta_log_density([a, b], [jnp.float32(0.5), jnp.ones(1), None], 2)
      >>> [round(float(jnp.exp(h[0])), 4), abs(float(h[1][0]))]
      [1.5, 0.0]

    """
    a, b = parameters
    a_minus_one, b_minus_one = a - 1, b - 1
    log_x = _ode_with_power_slope(x, jnp.log(x[0]), x, -1, order, last=order - 1)
    log_complement = _ode_with_power_slope(x, jnp.log1p(-x[0]), _shifted(x, -1), -1, order,
                                           last=order - 1)
    log_beta = lax.lgamma(a) + lax.lgamma(b) - lax.lgamma(a + b)
    return [a_minus_one * log_x[0] + b_minus_one * log_complement[0] - log_beta] + [
        series.add(series.scale(log_x[k], a_minus_one, k, order),
                   series.scale(log_complement[k], b_minus_one, k, order))
        for k in range(1, order)]


def distribution_function_rule(primitive: Any, log_density: LogDensity,
                               sign: int = 1) -> Callable[..., JetValue]:
    """Make the rule of ``y = F(θ, x)``, ``y' = sign · exp(h(x)) x'``, for a constant ``θ``.

    ``h = log_density(θ, x)``, and ``exp(h)`` is the :func:`series.ode` slope
    (:func:`exponential_slope`). The primal is the primitive's own (JAX's). Every
    direction shares ``F^{(m)}(x_0)`` (:func:`factored`), one direction too (at
    ``K = 4``, ``R = 1`` as fast as the recurrences run on the direction, in fewer
    flops). Non-finite from the second coefficient on at ``x_0 = 0`` (and ``1`` for
    ``betainc``), where ``log x`` is, as JAX's derivatives (``exp`` of the same
    logarithms) are. Scalar parameters stay scalars. When a parameter moves, the
    rule is the nested-JVP fallback's, so the result (or JAX's error: ``igamma``'s second
    derivative in ``a``, ``betainc``'s any derivative in ``a`` or ``b``) is JAX's.

    Args:
      primitive: the primitive, its operands ``(*θ, x)``.
      log_density: ``h`` from the parameters' primals and ``x``'s series.
      sign: ``-1`` for a complementary function (``igammac = 1 - igamma``).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> from jax.scipy.special import gammainc
      >>> _, (d1, d2) = stde.jet(lambda x: gammainc(2.0, x), (jnp.float32(1.0),),
      ...                        ((1.0, 0.0),))
      >>> [round(float(d1), 4), round(float(d2), 4)]       # x e^-x, (1 - x) e^-x
      [0.3679, 0.0]

    """
    def rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
        if not all(theta.is_constant for theta in inputs[:-1]):
            return fallback_rule(primitive)(ctx, inputs, **params)
        shape = np.broadcast_shapes(*(np.shape(v.primal) for v in inputs))
        x = broadcast_value(inputs[-1], shape, ctx.order)
        # Scalar parameters (jaxpr literals) stay scalars: lgamma(a) once, not per element.
        theta = [p.primal if np.ndim(p.primal) == 0 else jnp.broadcast_to(p.primal, shape)
                 for p in inputs[:-1]]
        y0 = bind_equation(primitive, params, *(v.primal for v in inputs))

        def function(x_series: Sequence[Any], order: int) -> Series:
            h = log_density(theta, x_series, order)
            slope = exponential_slope(lambda _, m: h[m], order, factor=sign)
            return series.ode(x_series, y0, slope, order)
        return factored(function, x, ctx.order)
    return rule


# --------------------------------------------------------------------- registration

_SQRT_PI = math.sqrt(math.pi)

_UNARY: dict[Any, SeriesFunction] = {
    lax.exp_p: exp,
    lax.exp2_p: lambda x, K: quadratic_ode(x, jnp.exp2(x[0]), 0, math.log(2), 0, K),
    lax.expm1_p: lambda x, K: quadratic_ode(x, jnp.expm1(x[0]), 1, 1, 0, K),
    lax.log_p: log,
    lax.log1p_p: lambda x, K: _ode_with_power_slope(x, jnp.log1p(x[0]), _shifted(x, 1), -1, K),
    lax.tanh_p: tanh,
    lax.tan_p: lambda x, K: quadratic_ode(x, jnp.tan(x[0]), 1, 0, 1, K),
    lax.logistic_p: lambda x, K: quadratic_ode(x, lax.logistic(x[0]), 0, 1, -1, K),
    lax.sin_p: lambda x, K: sin_cos(x, K, wanted=0)[0],
    lax.cos_p: lambda x, K: sin_cos(x, K, wanted=1)[1],
    lax.sinh_p: lambda x, K: sinh_cosh(x, K, wanted=0)[0],
    lax.cosh_p: lambda x, K: sinh_cosh(x, K, wanted=1)[1],
    lax.atan_p: lambda x, K: _ode_with_power_slope(
        x, jnp.arctan(x[0]), _signed_square(x, 1, 1, K), -1, K),
    lax.atanh_p: lambda x, K: _ode_with_power_slope(
        x, jnp.arctanh(x[0]), _signed_square(x, 1, -1, K), -1, K),
    lax.asin_p: lambda x, K: _ode_with_power_slope(
        x, jnp.arcsin(x[0]), _signed_square(x, 1, -1, K), -0.5, K),
    lax.acos_p: lambda x, K: _ode_with_power_slope(
        x, jnp.arccos(x[0]), _signed_square(x, 1, -1, K), -0.5, K, negate=True),
    lax.asinh_p: lambda x, K: _ode_with_power_slope(
        x, jnp.arcsinh(x[0]), _signed_square(x, 1, 1, K), -0.5, K),
    lax.acosh_p: acosh,
    lax.erf_p: lambda x, K: _gaussian_integral(x, lax.erf(x[0]), 2 / _SQRT_PI, K),
    lax.erfc_p: lambda x, K: _gaussian_integral(x, lax.erfc(x[0]), -2 / _SQRT_PI, K),
    lax.erf_inv_p: lambda x, K: series.ode(
        x, lax.erf_inv(x[0]), gaussian_slope(_SQRT_PI / 2, 1, K), K),
    lax.sqrt_p: lambda x, K: power_series(x, 0.5, K, y0=lax.sqrt(x[0])),
    lax.rsqrt_p: lambda x, K: power_series(x, -0.5, K, y0=lax.rsqrt(x[0])),
    lax.cbrt_p: lambda x, K: power_series(x, 1 / 3, K, y0=lax.cbrt(x[0])),
}

_LOG2 = math.log(2)

_UNARY_SINCE_JAX_0_12: dict[str, SeriesFunction] = {
    "sinpi": lambda x, K: coupled_pair(
        _scaled(x, math.pi, K), lax.sinpi(x[0]), lax.cospi(x[0]), -1, K, wanted=0)[0],
    "cospi": lambda x, K: coupled_pair(
        _scaled(x, math.pi, K), lax.sinpi(x[0]), lax.cospi(x[0]), -1, K, wanted=1)[1],
    "tanpi": lambda x, K: quadratic_ode(_scaled(x, math.pi, K), lax.tanpi(x[0]), 1, 0, 1, K),
    "asinpi": lambda x, K: _ode_with_power_slope(
        _scaled(x, 1 / math.pi, K), lax.asinpi(x[0]), _signed_square(x, 1, -1, K), -0.5, K),
    "acospi": lambda x, K: _ode_with_power_slope(
        _scaled(x, 1 / math.pi, K), lax.acospi(x[0]), _signed_square(x, 1, -1, K), -0.5, K,
        negate=True),
    "atanpi": lambda x, K: _ode_with_power_slope(
        _scaled(x, 1 / math.pi, K), lax.atanpi(x[0]), _signed_square(x, 1, 1, K), -1, K),
    "exp2m1": lambda x, K: quadratic_ode(x, lax.exp2m1(x[0]), _LOG2, _LOG2, 0, K),
    "log2p1": lambda x, K: _ode_with_power_slope(
        _scaled(x, 1 / _LOG2, K), lax.log2p1(x[0]), _shifted(x, 1), -1, K),
}
"""JAX 0.12's exactly rounded ``π``- and ``2``-based functions; registered where JAX has them."""


def _atan2pi(a: Sequence[Any], b: Sequence[Any], order: int) -> Series:
    """``atan2(a, b) / π`` (JAX 0.12's ``atan2pi``), its primal computed by JAX."""
    z = atan2(a, b, order)
    z[0] = lax.atan2pi(a[0], b[0])
    return _scaled(z, 1 / math.pi, order)


_BROADCASTS = ("a function of two operands (or a special function of a moving argument) "
               "whose series is not tested on sparse coefficients")

for _primitive, _function in _UNARY.items():
    register(_primitive, unary_rule(_function), sparse=True)
for _name, _function in _UNARY_SINCE_JAX_0_12.items():
    _primitive = getattr(lax, f"{_name}_p", None)
    if _primitive is not None:
        register(_primitive, unary_rule(_function), sparse=True)
register(lax.atan2_p, binary_rule(atan2), sparse=_BROADCASTS)
if hasattr(lax, "atan2pi_p"):
    register(lax.atan2pi_p, binary_rule(_atan2pi), sparse=_BROADCASTS)
register(lax.lgamma_p, polygamma_rule(0), sparse=_BROADCASTS)
register(lax.digamma_p, polygamma_rule(1), sparse=_BROADCASTS)
register(lax.polygamma_p, polygamma_rule(1), sparse=_BROADCASTS)
register(lax.pow_p, pow_rule, sparse=_BROADCASTS)
register(lax.igamma_p, distribution_function_rule(lax.igamma_p, gamma_log_density),
         sparse=_BROADCASTS)
register(lax.igammac_p, distribution_function_rule(lax.igammac_p, gamma_log_density, -1),
         sparse=_BROADCASTS)
register(lax.regularized_incomplete_beta_p,
         distribution_function_rule(lax.regularized_incomplete_beta_p, beta_log_density),
         sparse=_BROADCASTS)
