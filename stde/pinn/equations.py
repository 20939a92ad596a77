"""PDEs with exact solutions for physics-informed training with STDE: the STDE paper's set.

Every equation here has a closed-form solution ``u*`` (or, for the paper's semilinear
parabolic problems, its reference value at one point) and a forcing term derived
analytically from it, so a trained network can be scored by its relative L2 error. The
test-suite checks each forcing term against the library's *exact* operator
(:func:`stde.operator`) applied to ``u*`` in float64 (the residual of ``u*`` must vanish),
and every jet recipe for higher-order terms against nested ``jax.jacfwd``.

Equations (``EQUATIONS``; ``d`` is the spatial dimension, ``B`` the unit ball, ``t`` last):

Elliptic, on ``B`` with ``u = 0`` on ``∂B`` (ansatz ``(1 - |x|²) net(x)``):

* ``poisson``, ``poisson_3body``, ``poisson_houman``: ``-Δu = f`` with the two-body, the
  three-body or Houman's solution (the paper writes ``Δu = g``; the sign is immaterial).
* ``allen_cahn``, ``allen_cahn_3body``: ``Δu + u - u³ = f``, two-/three-body solution.
* ``sine_gordon``, ``sine_gordon_3body``: ``Δu + sin u = f``, two-/three-body solution.
* ``poisson_gpinn``, ``allen_cahn_gpinn``, ``sine_gordon_gpinn``: the two-body problems
  with the amortized gradient-enhanced residual (``∂_j Δu`` from 7-jets).
* ``fokker_planck``: ``½ tr(σσᵀ ∇²u) - x·∇u - u = f`` (stationary backward Kolmogorov
  equation of an Ornstein–Uhlenbeck process with anisotropic diffusion ``σ``): a
  weighted Laplacian, two-body solution.

Parabolic and hyperbolic, with exact solutions:

* ``heat``: ``u_t = Δu + (1 - u²)/(1 + u²) + f`` on ``B × [0, 1]`` (semilinear heat),
  solution ``e^{-t}`` times the two-body solution.
* ``heat_averaged``: the same with the two-body sum averaged (coefficients
  ``(1 + c_i)/(d - 1)``), so the solution stays ``O(1)`` and its trivial predictor poor at
  ``d = 10⁶`` (but a function of ``|x|²`` and ``t`` does well).
* ``ridge``: ``u_t = Δu + u - u³ + f`` on ``R^d × [0, 1]`` with the ridge solution
  ``cos t sin(a·x) + sin t sin(b·x)``: varies with ``x`` at ``d = 10⁶``.
* ``wave``: ``u_tt = Δu`` on ``B × [0, 1]``, ``u* = cosh t Σ sinh x_i``.
* ``hjb_lin``: ``u_t + Δu - (1/d)Σ|∂_i u|^1.75 = -2``, ``u* = Σx_i + 1 - t``.
* ``hjb_lqg``: ``u_t + Δu - |∇u|² = 0``, ``u(x, 1) = log((1 + |x|²)/2)``, solution by
  Cole–Hopf and a quadrature that is itself exact.
* ``bsb``: Black–Scholes–Barenblatt ``u_t + ½σ²Σx_i² ∂_i²u - r(u - x·∇u) = 0``,
  ``σ = 0.4``, ``r = 0.05``, ``u* = e^{(r+σ²)(1-t)}|x|²``.

Semilinear parabolic, scored at ``(x, t) = (0, 0)`` against the paper's multilevel-Picard
reference values (``d`` = 10, 100, 1000, 10⁴), points along Brownian paths, ``T = 0.3``:

* ``semilinear_heat_time``: ``u_t + Δu + (1 - u²)/(1 + u²) = 0``.
* ``allen_cahn_time``: ``u_t + Δu + u - u³ = 0``.
* ``sine_gordon_time``: ``u_t + Δu + d sin(u/d) = 0``.

High order, low dimension (derivatives from jets; ``operator`` is ``None``):

* ``kdv``: the paper's g-KdV, ``u_t + u u_x + 0.0025 u_xxx = 0`` on ``[-1, 1] × [0, 1]``
  with a soliton, trained gradient-enhanced (the loss also penalises ``∂_x`` and ``∂_t``
  of the residual, which need ``u_xxxx`` and ``u_xxxt``: two 7-jets and one 2-jet).
* ``kdv_2d``: ``u_ty + u_xxxy + 3(u_y u_x)_x - u_xx + 2u_yy = 0`` on ``[-1, 1]² × [0, 1]``,
  a travelling kink; a 9-jet and two 3-jets.
* ``kp``: Kadomtsev–Petviashvili ``(u_t + 6u u_x + u_xxx)_x + 3u_yy = 0``, a line soliton.

The *two-body* solution (the STDE paper's) is
``u*(x) = (1 - |x|²) Σ_{i<d} c_i sin(x_i + cos x_{i+1} + x_{i+1} cos x_i)``; the
*three-body* one ``u*(x) = (1 - |x|²) Σ_{i<d-1} c_i exp(x_i x_{i+1} x_{i+2})``, with
``c_i ~ N(0, 1)`` drawn from a fixed seed; Houman's has ``3 cos x_{i+1}`` and
``c_i = tanh(4i/(d-1) - 2)``.

Corrections to the paper and its reference code (each verified against nested
``jax.jacfwd`` in float64 by the tests): the reference code's three-body Laplacian drops
the chain-rule factors (it uses ``Σ c_i e^{x_i x_{i+1} x_{i+2}}`` for both the gradient and
the Hessian diagonal of the sum); its 2D KdV divides ``u_xxxy``'s 9-jet coefficient by
840 where ``9!/(3!·2!³·3!) = 1260`` is right, and its single 13-jet recipe mixes
``u_t`` into ``u_xy``, ``u_xyy`` into ``u_ty`` and ``u_xxt`` into ``u_xxxy`` (and reads
``u_xx`` without its factor 10); its amortized gPINN sums sampled ``u_iij`` without the
``d/n`` scale and uses the Allen–Cahn forcing's gradient for Poisson and Sine–Gordon; its
2D KdV "solution" is the wave equation's.

Each :class:`Equation` exposes ``residual(u, z, key, estimate)``: the PDE residual(s) of
the scalar function ``u`` at one point ``z``. ``estimate(f, *args, key)`` returns
``(f(*args), L f(*args))`` for the equation's second-order operator ``L`` acting on the
first argument; :func:`stde.pinn.harness.make_estimate` builds it from
:func:`stde.stochastic_operator` (or the exact :func:`stde.operator`, or the SDGD
baseline), so the same residual serves every method.
:func:`radial_baseline_error` scores the best predictor that sees only ``|x|²`` and ``t``.
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
      cos_scale: ``k`` in the two-body term ``sin(x_i + k cos x_{i+1} + x_{i+1} cos x_i)``
        (1 for the STDE paper's two-body solution, 3 for Houman's).
    """

    body: int
    coefficients: np.ndarray
    cos_scale: float = 1.0

    def _windows(self, x: Array) -> list[Array]:
        """``[x_{0..}, x_{1..}, ..]``: the ``p`` shifted coordinate windows."""
        n = x.shape[-1] - self.body + 1
        return [x[..., s:s + n] for s in range(self.body)]

    def _term_derivatives(self, x: Array) -> tuple[Array, list[Array], list[Array]]:
        """Per term: value, first and pure second partials w.r.t. each window slot."""
        c = jnp.asarray(self.coefficients, x.dtype)
        if self.body == 2:
            a, b = self._windows(x)
            k = self.cos_scale
            psi = a + k * jnp.cos(b) + b * jnp.cos(a)
            psi_a, psi_b = 1.0 - b * jnp.sin(a), jnp.cos(a) - k * jnp.sin(b)
            psi_aa, psi_bb = -b * jnp.cos(a), -k * jnp.cos(b)
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


def houman_solution(d: int) -> PairSolution:
    """Houman's solution: two-body terms ``sin(x_i + 3 cos x_{i+1} + x_{i+1} cos x_i)``.

    ``u*(x) = (1 - |x|²) Σ_{i<d} c_i sin(x_i + 3 cos x_{i+1} + x_{i+1} cos x_i)`` with the
    deterministic ``c_i = tanh(4 i / (d - 1) - 2)``, ``i = 0 .. d - 2`` (the STDE reference
    code's ``PoissonHouman``).

    Example:
      >>> houman_solution(3).coefficients.round(3).tolist()
      [-0.964, 0.0]
    """
    if d < 2:
        raise ValueError(f"Houman's solution needs d >= 2, got d={d}")
    coefficients = np.tanh(4.0 * np.arange(d - 1) / (d - 1) - 2.0)
    return PairSolution(2, coefficients, cos_scale=3.0)


def sample_ball(key: Array, n: int, d: int, dtype: Any = jnp.float32) -> Array:
    """``n`` points uniform in the unit ball of ``R^d``.

    Example:
      >>> import jax
      >>> x = sample_ball(jax.random.PRNGKey(0), 5, 3)
      >>> x.shape, bool((jnp.linalg.norm(x, axis=-1) <= 1.0).all())
      ((5, 3), True)
    """
    k_dir, k_rad = jax.random.split(key)
    direction = jax.random.normal(k_dir, (n, d), dtype)
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    radius = jax.random.uniform(k_rad, (n, 1), dtype) ** (1.0 / d)
    return direction * radius


def with_time(space: Callable[[Array, int], Array], horizon: float = 1.0
              ) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: points ``(x, t)`` with ``x`` from ``space`` and ``t ~ U[0, horizon]``.

    Example:
      >>> import jax
      >>> sample = with_time(lambda key, n: sample_ball(key, n, 2), horizon=0.3)
      >>> z = sample(jax.random.PRNGKey(0), 4)
      >>> z.shape, bool((z[:, -1] <= 0.3).all())
      ((4, 3), True)
    """

    def sample(key: Array, n: int) -> Array:
        k_x, k_t = jax.random.split(key)
        x, t = space(k_x, n), horizon * jax.random.uniform(k_t, (n, 1))
        dtype = np.promote_types(x.dtype, t.dtype)   # explicit, for the strict modes
        return jnp.concatenate([x.astype(dtype), t.astype(dtype)], -1)

    return sample


def sample_gaussian(d: int) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: ``n`` points ``x ~ N(0, I_d)`` (the STDE paper's unbounded domains).

    Example:
      >>> import jax
      >>> sample_gaussian(3)(jax.random.PRNGKey(0), 2).shape
      (2, 3)
    """
    return lambda key, n: jax.random.normal(key, (n, d))


def sample_box(d: int) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: ``n`` points uniform in the box ``[-1, 1]^d``.

    Example:
      >>> import jax
      >>> x = sample_box(2)(jax.random.PRNGKey(0), 3)
      >>> x.shape, bool((jnp.abs(x) <= 1.0).all())
      ((3, 2), True)
    """
    return lambda key, n: jax.random.uniform(key, (n, d), minval=-1.0, maxval=1.0)


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
      exact: ``u*(z)`` for one point ``z`` of shape ``(input_dim,)`` (for the reference-
        value problems: the reference value, valid at ``evaluation_points`` only).
      trivial: the untrained baseline predictor (``(1 - |x|²) u*(0)``, or the initial or
        terminal condition for time-dependent problems: the ansatz with ``net = 0``).
      ansatz: ``ansatz(net, z)``: the network ``net(z)`` wrapped so that boundary and
        initial conditions hold exactly.
      sample: ``sample(key, n) -> (n, input_dim)`` collocation or test points.
      residual: ``residual(u, z, key, estimate) -> (m,)``: the residual components of
        ``u`` at ``z`` (``m = 1`` except for the gradient-enhanced equations).
      operator: a factory for the second-order operator ``L`` that ``estimate`` applies
        (``None`` when the residual computes its own derivatives, as KdV does).
      sdgd_directions: the directions whose second derivatives sum to ``L`` (rows), for
        the SDGD baseline; ``None`` means the coordinate axes.
      description: one line for the command-line help.
      evaluation_points: fixed points where ``exact`` is known (the STDE paper's
        reference values at ``(x, t) = (0, 0)``); ``None``: score on sampled points.
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
    evaluation_points: np.ndarray | None = None

    @property
    def time_dependent(self) -> bool:
        """Whether the last input is time (``input_dim == dim + 1``)."""
        return self.input_dim == self.dim + 1

    def test_points(self, key: Array, n: int) -> Array:
        """Held-out points: ``n`` fresh samples, or the fixed ``evaluation_points``.

        Example:
          >>> import jax
          >>> make_equation("allen_cahn_time", 10).test_points(jax.random.PRNGKey(0), 50).shape
          (1, 11)
        """
        if self.evaluation_points is None:
            return self.sample(key, n)
        return jnp.asarray(self.evaluation_points, jnp.float32)


DEFAULT_DIM = 100
"""The spatial dimension of the equations in any ``d`` when none is given."""


def _ball_ansatz(net: ScalarFn, x: Array) -> Array:
    return (1.0 - jnp.sum(x ** 2)) * net(x)


def _laplacian_operator() -> Any:
    import stde.operators as ops  # noqa: PLC0415  (imported lazily: examples run without it)

    return ops.laplacian()


def _value_laplacian_time_derivative(u: ScalarFn, z: Array, key: Array, estimate: Estimate
                                     ) -> tuple[Array, Array, Array]:
    """``(u, Δ_x u, ∂_t u)`` at ``z = (x, t)``: ``Δ_x`` by ``estimate``, ``∂_t`` by a JVP."""
    x, t = z[:-1], z[-1]
    of_x_t = lambda x_, t_: u(jnp.concatenate([x_, t_[None]]))  # noqa: E731
    value, lap = estimate(of_x_t, x, t, key=key)
    _, u_t = jax.jvp(lambda t_: of_x_t(x, t_), (t,), (jnp.ones_like(t),))
    return value, lap, u_t


# --- Elliptic problems on the unit ball ---------------------------------------------------


def _elliptic_forcing(solution: PairSolution, nonlinearity: Callable[[Array], Array],
                      laplacian_sign: float) -> ScalarFn:
    """``f = laplacian_sign · Δu* + nonlinearity(u*)`` in closed form."""

    def forcing(x: Array) -> Array:
        value, _, hessdiag = solution.value_grad_hessdiag(x)
        return laplacian_sign * hessdiag.sum(-1) + nonlinearity(value)

    return forcing


def _elliptic(name: str, solution: PairSolution, nonlinearity: Callable[[Array], Array],
              laplacian_sign: float, description: str) -> Equation:
    """``laplacian_sign · Δu + nonlinearity(u) = f`` on the unit ball, ``u = 0`` on its sphere."""
    d = solution.coefficients.size + solution.body - 1
    u0 = float(solution.value(jnp.zeros(d)))
    forcing = _elliptic_forcing(solution, nonlinearity, laplacian_sign)

    def residual(u: ScalarFn, x: Array, key: Array, estimate: Estimate) -> Array:
        value, lap = estimate(u, x, key=key)
        return (laplacian_sign * lap + nonlinearity(value) - forcing(x))[None]

    return Equation(
        name=name, dim=d, default_dim=DEFAULT_DIM, input_dim=d, exact=solution.value,
        trivial=lambda x: (1.0 - jnp.sum(x ** 2, -1)) * u0,
        ansatz=_ball_ansatz, sample=lambda key, n: sample_ball(key, n, d),
        residual=residual, operator=_laplacian_operator, sdgd_directions=None,
        description=description)


def _no_nonlinearity(u: Array) -> Array:
    return 0.0 * u


def _allen_cahn_term(u: Array) -> Array:
    return u - u ** 3


def poisson(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``-Δu = f`` on the unit ball, two-body solution.

    Example:
      >>> poisson(4).input_dim
      4
    """
    return _elliptic("poisson", make_solution(d, 2, seed), _no_nonlinearity, -1.0,
                     "-Δu = f, two-body solution on the unit ball")


def poisson_houman(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``-Δu = f`` on the unit ball with Houman's solution (:func:`houman_solution`).

    The STDE paper's ``PoissonHouman``; its coefficients are deterministic (``seed`` is
    unused). The paper writes ``Δu = g``: the sign of the forcing is immaterial.

    Example:
      >>> poisson_houman(4).name
      'poisson_houman'
    """
    del seed
    return _elliptic("poisson_houman", houman_solution(d), _no_nonlinearity, -1.0,
                     "-Δu = f, Houman's solution (tanh-weighted two-body) on the unit ball")


def poisson_3body(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``-Δu = f`` on the unit ball, three-body solution.

    Example:
      >>> poisson_3body(3).dim
      3
    """
    return _elliptic("poisson_3body", make_solution(d, 3, seed), _no_nonlinearity, -1.0,
                     "-Δu = f, three-body solution on the unit ball")


def allen_cahn(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + u - u³ = f`` on the unit ball, two-body solution.

    Example:
      >>> allen_cahn(4).input_dim
      4
    """
    return _elliptic("allen_cahn", make_solution(d, 2, seed), _allen_cahn_term, 1.0,
                     "Δu + u - u³ = f, two-body solution on the unit ball")


def allen_cahn_3body(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + u - u³ = f`` on the unit ball, three-body solution.

    Example:
      >>> allen_cahn_3body(3).dim
      3
    """
    return _elliptic("allen_cahn_3body", make_solution(d, 3, seed), _allen_cahn_term, 1.0,
                     "Δu + u - u³ = f, three-body solution on the unit ball")


def sine_gordon(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + sin u = f`` on the unit ball, two-body solution.

    Example:
      >>> sine_gordon(4).input_dim
      4
    """
    return _elliptic("sine_gordon", make_solution(d, 2, seed), jnp.sin, 1.0,
                     "Δu + sin u = f, two-body solution on the unit ball")


def sine_gordon_3body(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``Δu + sin u = f`` on the unit ball, three-body solution.

    Example:
      >>> sine_gordon_3body(3).dim
      3
    """
    return _elliptic("sine_gordon_3body", make_solution(d, 3, seed), jnp.sin, 1.0,
                     "Δu + sin u = f, three-body solution on the unit ball")


# --- Amortized gradient-enhanced PINNs (gPINN) ------------------------------------------

GPINN_WEIGHT = 0.1
GPINN_SAMPLES = 16


def third_order_terms(u: ScalarFn, x: Array, i: Array, j: Array
                      ) -> tuple[Array, Array, Array]:
    """``(u_ii, u_j, u_iij)`` at ``x`` from one 7-jet.

    The curve ``x(s) = x + (s²/2!) e_i + (s³/3!) e_j`` has, by Faà di Bruno, the output
    coefficients ``y_3 = u_j``, ``y_4 = 3 u_ii`` (``4!/(2!·2!²) = 3``) and
    ``y_7 = 105 u_iij`` (``7!/(2!·2!²·3!) = 105``); no other partition of 3, 4 or 7
    into parts 2 and 3 exists. The identities hold for ``i = j`` too.

    Args:
      u: scalar function of ``x``.
      x: one point, shape ``(d,)``.
      i: the coordinate differentiated twice (integer scalar).
      j: the coordinate differentiated once (integer scalar).

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda x: x[0] ** 2 * x[1] + x[1]
      >>> [float(v) for v in third_order_terms(f, jnp.array([1.0, 2.0]), 0, 1)]
      [4.0, 2.0, 2.0]
    """
    d = x.shape[-1]
    e_i = jax.nn.one_hot(i, d, dtype=x.dtype)
    e_j = jax.nn.one_hot(j, d, dtype=x.dtype)
    _, series = stde.jet(u, (x,), ((None, e_i, e_j, None, None, None, None),))
    return series[3] / 3.0, series[2], series[6] / 105.0


def _gpinn(name: str, solution: PairSolution, nonlinearity: Callable[[Array], Array],
           derivative: Callable[[Array], Array], laplacian_sign: float, description: str
           ) -> Equation:
    """The elliptic problem with the amortized gradient-enhanced residual.

    Residual components: ``r = laplacian_sign · Δu + N(u) - f`` (``Δu`` by ``estimate``)
    and ``√(w/n) ∂_j r`` for ``n`` sampled coordinates ``j``, so the squared residual
    estimates ``r² + w |∇r|² / d`` with ``w = GPINN_WEIGHT``. Each ``∂_j r =
    laplacian_sign · Σ_i u_iij + N'(u) u_j - ∂_j f`` uses one 7-jet with a sampled ``i``
    (:func:`third_order_terms`): ``Σ_i u_iij ≈ d u_iij``, unbiased. With ``key=None`` all
    ``d`` coordinates ``j`` and, for each, all ``d`` indices ``i`` are used (exact;
    ``d²`` jets, for tests). ``∂_j f`` is the gradient of the closed-form forcing.
    """
    base = _elliptic(name, solution, nonlinearity, laplacian_sign, description)
    forcing = _elliptic_forcing(solution, nonlinearity, laplacian_sign)
    forcing_gradient = jax.grad(forcing)

    def residual(u: ScalarFn, x: Array, key: Array | None, estimate: Estimate) -> Array:
        d = x.shape[-1]
        if key is None:
            k_op, cols, rows = None, jnp.arange(d), jnp.tile(jnp.arange(d), (d, 1))
        else:
            k_op, k_rows, k_cols = jax.random.split(key, 3)
            n = min(GPINN_SAMPLES, d)
            cols = jax.random.choice(k_cols, d, (n,), replace=False)
            rows = jax.random.randint(k_rows, (n, 1), 0, d)
        value, lap = estimate(u, x, key=k_op)
        r = laplacian_sign * lap + nonlinearity(value) - forcing(x)
        per_pair = jax.vmap(lambda i, j: third_order_terms(u, x, i, j), (0, None))
        _, u_j, u_iij = jax.vmap(per_pair)(rows, cols)
        grad_lap = d * jnp.mean(u_iij, -1)
        grad_r = (laplacian_sign * grad_lap + derivative(value) * u_j[:, 0]
                  - forcing_gradient(x)[cols])
        return jnp.concatenate([r[None], math.sqrt(GPINN_WEIGHT / cols.size) * grad_r])

    return dataclasses.replace(base, residual=residual)


def poisson_gpinn(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """:func:`poisson` with the amortized gradient-enhanced residual (see :func:`_gpinn`).

    Example:
      >>> poisson_gpinn(4).name
      'poisson_gpinn'
    """
    return _gpinn("poisson_gpinn", make_solution(d, 2, seed), _no_nonlinearity,
                  _no_nonlinearity, -1.0,
                  "-Δu = f, two-body solution, amortized gPINN (7-jets for ∂_j Δu)")


def allen_cahn_gpinn(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """:func:`allen_cahn` with the amortized gradient-enhanced residual.

    Example:
      >>> allen_cahn_gpinn(4).name
      'allen_cahn_gpinn'
    """
    return _gpinn("allen_cahn_gpinn", make_solution(d, 2, seed), _allen_cahn_term,
                  lambda u: 1.0 - 3.0 * u ** 2, 1.0,
                  "Δu + u - u³ = f, two-body solution, amortized gPINN (7-jets)")


def sine_gordon_gpinn(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """:func:`sine_gordon` with the amortized gradient-enhanced residual.

    Example:
      >>> sine_gordon_gpinn(4).name
      'sine_gordon_gpinn'
    """
    return _gpinn("sine_gordon_gpinn", make_solution(d, 2, seed), jnp.sin, jnp.cos, 1.0,
                  "Δu + sin u = f, two-body solution, amortized gPINN (7-jets)")


# --- Fokker–Planck ------------------------------------------------------------------------


def fokker_planck_scales(d: int) -> np.ndarray:
    """Diffusion scales ``σ_i`` of :func:`fokker_planck`, from 0.5 to 1.5.

    Example:
      >>> fokker_planck_scales(3).tolist()
      [0.5, 1.0, 1.5]
    """
    return np.linspace(0.5, 1.5, d) if d > 1 else np.ones(1)


def fokker_planck(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``½ tr(σσᵀ ∇²u) - x·∇u - u = f`` with diagonal ``σ``, two-body solution.

    The weighted Laplacian ``tr(σσᵀ∇²u)`` is the operator estimated by STDE
    (``ops.weighted_laplacian(σ)``, directions = the columns of ``σ``); the drift term
    is one forward-mode JVP.

    Example:
      >>> fokker_planck(3).sdgd_directions.shape
      (3, 3)
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
        name="fokker_planck", dim=d, default_dim=DEFAULT_DIM, input_dim=d, exact=solution.value,
        trivial=lambda x: (1.0 - jnp.sum(x ** 2, -1)) * u0,
        ansatz=_ball_ansatz, sample=lambda key, n: sample_ball(key, n, d),
        residual=residual, operator=operator, sdgd_directions=np.diag(scales),
        description="½tr(σσᵀ∇²u) - x·∇u - u = f (OU generator), two-body solution")


# --- Parabolic problems with exact solutions -----------------------------------------------


def heat(d: int = DEFAULT_DIM, seed: int = 0, solution: PairSolution | None = None) -> Equation:
    """``u_t = Δu + (1 - u²)/(1 + u²) + f`` on ``B × [0, 1]``, ``u* = e^{-t} u*_2body(x)``.

    Points are ``z = (x, t)``; the ansatz ``u*(x, 0) + t (1 - |x|²) net(z)`` satisfies the
    initial and boundary conditions exactly, and the trivial predictor is the initial
    condition ``u*(x, 0)`` (the ansatz with ``net = 0``). ``solution`` replaces the
    two-body solution (default :func:`make_solution` with ``seed``).

    Example:
      >>> heat(4).input_dim
      5
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

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        value, lap, u_t = _value_laplacian_time_derivative(u, z, key, estimate)
        return (u_t - lap - source(value) - forcing(z))[None]

    return Equation(
        name="heat", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1, exact=exact,
        trivial=lambda z: solution.value(z[..., :-1]), ansatz=ansatz,
        sample=with_time(lambda key, n: sample_ball(key, n, d)),
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
    ``d = 10⁶``). A predictor of ``|x|²`` and ``t`` alone does well here
    (:func:`radial_baseline_error`); :func:`ridge` is the 10⁶-dimensional problem whose
    solution varies with ``x``.

    Example:
      >>> heat_averaged(4).name
      'heat_averaged'
    """
    base = make_solution(d, 2, seed)
    solution = PairSolution(2, (1.0 + base.coefficients) / (d - 1))
    return dataclasses.replace(
        heat(d, seed, solution=solution), name="heat_averaged",
        description="u_t = Δu + (1-u²)/(1+u²) + f on ball×[0,1], averaged two-body solution")



def ridge_directions(d: int = DEFAULT_DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The unit vectors ``a, b`` of :func:`ridge`: random signs over ``√d``.

    Example:
      >>> a, b = ridge_directions(4)
      >>> float(a @ a), float(b @ b)
      (1.0, 1.0)
    """
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], (2, d))
    return signs[0] / math.sqrt(d), signs[1] / math.sqrt(d)


def ridge(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``u_t = Δu + u - u³ + f`` on ``R^d × [0, 1]``, a ridge solution that varies with ``x``.

    ``u*(x, t) = cos t · sin(a·x) + sin t · sin(b·x)`` with ``a, b`` random-sign unit
    vectors (:func:`ridge_directions`) and ``x ~ N(0, I_d)``, so ``a·x, b·x ~ N(0, 1)`` at
    every ``d`` (equivalently, ``|a| = |b| = √d`` for points of the unit-ball scale
    ``x/√d``). ``Δu* = |a|² ∂_p² g + 2 a·b ∂_p∂_q g + |b|² ∂_q² g = -u*`` (``∂_p∂_q g = 0``),
    so ``f = u*_t + u*³`` in closed form. The ansatz ``u*(x, 0) + t net(z)`` holds the
    initial condition; there is no boundary. ``u*`` is odd in ``x`` and ``|x|²`` is even,
    so the best predictor using only ``|x|²`` and ``t`` is ``≈ 0`` (relative L2 error
    ``≈ 1``), and the trivial predictor ``u*(x, 0) = sin(a·x)`` has error
    ``√(2 - 2 sin 1) ≈ 0.56``. Meant for ``d = 10⁶``: every term is ``O(d)``. Training
    must find ``b`` (``d`` random signs) from one residual per point, so it needs at
    least about ``d`` residual points before its error falls below the trivial
    predictor's (at ``d = 10⁶``, all of the STDE paper's 10⁴ steps of 100 points);
    docs/design.md, "Pitfalls", has the measured counts.

    Example:
      >>> import jax.numpy as jnp
      >>> equation = ridge(4)
      >>> float(equation.exact(jnp.zeros(5)))
      0.0
    """
    a_np, b_np = ridge_directions(d, seed)

    def projections(x: Array) -> tuple[Array, Array]:
        return x @ jnp.asarray(a_np, x.dtype), x @ jnp.asarray(b_np, x.dtype)

    def exact(z: Array) -> Array:
        p, q = projections(z[..., :-1])
        t = z[..., -1]
        return jnp.cos(t) * jnp.sin(p) + jnp.sin(t) * jnp.sin(q)

    def forcing(z: Array) -> Array:
        p, q = projections(z[..., :-1])
        t = z[..., -1]
        value = exact(z)
        u_t = -jnp.sin(t) * jnp.sin(p) + jnp.cos(t) * jnp.sin(q)
        lap = float(a_np @ a_np) * -jnp.cos(t) * jnp.sin(p) + \
            float(b_np @ b_np) * -jnp.sin(t) * jnp.sin(q)
        return u_t - lap - _allen_cahn_term(value)

    def initial(z: Array) -> Array:
        return exact(z.at[..., -1].set(0.0))

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        value, lap, u_t = _value_laplacian_time_derivative(u, z, key, estimate)
        return (u_t - lap - _allen_cahn_term(value) - forcing(z))[None]

    return Equation(
        name="ridge", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1, exact=exact, trivial=initial,
        ansatz=lambda net, z: initial(z) + z[-1] * net(z),
        sample=with_time(sample_gaussian(d)), residual=residual,
        operator=_laplacian_operator, sdgd_directions=None,
        description="u_t = Δu + u - u³ + f on R^d×[0,1], ridge u* = cos t sin(a·x) + "
                    "sin t sin(b·x)")


def wave(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """The wave equation ``u_tt = Δu`` on ``B × [0, 1]``, ``u* = cosh t Σ_i sinh x_i``.

    As in the STDE reference code: the ansatz ``Σ_i sinh x_i + t² net(z)`` holds
    ``u(x, 0) = Σ_i sinh x_i`` and ``u_t(x, 0) = 0``; there is no boundary condition.
    ``u_tt`` comes from a 2-jet along ``t``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(wave(2).exact(jnp.array([0.5, 0.0, 1.0]))), 6)
      0.804092
    """
    del seed

    def initial(z: Array) -> Array:
        return jnp.sum(jnp.sinh(z[..., :-1]), -1)

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        x, t = z[:-1], z[-1]
        of_x_t = lambda x_, t_: u(jnp.concatenate([x_, t_[None]]))  # noqa: E731
        _, lap = estimate(of_x_t, x, t, key=key)
        _, (_, u_tt) = stde.jet(lambda t_: of_x_t(x, t_), (t,), ((1.0, 0.0),))
        return (u_tt - lap)[None]

    return Equation(
        name="wave", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1,
        exact=lambda z: jnp.cosh(z[..., -1]) * initial(z), trivial=initial,
        ansatz=lambda net, z: initial(z) + z[-1] ** 2 * net(z),
        sample=with_time(lambda key, n: sample_ball(key, n, d)), residual=residual,
        operator=_laplacian_operator, sdgd_directions=None,
        description="u_tt = Δu on ball×[0,1], u* = cosh t Σ sinh x_i")


# --- The STDE paper's terminal-value problems (HJB, BSB, semilinear parabolic) ------------


def _terminal_ansatz(terminal: ScalarFn, horizon: float, scaled: bool = False
                     ) -> Callable[[ScalarFn, Array], Array]:
    """``g(x) + (T - t) net(z)`` (``scaled``: ``g(x) + (T - t) net(z) g(x)``): ``u(x, T) = g``."""

    def ansatz(net: ScalarFn, z: Array) -> Array:
        g = terminal(z[:-1])
        return g + (horizon - z[-1]) * net(z) * (g if scaled else 1.0)

    return ansatz


HJB_LIN_EXPONENT = 1.75


def hjb_lin(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """HJB-LIN: ``u_t + Δu - (1/d) Σ_i |∂_i u|^c + 2 = 0``, ``c = 1.75``, on ``R^d × [0, 1]``.

    Exact solution ``u* = Σ_i x_i + 1 - t`` (terminal condition ``u(x, 1) = Σ_i x_i``),
    points ``x ~ N(0, I_d)``, ``t ~ U[0, 1]``. The gradient term is the *mean* of
    ``|∂_i u|^c`` over coordinates, as in the STDE reference code (the paper's
    ``(1/d)|∇u|^c`` with the Euclidean norm is not solved by ``u*`` unless ``d = 1``); the
    gradient is one reverse-mode pass.

    Example:
      >>> import jax.numpy as jnp
      >>> float(hjb_lin(3).exact(jnp.array([1.0, 2.0, 3.0, 0.5])))
      6.5
    """
    del seed
    horizon = 1.0

    def terminal(x: Array) -> Array:
        return jnp.sum(x, -1)

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        x, t = z[:-1], z[-1]
        _, lap = estimate(lambda x_, t_: u(jnp.concatenate([x_, t_[None]])), x, t, key=key)
        gradient = jax.grad(u)(z)
        penalty = jnp.mean(jnp.abs(gradient[:-1]) ** HJB_LIN_EXPONENT)
        return (gradient[-1] + lap - penalty + 2.0)[None]

    return Equation(
        name="hjb_lin", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1,
        exact=lambda z: terminal(z[..., :-1]) + horizon - z[..., -1],
        trivial=lambda z: terminal(z[..., :-1]), ansatz=_terminal_ansatz(terminal, horizon),
        sample=with_time(sample_gaussian(d), horizon), residual=residual,
        operator=_laplacian_operator, sdgd_directions=None,
        description="HJB-LIN u_t + Δu - mean_i |∂_i u|^1.75 = -2, u* = Σx_i + 1 - t")


# Nodes of the trapezoidal rule in s = log λ for 1/(1+r²) = ∫ e^{-λ(1+r²)} dλ (see hjb_lqg).
LQG_STEP = 0.25
LQG_NODES = np.arange(-40.0, 8.0 + LQG_STEP / 2, LQG_STEP)


def hjb_lqg_solution(z: Array, horizon: float = 1.0) -> Array:
    """``u*(x, t) = -log E[2 / (1 + |x + √2 W_{T-t}|²)]``: HJB-LQG's solution with ``μ = 1``.

    By the Cole–Hopf transform ``v = e^{-u}`` solves ``v_t + Δv = 0``. Writing
    ``2/(1 + |y|²) = 2 ∫_0^∞ e^{-λ(1 + |y|²)} dλ`` and averaging each exponential over
    the Gaussian ``y = x + √(2(T-t)) Z`` gives ``v = 2 ∫_0^∞ e^{-λ} (1 + aλ)^{-d/2}
    exp(-λ|x|²/(1 + aλ)) dλ`` with ``a = 4(T - t)``. The integral is a trapezoidal sum in
    ``s = log λ`` (``LQG_NODES``); every term is itself an exact solution of the backward
    heat equation, so ``u*`` solves HJB-LQG exactly, with a terminal value equal to
    ``log((1 + |x|²)/2)`` up to the quadrature error (below ``10⁻¹⁰``; the reference code
    uses Monte Carlo).

    Args:
      z: ``(x, t)``, shape ``(..., d + 1)``.
      horizon: the terminal time ``T``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([1.0, 2.0])
      >>> u_T = hjb_lqg_solution(jnp.concatenate([x, jnp.ones(1)]))
      >>> abs(float(u_T - jnp.log((1.0 + x @ x) / 2.0))) < 1e-6
      True
    """
    x, t = z[..., :-1], z[..., -1:]
    d = x.shape[-1]
    s = jnp.asarray(LQG_NODES, z.dtype)
    lam = jnp.exp(s)
    a = 4.0 * (horizon - t)
    spread = 1.0 + a * lam
    r2 = jnp.sum(x ** 2, -1, keepdims=True)
    log_terms = (s + math.log(LQG_STEP) - lam - lam * r2 / spread
                 - 0.5 * d * jnp.log(spread))
    return -(math.log(2.0) + jax.nn.logsumexp(log_terms, axis=-1))


def hjb_lqg(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """HJB-LQG: ``u_t + Δu - μ|∇u|² = 0``, ``μ = 1``, on ``R^d × [0, 1]``.

    Terminal condition ``u(x, 1) = log((1 + |x|²)/2)``; the solution
    (:func:`hjb_lqg_solution`) depends on ``|x|²`` and ``t`` only. Points
    ``x ~ N(0, I_d)``, ``t ~ U[0, 1]``; the ansatz ``g(x) + (1 - t) net(z)``.

    Example:
      >>> hjb_lqg(3).input_dim
      4
    """
    del seed
    horizon = 1.0

    def terminal(x: Array) -> Array:
        return hjb_lqg_solution(jnp.concatenate([x, jnp.full(x.shape[:-1] + (1,), horizon,
                                                             x.dtype)], -1), horizon)

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        x, t = z[:-1], z[-1]
        _, lap = estimate(lambda x_, t_: u(jnp.concatenate([x_, t_[None]])), x, t, key=key)
        gradient = jax.grad(u)(z)
        return (gradient[-1] + lap - jnp.sum(gradient[:-1] ** 2))[None]

    return Equation(
        name="hjb_lqg", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1,
        exact=lambda z: hjb_lqg_solution(z, horizon), trivial=lambda z: terminal(z[..., :-1]),
        ansatz=_terminal_ansatz(terminal, horizon),
        sample=with_time(sample_gaussian(d), horizon), residual=residual,
        operator=_laplacian_operator, sdgd_directions=None,
        description="HJB-LQG u_t + Δu - |∇u|² = 0, u(x,1) = log((1+|x|²)/2)")


BSB_VOLATILITY = 0.4
BSB_RATE = 0.05


def bsb(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """Black–Scholes–Barenblatt: ``u_t + ½σ² Σ_i x_i² ∂_i²u - r(u - x·∇u) = 0``.

    ``σ = 0.4``, ``r = 0.05``, on ``R^d × [0, 1]`` with ``u(x, 1) = |x|²``; exact solution
    ``u* = exp((r + σ²)(1 - t)) |x|²``. The operator ``Σ_i x_i² ∂_i²`` at ``x`` is the
    Laplacian in ``y`` of ``y ↦ u(x + x ⊙ y)`` at ``y = 0``, so the trainer's Laplacian
    estimator (STDE, exact or SDGD) applies unchanged. The ansatz is the reference
    code's ``|x|² + (1 - t) net(z) |x|²``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(bsb(2).exact(jnp.array([1.0, 1.0, 1.0])))
      2.0
    """
    del seed
    horizon = 1.0

    def terminal(x: Array) -> Array:
        return jnp.sum(x ** 2, -1)

    def exact(z: Array) -> Array:
        growth = jnp.exp((BSB_RATE + BSB_VOLATILITY ** 2) * (horizon - z[..., -1]))
        return growth * terminal(z[..., :-1])

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        x, t = z[:-1], z[-1]

        def stretched(y: Array, x_: Array, t_: Array) -> Array:
            return u(jnp.concatenate([x_ + x_ * y, t_[None]]))

        value, scaled = estimate(stretched, jnp.zeros_like(x), x, t, key=key)
        gradient = jax.grad(u)(z)
        return (gradient[-1] + 0.5 * BSB_VOLATILITY ** 2 * scaled
                - BSB_RATE * (value - jnp.dot(x, gradient[:-1])))[None]

    return Equation(
        name="bsb", dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1, exact=exact,
        trivial=lambda z: terminal(z[..., :-1]),
        ansatz=_terminal_ansatz(terminal, horizon, scaled=True),
        sample=with_time(sample_gaussian(d), horizon), residual=residual,
        operator=_laplacian_operator, sdgd_directions=None,
        description="Black-Scholes-Barenblatt, σ=0.4, r=0.05, u* = e^{0.21(1-t)}|x|²")


PARABOLIC_HORIZON = 0.3

# u(0, 0) by the multilevel Picard method, as the STDE paper and its reference code list
# them (sine_gordon_time's values are of u/d).
REFERENCE_VALUES: dict[str, dict[int, float]] = {
    "semilinear_heat_time": {10: 0.47006, 100: 0.31674, 1000: 0.28753, 10000: 0.28433},
    "allen_cahn_time": {10: 0.89060, 100: 1.04510, 1000: 1.09100, 10000: 1.11402},
    "sine_gordon_time": {10: 0.3229470, 100: 0.0528368, 1000: 0.0055896, 10000: 0.0005621},
}


def sample_brownian(d: int, horizon: float = PARABOLIC_HORIZON
                    ) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: ``t ~ U[0, T]``, ``x = √(2t) N(0, I_d)`` (Brownian paths from 0).

    Example:
      >>> import jax
      >>> sample_brownian(3)(jax.random.PRNGKey(0), 2).shape
      (2, 4)
    """

    def sample(key: Array, n: int) -> Array:
        k_x, k_t = jax.random.split(key)
        t = horizon * jax.random.uniform(k_t, (n, 1))
        return jnp.concatenate([jnp.sqrt(2.0 * t) * jax.random.normal(k_x, (n, d)), t], -1)

    return sample


def _terminal_value_problem(name: str, d: int, terminal: ScalarFn,
                            nonlinearity: Callable[[Array], Array], scale: float,
                            description: str) -> Equation:
    """``u_t + Δu + nonlinearity(u) = 0`` on ``R^d × [0, T]``, scored at ``(0, 0)`` only."""
    reference = REFERENCE_VALUES[name].get(d, math.nan) * scale

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        value, lap, u_t = _value_laplacian_time_derivative(u, z, key, estimate)
        return (u_t + lap + nonlinearity(value))[None]

    return Equation(
        name=name, dim=d, default_dim=DEFAULT_DIM, input_dim=d + 1,
        exact=lambda z: jnp.full(z.shape[:-1], reference, z.dtype),
        trivial=lambda z: terminal(z[..., :-1]),
        ansatz=_terminal_ansatz(terminal, PARABOLIC_HORIZON),
        sample=sample_brownian(d), residual=residual, operator=_laplacian_operator,
        sdgd_directions=None, description=description,
        evaluation_points=np.zeros((1, d + 1)))


def _quadratic_decay(x: Array) -> Array:
    return 5.0 / (10.0 + 2.0 * jnp.sum(x ** 2, -1))


def semilinear_heat_time(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``u_t + Δu + (1 - u²)/(1 + u²) = 0``, ``u(x, 0.3) = 5/(10 + 2|x|²)``; paper's reference.

    The STDE paper's ``SemilinearHeatTime``: points along Brownian paths
    (:func:`sample_brownian`), scored against the multilevel-Picard value of ``u(0, 0)``
    (``REFERENCE_VALUES``: ``d`` = 10, 100, 1000, 10⁴; elsewhere ``exact`` is NaN). The
    ansatz ``g(x) + (0.3 - t) net(z)`` holds the terminal condition.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(semilinear_heat_time(10).exact(jnp.zeros(11))), 5)
      0.47006
    """
    del seed
    return _terminal_value_problem(
        "semilinear_heat_time", d, _quadratic_decay, lambda u: (1.0 - u ** 2) / (1.0 + u ** 2),
        1.0, "u_t + Δu + (1-u²)/(1+u²) = 0, u(x,0.3) = 5/(10+2|x|²), reference u(0,0)")


def allen_cahn_time(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``u_t + Δu + u - u³ = 0``, ``u(x, 0.3) = arctan(max_i x_i)``; the paper's reference.

    The STDE paper's ``AllenCahnTime`` (see :func:`semilinear_heat_time`).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(allen_cahn_time(100).exact(jnp.zeros(101))), 5)
      1.0451
    """
    del seed
    return _terminal_value_problem(
        "allen_cahn_time", d, lambda x: jnp.arctan(jnp.max(x, -1)), _allen_cahn_term, 1.0,
        "u_t + Δu + u - u³ = 0, u(x,0.3) = arctan(max_i x_i), reference u(0,0)")


def sine_gordon_time(d: int = DEFAULT_DIM, seed: int = 0) -> Equation:
    """``u_t + Δu + d sin(u/d) = 0``, ``u(x, 0.3) = 5d/(10 + 2|x|²)``; the paper's reference.

    The STDE paper's ``SineGordonTime`` (see :func:`semilinear_heat_time`); its solution
    scales with ``d``, and so does the reference value.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(sine_gordon_time(10).exact(jnp.zeros(11))), 6)
      3.22947
    """
    del seed
    return _terminal_value_problem(
        "sine_gordon_time", d, lambda x: d * _quadratic_decay(x),
        lambda u: d * jnp.sin(u / d), float(d),
        "u_t + Δu + d sin(u/d) = 0, u(x,0.3) = 5d/(10+2|x|²), reference u(0,0)")


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

    Example:
      >>> import jax.numpy as jnp
      >>> terms = kdv_derivatives(lambda z: z[0] ** 4 * z[1], jnp.array([1.0, 2.0]))
      >>> float(terms["u_xxxx"]), float(terms["u_xxxt"])
      (48.0, 24.0)
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
    """``(r, ∂_x r, ∂_t r)`` for ``r = u_t + u u_x + α u_xxx``.

    Example:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([-0.3, 0.4])
      >>> bool(jnp.allclose(kdv_residuals(kdv_derivatives(kdv_soliton, z)), 0.0, atol=1e-3))
      True
    """
    u, u_x, u_t = terms["u"], terms["u_x"], terms["u_t"]
    r = u_t + u * u_x + dispersion * terms["u_xxx"]
    r_x = terms["u_xt"] + u_x ** 2 + u * terms["u_xx"] + dispersion * terms["u_xxxx"]
    r_t = terms["u_tt"] + u_t * u_x + u * terms["u_xt"] + dispersion * terms["u_xxxt"]
    return jnp.stack([r, r_x, r_t])


def box_interpolant(solution: ScalarFn, z: Array) -> Array:
    """``A(x, t)``: equal to ``solution`` on the walls of ``[-1, 1]^n`` and at ``t = 0``.

    ``A = U - Q[U(·, t) - U(·, 0)]`` with the transfinite (Coons) projector
    ``Q = Π_k (I - P_k)``, ``P_k F = ½(1 - x_k) F|_{x_k=-1} + ½(1 + x_k) F|_{x_k=1}``:
    ``Q F`` vanishes on every wall, and ``U(·, t) - U(·, 0)`` vanishes at ``t = 0``. In
    one dimension this is ``U(x, 0) + ½(1 - x)ΔU(-1) + ½(1 + x)ΔU(1)``.

    Args:
      solution: ``U(z)`` for one point ``z = (x, t)``.
      z: one point, shape ``(n + 1,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> U = lambda z: jnp.sin(z[0] * z[1] + z[2])
      >>> z = jnp.array([1.0, 0.3, 0.7])
      >>> bool(jnp.allclose(box_interpolant(U, z), U(z)))
      True
    """
    x, t = z[:-1], z[-1]

    def change(x_: Array) -> Array:
        return (solution(jnp.concatenate([x_, t[None]]))
                - solution(jnp.concatenate([x_, jnp.zeros_like(t)[None]])))

    def vanishing_on_walls(f: ScalarFn, k: int) -> ScalarFn:
        def g(x_: Array) -> Array:
            return (f(x_) - 0.5 * (1.0 - x_[k]) * f(x_.at[k].set(-1.0))
                    - 0.5 * (1.0 + x_[k]) * f(x_.at[k].set(1.0)))

        return g

    projected = change
    for k in range(x.shape[-1]):
        projected = vanishing_on_walls(projected, k)
    return solution(z) - projected(x)


def wall_blend(solution: ScalarFn, z: Array) -> Array:
    """``A = (1 - B) U(x, t) + B U(x, 0)`` with ``B = Π_k (1 - x_k²)``: cheaper than Coons.

    Equal to ``solution`` on the walls of ``[-1, 1]^n`` (``B = 0``) and at ``t = 0``, from
    two evaluations of ``U`` (:func:`box_interpolant` needs ``2·3^n``; for ``kdv_2d``'s
    training step that made the HLO four times larger and compilation three times slower).

    Args:
      solution: ``U(z)`` for one point ``z = (x, t)``.
      z: one point, shape ``(n + 1,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> U = lambda z: jnp.sin(z[0] * z[1] + z[2])
      >>> bool(jnp.allclose(wall_blend(U, jnp.array([0.2, -1.0, 0.7])), jnp.sin(0.5)))
      True
    """
    bump = jnp.prod(1.0 - z[:-1] ** 2)
    return (1.0 - bump) * solution(z) + bump * solution(z.at[-1].set(0.0))


def _box_problem(name: str, d: int, solution: ScalarFn,
                 residual_terms: Callable[[ScalarFn, Array], Array], description: str,
                 interpolant: Callable[[ScalarFn, Array], Array] = wall_blend) -> Equation:
    """A high-order problem on ``[-1, 1]^d × [0, 1]`` with a hard-constraint ansatz.

    The ansatz ``A(z) + t Π_k(1 - x_k²) net(z)``, ``A = interpolant(solution, z)``, holds
    the solution's values on the walls and at ``t = 0``; ``A`` is also the trivial
    predictor.
    """

    def trivial(z: Array) -> Array:
        return interpolant(solution, z)

    def ansatz(net: ScalarFn, z: Array) -> Array:
        return trivial(z) + z[-1] * jnp.prod(1.0 - z[:-1] ** 2) * net(z)

    def residual(u: ScalarFn, z: Array, key: Array, estimate: Estimate) -> Array:
        del key, estimate
        return residual_terms(u, z)

    return Equation(
        name=name, dim=d, default_dim=d, input_dim=d + 1, exact=solution, trivial=trivial,
        ansatz=ansatz, sample=with_time(sample_box(d)), residual=residual, operator=None,
        sdgd_directions=None, description=description)


def kdv(d: int = 1, seed: int = 0) -> Equation:
    """Gradient-enhanced KdV (the STDE paper's g-KdV) on ``[-1, 1] × [0, 1]``, soliton.

    The ansatz ``A(x, t) + t (1 - x²) net(x, t)`` is exact on the initial line and on
    both walls; ``A`` interpolates the initial condition and the two boundary traces
    (:func:`box_interpolant`), and is also the trivial predictor. The residual vector is
    ``(r, √w ∂_x r, √w ∂_t r)`` with ``w = 0.01`` (gPINN).

    Example:
      >>> kdv().input_dim
      2
    """
    del seed
    if d != 1:
        raise ValueError(f"kdv is one-dimensional in space; got --dim {d}")
    weights = jnp.array([1.0, math.sqrt(KDV_GRADIENT_WEIGHT), math.sqrt(KDV_GRADIENT_WEIGHT)])

    def residual_terms(u: ScalarFn, z: Array) -> Array:
        return weights.astype(z.dtype) * kdv_residuals(kdv_derivatives(u, z))

    return _box_problem(
        "kdv", 1, kdv_soliton, residual_terms,
        "u_t + u u_x + 0.0025 u_xxx = 0, soliton, gradient-enhanced (7-jets)",
        interpolant=box_interpolant)


# 2D KdV: u = 2kB tanh(B ξ), ξ = k x + m y + ω t - ξ0 (see kdv_2d_solution).
KDV2D_WAVENUMBERS = (1.0, 1.0)
KDV2D_STEEPNESS = 0.5
KDV2D_OFFSET = -1.0


def _phase(z: Array, k: float, m: float, omega: float, offset: float) -> Array:
    """``ξ = k x + m y + ω t - ξ0`` of a plane wave at ``z = (x, y, t)``."""
    return k * z[..., 0] + m * z[..., 1] + omega * z[..., 2] - offset


def _planar(name: str, d: int, solution: ScalarFn,
            derivatives: Callable[[ScalarFn, Array], dict[str, Array]],
            residual: Callable[[dict[str, Array]], Array], description: str) -> Equation:
    """A problem in two space dimensions on ``[-1, 1]² × [0, 1]`` (``d`` must be 2)."""
    if d != 2:
        raise ValueError(f"{name} is two-dimensional in space; got --dim {d}")
    return _box_problem(name, 2, solution, lambda u, z: residual(derivatives(u, z)),
                        description)


def kdv_2d_solution(z: Array) -> Array:
    """A travelling kink ``u = 2kB tanh(B(kx + my + ωt - ξ0))`` of the 2D KdV equation.

    ``u_ty + u_xxxy + 3(u_y u_x)_x - u_xx + 2u_yy = 0``: for ``u = φ(ξ)``, ``w = φ'`` obeys
    ``(mω - k² + 2m²) w + k³m w'' + 3k²m w² = 0``, solved by ``w = A sech²(Bξ)`` with
    ``A = 2kB²`` and ``ω = (k² - 2m² - 4k³mB²)/m``. Here ``k = m = 1``, ``B = ½``,
    ``ξ0 = -1``: ``u = tanh((x + y - 2t + 1)/2)``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(kdv_2d_solution(jnp.array([0.0, 0.0, 0.5]))), 6)
      0.0
    """
    k, m = KDV2D_WAVENUMBERS
    b = KDV2D_STEEPNESS
    omega = (k ** 2 - 2.0 * m ** 2 - 4.0 * k ** 3 * m * b ** 2) / m
    return 2.0 * k * b * jnp.tanh(b * _phase(z, k, m, omega, KDV2D_OFFSET))


def _unit(i: int, z: Array) -> Array:
    return jax.nn.one_hot(i, z.shape[-1], dtype=z.dtype)


def kdv_2d_derivatives(u: ScalarFn, z: Array) -> dict[str, Array]:
    """The partials of the 2D KdV residual from one 9-jet and two 3-jets.

    The 9-jet along ``x(s) = z + (s²/2!) e_x + (s³/3!) e_y`` gives ``y_2 = u_x``,
    ``y_3 = u_y``, ``y_4 = 3 u_xx``, ``y_5 = 10 u_xy`` and ``y_9 = 1260 u_xxxy +
    280 u_yyy`` (``9!/(3!·2!³·3!) = 1260``, ``9!/(3!·3!³) = 280``; the STDE paper divides
    by 840). A 3-jet along ``e_y`` gives ``u_yy`` and ``u_yyy``; a 3-jet with ``e_y`` in
    slot 1 and ``e_t`` in slot 2 gives ``y_3 = u_yyy + 3 u_yt``. (The paper's single
    13-jet, ``e_x, e_y, e_t`` in slots 3, 4, 7, mixes terms: ``y_6 = 10 u_xx``,
    ``y_7 = 35 u_xy + u_t``, ``y_11 = 330 u_ty + 5775 u_xyy``, ``y_13 = 200200 u_xxxy +
    17160 u_xxt``.)

    Args:
      u: scalar function of ``z = (x, y, t)``.
      z: one point, shape ``(3,)``.

    Returns:
      ``u, u_x, u_y, u_xx, u_xy, u_yy, u_ty, u_xxxy`` by name.

    Example:
      >>> import jax.numpy as jnp
      >>> terms = kdv_2d_derivatives(lambda z: z[0] ** 3 * z[1] + z[1] ** 3, jnp.ones(3))
      >>> float(terms["u_xxxy"]), float(terms["u_yy"])
      (6.0, 6.0)
    """
    e_x, e_y, e_t = (_unit(i, z) for i in range(3))
    value, high = stde.jet(u, (z,), ((None, e_x, e_y) + (None,) * 6,))
    _, (_, u_yy, u_yyy) = stde.jet(u, (z,), ((e_y, None, None),))
    _, (_, _, mixed) = stde.jet(u, (z,), ((e_y, e_t, None),))
    return {
        "u": value, "u_x": high[1], "u_y": high[2], "u_xx": high[3] / 3.0,
        "u_xy": high[4] / 10.0, "u_yy": u_yy, "u_ty": (mixed - u_yyy) / 3.0,
        "u_xxxy": (high[8] - 280.0 * u_yyy) / 1260.0,
    }


def kdv_2d_residual(terms: dict[str, Array]) -> Array:
    """``u_ty + u_xxxy + 3(u_xy u_x + u_y u_xx) - u_xx + 2u_yy`` (one component).

    Example:
      >>> import jax.numpy as jnp
      >>> terms = kdv_2d_derivatives(kdv_2d_solution, jnp.array([0.1, -0.2, 0.3]))
      >>> bool(jnp.abs(kdv_2d_residual(terms)) < 1e-4)
      True
    """
    return (terms["u_ty"] + terms["u_xxxy"]
            + 3.0 * (terms["u_xy"] * terms["u_x"] + terms["u_y"] * terms["u_xx"])
            - terms["u_xx"] + 2.0 * terms["u_yy"])[None]


def kdv_2d(d: int = 2, seed: int = 0) -> Equation:
    """The STDE paper's 2D KdV ``u_ty + u_xxxy + 3(u_y u_x)_x - u_xx + 2u_yy = 0``.

    On ``[-1, 1]² × [0, 1]`` with the travelling kink :func:`kdv_2d_solution` (the
    reference code's own "solution", ``cosh t Σ sinh x_i``, does not solve it). Derivatives
    from a 9-jet and two 3-jets (:func:`kdv_2d_derivatives`).

    Example:
      >>> kdv_2d().input_dim
      3
    """
    del seed
    return _planar(
        "kdv_2d", d, kdv_2d_solution, kdv_2d_derivatives, kdv_2d_residual,
        "u_ty + u_xxxy + 3(u_y u_x)_x - u_xx + 2u_yy = 0, kink (9-jet + two 3-jets)")


# Kadomtsev–Petviashvili: u = 2k²B² sech²(B ξ), ξ = k x + m y + ω t - ξ0 (see kp_solution).
KP_WAVENUMBERS = (1.0, 0.5)
KP_STEEPNESS = 0.5
KP_OFFSET = -0.5


def kp_solution(z: Array) -> Array:
    """A line soliton ``u = 2k²B² sech²(B(kx + my + ωt - ξ0))`` of the KP-II equation.

    ``(u_t + 6u u_x + u_xxx)_x + 3u_yy = 0``: for ``u = φ(ξ)`` integrating twice gives
    ``(kω + 3m²) φ + 3k² φ² + k⁴ φ'' = 0``, solved by ``φ = A sech²(Bξ)`` with
    ``A = 2k²B²`` and ``ω = -(3m² + 4k⁴B²)/k``. Here ``k = 1``, ``m = B = ½``,
    ``ξ0 = -½``: ``u = ½ sech²((x + y/2 - t + ½)/2)``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(kp_solution(jnp.array([0.0, -1.0, 0.0])))
      0.5
    """
    k, m = KP_WAVENUMBERS
    b = KP_STEEPNESS
    omega = -(3.0 * m ** 2 + 4.0 * k ** 4 * b ** 2) / k
    return 2.0 * k ** 2 * b ** 2 / jnp.cosh(b * _phase(z, k, m, omega, KP_OFFSET)) ** 2


def kp_derivatives(u: ScalarFn, z: Array) -> dict[str, Array]:
    """The partials of the KP residual from a 4-jet, a 3-jet and a 2-jet.

    A 4-jet along ``e_x`` gives ``u_x .. u_xxxx``; a 3-jet with ``e_x`` in slot 1 and
    ``e_t`` in slot 2 gives ``y_3 = u_xxx + 3 u_xt``; a 2-jet along ``e_y`` gives
    ``u_yy``.

    Args:
      u: scalar function of ``z = (x, y, t)``.
      z: one point, shape ``(3,)``.

    Returns:
      ``u, u_x, u_xx, u_xxxx, u_xt, u_yy`` by name.

    Example:
      >>> import jax.numpy as jnp
      >>> terms = kp_derivatives(lambda z: z[0] ** 2 * z[2] + z[1] ** 2, jnp.ones(3))
      >>> float(terms["u_xt"]), float(terms["u_yy"])
      (2.0, 2.0)
    """
    e_x, e_y, e_t = (_unit(i, z) for i in range(3))
    value, (u_x, u_xx, u_xxx, u_xxxx) = stde.jet(u, (z,), ((e_x, None, None, None),))
    _, (_, _, mixed) = stde.jet(u, (z,), ((e_x, e_t, None),))
    _, (_, u_yy) = stde.jet(u, (z,), ((e_y, None),))
    return {"u": value, "u_x": u_x, "u_xx": u_xx, "u_xxxx": u_xxxx,
            "u_xt": (mixed - u_xxx) / 3.0, "u_yy": u_yy}


def kp_residual(terms: dict[str, Array]) -> Array:
    """``u_xt + 6(u_x² + u u_xx) + u_xxxx + 3u_yy`` (one component).

    Example:
      >>> import jax.numpy as jnp
      >>> terms = kp_derivatives(kp_solution, jnp.array([0.1, -0.2, 0.3]))
      >>> bool(jnp.abs(kp_residual(terms)) < 1e-4)
      True
    """
    return (terms["u_xt"] + 6.0 * (terms["u_x"] ** 2 + terms["u"] * terms["u_xx"])
            + terms["u_xxxx"] + 3.0 * terms["u_yy"])[None]


def kp(d: int = 2, seed: int = 0) -> Equation:
    """Kadomtsev–Petviashvili ``(u_t + 6u u_x + u_xxx)_x + 3u_yy = 0``, line soliton.

    On ``[-1, 1]² × [0, 1]`` with :func:`kp_solution`, derivatives from jets
    (:func:`kp_derivatives`).

    Example:
      >>> kp().input_dim
      3
    """
    del seed
    return _planar(
        "kp", d, kp_solution, kp_derivatives, kp_residual,
        "(u_t + 6u u_x + u_xxx)_x + 3u_yy = 0, line soliton (4-, 3- and 2-jets)")


# ---------------------------------------------------------------------------------------
# Registry and baselines.
# ---------------------------------------------------------------------------------------

EQUATIONS: dict[str, Callable[..., Equation]] = {
    "poisson": poisson,
    "poisson_houman": poisson_houman,
    "poisson_3body": poisson_3body,
    "allen_cahn": allen_cahn,
    "allen_cahn_3body": allen_cahn_3body,
    "sine_gordon": sine_gordon,
    "sine_gordon_3body": sine_gordon_3body,
    "poisson_gpinn": poisson_gpinn,
    "allen_cahn_gpinn": allen_cahn_gpinn,
    "sine_gordon_gpinn": sine_gordon_gpinn,
    "fokker_planck": fokker_planck,
    "heat": heat,
    "heat_averaged": heat_averaged,
    "ridge": ridge,
    "wave": wave,
    "hjb_lin": hjb_lin,
    "hjb_lqg": hjb_lqg,
    "bsb": bsb,
    "semilinear_heat_time": semilinear_heat_time,
    "allen_cahn_time": allen_cahn_time,
    "sine_gordon_time": sine_gordon_time,
    "kdv": kdv,
    "kdv_2d": kdv_2d,
    "kp": kp,
}


# Equations defined in one spatial dimension only.
FIXED_DIMS: dict[str, int] = {"kdv": 1, "kdv_2d": 2, "kp": 2}


def default_dim(name: str) -> int:
    """The spatial dimension of the equation ``name`` when none is given.

    Example:
      >>> default_dim("kdv"), default_dim("heat_averaged"), default_dim("kp")
      (1, 100, 2)
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


def radial_coordinates(equation: Equation, points: Array) -> np.ndarray:
    """``|x|²`` and, for a time-dependent equation, ``t`` of each point (float64).

    Example:
      >>> radial_coordinates(make_equation("heat", 2), jnp.array([[0.5, 0.5, 0.25]]))
      array([[0.5 , 0.25]])
    """
    points = np.asarray(points, np.float64)
    columns = [np.sum(points[:, :equation.dim] ** 2, -1)]
    if equation.time_dependent:
        columns.append(points[:, -1])
    return np.stack(columns, -1)


def radial_features(coordinates: np.ndarray, degree: int = 4,
                    centre: np.ndarray | None = None, spread: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legendre products ``P_i(ρ) P_j(τ)`` (``i + j <= degree``) of scaled ``|x|²`` and ``t``.

    ``ρ, τ`` are the columns of :func:`radial_coordinates` shifted by ``centre`` and
    divided by ``spread`` (by default the midpoint and half-width of their own range, so
    they span ``[-1, 1]``, where Legendre polynomials are well conditioned even when
    ``|x|²`` crowds near 1, as in the unit ball at large ``d``) and clipped to ``[-1, 1]``
    (a point outside the range the fit saw is not extrapolated); with one column (no
    time) only ``P_i(ρ)``.

    Returns:
      ``(features, centre, spread)``, features of shape ``(n, count)`` in float64.

    Example:
      >>> import jax
      >>> equation = make_equation("heat", 3)
      >>> points = equation.sample(jax.random.PRNGKey(0), 8)
      >>> radial_features(radial_coordinates(equation, points))[0].shape
      (8, 15)
    """
    low, high = coordinates.min(0), coordinates.max(0)
    centre = 0.5 * (high + low) if centre is None else centre
    spread = 0.5 * (high - low) if spread is None else spread
    # Points outside the fitted range are held at its ends: no polynomial extrapolation.
    scaled = np.clip((coordinates - centre) / np.where(spread > 0, spread, 1.0), -1.0, 1.0)
    in_rho = np.polynomial.legendre.legvander(scaled[:, 0], degree)
    if scaled.shape[1] == 1:
        return in_rho, centre, spread
    in_tau = np.polynomial.legendre.legvander(scaled[:, 1], degree)
    columns = [in_rho[:, i] * in_tau[:, j] for i in range(degree + 1)
               for j in range(degree + 1 - i)]
    return np.stack(columns, -1), centre, spread


def _radial_fit_error(fit: tuple[np.ndarray, np.ndarray],
                      scored: tuple[np.ndarray, np.ndarray], degree: int) -> float:
    """Least squares of targets on :func:`radial_features`: ``(coordinates, target)`` pairs."""
    fit_features, centre, spread = radial_features(fit[0], degree)
    if fit_features.shape[0] < fit_features.shape[1]:
        return math.nan
    weights, *_ = np.linalg.lstsq(fit_features, fit[1], rcond=None)
    features, _, _ = radial_features(scored[0], degree, centre, spread)
    return float(np.linalg.norm(features @ weights - scored[1]) / np.linalg.norm(scored[1]))


def _radial_data(equation: Equation, points: Array) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(jax.vmap(equation.exact)(jnp.asarray(points)), np.float64)
    return radial_coordinates(equation, points), target


def radial_baseline_error(equation: Equation, points: Array, degree: int = 4,
                          fit_points: Array | None = None) -> float:
    """Relative L2 error of the best predictor that uses only ``|x|²`` and ``t``.

    Least squares of ``u*`` on the polynomials of :func:`radial_features` (total degree
    ``degree``), fitted on ``fit_points`` (default: ``points`` themselves, which makes it
    the best such polynomial on the evaluation points: a baseline that favours the
    baseline) and scored on ``points``. A trained network below it has learnt more than
    the solution's radial and temporal profile. NaN when there are fewer fit points than
    features (e.g. the reference-value problems' single point).

    Example:
      >>> import jax
      >>> points = make_equation("ridge", 50).sample(jax.random.PRNGKey(0), 400)
      >>> radial_baseline_error(make_equation("ridge", 50), points) > 0.9
      True
      >>> points = make_equation("hjb_lqg", 5).sample(jax.random.PRNGKey(0), 400)
      >>> radial_baseline_error(make_equation("hjb_lqg", 5), points) < 1e-2
      True
    """
    scored = _radial_data(equation, points)
    fit = scored if fit_points is None else _radial_data(equation, fit_points)
    return _radial_fit_error(fit, scored, degree)


def sampled_radial_baseline_error(equation: Equation, key: Array, n_points: int = 4000,
                                  degree: int = 10, chunk_floats: int = 2 ** 24) -> float:
    """:func:`radial_baseline_error` fitted and scored on ``n_points`` fresh samples.

    In-sample, as :func:`radial_baseline_error`'s default: the best such polynomial on
    the points it is scored on. (Scored on other points it would have to extrapolate,
    and on the ball at large ``d``, where ``|x|²`` crowds near 1 and the rare points of
    small ``|x|²`` carry the largest ``u*``, that decides the score.) Points are drawn
    ``equation.sample``-wise in chunks of at most ``chunk_floats`` input floats and
    reduced at once to ``(|x|², t)`` and ``u*``, so ``d = 10⁶`` needs no more memory than
    ``d = 100``. NaN for the reference-value problems (``u*`` is known at
    their ``evaluation_points`` only).

    Example:
      >>> import jax
      >>> error = sampled_radial_baseline_error(make_equation("allen_cahn", 5),
      ...                                       jax.random.PRNGKey(0), n_points=200, degree=4)
      >>> 0.0 < error < 1.0
      True
    """
    if equation.evaluation_points is not None:
        return math.nan
    chunk = max(1, min(n_points, chunk_floats // equation.input_dim))
    exact = jax.jit(jax.vmap(equation.exact))

    coordinates, targets = [], []
    for i, start in enumerate(range(0, n_points, chunk)):
        points = equation.sample(jax.random.fold_in(key, i), min(chunk, n_points - start))
        coordinates.append(radial_coordinates(equation, points))
        targets.append(np.asarray(exact(points), np.float64))
    data = np.concatenate(coordinates), np.concatenate(targets)
    return _radial_fit_error(data, data, degree)
