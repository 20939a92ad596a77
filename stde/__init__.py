"""stde: Taylor-mode differential operators for JAX (collapsed Taylor mode and STDE)."""

from stde import operators, rules
from stde.exact import operator
from stde.gradient import value_grad_laplacian
from stde.jets import collapsed_jet, jet
from stde.shorthands import biharmonic, laplacian
from stde.stochastic import stochastic_operator

__all__ = ["biharmonic", "collapsed_jet", "jet", "laplacian", "operator", "operators", "rules",
           "stochastic_operator", "value_grad_laplacian"]
__version__ = "0.1.0"
