"""Independent oracles: Taylor coefficients by nested ``jax.jvp`` along a curve.

For ``x(t) = x0 + Σ_{k=1..K} x_k t^k / k!`` the derivative-scaled output coefficient is
``y_k = d^k/dt^k f(x(t)) |_{t=0}``. Here that is computed by nesting ``jax.jvp``
in the scalar ``t`` ``k`` times, which shares no code with stde. Use in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def taylor(f: Callable[..., Any], primals: Sequence[Any],
           series: Sequence[Sequence[Any]]) -> list[Any]:
    """``[y_0, y_1, .., y_K]`` of ``f`` along the curve with coefficients ``series``.

    Args:
      f: function of ``len(primals)`` arrays, returning one array.
      primals: the ``x0_i``.
      series: per primal, ``K`` coefficients ``x_1 .. x_K`` shaped like the primal.
    """
    order = len(series[0])

    def along(t: Any) -> Any:
        args = [x0 + sum(c * t ** k / math.factorial(k) for k, c in enumerate(cs, start=1))
                for x0, cs in zip(primals, series)]
        return f(*args)

    def tower(k: int) -> Callable[[Any], list[Any]]:
        """``t -> [d^0, .., d^k] along(t)``: each level is one ``jax.jvp`` of the last."""
        if k == 0:
            return lambda t: [along(t)]
        below = tower(k - 1)

        def derivatives(t: Any) -> list[Any]:
            values, tangents = jax.jvp(below, (t,), (jnp.ones_like(t),))
            return [*values, tangents[-1]]
        return derivatives

    return tower(order)(jnp.zeros((), jnp.result_type(primals[0])))


def collapsed(f: Callable[..., Any], primals: Sequence[Any],
              directions: Sequence[Sequence[Any]]) -> tuple[list[Any], Any]:
    """Reference for ``collapsed_jet``: per-direction lower coefficients and summed top.

    Args:
      directions: per primal, ``K`` arrays shaped ``(R, *x0.shape)``: all coefficients
        ``x_1 .. x_K`` of every direction (the top one not yet summed).

    Returns:
      ``([y_1, .., y_{K-1}] each stacked to (R, ...), Σ_r y_{K,r})``.
    """
    order = len(directions[0])

    @jax.jit
    def per_direction(primals: Sequence[Any], directions: Sequence[Sequence[Any]]) -> list[Any]:
        return jax.vmap(lambda ds: taylor(f, primals, ds))(directions)

    coefficients = per_direction(list(primals), [list(cs) for cs in directions])
    return coefficients[1:order], coefficients[order].sum(0)


def on_cpu() -> bool:
    """Whether the tests run on JAX's CPU backend (the tolerances below are CPU-tight)."""
    return jax.default_backend() == "cpu"


def backend_tolerance(cpu: float, accelerator: float) -> float:
    """``cpu`` on the CPU backend, ``accelerator`` on GPUs/TPUs (whose kernels differ)."""
    return cpu if on_cpu() else accelerator


def case_tests(cases: Sequence[tuple[Any, ...]], *,
               accelerator_tolerance: Mapping[str, float] | None = None,
               cpu_only: Mapping[str, str] | None = None
               ) -> tuple[Callable[..., None], Callable[[], None]]:
    """The two tests of a table of ``(name, f, make_primals, order, count)`` cases.

    Returns ``(test_against_oracle, test_cases_cover_every_order_and_direction_count)``:
    every case checked by :func:`check_collapsed`, and the table covering ``K = 1..6``
    and ``R = 1..8``. Assign both to module-level names in a test file.

    Off the CPU, the cases named in ``accelerator_tolerance`` are checked with that
    ``rtol``/``atol`` instead of ``1e-9``, and those in ``cpu_only`` are skipped with the
    given reason (e.g. a result the backend leaves undefined). On the CPU every case
    runs at ``1e-9``.
    """
    import pytest

    loose = dict(accelerator_tolerance or {})
    skipped = dict(cpu_only or {})

    @pytest.mark.parametrize("name, f, make_primals, order, count", cases,
                             ids=[case[0] for case in cases])
    def test_against_oracle(x64: None, name: str, f: Callable[..., Any],
                            make_primals: Callable[[], Any], order: int, count: int) -> None:
        if name in skipped and not on_cpu():
            pytest.skip(skipped[name])
        tolerance = backend_tolerance(1e-9, loose.get(name, 1e-9))
        check_collapsed(f, make_primals(), order, count, jax.random.PRNGKey(order + 10 * count),
                        rtol=tolerance, atol=tolerance)

    def test_cases_cover_every_order_and_direction_count() -> None:
        assert {case[3] for case in cases} == set(range(1, 7))
        assert {case[4] for case in cases} == set(range(1, 9))

    return test_against_oracle, test_cases_cover_every_order_and_direction_count


def random_directions(key: Any, primals: Sequence[Any], order: int, count: int
                      ) -> list[list[Any]]:
    """Random normal coefficients ``x_1 .. x_K`` for ``count`` directions per primal."""
    keys = jax.random.split(key, len(primals) * order)
    return [[jax.random.normal(keys[i * order + k], (count, *np.shape(x)), jnp.result_type(x))
             for k in range(order)] for i, x in enumerate(primals)]


def check_collapsed(f: Callable[..., Any], primals: Sequence[Any], order: int, count: int,
                    key: Any, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """Asserts ``stde.collapsed_jet`` matches :func:`collapsed` on random directions."""
    check_collapsed_against(f, f, primals, order, count, key, rtol, atol)


def assert_jet_matches_jax(f: Callable[..., Any], primals: Sequence[Any],
                           series: Sequence[Sequence[Any]], rtol: float = 1e-9,
                           atol: float = 1e-12) -> None:
    """Asserts ``stde.jet`` equals ``jax.experimental.jet.jet`` on the same input."""
    from jax.experimental import jet as jax_jet

    import stde

    want_primal, want = jax_jet.jet(f, tuple(primals), tuple(series))
    got_primal, got = stde.jet(f, tuple(primals), tuple(series))
    np.testing.assert_allclose(got_primal, want_primal, rtol=1e-12)
    for k, (g, w) in enumerate(zip(got, want), start=1):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"y_{k}")


def check_collapsed_against(f: Callable[..., Any], reference: Callable[..., Any],
                            primals: Sequence[Any], order: int, count: int, key: Any,
                            rtol: float = 1e-9, atol: float = 1e-9,
                            lower: Sequence[bool] | None = None) -> None:
    """Like :func:`check_collapsed`, with the oracle applied to ``reference`` instead of ``f``.

    For functions the oracle cannot differentiate to high order, or differentiates
    differently (``custom_vjp``, ``custom_jvp`` with surrogate rules, iterative solvers,
    primitives without batching rules): ``reference`` is the plain mathematical function.
    ``lower[i] = False`` gives primal ``i`` no lower coefficients, only a summed top.
    """
    import stde

    lower = [True] * len(primals) if lower is None else list(lower)
    directions = [cs if keep else [jnp.zeros_like(c) for c in cs[:-1]] + [cs[-1]]
                  for cs, keep in zip(random_directions(key, primals, order, count), lower)]
    series = tuple(tuple(cs[:-1]) if keep else (None,) * (order - 1)
                   for cs, keep in zip(directions, lower))
    summed = tuple(cs[-1].sum(0) for cs in directions)
    value, got_lower, top = jax.jit(lambda p, s, t: stde.collapsed_jet(f, p, s, t))(
        tuple(primals), series, summed)
    ref_lower, ref_top = collapsed(reference, primals, directions)
    np.testing.assert_allclose(value, reference(*primals), rtol=rtol, atol=atol)
    for k, (got, want) in enumerate(zip(got_lower, ref_lower), start=1):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"y_{k}")
    np.testing.assert_allclose(top, ref_top, rtol=rtol, atol=atol, err_msg=f"summed y_{order}")
