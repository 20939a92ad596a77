"""Physics-informed training with stde: the STDE paper's equations and their harness.

* :mod:`stde.pinn.equations`: PDEs with exact solutions (or reference values) and
  forcing terms derived in closed form, each checked against :func:`stde.operator`.
* :mod:`stde.pinn.harness`: the tanh MLP, the operator estimators (STDE, exact, the
  SDGD baseline) and the PINN loss that the trainer, the tutorial, the benchmarks and
  the tests share.
* :mod:`stde.pinn.parallel`: training on several processes (JAX's distributed runtime)
  and devices, data parallel or with the first layer split over its input axis.
* :mod:`stde.pinn.row_blocks`: optimiser steps that compute and apply the first layer's
  gradient a block of rows at a time, never holding it whole (``d = 10⁶`` inputs).
"""
