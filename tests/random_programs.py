"""Seeded random programs built from every rule family, for differential tests.

A program maps parameters ``θ`` (a dict of arrays) and a point ``x`` of dimension ``D``
to a scalar or a 2-vector. It scales and shifts ``x`` by parameters (so every program
has some), then runs a chain of *steps*; each step takes the latest value
(and sometimes an earlier one), all vectors of length ``D``, and appends its result.
The steps come from the rule families of DESIGN §4: elementwise nonlinear, arithmetic,
linear/structural, piecewise, reductions, control flow (``cond``, ``scan``,
``fori_loop``, ``while_loop``, ``jit``, ``checkpoint``, ``custom_jvp``) and linear
algebra. Everything a program holds comes from ``numpy.random.default_rng(seed)``, so
``make_program(seed)`` rebuilds it exactly; :meth:`Program.listing` prints it.

Inputs stay where every operation is smooth: ``log``/``sqrt`` see ``1 + h²``-like
arguments, matrices are diagonally dominant with well-separated diagonals (distinct
eigenvalues), and kinks (``max``, ``abs``, ``clamp``, ``relu``) are met only at
points of measure zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = Any


@dataclasses.dataclass(frozen=True)
class Op:
    """One kind of step.

    ``build(rng, dim)`` draws the step's fixed structure (indices, constants) and returns
    ``(apply, parameter_shapes)``: ``apply(params, h, other)`` maps the latest value
    ``h`` and an earlier one ``other`` (both ``(D,)``) to a ``(D,)`` value, reading its
    trainable parameters from ``params`` (arrays of ``parameter_shapes``).
    """

    name: str
    family: str
    build: Callable[[np.random.Generator, int], tuple[Callable[..., Array], dict[str, tuple]]]
    reverse_differentiable: bool = True


OPS: dict[str, Op] = {}


def _op(name: str, family: str, reverse_differentiable: bool = True):
    def register(build):
        OPS[name] = Op(name, family, build, reverse_differentiable)
        return build
    return register


def _constant(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def _pointwise(name: str, f: Callable[[Array], Array], family: str = "elementwise") -> None:
    """A parameter-free step ``h ↦ f(h)``."""
    _op(name, family)(lambda rng, dim: ((lambda p, h, o: f(h)), {}))


# ------------------------------------------------------------------ elementwise nonlinear

_pointwise("tanh", jnp.tanh)
_pointwise("exp", lambda h: jnp.exp(0.5 * h))
_pointwise("log1p", lambda h: jnp.log1p(h * h))
_pointwise("sin", jnp.sin)
_pointwise("logistic", jax.nn.sigmoid)
_pointwise("erf", jax.scipy.special.erf)
_pointwise("sqrt", lambda h: jnp.sqrt(0.5 + h * h))
_pointwise("integer_pow", lambda h: 0.5 * h ** 3 - h ** 2, "arithmetic")


# ----------------------------------------------------------------------------- arithmetic

_op("mul", "arithmetic")(lambda rng, dim: ((lambda p, h, o: h * o), {}))
_op("div", "arithmetic")(lambda rng, dim: ((lambda p, h, o: h / (1.5 + o * o)), {}))


@_op("dot_general", "arithmetic")
def _dense(rng, dim):
    return (lambda p, h, o: p["w"] @ h + p["b"]), {"w": (dim, dim), "b": (dim,)}


@_op("dot_jets", "arithmetic")
def _dot_jets(rng, dim):
    return (lambda p, h, o: jnp.outer(h, o) @ p["v"]), {"v": (dim,)}


# ---------------------------------------------------------------------- linear/structural


@_op("reshape_transpose", "structural")
def _reshape_transpose(rng, dim):
    u = _constant(rng, dim)
    return (lambda p, h, o: jnp.outer(h, u).T.reshape(-1)[::dim + 1] + h[::-1]), {}


@_op("slice_concatenate", "structural")
def _slice_concatenate(rng, dim):
    shift = int(rng.integers(1, dim))
    return (lambda p, h, o: jnp.concatenate([h[shift:], h[:shift]]) - 0.5 * o), {}


_pointwise("cumsum", lambda h: 0.5 * jnp.cumsum(h), "structural")


@_op("gather", "structural")
def _gather(rng, dim):
    index = rng.integers(0, dim, dim)
    return (lambda p, h, o: h[index] + o), {}


@_op("broadcast_reduce_sum", "structural")
def _broadcast_reduce_sum(rng, dim):
    return (lambda p, h, o: jnp.sum(jnp.broadcast_to(h, (2, dim)) * p["w"], axis=0)
            + jnp.sum(h)), {"w": (2, dim)}


@_op("pad", "structural")
def _pad(rng, dim):
    return (lambda p, h, o: jnp.pad(h, (1, 1))[:dim] + jnp.pad(o, (0, 2))[2:]), {}


# ------------------------------------------------------------------------------ piecewise

_pointwise("max", lambda h: jnp.maximum(h, 0.1) + 0.3 * h, "piecewise")
_pointwise("abs", lambda h: jnp.abs(h) * h, "piecewise")
_pointwise("clamp", lambda h: jnp.clip(h, -0.7, 0.6) + 0.5 * h, "piecewise")
_op("max_of_two", "piecewise")(lambda rng, dim: ((lambda p, h, o: jnp.maximum(h, o)), {}))


# ----------------------------------------------------------------------------- reductions

def _minus_half_max(h: Array) -> Array:
    """``h - max(h) / 2``, its operand held in one buffer for the oracle's sake.

    JAX's JVP of ``max`` divides by the number of entries equal to the maximum. The
    jitted oracle returned NaN (stde finite) for seeds 1062, 1108, 1143 (jax 0.12) and
    5100 (jax 0.10) in one long run and not in fresh processes later; the likely cause
    is XLA recomputing the operand in another fusion with other rounding (e.g. a fused
    multiply-add), so that no entry equals the maximum and the JVP is 0/0. The barrier
    keeps one copy. stde takes the same mean over the entries equal to the maximum, and
    always counts the one ``argmax`` picks.
    """
    h = lax.optimization_barrier(h)
    return h - 0.5 * jnp.max(h)


_pointwise("reduce_max", _minus_half_max, "reductions")
_pointwise("prod", lambda h: h * jnp.prod(1.0 + 0.3 * jnp.tanh(h)), "reductions")
_pointwise("sort", lambda h: jnp.sort(h) * jnp.arange(1.0, h.shape[0] + 1), "reductions")
_pointwise("logsumexp", lambda h: h - jax.nn.logsumexp(h), "reductions")


# ---------------------------------------------------------------------------- control flow


@_op("cond", "control_flow")
def _cond(rng, dim):
    return (lambda p, h, o: lax.cond(jnp.sum(h) > 0.0, lambda a, b: jnp.sin(a) * b,
                                     lambda a, b: a + jnp.tanh(b), h, o)), {}


@_op("scan", "control_flow")
def _scan(rng, dim):
    def apply(p, h, o):
        def step(carry, row):
            new = jnp.tanh(carry * row + o)
            return new, jnp.sum(new * carry)
        carry, ys = lax.scan(step, h, p["rows"])
        return carry + 0.1 * jnp.sum(ys)
    return apply, {"rows": (3, dim)}


@_op("fori_loop", "control_flow")
def _fori_loop(rng, dim):
    return (lambda p, h, o: lax.fori_loop(0, 3, lambda i, c: c + 0.3 * jnp.sin(c * p["a"]), h),
            {"a": (dim,)})


@_op("while_loop", "control_flow", reverse_differentiable=False)
def _while_loop(rng, dim):
    """Three iterations, counted by an integer carry; JAX cannot reverse-differentiate it."""
    def apply(p, h, o):
        _, out = lax.while_loop(lambda c: c[0] < 3,
                                lambda c: (c[0] + 1, jnp.tanh(c[1]) + 0.5 * o), (0, h))
        return out
    return apply, {}


@_op("jit", "control_flow")
def _jit(rng, dim):
    inner = jax.jit(lambda h, o: jnp.sin(h) * jnp.exp(0.3 * o))
    return (lambda p, h, o: inner(h, o)), {}


@_op("checkpoint", "control_flow")
def _checkpoint(rng, dim):
    inner = jax.checkpoint(lambda w, h: jnp.tanh(w @ h))
    return (lambda p, h, o: inner(p["w"], h)), {"w": (dim, dim)}


_pointwise("relu", lambda h: jax.nn.relu(h) + 0.2 * h, "custom_jvp")
_pointwise("softplus", jax.nn.softplus, "custom_jvp")
_pointwise("gelu", jax.nn.gelu, "elementwise")   # a jit of tanh and polynomials, no custom_jvp


# --------------------------------------------------------------------------- linear algebra


def _matrix(h: Array, o: Array, u: np.ndarray) -> Array:
    """Diagonal entries ``1.5·i ± 0.3`` and off-diagonal ones below ``0.2``: invertible,
    with Gershgorin discs apart (distinct eigenvalues of the symmetric part)."""
    dim = h.shape[0]
    t = jnp.tanh(h)
    return (jnp.diag(1.5 * jnp.arange(1.0, dim + 1) + 0.3 * t)
            + 0.2 / dim * jnp.outer(t, u) + 0.1 / dim * jnp.outer(jnp.sin(o), u[::-1]))


def _linalg(name: str, read: Callable[[Array, Array, Array], Array]) -> None:
    """A step ``h ↦ read(M(h, other), h, other)`` through one factorisation."""
    @_op(name, "linalg")
    def build(rng, dim):
        u = rng.uniform(-1.0, 1.0, dim)
        return (lambda p, h, o: read(_matrix(h, o, u), h, o)), {}


def _symmetric(m: Array) -> Array:
    return 0.5 * (m + m.T)


def _eigh(m: Array, h: Array, o: Array) -> Array:
    w, v = jnp.linalg.eigh(_symmetric(m))
    return w + (v @ jnp.diag(jnp.sin(w)) @ v.T) @ o


_linalg("solve", lambda m, h, o: jnp.linalg.solve(m, o + 1.0))
_linalg("inv", lambda m, h, o: jnp.linalg.inv(m) @ (h + 1.0))
_linalg("slogdet", lambda m, h, o: h * jnp.linalg.slogdet(m)[1])
_linalg("cholesky", lambda m, h, o: jnp.linalg.cholesky(m @ m.T) @ o)
_linalg("eigh", _eigh)


# --------------------------------------------------------------------------------- programs


@dataclasses.dataclass(frozen=True)
class Step:
    """``values.append(apply(own parameters, values[-1], values[other]))``."""

    op: Op
    apply: Callable[..., Array]
    other: int
    parameters: dict[str, tuple]


@dataclasses.dataclass(frozen=True)
class Program:
    """A random program ``(θ, x) ↦ y``, reproducible from ``seed``."""

    seed: int
    dim: int
    steps: tuple[Step, ...]
    readout: np.ndarray

    def __call__(self, params: dict[str, Array], x: Array) -> Array:
        """Runs the program: ``x`` is ``(D,)``; the output is ``()`` or ``(2,)``."""
        values = [x * params["input.scale"] + params["input.shift"]]
        for i, step in enumerate(self.steps):
            own = {name: params[f"{i}.{name}"] for name in step.parameters}
            values.append(step.apply(own, values[-1], values[step.other]))
        return jnp.asarray(self.readout) @ values[-1]

    def init_params(self) -> dict[str, np.ndarray]:
        """Parameters ``θ`` (scaled normal draws from the seed's generator)."""
        rng = np.random.default_rng([self.seed, 1])
        params = {"input.scale": 1.0 + _constant(rng, self.dim, scale=0.2),
                  "input.shift": _constant(rng, self.dim, scale=0.2)}
        params.update({f"{i}.{name}": _constant(rng, *shape, scale=1 / np.sqrt(self.dim))
                       for i, step in enumerate(self.steps)
                       for name, shape in step.parameters.items()})
        return params

    @property
    def reverse_differentiable(self) -> bool:
        """Whether ``jax.grad`` can differentiate the program (no ``while_loop``)."""
        return all(step.op.reverse_differentiable for step in self.steps)

    @property
    def op_names(self) -> list[str]:
        """The steps' operation names, in order."""
        return [step.op.name for step in self.steps]

    def listing(self) -> str:
        """A readable description: steps, their operands, and the program's jaxpr."""
        lines = [f"random program seed={self.seed}, D={self.dim}, "
                 f"output shape {self.readout.shape[:-1]}:",
                 "  v0 = x * θ[input.scale] + θ[input.shift]"]
        lines += [f"  v{i + 1} = {step.op.name}[{step.op.family}](v{i}, v{step.other})"
                  for i, step in enumerate(self.steps)]
        lines.append(f"  y = readout @ v{len(self.steps)}")
        jaxpr = jax.make_jaxpr(lambda x: self(self.init_params(), x))(np.zeros(self.dim))
        return "\n".join(lines) + "\n" + str(jaxpr)


FAMILIES = sorted({op.family for op in OPS.values()})


def make_program(seed: int, *, dim: int | None = None, steps: int | None = None,
                 include: tuple[str, ...] = ()) -> Program:
    """The random program of ``seed``.

    Args:
      seed: the seed of ``numpy.random.default_rng``; the same seed gives the same program.
      dim: ``D`` (default: 3 or 4, drawn).
      steps: number of steps (default: 2 to 4, drawn).
      include: operation names that must appear (at drawn positions).

    Example:
      >>> make_program(3).op_names == make_program(3).op_names
      True

    """
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(3, 5)) if dim is None else dim
    count = int(rng.integers(2, 5)) if steps is None else steps
    names = sorted(OPS)
    count = max(count, len(include))
    chosen = [names[i] for i in rng.integers(0, len(names), count)]
    for name, position in zip(include, rng.permutation(count)):
        chosen[position] = name
    program_steps = []
    for i, name in enumerate(chosen):
        apply, parameters = OPS[name].build(rng, dim)
        program_steps.append(Step(OPS[name], apply, int(rng.integers(0, i + 1)), parameters))
    output_shape = (2, dim) if rng.random() < 0.5 else (dim,)
    readout = rng.standard_normal(output_shape) / np.sqrt(dim)
    return Program(seed, dim, tuple(program_steps), readout)
