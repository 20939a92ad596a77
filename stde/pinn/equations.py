"""PDEs with exact solutions for physics-informed training with STDE.

Every equation here has a closed-form solution ``u*`` and a forcing term derived
analytically from it, so a trained network can be scored by its relative L2 error. The
test-suite checks each forcing term against the library's *exact* operator
(:func:`stde.operator`) applied to ``u*`` in float64: the residual of ``u*`` must vanish.

Equations (``EQUATIONS``; ``d`` is the spatial dimension, ``B`` the unit ball):

* ``poisson``: ``-Δu = f`` on ``B``, two-body solution, ``u = 0`` on ``∂B``.
* ``allen_cahn``: ``Δu + u - u³ = f``, two-body solution.
* ``sine_gordon``: ``Δu + sin u = f``, two-body solution.
* ``sine_gordon_3body``: ``Δu + sin u = f``, three-body solution.
* ``fokker_planck``: ``½ tr(σσᵀ ∇²u) - x·∇u - u = f`` (stationary backward Kolmogorov
  equation of an Ornstein–Uhlenbeck process with anisotropic diffusion ``σ``): a
  weighted Laplacian, two-body solution.
* ``heat``: ``u_t = Δu + (1 - u²)/(1 + u²) + f`` on ``B × [0, 1]`` (semilinear heat),
  solution ``e^{-t}`` times the two-body solution.
* ``heat_averaged``: the same with the two-body sum averaged (coefficients
  ``(1 + c_i)/(d - 1)``), so the solution stays ``O(1)`` and its trivial predictor poor at
  ``d = 10⁶``.
* ``kdv``: ``u_t + u u_x + 0.0025 u_xxx = 0`` on ``[-1, 1] × [0, 1]`` with a soliton
  solution, trained gradient-enhanced (the loss also penalises ``∂_x`` and ``∂_t`` of the
  residual, which need ``u_xxxx`` and ``u_xxxt``: two 7-jets and one 2-jet).

The *two-body* solution (the STDE paper's) is
``u*(x) = (1 - |x|²) Σ_{i<d} c_i sin(x_i + cos x_{i+1} + x_{i+1} cos x_i)``; the
*three-body* one ``u*(x) = (1 - |x|²) Σ_{i<d-1} c_i exp(x_i x_{i+1} x_{i+2})``, with
``c_i ~ N(0, 1)`` drawn from a fixed seed.

Each :class:`Equation` exposes ``residual(u, z, key, estimate)``: the PDE residual(s) of
the scalar function ``u`` at one point ``z``. ``estimate(f, *args, key)`` returns
``(f(*args), L f(*args))`` for the equation's second-order operator ``L`` acting on the
first argument; :func:`stde.pinn.harness.make_estimate` builds it from
:func:`stde.stochastic_operator` (or the exact :func:`stde.operator`, or the SDGD
baseline), so the same residual serves every method.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import stde

Array = Any
ScalarFn = Callable[[Array], Array]
Estimate = Callable[..., tuple[Array, Array]]


# ---------------------------------------------------------------------------------------
# Exact solutions on the unit ball: value, gradient and Hessian diagonal in closed form.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PairSolution:
    """``g(x) = Σ_i c_i h(x_i, .., x_{i+p-1})``: a sum of ``p``-body terms on neighbours.

    ``u*(x) = (1 - |x|²) g(x)``. Because every term depends on ``p`` consecutive
    coordinates, the gradient and the Hessian diagonal of ``g`` cost ``O(d)``, which
    makes exact forcing terms cheap at ``d = 10⁵``.

    Attributes:
      body: ``p``, the number of coordinates per term (2 or 3).
      coefficients: the ``c_i``, shape ``(d - p + 1,)``.
    """

    body: int
    coefficients: np.ndarray

    def _windows(self, x: Array) -> list[Array]:
        """``[x_{0..}, x_{1..}, ..]``: the ``p`` shifted coordinate windows."""
        n = x.shape[-1] - self.body + 1
        return [x[..., s:s + n] for s in range(self.body)]

    def _term_derivatives(self, x: Array) -> tuple[Array, list[Array], list[Array]]:
        """Per term: value, first and pure second partials w.r.t. each window slot."""
        c = jnp.asarray(self.coefficients, x.dtype)
        if self.body == 2:
            a, b = self._windows(x)
            psi = a + jnp.cos(b) + b * jnp.cos(a)
            psi_a, psi_b = 1.0 - b * jnp.sin(a), jnp.cos(a) - jnp.sin(b)
            psi_aa, psi_bb = -b * jnp.cos(a), -jnp.cos(b)
            sin, cos = jnp.sin(psi), jnp.cos(psi)
            first = [c * cos * psi_a, c * cos * psi_b]
            second = [c * (cos * psi_aa - sin * psi_a ** 2),
                      c * (cos * psi_bb - sin * psi_b ** 2)]
            return c * sin, first, second
        if self.body == 3:
            a, b, e = self._windows(x)
            h = c * jnp.exp(a * b * e)
            cofactors = [b * e, a * e, a * b]
            return h, [h * q for q in cofactors], [h * q ** 2 for q in cofactors]
        raise ValueError(f"body must be 2 or 3, got {self.body}")

    def _scatter(self, per_slot: list[Array], d: int) -> Array:
        """``Σ_s`` of slot ``s``'s per-term values, placed at coordinate ``i + s``."""
        n = d - self.body + 1
        return sum(jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(s, d - n - s)])
                   for s, v in enumerate(per_slot))

    def g(self, x: Array) -> Array:
        """The sum ``g(x)`` (without the boundary factor)."""
        return self._term_derivatives(x)[0].sum(-1)

    def value(self, x: Array) -> Array:
        """``u*(x) = (1 - |x|²) g(x)``."""
        return (1.0 - jnp.sum(x ** 2, -1)) * self.g(x)

    def value_grad_hessdiag(self, x: Array) -> tuple[Array, Array, Array]:
        """``u*``, ``∇u*`` and ``(∂²u*/∂x_i²)_i`` in closed form."""
        d = x.shape[-1]
        terms, first, second = self._term_derivatives(x)
        g = terms.sum(-1)
        grad_g = self._scatter(first, d)
        hessdiag_g = self._scatter(second, d)
        bump = 1.0 - jnp.sum(x ** 2, -1)
        value = bump * g
        grad = -2.0 * x * g[..., None] + bump[..., None] * grad_g
        hessdiag = -2.0 * g[..., None] - 4.0 * x * grad_g + bump[..., None] * hessdiag_g
        return value, grad, hessdiag


def make_solution(d: int, body: int, seed: int = 0) -> PairSolution:
    """The ``body``-body solution in ``d`` dimensions with ``c_i ~ N(0, 1)`` (fixed seed).

    Example:
      >>> import jax.numpy as jnp
      >>> sol = make_solution(4, body=2)
      >>> float(sol.value(jnp.array([1.0, 0.0, 0.0, 0.0])))
      0.0
    """
    if d < body:
        raise ValueError(f"the {body}-body solution needs d >= {body}, got d={d}")
    coefficients = np.random.default_rng(seed).standard_normal(d - body + 1)
    return PairSolution(body, coefficients.astype(np.float64))


def sample_ball(key: Array, n: int, d: int, dtype: Any = jnp.float32) -> Array:
    """``n`` points uniform in the unit ball of ``R^d``."""
    k_dir, k_rad = jax.random.split(key)
    direction = jax.random.normal(k_dir, (n, d), dtype)
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    radius = jax.random.uniform(k_rad, (n, 1), dtype) ** (1.0 / d)
    return direction * radius


# ---------------------------------------------------------------------------------------
# Equations.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Equation:
    """A PDE with an exact solution, a hard-constraint ansatz and its residual.

    Attributes:
      name: registry key.
      dim: spatial dimension ``d``.
      default_dim: the ``d`` its constructor uses when none is given (what
        ``train_pinn.py`` trains without ``--dim``).
      input_dim: the network's input size (``d``, or ``d + 1`` with time last).
      exact: ``u*(z)`` for one point ``z`` of shape ``(input_dim,)``.
      trivial: the untrained baseline predictor (``(1 - |x|²) u*(0)``, or the initial
        condition for time-dependent problems).
      ansatz: ``ansatz(net, z)``: the network ``net(z)`` wrapped so that boundary and
        initial conditions hold exactly.
      sample: ``sample(key, n) -> (n, input_dim)`` collocation or test points.
      residual: ``residual(u, z, key, estimate) -> (m,)``: the residual components of
        ``u`` at ``z`` (``m = 1`` except for the gradient-enhanced KdV).
      operator: a factory for the second-order operator ``L`` that ``estimate`` applies
        (``None`` when the residual computes its own derivatives, as KdV does).
      sdgd_directions: the directions whose second derivatives sum to ``L`` (rows), for
        the SDGD baseline; ``None`` means the coordinate axes.
      description: one line for the command-line help.
    """

    name: str
    dim: int
    default_dim: int
    input_dim: int
    exact: ScalarFn
    trivial: ScalarFn
    ansatz: Callable[[ScalarFn, Array], Array]
    sample: Callable[[Array, int], Array]
    residual: Callable[[ScalarFn, Array, Array, Estimate], Array]
    operator: Callable[[], Any] | None
    sdgd_directions: np.ndarray | None
    description: str


def _ball_ansatz(net: ScalarFn, x: Array) -> Array:
    return (1.0 - jnp.sum(x ** 2)) * net(x)


def _laplacian_operator() -> Any:
    import stde.operators as ops  # noqa: PLC0415  (imported lazily: examples run without it)

    return ops.laplacian()


DEFAULT_DIM = 100
"""The spatial dimension of the unit-ball equations when none is given."""


def _elliptic(name: str, d: int, body: int, nonlinearity: Callable[[Array], Array],
              laplacian_sign: float, description: str, seed: int) -> Equation:
    """``laplacian_sign · Δu + nonlinearity(u) = f`` on the unit ball."""
    solution = make_solution(d, body, seed)
    u0 = float(solution.value(jnp.zeros(d)))

    def forcing(x: Array) -> Array:
        value, _, hessdiag = solution.value_grad_hessdiag(x)
        return laplacian_sign * hessdiag.sum(-1) + nonlinearity(value)

    def residual(u: ScalarFn, x: Array, key: Array, estimate: Estimate) -> Array:
        value, lap = estimate(u, x, key=key)
        return (laplacian_sign * lap + nonlinearity(value) - forcing(x))[None]

    return Equation(
        name=name, dim=d, default_dim=DEFAULT_DIM, input_dim=d, exact=solution.value,
        trivial=lambda x: (1.0 - jnp.sum(x ** 2, -1)) * u0,
        ansatz=_ball_ansatz, sample=lambda key, n: sample_ball(key, n, d),
        residual=residual, operator=_laplacian_operator, sdgd_directions=None,
        description=description)


def poisson(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``-Δu = f`` on the unit ball, two-body solution."""
    return _elliptic("poisson", d, 2, lambda u: 0.0 * u, -1.0,
                     "-Δu = f, two-body solution on the unit ball", seed)


def allen_cahn(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + u - u³ = f`` on the unit ball, two-body solution."""
    return _elliptic("allen_cahn", d, 2, lambda u: u - u ** 3, 1.0,
                     "Δu + u - u³ = f, two-body solution on the unit ball", seed)


def sine_gordon(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + sin u = f`` on the unit ball, two-body solution."""
    return _elliptic("sine_gordon", d, 2, jnp.sin, 1.0,
                     "Δu + sin u = f, two-body solution on the unit ball", seed)


def sine_gordon_3body(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + sin u = f`` on the unit ball, three-body solution."""
    return _elliptic("sine_gordon_3body", d, 3, jnp.sin, 1.0,
                     "Δu + sin u = f, three-body solution on the unit ball", seed)


def fokker_planck_scales(d: int) -> np.ndarray:
    """Diffusion scales ``σ_i`` of :func:`fokker_planck`, from 0.5 to 1.5."""
    return np.linspace(0.5, 1.5, d) if d > 1 else np.ones(1)


def fokker_planck(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``½ tr(σσᵀ ∇²u) - x·∇u - u = f`` with diagonal ``σ``, two-body solution.

    The weighted Laplacian ``tr(σσᵀ∇²u)`` is the operator estimated by STDE
    (``ops.weighted_laplacian(σ)``, directions = the columns of ``σ``); the drift term
    is one forward-mode JVP.
    """
    solution = make_solution(d, 2, seed)
    u0 = float(solution.value(jnp.zeros(d)))
    scales = fokker_planck_scales(d)

    def forcing(x: Array) -> Array:
        value, grad, hessdiag = solution.value_grad_hessdiag(x)
        weighted = jnp.sum(jnp.asarray(scales ** 2, x.dtype) * hessdiag, -1)
        return 0.5 * weighted - jnp.sum(x * grad, -1) - value

    def residual(u: ScalarFn, x: Array, key: Array, estimate: Estimate) -> Array:
        value, weighted = estimate(u, x, key=key)
        _, drift = jax.jvp(u, (x,), (x,))
        return (0.5 * weighted - drift - value - forcing(x))[None]

    def operator() -> Any:
        import stde.operators as ops  # noqa: PLC0415

        return ops.weighted_laplacian(np.diag(scales).astype(np.float32))

    return Equation(
        name="fokker_planck", dim=d, default_dim=DEFAULT_DIM, input_dim=d,
        exact=solution.value,
        trivial=lambda x: (1.0 - jnp.sum(x ** 2, -1)) * u0,
        ansatz=_ball_ansatz, sample=lambda key, n: sample_ball(key, n, d),
        residual=residual, operator=operator, sdgd_directions=np.diag(scales),
        description="½tr(σσᵀ∇²u) - x·∇u - u = f (OU generator), two-body solution")


def heat(d: int = DEFAULT_DIM, seed: int = 0, solution: PairSolution | None = None
         ) -> Equation:
    """``u_t = Δu + (1 - u²)/(1 + u²) + f`` on ``B × [0, 1]``, ``u* = e^{-t} u*_2body(x)``.

    Points are ``z = (x, t)``; the ansatz ``u*(x, 0) + t (1 - |x|²) net(z)`` satisfies the
    initial and boundary conditions exactly, and the trivial predictor is the initial
    condition ``u*(x, 0)`` (the ansatz with ``net = 0``). ``solution`` replaces the
    two-body solution (default :func:`make_solution` with ``seed``).
    """
    solution = make_solution(d, 2, seed) if solution is None else solution

    def source(u: Array) -> Array:
        return (1.0 - u ** 2) / (1.0 + u ** 2)

    def exact(z: Array) -> Array:
        return jnp.exp(-z[..., -1]) * solution.value(z[..., :-1])

    def forcing(z: Array) -> Array:
        x, t = z[..., :-1], z[..., -1]
        value, _, hessdiag = solution.value_grad_hessdiag(x)
        decay = jnp.exp(-t)
        return -decay * value - decay * hessdiag.sum(-1) - source(decay * value)

    def ansatz(net: ScalarFn, z: Array) -> Array:
        x, t = z[:-1], z[-1]
        return solution.value(x) + t * (1.0 - jnp.sum(x ** 2)) * net(z)

    def sample(key: Array, n: int) -> Array:
        k_x, k_t = jax.random.split(key)
        return jnp.concatenate([sample_ball(k_x, n, d), jax.random.uniform(k_t, (n, 1))], -1)

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        x, t = z[:-1], z[-1]
        of_x_t = lambda x_, t_: u(jnp.concatenate([x_, t_[None]]))  # noqa: E731
        value, lap = estimate(of_x_t, x, t, key=key)
        _, u_t = jax.jvp(lambda t_: of_x_t(x, t_), (t,), (jnp.ones_like(t),))
        return (u_t - lap - source(value) - forcing(z))[None]

    return Equation(
        name="heat", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1, exact=exact,
        trivial=lambda z: solution.value(z[..., :-1]), ansatz=ansatz, sample=sample,
        residual=residual, operator=_laplacian_operator, sdgd_directions=None,
        description="u_t = Δu + (1-u²)/(1+u²) + f on ball×[0,1], u* = e^{-t}·two-body")


def heat_averaged(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """:func:`heat` with the two-body sum averaged: ``c_i = (1 + N(0, 1)) / (d - 1)``.

    With ``c_i ~ N(0, 1)`` the solution's size grows like ``√d`` and its sign is the
    seed's; averaged, ``u*(x, 0)/(1 - |x|²) ≈ sin 1`` at any ``d``. In high dimension the
    unit ball's points lie near the sphere and each coordinate is ``O(d^{-1/2})``, so the
    solution hardly varies with ``x`` apart from ``1 - |x|²``, but the time decay
    ``e^{-t}`` stays: the trivial predictor ``u*(x, 0)`` is off by about 60% (relative
    L2) at every ``d``, unlike the elliptic problems' ``(1 - |x|²) u*(0)`` (``6·10⁻⁴`` at
    ``d = 10⁶``). This is the problem for 10⁶-dimensional runs.
    """
    base = make_solution(d, 2, seed)
    solution = PairSolution(2, (1.0 + base.coefficients) / (d - 1))
    return dataclasses.replace(
        heat(d, seed, solution=solution), name="heat_averaged",
        description="u_t = Δu + (1-u²)/(1+u²) + f on ball×[0,1], averaged two-body solution")


# --- Korteweg–de Vries ------------------------------------------------------------------

KDV_DISPERSION = 0.0025
KDV_SPEED = 0.25
KDV_START = -0.4
KDV_GRADIENT_WEIGHT = 0.01


def kdv_soliton(z: Array, speed: float = KDV_SPEED, start: float = KDV_START,
                dispersion: float = KDV_DISPERSION) -> Array:
    """The soliton ``3c sech²(½√(c/α) (x - x0 - c t))`` solving ``u_t + u u_x + α u_xxx = 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(kdv_soliton(jnp.array([KDV_START, 0.0]))), 6)
      0.75
    """
    x, t = z[..., 0], z[..., 1]
    width = 0.5 * math.sqrt(speed / dispersion)
    return 3.0 * speed / jnp.cosh(width * (x - start - speed * t)) ** 2


def kdv_derivatives(u: ScalarFn, z: Array) -> dict[str, Array]:
    """All partials of ``u(x, t)`` that the gradient-enhanced KdV loss needs, from jets.

    A 7-jet along ``x(s) = z + s e_x`` gives ``y_k = ∂_x^k u``. A second 7-jet with
    ``e_x`` in slot 1 and ``e_t`` in slot 4 (``x(s) = z + s e_x + s⁴/4! e_t``) gives, by
    Faà di Bruno, ``y_4 = u_xxxx + u_t``, ``y_5 = ∂_x⁵u + 5 u_xt`` and
    ``y_7 = ∂_x⁷u + 35 u_xxxt`` (``7!/(3!·4!) = 35``): subtracting the first jet isolates
    the mixed partials. ``u_tt`` comes from a 2-jet along ``e_t``.

    Args:
      u: scalar function of ``z = (x, t)``.
      z: one point, shape ``(2,)``.

    Returns:
      ``u, u_x, u_xx, u_xxx, u_xxxx, u_t, u_xt, u_tt, u_xxxt`` by name.
    """
    e_x = jnp.array([1.0, 0.0], z.dtype)
    e_t = jnp.array([0.0, 1.0], z.dtype)
    zero = jnp.zeros(2, z.dtype)
    value, pure = stde.jet(u, (z,), ((e_x,) + (zero,) * 6,))
    _, mixed = stde.jet(u, (z,), ((e_x, zero, zero, e_t, zero, zero, zero),))
    _, (_, u_tt) = stde.jet(u, (z,), ((e_t, zero),))
    return {
        "u": value, "u_x": pure[0], "u_xx": pure[1], "u_xxx": pure[2], "u_xxxx": pure[3],
        "u_t": mixed[3] - pure[3], "u_xt": (mixed[4] - pure[4]) / 5.0,
        "u_xxxt": (mixed[6] - pure[6]) / 35.0, "u_tt": u_tt,
    }


def kdv_residuals(terms: dict[str, Array], dispersion: float = KDV_DISPERSION) -> Array:
    """``(r, ∂_x r, ∂_t r)`` for ``r = u_t + u u_x + α u_xxx``."""
    u, u_x, u_t = terms["u"], terms["u_x"], terms["u_t"]
    r = u_t + u * u_x + dispersion * terms["u_xxx"]
    r_x = terms["u_xt"] + u_x ** 2 + u * terms["u_xx"] + dispersion * terms["u_xxxx"]
    r_t = terms["u_tt"] + u_t * u_x + u * terms["u_xt"] + dispersion * terms["u_xxxt"]
    return jnp.stack([r, r_x, r_t])


def kdv(d: int = 1, seed: int = 0) -> Equation:
    """Gradient-enhanced KdV on ``[-1, 1] × [0, 1]`` with the soliton solution.

    The ansatz ``A(x, t) + t (1 - x²) net(x, t)`` is exact on the initial line and on
    both walls; ``A`` interpolates the initial condition and the two boundary traces,
    and is also the trivial predictor. The residual vector is
    ``(r, √w ∂_x r, √w ∂_t r)`` with ``w = 0.01`` (gPINN).
    """
    del seed
    if d != 1:
        raise ValueError(f"kdv is one-dimensional in space; got --dim {d}")

    def trace(x: float, t: Array) -> Array:
        return kdv_soliton(jnp.stack([jnp.full_like(t, x), t], -1))

    def interpolant(z: Array) -> Array:
        x, t = z[..., 0], z[..., 1]
        initial = kdv_soliton(jnp.stack([x, jnp.zeros_like(t)], -1))
        left = trace(-1.0, t) - trace(-1.0, jnp.zeros_like(t))
        right = trace(1.0, t) - trace(1.0, jnp.zeros_like(t))
        return initial + 0.5 * (1.0 - x) * left + 0.5 * (1.0 + x) * right

    def ansatz(net: ScalarFn, z: Array) -> Array:
        return interpolant(z) + z[1] * (1.0 - z[0] ** 2) * net(z)

    def sample(key: Array, n: int) -> Array:
        k_x, k_t = jax.random.split(key)
        return jnp.concatenate([jax.random.uniform(k_x, (n, 1), minval=-1.0, maxval=1.0),
                                jax.random.uniform(k_t, (n, 1))], -1)

    weights = jnp.array([1.0, math.sqrt(KDV_GRADIENT_WEIGHT), math.sqrt(KDV_GRADIENT_WEIGHT)])

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        del key, estimate
        return weights.astype(z.dtype) * kdv_residuals(kdv_derivatives(u, z))

    return Equation(
        name="kdv", dim=1, default_dim=1, input_dim=2, exact=kdv_soliton, trivial=interpolant,
        ansatz=ansatz, sample=sample, residual=residual, operator=None,
        sdgd_directions=None,
        description="u_t + u u_x + 0.0025 u_xxx = 0, soliton, gradient-enhanced (7-jets)")


EQUATIONS: dict[str, Callable[..., Equation]] = {
    "poisson": poisson,
    "allen_cahn": allen_cahn,
    "sine_gordon": sine_gordon,
    "sine_gordon_3body": sine_gordon_3body,
    "fokker_planck": fokker_planck,
    "heat": heat,
    "heat_averaged": heat_averaged,
    "kdv": kdv,
}


def default_dim(name: str) -> int:
    """The spatial dimension of the equation ``name`` when none is given.

    Example:
      >>> default_dim("kdv"), default_dim("heat_averaged")
      (1, 100)
    """
    return make_equation(name).default_dim


def make_equation(name: str, d: int | None = None, seed: int = 0) -> Equation:
    """The equation ``name`` in ``d`` spatial dimensions (``seed`` fixes the ``c_i``).

    ``d=None`` builds it in its default dimension (``Equation.default_dim``).

    Example:
      >>> make_equation("allen_cahn", 5).input_dim, make_equation("kdv").dim
      (5, 1)
    """
    if name not in EQUATIONS:
        raise ValueError(f"unknown equation {name!r}; choose from {sorted(EQUATIONS)}")
    make = EQUATIONS[name]
    return make(seed=seed) if d is None else make(d, seed)
