"""jaxfwi: pure-JAX full-waveform inversion with neural velocity representations.

The public API is re-exported here; see the subpackages for details.
"""
from jaxfwi.physics import (  # noqa: F401
    Survey,
    forward,
    plan_propagation,
    PropagationPlan,
    ricker,
)

__version__ = "0.1.0"
