"""stde: Taylor-mode differential operators for JAX (collapsed Taylor mode and STDE)."""

from stde import rules
from stde.jets import collapsed_jet, jet

__all__ = ["collapsed_jet", "jet", "rules"]
__version__ = "0.1.0"
