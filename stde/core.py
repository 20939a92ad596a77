"""The value the interpreter carries for every jaxpr variable, and the rule context.

A :class:`JetValue` holds, for one array-valued variable of an order-``K`` collapsed
jet with ``R`` directions:

* ``primal``: the value ``x0``, shape ``S``;
* ``lower``: the ``K-1`` coefficients ``x_1 .. x_{K-1}``, each shaped ``(R, *S)``;
* ``summed``: the sum over directions of the top coefficient, ``Σ_r x_{K,r}``, shape ``S``.

A coefficient known to be zero is ``None`` (a symbolic zero), never an array of zeros.
A value whose coefficients are all ``None`` is a constant: its equations are evaluated
as plain JAX. ``JetValue`` is a pytree whose ``None`` coefficients are part of the tree
structure, so ``jax.jit``, ``jax.checkpoint`` and the control-flow primitives see the
zero pattern as static structure. So is ``zero_primal``, a primal known to be exactly
zero (the tangent fed to a JVP rule that stde interprets), which lets a rule skip the
products with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # a jax.Array, a tracer, or a NumPy array / scalar
ARRAY_TYPES = (jax.Array, np.ndarray, np.generic, float, int, complex)
"""What the public API accepts as one array (a pytree leaf)."""
Coefficient = Array | None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class JetValue:
    """Primal, lower coefficients and summed top coefficient of one variable.

    Attributes:
      primal: the value ``x0``.
      lower: coefficients ``1 .. K-1``, each ``(R, *x0.shape)`` or ``None`` (zero).
      summed: ``Σ_r x_{K,r}`` shaped like ``x0``, or ``None`` (zero).
      zero_primal: whether ``x0`` is known to be exactly zero (static; ``False`` means
        unknown, so a rule that drops the mark stays correct).

    """

    primal: Array
    lower: tuple[Coefficient, ...]
    summed: Coefficient
    zero_primal: bool = dataclasses.field(default=False, metadata={"static": True})

    @property
    def order(self) -> int:
        """``K``: the order of the top coefficient."""
        return len(self.lower) + 1

    @property
    def is_constant(self) -> bool:
        """Whether every coefficient is a symbolic zero."""
        return self.summed is None and all(c is None for c in self.lower)

    @property
    def coefficients(self) -> tuple[Coefficient, ...]:
        """``(x0, x_1, .., x_{K-1}, Σ_r x_K)``: index ``k`` holds coefficient ``k``."""
        return (self.primal, *self.lower, self.summed)

    @classmethod
    def from_coefficients(cls, coefficients: Sequence[Coefficient],
                          zero_primal: bool = False) -> JetValue:
        """Inverse of :attr:`coefficients`."""
        primal, *lower, summed = coefficients
        return cls(primal, tuple(lower), summed, zero_primal)

    @classmethod
    def constant(cls, primal: Array, order: int) -> JetValue:
        """A value without coefficients (weights, literals, integer indices)."""
        return cls(primal, (None,) * (order - 1), None)


def zeros_coefficient(primal: Array, k: int, order: int, directions: int) -> Array:
    """A materialised zero for coefficient ``k`` of ``primal`` (with or without ``R`` axis)."""
    shape = np.shape(primal) if k in (0, order) else (directions, *np.shape(primal))
    return jnp.zeros(shape, jnp.result_type(primal))


def instantiate(value: JetValue, directions: int) -> JetValue:
    """Replace every symbolic zero of ``value`` by an array of zeros."""
    order = value.order
    return JetValue.from_coefficients(
        [
            zeros_coefficient(value.primal, k, order, directions) if c is None else c
            for k, c in enumerate(value.coefficients)
        ]
    )


def bind_equation(primitive: Any, params: dict[str, Any], *args: Any) -> Any:
    """``primitive.bind(*args)`` with the parameters as they sit in a jaxpr equation."""
    return primitive.bind(*args, **primitive.get_bind_params(params))


def bind_at(primitive: Any, params: dict[str, Any], primals: Sequence[Any],
            positions: Sequence[int]) -> Callable[..., list[Any]]:
    """``primitive`` as a function of its operands at ``positions``, the others at ``primals``.

    The function returns the list of results (one for a single-result primitive). Rules
    differentiate or map it in the chosen operands only: indices stay fixed, and a JVP
    rule is never asked for a tangent of an operand it cannot differentiate
    (``betainc``'s ``a`` and ``b``), as in ``jax.hessian`` of a function holding it fixed.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> sub_from_3 = bind_at(lax.sub_p, {}, [jnp.float32(3), jnp.float32(0)], [1])
      >>> [float(y) for y in sub_from_3(jnp.float32(1))]
      [2.0]

    """
    def bound(*operands: Any) -> list[Any]:
        args = list(primals)
        for n, operand in zip(positions, operands):
            args[n] = operand
        out = bind_equation(primitive, params, *args)
        return list(out) if primitive.multiple_results else [out]
    return bound


def explicit_spec(x: Array) -> tuple[Any, ...] | None:
    """The mesh axes of each dimension of ``x`` under an explicit mesh, else ``None``.

    ``None`` as well where no dimension is sharded explicitly (a replicated array, an
    automatic mesh, no mesh).

    Example:
      >>> import jax.numpy as jnp
      >>> explicit_spec(jnp.ones(3)) is None
      True

    """
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None) or ()
    if all(axis is None for axis in spec):
        return None
    return (*spec, *(None,) * (np.ndim(x) - len(spec)))


def gather_rows(array: Array, indices: Array) -> Array:
    """``array[indices]``: rows of ``array``'s first axis, on every device of a mesh.

    Under an explicit mesh that shards ``array``, a gather has no unambiguous sharding;
    the rows are read onto every device and ``array``'s other axes keep theirs (the
    first layer's rows for a few sampled coordinates, not the whole weight).

    Example:
      >>> import jax.numpy as jnp
      >>> gather_rows(jnp.arange(6.0).reshape(3, 2), jnp.array([[2, 0]])).tolist()
      [[[4.0, 5.0], [0.0, 1.0]]]

    """
    spec = explicit_spec(array)
    if spec is None:
        return array[indices]
    return array.at[indices].get(out_sharding=jax.sharding.PartitionSpec(
        *(None,) * np.ndim(indices), *spec[1:]))


def sharded_directions(x: Array) -> bool:
    """Whether the leading (direction) axis of ``x`` is sharded over an explicit mesh.

    Example:
      >>> import jax.numpy as jnp
      >>> sharded_directions(jnp.ones((4, 3)))
      False

    """
    spec = explicit_spec(x)
    return spec is not None and spec[0] is not None


def on_gathered_directions(f: Callable[..., Any], *args: Array | None) -> Any:
    """``f(*args)`` with the leading (direction) axes gathered onto every device.

    For code that JAX cannot batch over a sharded axis while the primal is unbatched
    (its batching rules for linear solves fold the batch into a reshape). Where the
    directions of ``args`` are sharded over an explicit mesh, they are gathered before
    ``f`` and the outputs' leading axes are sharded back the same way, so that
    coefficients keep the sharding the caller gave their directions.

    Example:
      >>> import jax.numpy as jnp
      >>> on_gathered_directions(lambda x: 2 * x, jnp.ones((4, 3))).shape
      (4, 3)

    """
    specs = [None if a is None else explicit_spec(a) for a in args]
    mesh_axes = next((spec[0] for spec in specs if spec is not None and spec[0] is not None),
                     None)
    if mesh_axes is None:
        return f(*args)
    out = f(*(a if spec is None or spec[0] is None
              else jax.sharding.reshard(a, jax.sharding.PartitionSpec(None, *spec[1:]))
              for a, spec in zip(args, specs)))

    def shard_back(o: Array) -> Array:
        rest = (explicit_spec(o) or (None,) * np.ndim(o))[1:]
        return jax.sharding.reshard(o, jax.sharding.PartitionSpec(mesh_axes, *rest))
    return jax.tree.map(shard_back, out)


def is_float(x: Array) -> bool:
    """Whether ``x`` has a floating (or complex) dtype, i.e. can carry coefficients."""
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


class Context(Protocol):
    """What a rule may ask of the interpreter.

    Attributes:
      order: ``K``, the order of the summed top coefficient.
      directions: ``R``, the size of the leading axis of every lower coefficient.

    """

    order: int
    directions: int

    def eval_jaxpr(self, closed_jaxpr: Any, inputs: Sequence[JetValue]) -> list[JetValue]:
        """Interprets a closed jaxpr (e.g. a loop body or a called function) on jets."""
        ...
