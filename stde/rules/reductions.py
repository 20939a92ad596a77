"""Reductions, scans, sorting, pooling and scatters: selections, products, any reducer.

Three kinds of primitive live here.

* **Locally linear** (max/min reductions, ``cummax``, ``sort``, ``top_k``, max pooling,
  overwriting scatters, ...): on each piece, chosen by the primal, the output is a fixed
  linear map ``J`` of the floating operands (it *selects* entries). Every coefficient,
  the summed top included, is that map applied to the input coefficient:
  ``y_k = J x_k`` (:func:`map_coefficients`). The map is an explicit gather where the
  selection is an index along one axis (:func:`sort_rule`, :func:`top_k_rule`), a mean
  over the entries that attain the extremum (:func:`reduce_chooser_rule`, as JAX's JVP
  at ties) and JAX's own linearisation at the primal otherwise
  (:func:`locally_linear_rule`), which for these primitives is a selection too.
* **Products** (``reduce_prod``, ``cumprod``, ``cumlogsumexp``, ``scatter_mul``): written
  as a log-depth composition of primitives that have rules (``mul`` through
  :func:`stde.rules.series.leibniz`, slicing, ``exp``/``log``) and interpreted on the
  jets (:func:`evaluate_composition`). Products stay exact where entries are zero.
* **Reductions by any reducer** (``reduce`` and ``reduce_window``: ``lax.reduce`` or
  ``lax.reduce_window`` of several operands, or a reducer JAX does not turn into
  ``reduce_sum`` and the like): the products' log-depth tree with the reducer itself as
  the combining step, interpreted on the jets (:func:`reduce_rule`,
  :func:`reduce_window_rule`, over the stacked :func:`windows`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.pjit import reshard_p

from stde.core import Array, Context, JetValue, bind_at, bind_equation, is_float
from stde.rules.linear import map_coefficients, register_linear
from stde.rules.params import reducer, scatter_combiner
from stde.rules.registry import register

"""``linear_map(*coefficients) -> outputs``: one entry per result, ``None`` for non-float."""


def locally_linear_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                        **params: Any) -> Any:
    """Rule for a primitive that is linear on each piece selected by the primal.

    The map ``J`` is JAX's linearisation of ``primitive`` at the primal with respect
    to the floating operands (integer operands such as indices stay fixed). All higher
    derivatives vanish on the piece, so ``y_k = J x_k`` for every ``k``.

    Example:
      >>> import functools
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> from stde.core import JetValue
      >>> from stde.interpreter import Interpreter
      >>> rule = functools.partial(locally_linear_rule, lax.cummax_p)
      >>> x = JetValue(jnp.array([1.0, 3.0, 2.0]), (), jnp.array([10.0, 20.0, 30.0]))
      >>> rule(Interpreter(1, 1), [x], axis=0, reverse=False).summed.tolist()
      [10.0, 20.0, 20.0]

    """
    floats = [n for n, x in enumerate(inputs) if is_float(x.primal)]
    primals = [x.primal for x in inputs]
    on_floats = bind_at(primitive, params, primals, floats)
    primals_out, jvp = jax.linearize(on_floats, *(primals[n] for n in floats))

    def linear_map(*tangents: Array) -> list[Array | None]:
        return [t if is_float(p) else None for p, t in zip(primals_out, jvp(*tangents))]

    out = map_coefficients(ctx, linear_map, [inputs[n] for n in floats], primals_out)
    return out if primitive.multiple_results else out[0]


def evaluate_composition(ctx: Context, function: Callable[..., Any],
                         inputs: Sequence[JetValue]) -> list[JetValue]:
    """Interprets ``function(*primals)``, written with primitives that have rules, on jets.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> from stde.interpreter import Interpreter
      >>> x = JetValue(jnp.array(3.0), (), jnp.array(1.0))
      >>> (y,) = evaluate_composition(Interpreter(1, 1), lambda a: a * a, [x])
      >>> float(y.summed)
      6.0

    """
    closed_jaxpr = jax.make_jaxpr(function)(*(x.primal for x in inputs))
    return ctx.eval_jaxpr(closed_jaxpr, inputs)


# --- selections along one axis: reduce_max/min, sort, top_k -------------------------------


def _take(indices: Array, axis: int, c: Array) -> Array:
    """``take_along_axis(c, indices, axis)`` for indices known to be in bounds."""
    return jnp.take_along_axis(c, indices, axis=axis, mode="promise_in_bounds")


def reduce_chooser_rule(primitive: Any, chooser: Callable[..., Array], ctx: Context,
                        inputs: Sequence[JetValue], *, axes: Sequence[int],
                        **params: Any) -> JetValue:
    """``reduce_max``/``reduce_min``: the coefficients of the chosen entry.

    Where several entries attain the extremum, the mean of their coefficients, as JAX's
    JVP of these reductions (and so ``jax.hessian``) takes it. The entry ``chooser``
    (``jnp.argmax``/``jnp.argmin``) picks is always among them: should XLA compute the
    operand twice with other rounding, no entry might equal the extremum, and JAX's
    JVP divides by that count of zero.
    """
    (x,) = inputs
    primal_out = bind_equation(primitive, {"axes": axes, **params}, x.primal)
    kept = [d for d in range(np.ndim(x.primal)) if d not in axes]
    order = (*kept, *axes)
    size = int(np.prod([np.shape(x.primal)[d] for d in axes], dtype=int))
    if size == 0:  # an empty reduction is the reducer's identity: a constant
        return JetValue.constant(primal_out, ctx.order)

    def flat(c: Array) -> Array:  # reduced axes moved last and merged
        return jnp.transpose(c, order).reshape((*np.shape(primal_out), size))

    values = flat(x.primal)
    index = chooser(values, axis=-1, keepdims=True)
    first = lax.broadcasted_iota(index.dtype, values.shape, values.ndim - 1) == index
    chosen = (values == primal_out[..., None]) | first
    count = chosen.sum(-1)

    def mean_of_chosen(c: Array) -> list[Array]:
        picked = jnp.where(chosen, flat(c), jnp.zeros((), c.dtype)).sum(-1)
        return [picked / count.astype(c.dtype)]

    return map_coefficients(ctx, mean_of_chosen, [x], [primal_out])[0]


def sort_rule(ctx: Context, inputs: Sequence[JetValue], *, dimension: int,
              **params: Any) -> list[JetValue]:
    """``sort``: every operand permuted like the primal keys (``num_keys`` of them)."""
    primals = [x.primal for x in inputs]
    iota = lax.broadcasted_iota(np.int32, np.shape(primals[0]), dimension)
    *sorted_primals, permutation = bind_equation(
        lax.sort_p, {"dimension": dimension, **params}, *primals, iota)

    def permute(c: Array) -> list[Array]:
        return [_take(permutation, dimension, c)]
    return [map_coefficients(ctx, permute, [x], [p])[0] for x, p in zip(inputs, sorted_primals)]


def top_k_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``top_k``: the values get the selected entries' coefficients; indices are constant."""
    (x,) = inputs
    values, indices = bind_equation(lax.top_k_p, params, x.primal)
    axis = params.get("axis", -1)
    (values_out,) = map_coefficients(ctx, lambda c: [_take(indices, axis, c)], [x], [values])
    return [values_out, JetValue.constant(indices, ctx.order)]


# --- products: reduce_prod, cumprod, cumlogsumexp, scatter_mul -----------------------------


def tree_reduce(combine: Callable[..., list[Array]], operands: Sequence[Array],
                axes: Sequence[int]) -> list[Array]:
    """``operands`` reduced over ``axes`` by a log-depth tree of pairwise ``combine``.

    ``combine(*firsts, *seconds)`` combines two equal-shaped halves of every operand
    elementwise and returns one array per operand. Halves are combined until one entry
    is left (an odd entry waits for the next level), so the tree has no identity
    element and the reduced axes must not be empty.

    Example:
      >>> import jax.numpy as jnp
      >>> [y.tolist() for y in tree_reduce(lambda a, b: [a + b], [jnp.ones((5, 2))], (0,))]
      [[5.0, 5.0]]

    """
    x = operands[0]
    kept = [d for d in range(x.ndim) if d not in axes]
    out_shape = tuple(x.shape[d] for d in kept)
    reduced = math.prod(x.shape[d] for d in axes)
    xs = [jnp.transpose(x, (*axes, *kept)).reshape((reduced, *out_shape)) for x in operands]
    while xs[0].shape[0] > 1:
        count = xs[0].shape[0]
        half = count // 2
        paired = combine(*(x[:half] for x in xs), *(x[half:2 * half] for x in xs))
        xs = [lax.concatenate([p, x[2 * half:]], 0) if count % 2 else p
              for p, x in zip(paired, xs)]
    return [x[0] for x in xs]


def tree_product(x: Array, axes: Sequence[int]) -> Array:
    """``prod(x, axes)`` as a log-depth tree of pairwise products (no division).

    Example:
      >>> import jax.numpy as jnp
      >>> tree_product(jnp.arange(1.0, 8.0).reshape(7, 1), (0,)).tolist()
      [5040.0]

    """
    if any(x.shape[d] == 0 for d in axes):
        return jnp.ones([n for d, n in enumerate(x.shape) if d not in axes], x.dtype)
    return tree_reduce(lambda a, b: [a * b], [x], axes)[0]


def _log_add_exp(a: Array, b: Array) -> Array:
    """``log(exp(a) + exp(b))`` shifted by the larger primal (a constant, so exact)."""
    shift = lax.stop_gradient(jnp.maximum(a, b))
    shift = jnp.where(jnp.isfinite(shift), shift, jnp.zeros_like(shift))
    return shift + jnp.log(jnp.exp(a - shift) + jnp.exp(b - shift))


def composition_rule(compose: Callable[..., Callable[..., Array]], ctx: Context,
                     inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """Rule that interprets the composition ``compose(**params)`` on the operands."""
    return evaluate_composition(ctx, compose(**params), inputs)[0]


def _reduce_prod(*, axes: Sequence[int], **_: Any) -> Callable[[Array], Array]:
    return functools.partial(tree_product, axes=tuple(axes))


def _cumulative(combine: Callable[[Array, Array], Array]) -> Callable[..., Any]:
    def compose(*, axis: int, reverse: bool) -> Callable[[Array], Array]:
        return functools.partial(lax.associative_scan, combine, axis=axis, reverse=reverse)
    return compose


def scatter_mul_rule(ctx: Context, inputs: Sequence[JetValue], *, dimension_numbers: Any,
                     indices_are_sorted: bool, unique_indices: bool, mode: Any,
                     **_: Any) -> JetValue:
    """``scatter_mul``: ``operand · factors``, ``factors`` the updates scattered onto ones.

    With constant updates the factors are a constant and duplicate indices are fine.
    With jets in the updates each position must receive at most one update (as for
    ``jax.grad``), so the factors are an overwriting scatter of the updates.

    Raises:
      NotImplementedError: the updates carry coefficients and ``unique_indices`` is off.

    """
    operand, indices, updates = inputs
    if not updates.is_constant and not unique_indices:
        raise NotImplementedError(
            "stde: Taylor coefficients of scatter_mul with respect to the updates need "
            "unique indices; pass unique_indices=True (e.g. x.at[i].mul(y, "
            "unique_indices=True)) when each position receives at most one update.")
    scatter = lax.scatter_mul if updates.is_constant else lax.scatter
    options = {"dimension_numbers": dimension_numbers, "mode": mode,
               "indices_are_sorted": indices_are_sorted, "unique_indices": unique_indices}

    def product(x: Array, i: Array, u: Array) -> Array:
        return x * scatter(jnp.ones_like(x), i, u, **options)
    return evaluate_composition(ctx, product, inputs)[0]


def scatter_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``scatter``: an overwrite, or a function of the old entries (``x.at[i].apply(f)``).

    An overwrite (``x.at[i].set(u)``) is locally linear (:func:`locally_linear_rule`).
    With an update function ``g(old, update)`` (``x.at[i].apply(f)``, which JAX cannot
    differentiate) the entries at unique indices are gathered, ``g`` is interpreted on
    them and the updates, and the results overwrite them. The gather clamps indices out
    of bounds, whose updates the scatter drops as the primitive does.

    Raises:
      NotImplementedError: an update function at indices not promised unique (a
        repeated index applies the function again).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> f = lambda x: x.at[0].apply(jnp.sin).sum()
      >>> x = jnp.array([0.5, 2.0])
      >>> bool(jnp.allclose(stde.laplacian(f)(x), -jnp.sin(x[0])))
      True

    """
    combiner = scatter_combiner(params)
    if combiner is None:
        return locally_linear_rule(lax.scatter_p, ctx, inputs, **params)
    if not params["unique_indices"]:
        raise NotImplementedError(
            "stde: Taylor coefficients of x.at[i].apply(f) need unique indices (a repeated "
            "index applies f again); pass unique_indices=True (x.at[i].apply(f, "
            "unique_indices=True)) when each position is indexed at most once.")
    numbers = params["dimension_numbers"]
    operand, _, updates = inputs
    window = iter(np.shape(updates.primal)[d] for d in numbers.update_window_dims)
    slice_sizes = [1 if d in numbers.inserted_window_dims or d in numbers.operand_batching_dims
                   else next(window) for d in range(np.ndim(operand.primal))]
    gather_numbers = lax.GatherDimensionNumbers(
        offset_dims=numbers.update_window_dims,
        collapsed_slice_dims=numbers.inserted_window_dims,
        start_index_map=numbers.scatter_dims_to_operand_dims,
        operand_batching_dims=numbers.operand_batching_dims,
        start_indices_batching_dims=numbers.scatter_indices_batching_dims)
    combine = _elementwise(combiner)

    def applied(x: Array, indices: Array, u: Array) -> Array:
        old = lax.gather(x, indices, gather_numbers, slice_sizes,
                         mode=lax.GatherScatterMode.CLIP)
        return lax.scatter(x, indices, combine(old, u)[0], numbers, mode=params["mode"],
                           indices_are_sorted=params["indices_are_sorted"],
                           unique_indices=True)
    return evaluate_composition(ctx, applied, inputs)[0]


# --- reduce with any reducer --------------------------------------------------------------


def _elementwise(scalar_reducer: Callable[..., list[Array]]) -> Callable[..., list[Array]]:
    """A reducer of scalars applied entry by entry to equal-shaped arrays."""
    def combine(*xs: Array) -> list[Array]:
        outs = jax.vmap(scalar_reducer)(*(x.reshape(-1) for x in xs))
        return [o.reshape(xs[0].shape) for o in outs]
    return combine


def _by_reducer(primitive: Any, reduction: Callable[..., list[Array]], ctx: Context,
                inputs: Sequence[JetValue], params: dict[str, Any]) -> list[JetValue]:
    """``primitive(*operands, *initial)`` by a reducer: ``reduction`` on the jets.

    ``reduction(combine, operands, initial)`` writes the primitive with ``combine``, its
    reducer applied entry by entry; the primal is the primitive's own.
    """
    count = len(inputs) // 2
    if any(not x.is_constant for x in inputs[count:]):
        raise NotImplementedError(
            f"stde: {primitive.name} with initial values that depend on the input has no "
            "Taylor coefficients (XLA asks the initial value to be the reducer's identity); "
            "reduce with a constant identity and combine the result with the moving value.")
    combine = _elementwise(reducer(params))
    outs = evaluate_composition(
        ctx, lambda *args: reduction(combine, args[:count], args[count:]), inputs)
    primals = bind_equation(primitive, params, *(x.primal for x in inputs))
    return [JetValue(p, o.lower, o.summed) for p, o in zip(primals, outs)]


def reduce_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``reduce`` with any reducer (``lax.reduce`` of several operands, or of a new monoid).

    The coefficients are those of a log-depth tree of the reducer applied pairwise
    (:func:`tree_reduce`) and then once with the initial values, interpreted with the
    rules of the reducer's primitives; the primal is the primitive's own. XLA asks the
    initial values to be the reducer's identity, and then the tree equals the reduction
    (JAX's JVP rule differentiates the same tree); an empty reduction is its initial
    values. Initial values that move with the input are refused, as by JAX's JVP: they
    would not be an identity.

    Raises:
      NotImplementedError: an initial value carries Taylor coefficients.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> def sums(x):   # a two-operand reduction: Σ x and Σ x²
      ...     return jax.lax.reduce((x, x * x), (0.0, 0.0),
      ...                           lambda a, b: (a[0] + b[0], a[1] + b[1]), (0,))
      >>> float(stde.laplacian(lambda x: sums(x)[1])(jnp.ones(3)))
      6.0

    """
    axes = tuple(params["dimensions"])

    def reduction(combine: Callable[..., list[Array]], operands: Sequence[Array],
                  initial: Sequence[Array]) -> list[Array]:
        shape = [n for d, n in enumerate(np.shape(operands[0])) if d not in axes]
        initial = [jnp.broadcast_to(i, shape) for i in initial]
        if any(np.shape(operands[0])[d] == 0 for d in axes):
            return initial
        return combine(*tree_reduce(combine, operands, axes), *initial)

    return _by_reducer(lax.reduce_p, reduction, ctx, inputs, params)


def windows(x: Array, initial: Array, *, window_dimensions: Sequence[int],
            window_strides: Sequence[int], padding: Sequence[tuple[int, int]],
            base_dilation: Sequence[int], window_dilation: Sequence[int]) -> Array:
    """The windows of ``reduce_window``, stacked on a new leading axis.

    ``x`` is padded with ``initial`` (outside and, for a base dilation, between its
    entries) as XLA pads it; entry ``[w, *o]`` is the element at offset ``w`` (in
    row-major order over the window) of output ``o``'s window.

    Example:
      >>> import jax.numpy as jnp
      >>> windows(jnp.arange(4.0), jnp.array(0.0), window_dimensions=(2,),
      ...         window_strides=(1,), padding=((0, 1),), base_dilation=(1,),
      ...         window_dilation=(1,)).tolist()
      [[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 0.0]]

    """
    padded = lax.pad(x, initial.astype(x.dtype),
                     [(lo, hi, b - 1) for (lo, hi), b in zip(padding, base_dilation)])
    spans = [(w - 1) * d + 1 for w, d in zip(window_dimensions, window_dilation)]
    out_shape = [max(0, (n - span) // s + 1)
                 for n, span, s in zip(padded.shape, spans, window_strides)]
    slices = [lax.slice(padded, start,
                        [a + (n - 1) * s + 1 if n else a for a, n, s in
                         zip(start, out_shape, window_strides)], window_strides)
              for offset in np.ndindex(*window_dimensions)
              for start in [[o * d for o, d in zip(offset, window_dilation)]]]
    return jnp.stack(slices) if slices else jnp.zeros((0, *out_shape), x.dtype)


def reduce_window_rule(ctx: Context, inputs: Sequence[JetValue],
                       **params: Any) -> list[JetValue]:
    """``reduce_window`` with any reducer (of several operands, or not a sum, max or min).

    Each window is reduced by the tree of :func:`reduce_rule` over the stacked
    :func:`windows`, then combined once with the initial values, which also pad the
    operands; the primal is the primitive's own.

    Raises:
      NotImplementedError: an initial value carries Taylor coefficients.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> def sums(x):   # sliding sums of x and of x², windows of 2
      ...     return jax.lax.reduce_window((x, x * x), (0.0, 0.0),
      ...         lambda a, b: (a[0] + b[0], a[1] + b[1]), (2,), (1,), "VALID")
      >>> float(stde.laplacian(lambda x: sums(x)[1].sum())(jnp.ones(3)))
      8.0

    """
    shape = {name: params[name] for name in ("window_dimensions", "window_strides", "padding",
                                              "base_dilation", "window_dilation")}

    def reduction(combine: Callable[..., list[Array]], operands: Sequence[Array],
                  initial: Sequence[Array]) -> list[Array]:
        stacked = [windows(x, i, **shape) for x, i in zip(operands, initial)]
        initial = [jnp.broadcast_to(i, stacked[0].shape[1:]) for i in initial]
        if stacked[0].shape[0] == 0:
            return initial
        return combine(*tree_reduce(combine, stacked, (0,)), *initial)

    return _by_reducer(lax.reduce_window_p, reduction, ctx, inputs, params)


_CHOOSES = "takes the coefficients of entries chosen by primal value, from dense arrays"
register(lax.reduce_max_p, functools.partial(reduce_chooser_rule, lax.reduce_max_p, jnp.argmax),
         sparse=_CHOOSES)
register(lax.reduce_min_p, functools.partial(reduce_chooser_rule, lax.reduce_min_p, jnp.argmin),
         sparse=_CHOOSES)
register(lax.sort_p, sort_rule, sparse=_CHOOSES)
register(lax.top_k_p, top_k_rule, sparse=_CHOOSES)
# Compositions are interpreted primitive by primitive: each piece keeps or densifies.
register(lax.reduce_prod_p, functools.partial(composition_rule, _reduce_prod), sparse=True)
register(lax.cumprod_p, functools.partial(composition_rule, _cumulative(lax.mul)), sparse=True)
register(lax.cumlogsumexp_p, functools.partial(composition_rule, _cumulative(_log_add_exp)),
         sparse=True)
register(lax.scatter_mul_p, scatter_mul_rule, sparse=True)
register(lax.reduce_p, reduce_rule, sparse=True)
register(lax.reduce_window_p, reduce_window_rule, sparse=True)
for _primitive in (
    lax.cummax_p, lax.cummin_p, lax.reduce_window_max_p, lax.reduce_window_min_p,
    lax.scatter_min_p, lax.scatter_max_p, lax.select_and_gather_add_p,
    lax.select_and_scatter_add_p, lax.approx_top_k_p,
):
    register(_primitive, functools.partial(locally_linear_rule, _primitive),
             sparse="JAX's linearisation at the primal is applied to dense coefficients")
register(lax.scatter_p, scatter_rule,
         sparse="JAX's linearisation at the primal, or the update function, is applied to "
                "dense coefficients")
for _primitive in (lax.stack_p, lax.unstack_p, reshard_p):
    register_linear(_primitive)
