"""Objectives: data misfits ``f(d_syn, d_obs) -> scalar`` and model regularisers ``f(v) -> scalar``."""
from jaxfwi.objectives.misfits import (  # noqa: F401
    MISFITS,
    analytic_signal,
    combine,
    envelope,
    envelope_of,
    get_misfit,
    global_correlation,
    l1,
    l2,
    trace_normalized_l2,
    weci,
    weci_weight,
)
from jaxfwi.objectives.regularizers import tikhonov, total_variation, tv_weight_schedule  # noqa: F401

__all__ = [
    "MISFITS",
    "analytic_signal",
    "combine",
    "envelope",
    "envelope_of",
    "get_misfit",
    "global_correlation",
    "l1",
    "l2",
    "trace_normalized_l2",
    "weci",
    "weci_weight",
    "tikhonov",
    "total_variation",
    "tv_weight_schedule",
]
