"""Physics-informed training with stde: the STDE paper's equations and their harness.

* :mod:`stde.pinn.equations`: PDEs with exact solutions (or reference values) and
  forcing terms derived in closed form, each checked against :func:`stde.operator`.
"""
