"""Unbiased stochastic operators (STDE, Shi et al. 2024), every sample in one collapsed pass.

The operator is split into *components* that are sampled separately: each family term
(Laplacian, ``diagonal(k)``, weighted Laplacian, biharmonic) is one component, and the
explicit partials of one order form a pool. First-order and identity terms are cheap and
always exact. ``n_samples`` is shared out over the components (at least one each, then in
proportion to their number of members), and each component is estimated by

* ``"sparse"``: members drawn without replacement, rescaled by ``members / samples``
  (pools: terms drawn with probability ``|c_t| / Σ|c|`` and weighted ``sign(c_t) Σ|c| / S``),
  each member computed from basis-vector tangents. With at least as many samples as
  members the component is exact. Members are drawn by Floyd's algorithm
  (:mod:`stde.sampling`, ``O(S²)`` whatever ``D``; biharmonic pairs as row/column cells)
  and the tangents are held sparse (:class:`stde.sparse.SparseCoefficient`), so a
  sample costs what its few coordinates touch, not ``D``.
* ``"dense"``: Rademacher or normal tangents spanning all coordinates: ``y_2(v)`` for the
  Laplacian, ``y_2(σ v)`` for the weighted Laplacian, ``y_4(v) / 3`` with normal ``v``
  for the biharmonic. Other terms have no unbiased dense estimator.
* ``"auto"``: ``"sparse"`` where it is exact (enough samples), else ``"dense"`` where it
  exists (same cost per sample as sparse for second order, a fifth of it for the
  biharmonic), else ``"sparse"``.

Each term's estimators are its :meth:`stde.lowering.Term.sample_sparse` and
:meth:`stde.lowering.Term.sample_dense` (:mod:`stde.terms`); this module shares out the
samples and loops. All samples of one jet order go through one collapsed pass (two for
even orders when weights of both signs occur).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde.lowering import Coefficient, Plan, Term, attach_aux, flatten_argument, split_aux
from stde.operators import Operator, require_operator
from stde.terms import Pool

Array = Any
METHODS = ("auto", "sparse", "dense")
DISTRIBUTIONS = ("rademacher", "normal")
Component = tuple[Term, Coefficient]
"""One separately sampled part of the operator: a term (or a :class:`stde.terms.Pool`)."""


def split(op: Operator, plan: Plan) -> list[Component]:
    """Adds the first-order and identity terms to ``plan`` (exact); returns the components.

    A term is a component of its own unless it has a :meth:`stde.lowering.Term.pool_key`:
    terms with equal keys (the partials of one order) form one :class:`stde.terms.Pool`.
    """
    parts: list[Component | list[Component]] = []
    pools: dict[Hashable, list[Component]] = {}
    for term, c in op.terms:
        key = term.pool_key()
        if term.order <= 1:
            term.exact(c, plan)
        elif key is None:
            parts.append((term, c))
        elif key in pools:
            pools[key].append((term, c))
        else:
            pools[key] = [(term, c)]
            parts.append(pools[key])
    return [(Pool(tuple(part)), 1) if isinstance(part, list) else part for part in parts]


def allocate(components: list[Component], sizes: list[int], n_samples: int,
             capped: list[bool]) -> list[int]:
    """Samples per component: one each, then in proportion to ``sizes`` (capped ones at size).

    Raises:
      ValueError: fewer samples than components.

    """
    if n_samples < len(components):
        raise ValueError(
            f"n_samples={n_samples} is smaller than the number of separately sampled parts "
            f"of the operator ({len(components)}: {', '.join(repr(t) for t, _ in components)}); "
            f"pass n_samples >= {len(components)}.")
    counts = [1] * len(components)
    for _ in range(n_samples - len(components)):
        eligible = [i for i in range(len(components)) if not capped[i] or counts[i] < sizes[i]]
        if not eligible:
            break
        best = max(eligible, key=lambda i: sizes[i] / counts[i])
        counts[best] += 1
    return counts


def is_random_key(key: Any) -> bool:
    """Whether ``key`` is a JAX random key: typed (``jax.random.key``) or a raw ``uint32[2]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> is_random_key(jax.random.key(0)), is_random_key(jax.random.PRNGKey(0))
      (True, True)
      >>> is_random_key(jnp.ones(2))
      False

    """
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == jnp.uint32 and np.ndim(key) >= 1 and np.shape(key)[-1] == 2


def stochastic_operator(f: Callable[..., Any], op: Operator, n_samples: int, *,
                        argnums: int = 0, method: str = "auto",
                        distribution: str = "rademacher", with_value: bool = False,
                        has_aux: bool = False) -> Callable[..., Any]:
    """An unbiased estimate of ``L f`` from ``n_samples`` random jets in collapsed passes.

    Args:
      f: the function; its output may be any array (or pytree of arrays).
      op: a :class:`stde.operators.Operator` acting on the flattened argument ``argnums``.
      n_samples: the total number of sampled jets, shared over the operator's
        components (see the module docstring).
      argnums: which positional argument the operator differentiates.
      method: ``"sparse"``, ``"dense"`` or ``"auto"`` (module docstring).
      distribution: dense tangents for second-order terms: ``"rademacher"`` or
        ``"normal"``. The biharmonic's dense estimator always uses normal tangents.
      with_value: return ``(f(*args), estimate)``.
      has_aux: ``f`` returns ``(output, aux)``; the estimate is of ``L output`` and ``g``
        returns ``(estimate, aux)`` (with ``with_value``: ``((output, aux), estimate)``).

    Returns:
      ``g(*args, key)``; vmap it over points with a shared key or with keys split by
      the caller. Works under ``jit`` and ``grad``.

    Raises:
      ValueError: ``n_samples < 1`` or fewer than the components, unknown method or
        distribution, ``method="dense"`` for terms without a dense estimator, indices
        out of range.
      TypeError: ``op`` not an operator, non-integer ``n_samples``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> import stde.operators as ops
      >>> f = lambda x: (x ** 2).sum()
      >>> g = stde.stochastic_operator(f, ops.laplacian(), 2)
      >>> round(float(g(jnp.ones(4), jax.random.key(0))), 4)
      8.0

    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise TypeError(f"n_samples must be an integer >= 1, got {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of "
                         f"{', '.join(DISTRIBUTIONS)}.")
    require_operator(op)
    main, aux_of = split_aux(f, has_aux)

    def g(*args_and_key: Any, key: Array | None = None) -> Any:
        args = list(args_and_key)
        if key is None and args and is_random_key(args[-1]):
            key = args.pop()
        if key is None or not is_random_key(key):
            raise TypeError(
                "g(*args, key): the random key is missing (or is not a key): call "
                "g(x, jax.random.key(0)) or g(x, key=jax.random.key(0)); split keys "
                "(jax.random.split) to get fresh samples per call.")
        h, x, argument = flatten_argument(main, tuple(args), argnums)
        dim = x.shape[0]
        op.check(dim, argnums)
        plan = Plan(dim, x.dtype, argument)
        components = split(op, plan)
        if method == "dense":
            for term, _ in components:
                if not term.has_dense():
                    raise ValueError(
                        f"no unbiased dense estimator exists for {term!r} (random "
                        f"tangents mix in other partials); use method='sparse' or 'auto'.")
        sizes = [term.size(dim, argument) for term, _ in components]
        capped = [method != "dense" or not term.has_dense() for term, _ in components]
        counts = allocate(components, sizes, int(n_samples), capped) if components else []
        keys = jax.random.split(key, max(len(components), 1))
        for n, ((term, c), size, count) in enumerate(zip(components, sizes, counts)):
            term_key = keys[n]
            if term.has_dense() and (method == "dense" or (method == "auto" and count < size)):
                term.sample_dense(c, count, term_key, plan, distribution)
            elif count < size:
                term.sample_sparse(c, count, term_key, plan)
            else:
                exact = plan.sub_plan()
                term.exact(c, exact)
                plan.absorb(exact)
        value, total = plan.evaluate(h, x)
        return attach_aux((value, total) if with_value else total, aux_of, tuple(args),
                          with_value)

    return g


__all__ = ["stochastic_operator"]
