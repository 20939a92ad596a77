"""``shard_map`` and the collectives of its bodies: per-device programs over a mesh.

A ``shard_map`` body sees each input's local block. Its rule runs the interpreted body
under the same ``shard_map``: each Taylor coefficient is split over the mesh as its
primal is, and a lower coefficient's direction axis (its first) is never split. Every
collective that sums, gathers or moves blocks (``psum``, ``all_gather``, ``ppermute``,
``all_to_all``, ``psum_scatter``, ``pvary``) is linear, so its rule is the linear one
(:mod:`stde.rules.linear`): the collective applied to every coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from jax._src import core
from jax._src.lax import parallel
from jax.sharding import PartitionSpec

from stde.core import Context, JetValue, instantiate, is_float
from stde.rules import series
from stde.rules.linear import register_linear
from stde.rules.registry import register


def coefficient_spec(spec: PartitionSpec, k: int, order: int) -> PartitionSpec:
    """How coefficient ``k`` is split: as its primal, the direction axis whole.

    Example:
      >>> from jax.sharding import PartitionSpec as P
      >>> tuple(coefficient_spec(P("i"), 1, 2)), tuple(coefficient_spec(P("i"), 2, 2))
      ((None, 'i'), ('i',))

    """
    return PartitionSpec(None, *spec) if series.has_directions(k, order) else spec


def shard_map_rule(ctx: Context, inputs: Sequence[JetValue], *, jaxpr: Any, mesh: Any,
                   in_specs: Sequence[PartitionSpec], out_specs: Sequence[PartitionSpec],
                   check_vma: bool = True, newly_manual_axes: Any = None, **_: Any
                   ) -> list[JetValue]:
    """``shard_map``: the interpreted body under the same mesh, specs and checks.

    Every float result leaves with all its coefficients, zeros written out:
    ``shard_map`` needs its out specs before the body is traced.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import stde
      >>> from jax.sharding import Mesh, PartitionSpec as P
      >>> mesh = Mesh(np.array(jax.devices()[:1]), ("i",))
      >>> f = jax.shard_map(lambda x: jax.lax.psum(jnp.sum(x ** 3), "i"), mesh=mesh,
      ...                   in_specs=P("i"), out_specs=P())
      >>> float(stde.laplacian(f)(jnp.array([1.0, 2.0])))  # Σ 6 x_i
      18.0

    """
    order = ctx.order
    flat, flat_specs, present = [], [], []
    for x, spec in zip(inputs, in_specs):
        present.append(tuple(c is not None for c in x.coefficients))
        for k, c in enumerate(x.coefficients):
            if c is not None:
                flat.append(c)
                flat_specs.append(coefficient_spec(spec, k, order))
    float_out = [is_float(v.aval) for v in jaxpr.outvars]

    def body(*blocks: Any) -> tuple[Any, ...]:
        remaining = iter(blocks)
        values = [JetValue.from_coefficients([next(remaining) if p else None for p in pattern])
                  for pattern in present]
        results = []
        for value, floating in zip(ctx.eval_jaxpr(jaxpr, values), float_out):
            results.extend(instantiate(value, ctx.directions).coefficients if floating
                           else [value.primal])
        return tuple(results)

    result_specs = [coefficient_spec(spec, k, order) if floating else spec
                    for spec, floating in zip(out_specs, float_out)
                    for k in range(order + 1 if floating else 1)]
    manual = {} if newly_manual_axes is None or set(newly_manual_axes) == set(
        mesh.axis_names) else {"axis_names": set(newly_manual_axes)}
    blocks = iter(jax.shard_map(body, mesh=mesh, in_specs=tuple(flat_specs),
                                out_specs=tuple(result_specs), check_vma=check_vma,
                                **manual)(*flat))
    return [JetValue.from_coefficients([next(blocks) for _ in range(order + 1)]) if floating
            else JetValue.constant(next(blocks), order) for floating in float_out]


register("shard_map", shard_map_rule,
         sparse="an index list addresses the whole array, not a device's block")

LINEAR_COLLECTIVES = ("psum", "psum_invariant", "pvary", "pbroadcast", "all_gather",
                      "all_gather_invariant", "all_to_all", "ppermute", "reduce_scatter")
"""Collectives linear in their operand, by primitive name (``reduce_scatter`` is
``psum_scatter``; ``pvary``, which marks a replicated value as varying over mesh axes,
lives in JAX's core); those a JAX version lacks are skipped."""

for _name in LINEAR_COLLECTIVES:
    for _module in (parallel, core):
        if (_primitive := getattr(_module, f"{_name}_p", None)) is not None:
            register_linear(_primitive)
            break
