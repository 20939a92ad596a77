"""What an operator term lowers to: the :class:`Term` interface and the :class:`Plan` it fills.

An operator ``Σ c_t · term_t`` is evaluated by asking every term to add its jets to one
:class:`Plan`: exactly (:meth:`Term.exact`), or as an unbiased sample of its members
(:meth:`Term.sample_sparse` with basis-vector tangents, :meth:`Term.sample_dense` with
random tangents spanning every coordinate). The plan then runs the collapsed passes
(:func:`stde.passes.evaluate`). :mod:`stde.exact` and :mod:`stde.stochastic` are loops
over terms; the terms themselves live in :mod:`stde.terms` (see docs/design.md,
"Operators and how they lower to jets", for the recipe of a new one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp

from stde import passes, sparse
from stde.core import ARRAY_TYPES, explicit_spec

Array = Any
Coefficient = Fraction | float


def taylor_cost(order: int, count: int) -> int:
    """Products one nonlinear operation needs for ``count`` directions of an ``order``-jet.

    Example:
      >>> taylor_cost(2, 10), taylor_cost(5, 1)
      (30, 15)

    """
    return count * order * (order + 1) // 2


def basis_vectors(indices: Array, dim: int, dtype: Any) -> sparse.SparseCoefficient:
    """Sparse rows ``e_i`` for ``indices`` of shape ``(R,)``, ``Σ_p e_{i_p}`` for ``(R, P)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.sparse import densify
      >>> densify(basis_vectors(jnp.array([[2, 0]]), 3, jnp.float32)).tolist()
      [[1.0, 0.0, 1.0]]

    """
    return sparse.from_indices(indices, 1.0, dim, dtype)


def random_tangents(key: Array, shape: tuple[int, ...], distribution: str, dtype: Any) -> Array:
    """Rademacher (``distribution="rademacher"``) or standard normal tangents of ``shape``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> v = random_tangents(jax.random.key(0), (2, 3), "rademacher", jnp.float32)
      >>> sorted(set(abs(v).ravel().tolist()))
      [1.0]

    """
    if distribution == "normal":
        return jax.random.normal(key, shape, dtype)
    return jax.random.rademacher(key, shape, dtype)


@dataclasses.dataclass
class Plan:
    """The jets one evaluation pushes through ``h``, filled term by term.

    Attributes:
      dim: ``D``, the number of flattened coordinates.
      dtype: the argument's dtype.
      argument: the argument at its own shape (a callable ``σ`` is evaluated there).
      partial_method: the construction of mixed partials (``"auto"``,
        ``"interpolation"`` or ``"slots"``).
      biharmonic_method: ``"nested"`` or ``"interpolation"``.
      rows: weighted sparse rows per jet order; equal directions of different terms merge.
      extra: further passes (dense tangents, sampled rows), evaluated after ``rows``.
      identity: the coefficient of ``h`` itself (order-0 terms).
      nested: ``[(inner, outer)]``: the passes ``outer`` applied to ``x ↦`` (the passes
        ``inner`` applied to ``h`` at ``x``), e.g. the Laplacian of the Laplacian.

    Example:
      >>> import jax.numpy as jnp
      >>> plan = Plan(2, jnp.float32, jnp.zeros(2))
      >>> plan.rows.add(2, ((1, ((0, 1),)),), 3)  # 3 ∂_0²
      >>> plan.identity += 1
      >>> value, total = plan.evaluate(lambda x: (x ** 2).sum() + 1.0, jnp.ones(2))
      >>> float(value), float(total)
      (3.0, 9.0)

    """

    dim: int
    dtype: Any
    argument: Array
    partial_method: str = "interpolation"
    biharmonic_method: str = "interpolation"
    rows: passes.SparseRows = dataclasses.field(default_factory=passes.SparseRows)
    extra: list[passes.Directions] = dataclasses.field(default_factory=list)
    identity: Coefficient = 0
    nested: list[tuple[list[passes.Directions], list[passes.Directions]]] = dataclasses.field(
        default_factory=list)

    def add_directional(self, order: int, tangents: Array, weight: float) -> None:
        """Adds ``weight · Σ_r ⟨∂^order h, v_r^{⊗order}⟩ = weight · Σ_r y_order(x_1 = v_r)``.

        ``tangents`` holds the ``v_r`` as rows: an ``(R, D)`` array or a
        :class:`stde.sparse.SparseCoefficient` (:func:`basis_vectors`).
        """
        self.extra.extend(passes.scaled(order, [tangents] + [None] * (order - 2), float(weight)))

    def sub_plan(self) -> Plan:
        """An empty plan for the same argument and methods; its rows merge only among themselves."""
        return Plan(self.dim, self.dtype, self.argument, self.partial_method,
                    self.biharmonic_method)

    def absorb(self, other: Plan) -> None:
        """Adds everything ``other`` holds to this plan, keeping ``other``'s rows apart."""
        self.extra.extend(other.directions())
        self.identity = self.identity + other.identity
        self.nested.extend(other.nested)

    def directions(self) -> list[passes.Directions]:
        """The passes of ``rows`` followed by ``extra`` (``nested`` and ``identity`` aside)."""
        return self.rows.directions(self.dim, self.dtype) + self.extra

    def evaluate(self, h: Callable[[Array], Any], x: Array) -> tuple[Any, Any]:
        """``(h(x), Σ of everything planned)``, with ``h``'s output structure."""
        value, total = passes.evaluate(h, x, self.directions())
        if self.identity != 0:
            total = jax.tree_util.tree_map(lambda t, v: t + float(self.identity) * v, total,
                                           value)
        for inner, outer in self.nested:
            def inner_of_h(y: Array, inner: list[passes.Directions] = inner) -> Any:
                return passes.evaluate(h, y, inner)[1]

            _, result = passes.evaluate(inner_of_h, x, outer)
            total = jax.tree_util.tree_map(jnp.add, total, result)
        return value, total


class Term:
    """One summand of a :class:`stde.operators.Operator` (without its coefficient).

    A term says what it is (``order``, ``repr``) and how it lowers to jets: its exact
    rows, its sparse sample, and (where one exists) its dense sample. Terms must be
    hashable; equal terms of one operator merge their coefficients.

    Subclasses define ``order`` and :meth:`exact`; a term with more than one member
    (``size > 1``) also implements :meth:`sample_sparse`, and one with an unbiased
    random-tangent estimator :meth:`has_dense` and :meth:`sample_dense`.
    """

    order: int
    """The derivative order (an attribute or a property of every term)."""

    def size(self, dim: int, argument: Array) -> int:
        """How many members the sparse estimator samples from (``1``: always exact)."""
        return 1

    def pool_key(self) -> Hashable | None:
        """Terms with equal non-``None`` keys are sampled as one :class:`stde.terms.Pool`.

        Such terms provide ``interpolation_rows()``, as :class:`stde.terms.Partial` does.
        """
        return None

    def check(self, dim: int, argnums: int) -> None:
        """Raises a ValueError when the term does not fit an argument with ``dim`` coordinates."""

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """Adds ``c · term`` to ``plan``, exactly."""
        raise NotImplementedError(f"{type(self).__name__} must define exact(c, plan).")

    def sample_sparse(self, c: Coefficient, count: int, key: Array, plan: Plan) -> None:
        """Adds an unbiased estimate of ``c · term`` from ``count < size`` members to ``plan``."""
        raise NotImplementedError(f"{type(self).__name__} has more than one member and must "
                                  f"define sample_sparse(c, count, key, plan).")

    def has_dense(self) -> bool:
        """Whether an unbiased dense (random tangent) estimator exists."""
        return False

    def sample_dense(self, c: Coefficient, count: int, key: Array, plan: Plan,
                     distribution: str) -> None:
        """Adds an unbiased estimate of ``c · term`` from ``count`` random tangents to ``plan``."""
        raise NotImplementedError(f"{type(self).__name__} has no dense estimator.")


def flatten_argument(f: Callable[..., Any], args: tuple[Any, ...], argnums: int
                     ) -> tuple[Callable[[Array], Any], Array, Array]:
    """``(h, x, argument)``: ``h(x) = f(*args)`` as a function of the flattened argument ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> h, x, argument = flatten_argument(lambda a, b: a * b.sum(), (2.0, jnp.ones((2, 2))), 1)
      >>> x.shape, argument.shape, float(h(x))
      ((4,), (2, 2), 8.0)

    """
    if isinstance(argnums, bool) or not isinstance(argnums, int):
        raise TypeError(f"argnums must be one integer (the argument the operator acts on), "
                        f"got {argnums!r}.")
    if not -len(args) <= argnums < len(args):
        raise ValueError(f"argnums={argnums} is out of range for a call with {len(args)} "
                         f"positional arguments.")
    argnums %= len(args)
    if not isinstance(args[argnums], ARRAY_TYPES):
        raise TypeError(
            f"argument {argnums} is a {type(args[argnums]).__name__}; a differential operator "
            f"acts on one array argument. Pass the array to differentiate as its own "
            f"argument, e.g. stde.operator(lambda x, rest: f({{'x': x, **rest}}), op)(x, rest), "
            f"or flatten a pytree into one array with jax.flatten_util.ravel_pytree.")
    argument = jnp.asarray(args[argnums])
    if not jnp.issubdtype(argument.dtype, jnp.floating):
        raise TypeError(f"argument {argnums} has dtype {argument.dtype}; differential operators "
                        f"need a floating-point argument. Cast it, e.g. x.astype(jnp.float32).")
    argument = _replicated(argument)
    shape = argument.shape

    def h(x: Array) -> Any:
        return f(*args[:argnums], x.reshape(shape), *args[argnums + 1:])

    return h, argument.reshape(-1), argument


def _replicated(argument: Array) -> Array:
    """``argument`` with its explicit sharding over a mesh (if any) gathered onto every device.

    A sparse direction addresses the flattened argument by index, and the rules read
    primals at those indices; under an explicit mesh a gather from a sharded array (and
    the flattening ``reshape`` itself) has no unambiguous sharding, so the operators
    differentiate a replicated copy (one all-gather of the point). Arrays sharded
    automatically, and batches of points under ``vmap``, are left alone.
    """
    if explicit_spec(argument) is None:
        return argument
    return jax.sharding.reshard(argument, jax.sharding.PartitionSpec())


def split_aux(f: Callable[..., Any], has_aux: bool
              ) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """``(main, aux_of)``: ``f`` without its auxiliary output, and that output alone.

    With ``has_aux``, ``f`` returns a pair ``(output, aux)``, as for
    ``jax.grad(f, has_aux=True)``: operators differentiate ``output`` and return ``aux``
    beside their result (:func:`attach_aux`). ``aux_of`` is a plain call of ``f``; under
    ``jit`` XLA computes once what that call and the jets' primal pass compute alike, and
    eagerly the jets skip what only ``aux`` needs (the interpreter drops equations no
    output depends on), so ``aux`` costs one primal evaluation.
    Without ``has_aux``: ``(f, None)``.

    Example:
      >>> main, aux_of = split_aux(lambda x: (x * x, {"x": x}), True)
      >>> main(3.0), aux_of(3.0)
      (9.0, {'x': 3.0})

    """
    if not has_aux:
        return f, None

    def pair(*args: Any) -> tuple[Any, Any]:
        out = f(*args)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            if isinstance(out, tuple | list):
                got = f"a {type(out).__name__} of length {len(out)}"
            elif hasattr(out, "shape"):
                got = f"one array of shape {tuple(out.shape)}"
            else:
                got = type(out).__name__
            raise TypeError(f"has_aux=True: f must return a pair (output, aux), got {got}. "
                            f"Return (output, aux), or pass has_aux=False.")
        return out[0], out[1]

    return (lambda *args: pair(*args)[0]), (lambda *args: pair(*args)[1])


def attach_aux(result: Any, aux_of: Callable[..., Any] | None, args: tuple[Any, ...],
               with_value: bool) -> Any:
    """``result`` with ``aux_of(*args)`` beside it, in ``jax.grad``'s convention.

    ``(L, aux)`` for an operator's ``L``; with the value first in ``result``
    (``with_value``, or ``value_grad_laplacian``'s triple), ``((value, aux), *rest)`` as
    ``jax.value_and_grad(has_aux=True)`` returns. ``aux_of`` ``None``: ``result``.

    Example:
      >>> attach_aux((1.0, 2.0), lambda x: -x, (5.0,), with_value=True)
      ((1.0, -5.0), 2.0)

    """
    if aux_of is None:
        return result
    aux = aux_of(*args)
    if with_value:
        value, *rest = result
        return ((value, aux), *rest)
    return result, aux


__all__ = ["Plan", "Term", "attach_aux", "flatten_argument", "split_aux"]
