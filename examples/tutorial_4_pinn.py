"""Tutorial 4: a physics-informed network trained with STDE.

Solves ``Δu + u - u³ = f`` (Allen–Cahn) on the unit ball with ``u = 0`` on the sphere.
The exact solution is the STDE paper's two-body function, so the trained network is
scored by its relative L2 error, next to the untrained trivial predictor
``(1 - |x|²) u*(0)``. The loss is the mean squared residual at fresh random points,
with the Laplacian estimated by ``stde.stochastic_operator(..., method="sparse")``:
unbiased, and its cost does not grow with ``d``. The network, the loss and the
estimators come from :mod:`stde.pinn.harness`, as in the full driver with every option,
``examples/train_pinn.py``.

Run: ``python examples/tutorial_4_pinn.py`` (``--tiny`` for tests).
"""

import jax
import jax.numpy as jnp
import optax
from _tutorial import section, tiny

import stde
import stde.operators as ops
from stde.pinn.equations import make_equation
from stde.pinn.harness import init_mlp, make_loss, mlp

d = 4 if tiny() else 10
steps = 30 if tiny() else 2000
samples = 2 if tiny() else 4
equation = make_equation("allen_cahn", d)

section("1. The network and the hard boundary constraint")
sizes = [d, 32, 32, 1]
k_init, k_train = jax.random.split(jax.random.PRNGKey(0))
params = init_mlp(k_init, sizes)  # Glorot-normal weights, zero biases


def u(params, x):
    """The ansatz ``(1 - |x|²) mlp(x)``: zero on the unit sphere by construction."""
    return equation.ansatz(lambda q: mlp(params, q), x)


print(f"tanh MLP {sizes}, ansatz u = (1-|x|²)·mlp(x)")

section("2. The residual with an STDE Laplacian")
laplacian = ops.laplacian()


def estimate(f, x, *, key):
    """``(f(x), Δf(x))``, the Laplacian estimated from ``samples`` sampled coordinates."""
    return stde.stochastic_operator(f, laplacian, samples, method="sparse",
                                    with_value=True)(x, key)


# The equation's residual Δu + u - u³ - f calls ``estimate`` on the ansatz; the loss is its
# mean square over the collocation points, each with its own key.
residual_loss = make_loss(equation, estimate)


def loss(params, key):
    """Mean squared residual over 64 fresh collocation points."""
    k_points, k_stde = jax.random.split(key)
    points = equation.sample(k_points, 64)
    return residual_loss(params, points, jax.random.split(k_stde, 64))


print(f"d = {d}: each residual uses {samples} of {d} second derivatives, rescaled by "
      f"{d / samples:g} (unbiased).")

section("3. Training with Adam")
optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.05))
state = optimizer.init(params)


@jax.jit
def step(params, state, key):
    """One Adam step."""
    value, grads = jax.value_and_grad(loss)(params, key)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value


first = None
for i in range(steps):
    params, state, value = step(params, state, jax.random.fold_in(k_train, i))
    first = float(value) if first is None else first
    if i % max(1, steps // 5) == 0 or i == steps - 1:
        print(f"step {i:5d}  loss {float(value):.4e}")

section("4. Accuracy on held-out points")
test = equation.sample(jax.random.PRNGKey(123), 2000)
target = jax.vmap(equation.exact)(test)
prediction = jax.vmap(lambda x: u(params, x))(test)
error = float(jnp.linalg.norm(prediction - target) / jnp.linalg.norm(target))
trivial = jax.vmap(equation.trivial)(test)
trivial_error = float(jnp.linalg.norm(trivial - target) / jnp.linalg.norm(target))
print(f"loss {first:.3e} -> {float(value):.3e}")
print(f"relative L2 error {error:.3e}; trivial predictor (1-|x|²)u*(0): {trivial_error:.3e}")
