"""Physics layer: wave propagation, survey geometry, wavelets. Nothing neural here."""
from jaxfwi.physics.propagation import (  # noqa: F401
    CoarseGridWarning,
    PropagationPlan,
    SubstepWarning,
    Propagation,
    forward,
    propagate,
    plan_propagation,
    stable_dt,
)
from jaxfwi.physics.survey import Survey  # noqa: F401
from jaxfwi.physics.wavelets import downsample, peak_frequency, resample, ricker, upsample  # noqa: F401
