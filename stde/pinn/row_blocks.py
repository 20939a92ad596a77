"""Optimiser steps that update the largest parameter a block of rows at a time.

At ``d = 10⁶`` inputs the first layer's ``d × width`` weight ``W`` dominates the
parameters, and an ordinary step (value and gradient, then the optimiser's update) holds
``W``, Adam's two moments **and** ``W``'s gradient: a fourth ``W``-sized buffer. With
``block_rows``, :func:`optimizer_step` never forms that gradient whole; it computes and
applies it ``block_rows`` rows at a time:

1. The loss is traced to a jaxpr and the equations that read ``W`` (its *uses*) are
   found: a ``dot_general`` that contracts ``W``'s rows (``x @ W`` for the points'
   coordinates) and a ``gather`` of rows (``W[indices]`` for sparse STDE tangents).
2. The loss is evaluated with a zero added to each use's output and differentiated
   w.r.t. the other parameters and those zeros, not ``W``: the zeros' cotangents are the
   uses' output cotangents ``Δ``.
3. For rows ``a … a + r`` the gradient is each use's transpose applied to ``Δ`` with its
   other operand restricted to those rows (the points' coordinates ``a … a + r``; the
   sample indices shifted by ``a``, those outside dropped); the optimiser updates those
   rows of ``W`` and of its ``W``-shaped state, written back in place. With the
   parameters and the state donated to a jitted step, XLA updates them in place, and the
   step's extra memory is one block.

The result equals the ordinary step up to the order of floating-point sums, for
optimisers that act elementwise on ``W`` (Adam, SGD, momentum, weight decay); one that
couples ``W``'s entries (clipping by the global norm) would see one block at a time.
A loss that reads ``W`` in any other way falls back to the ordinary step, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, JaxprEqn, Literal

from stde.core import bind_equation

Array = Any
Loss = Callable[..., Array]
Step = Callable[..., tuple[Any, Any, Array]]


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, in each parameter's dtype (as ``optax.apply_updates``).

    Example:
      >>> import jax.numpy as jnp
      >>> apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, 0.5)})["w"].tolist()
      [1.5, 1.5]
    """
    return jax.tree.map(lambda p, u: jnp.asarray(p + u).astype(jnp.result_type(p)),
                        params, updates)


def optimizer_step(loss: Loss, optimizer: Any, block_rows: int | None = None) -> Step:
    """``step(params, state, *args) -> (params, state, loss(params, *args))``: one update.

    Without ``block_rows`` it is the ordinary step: ``jax.value_and_grad(loss)``, then
    ``optimizer.update`` and :func:`apply_updates`. With ``block_rows``, the gradient of
    the largest parameter ``W`` (by size; its rows are its first axis) is computed and
    applied ``block_rows`` rows at a time and never held whole (see the module's
    docstring); the other parameters are updated as usual. Jit the step with the
    parameters and the state donated (``donate_argnums=(0, 1)``) to update in place.

    Args:
      loss: ``loss(params, *args)``, a scalar.
      optimizer: an optax ``GradientTransformation`` (``init``, ``update``); with
        ``block_rows``, one that acts elementwise on ``W`` (Adam, SGD, momentum).
      block_rows: rows of ``W`` per block, or ``None`` (or ``0``) for the ordinary step.

    Returns:
      The step function.

    Raises:
      ValueError: ``block_rows`` is negative.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> params = {"w": jnp.arange(12.0).reshape(6, 2), "b": jnp.ones(2)}
      >>> points = jnp.linspace(0.0, 1.0, 18).reshape(3, 6)
      >>> loss = lambda p, x: jnp.mean(jnp.tanh(x @ p["w"] + p["b"]) ** 2)
      >>> optimizer = optax.adam(0.1)
      >>> state = optimizer.init(params)
      >>> whole = optimizer_step(loss, optimizer)(params, state, points)
      >>> blocks = optimizer_step(loss, optimizer, block_rows=4)(params, state, points)
      >>> bool(jnp.allclose(whole[0]["w"], blocks[0]["w"], atol=1e-6))
      True
    """
    if block_rows is not None and block_rows < 0:
        raise ValueError(f"block_rows must be a positive number of rows (or None for the "
                         f"ordinary step), got {block_rows}")

    def whole(params: Any, state: Any, *args: Any) -> tuple[Any, Any, Array]:
        value, grads = jax.value_and_grad(loss)(params, *args)
        updates, state = optimizer.update(grads, state, params)
        return apply_updates(params, updates), state, value

    if not block_rows:
        return whole

    def step(params: Any, state: Any, *args: Any) -> tuple[Any, Any, Array]:
        leaves, treedef = jax.tree.flatten(params)
        big = max(range(len(leaves)), key=lambda i: (jnp.size(leaves[i]), -i))
        weight, others = leaves[big], leaves[:big] + leaves[big + 1:]

        def flat_loss(w: Array, rest: list[Array], *call_args: Any) -> Array:
            return loss(treedef.unflatten(_with(rest, big, w)), *call_args)

        closed = jax.make_jaxpr(flat_loss)(weight, others, *args)
        uses, unsupported = _uses(closed)
        if unsupported or jnp.ndim(weight) == 0:
            names = ", ".join(sorted(set(unsupported))) or "nothing (a scalar)"
            warnings.warn(f"optimizer_step(block_rows={block_rows}): the largest parameter "
                          f"{jnp.shape(weight)} is read by {names}, which row blocks do not "
                          f"support; updating it whole", stacklevel=2)
            return whole(params, state, *args)
        arg_leaves = jax.tree.leaves(args)

        def perturbed(rest: list[Array], zeros: list[Array]) -> tuple[Array, list]:
            return _evaluate(closed, uses, zeros, [weight, *rest, *arg_leaves])

        zeros = [jnp.zeros(e.outvars[0].aval.shape, e.outvars[0].aval.dtype) for _, e in uses]
        (value, operands), (other_grads, cotangents) = jax.value_and_grad(
            perturbed, argnums=(0, 1), has_aux=True)(others, zeros)

        state_leaves, state_def = jax.tree.flatten(state)
        empty = treedef.unflatten(_with(others, big, weight[:0]))
        empty_state = jax.tree.leaves(jax.eval_shape(optimizer.init, empty))
        blocked = [i for i, (s, e) in enumerate(zip(state_leaves, empty_state, strict=True))
                   if jnp.shape(s) != e.shape]

        def update(rows: list[Array], grad_rows: Array) -> tuple[list[Array], list[Array]]:
            """The optimiser's update with ``rows`` of ``W`` and of its state: all leaves."""
            block_state = list(state_leaves)
            for i, x in zip(blocked, rows[1:], strict=True):
                block_state[i] = x
            block_params = treedef.unflatten(_with(others, big, rows[0]))
            grads = treedef.unflatten(_with(other_grads, big, grad_rows))
            updates, new_state = optimizer.update(grads, state_def.unflatten(block_state),
                                                  block_params)
            return (jax.tree.leaves(apply_updates(block_params, updates)),
                    jax.tree.leaves(new_state))

        n, block = weight.shape[0], min(block_rows, weight.shape[0])
        blocks = -(-n // block)

        def new_rows(b: Array, buffers: list[Array]) -> tuple[Array, list[Array]]:
            """Block ``b``'s new rows of ``W`` and its state, and where they go.

            Every block has ``block`` rows: the last starts at ``n - block`` and keeps the
            rows that the block before it updated.
            """
            start = jnp.minimum(b * block, n - block)
            rows = [lax.dynamic_slice_in_dim(x, start, block, 0) for x in buffers]
            grad_rows = sum(rule(eqn, ops, ct, start, block, n) for (rule, eqn), ops, ct
                            in zip(uses, operands, cotangents, strict=True))
            new_params, new_state = update(rows, grad_rows)
            done = (start + jnp.arange(block)) < b * block
            done = done.reshape((block,) + (1,) * (weight.ndim - 1))
            return start, [jnp.where(done, old, new) for old, new in zip(
                rows, [new_params[big], *(new_state[i] for i in blocked)], strict=True)]

        def write(buffers: list[Array], start: Array, rows: list[Array]) -> list[Array]:
            return [lax.dynamic_update_slice_in_dim(x, r, start, 0)
                    for x, r in zip(buffers, rows, strict=True)]

        # Pipelined: iteration b writes block b - 1's rows, then reads block b's from the
        # written buffers. No buffer is read after it is written in place, so XLA updates
        # W and its state in place instead of copying them whole.
        def body(b: Array, carry: tuple) -> tuple:
            buffers = write(*carry)
            return (buffers, *new_rows(b, buffers))

        buffers = [weight, *(state_leaves[i] for i in blocked)]
        buffers = write(*lax.fori_loop(1, blocks, body, (buffers, *new_rows(0, buffers))))
        # Every other parameter and state leaf (Adam's count): one update with no rows.
        new_params, new_state = update([x[:0] for x in buffers],
                                       jnp.zeros((0, *weight.shape[1:]), weight.dtype))
        new_params[big] = buffers[0]
        for i, x in zip(blocked, buffers[1:], strict=True):
            new_state[i] = x
        return treedef.unflatten(new_params), state_def.unflatten(new_state), value

    return step


def _with(leaves: Sequence[Any], index: int, leaf: Any) -> list[Any]:
    """``leaves`` with ``leaf`` inserted at ``index``."""
    return [*leaves[:index], leaf, *leaves[index:]]


# ---------------------------------------------------------------------------------------
# The uses of W and their transposes restricted to rows.
# ---------------------------------------------------------------------------------------

RowsRule = Callable[[JaxprEqn, list, Array, Array, int, int], Array]


def _dot_rows(eqn: JaxprEqn, operands: list, cotangent: Array, start: Array, size: int,
              rows: int) -> Array:
    """Rows ``start … start + size`` of ``W``'s cotangent from a ``dot_general`` use."""
    del rows
    position = next(i for i, x in enumerate(operands) if x is None)
    (lhs_contract, rhs_contract), _ = eqn.params["dimension_numbers"]
    mine, theirs = ((lhs_contract, rhs_contract) if position == 0
                    else (rhs_contract, lhs_contract))
    axis = theirs[list(mine).index(0)]
    other = lax.dynamic_slice_in_dim(operands[1 - position], start, size, axis)

    def use(w_rows: Array) -> Array:
        args = [w_rows, other] if position == 0 else [other, w_rows]
        return bind_equation(eqn.primitive, eqn.params, *args)

    return _transpose_rows(use, eqn.invars[position].aval, size, cotangent)


def _gather_rows(eqn: JaxprEqn, operands: list, cotangent: Array, start: Array, size: int,
                 rows: int) -> Array:
    """Rows ``start … start + size`` of ``W``'s cotangent from a ``gather`` of rows.

    The indices are shifted by ``start`` and those outside the block dropped
    (``FILL_OR_DROP``); clipping modes clip first, as the gather did.
    """
    params = eqn.params
    slot = params["dimension_numbers"].start_index_map.index(0)
    indices = operands[1]
    row = indices[..., slot]
    if params["mode"] != lax.GatherScatterMode.FILL_OR_DROP:
        row = jnp.clip(row, 0, rows - 1)
    indices = indices.at[..., slot].set(row - jnp.asarray(start, row.dtype))
    dropping = dict(params, mode=lax.GatherScatterMode.FILL_OR_DROP, fill_value=None)

    def use(w_rows: Array) -> Array:
        return bind_equation(eqn.primitive, dropping, w_rows, indices)

    return _transpose_rows(use, eqn.invars[0].aval, size, cotangent)


def _transpose_rows(use: Callable[[Array], Array], weight: Any, size: int,
                    cotangent: Array) -> Array:
    """The transpose of the linear ``use`` of ``size`` rows of ``weight`` at ``cotangent``."""
    shape = jax.ShapeDtypeStruct((size, *weight.shape[1:]), weight.dtype)
    return jax.linear_transpose(use, shape)(cotangent)[0]


def _rule_for(eqn: JaxprEqn, weight: Any) -> RowsRule | None:
    """The rows rule of a use of ``weight``, or ``None`` when row blocks cannot handle it."""
    positions = [i for i, v in enumerate(eqn.invars) if v is weight]
    if len(positions) != 1 or len(eqn.outvars) != 1:
        return None
    position = positions[0]
    if str(eqn.primitive) == "dot_general":
        (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
        contract, batch = ((lhs_contract, lhs_batch) if position == 0
                           else (rhs_contract, rhs_batch))
        return _dot_rows if 0 in contract and 0 not in batch else None
    if str(eqn.primitive) == "gather" and position == 0:
        numbers = eqn.params["dimension_numbers"]
        if (0 in numbers.start_index_map and eqn.params["slice_sizes"][0] == 1
                and 0 not in getattr(numbers, "operand_batching_dims", ())):
            return _gather_rows
    return None


def _uses(closed: ClosedJaxpr) -> tuple[list[tuple[RowsRule, JaxprEqn]], list[str]]:
    """The uses of ``closed``'s first input with their rows rules; the unsupported ones' names."""
    weight = closed.jaxpr.invars[0]
    uses, unsupported = [], []
    for eqn in closed.jaxpr.eqns:
        if any(v is weight for v in eqn.invars):
            rule = _rule_for(eqn, weight)
            if rule is None:
                unsupported.append(str(eqn.primitive))
            else:
                uses.append((rule, eqn))
    if any(v is weight for v in closed.jaxpr.outvars):
        unsupported.append("the output")
    return uses, unsupported


def _evaluate(closed: ClosedJaxpr, uses: list[tuple[RowsRule, JaxprEqn]],
              perturbations: list[Array], inputs: list[Array]) -> tuple[Array, list]:
    """``closed(*inputs)`` with ``perturbations`` added to the uses' outputs.

    Returns the (scalar) output and, per use, its operands with ``None`` for ``W``.
    """
    jaxpr, weight = closed.jaxpr, closed.jaxpr.invars[0]
    added = {id(eqn): p for (_, eqn), p in zip(uses, perturbations, strict=True)}
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, closed.consts))
    env.update(zip(jaxpr.invars, inputs, strict=True))

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    operands: dict[int, list] = {}
    for eqn in jaxpr.eqns:
        args = [read(v) for v in eqn.invars]
        with eqn.ctx.manager:
            out = bind_equation(eqn.primitive, eqn.params, *args)
        if id(eqn) in added:
            out = out + added[id(eqn)]
            operands[id(eqn)] = [None if v is weight else a for v, a in zip(eqn.invars, args)]
        env.update(zip(eqn.outvars, out if eqn.primitive.multiple_results else [out]))
    return read(jaxpr.outvars[0]), [operands[id(eqn)] for _, eqn in uses]
