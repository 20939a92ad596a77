"""The benchmark suites, by name."""

from benchmarks.suites.base import SIZES, Size
from benchmarks.suites.biharmonic import exact_biharmonic, mixed_operator, stochastic_biharmonic
from benchmarks.suites.laplacian import exact_laplacian, stochastic_laplacian, weighted_laplacian
from benchmarks.suites.pinn import pinn_step
from benchmarks.suites.scale import scale_step
from benchmarks.suites.stde_paper import paper_training
from benchmarks.suites.vmc import vmc_gradient, vmc_kinetic

SUITES = {
    "laplacian": exact_laplacian,
    "weighted_laplacian": weighted_laplacian,
    "stochastic_laplacian": stochastic_laplacian,
    "biharmonic": exact_biharmonic,
    "stochastic_biharmonic": stochastic_biharmonic,
    "mixed": mixed_operator,
    "pinn": pinn_step,
    "vmc": vmc_kinetic,
    "vmc_gradient": vmc_gradient,
    "scale": scale_step,
    "stde_paper": paper_training,
}

TRAINING_SUITES = ("stde_paper",)
"""Suites that train networks (minutes to hours) rather than time operators: ``--suite all``
leaves them out."""

__all__ = ["SIZES", "SUITES", "TRAINING_SUITES", "Size"]
