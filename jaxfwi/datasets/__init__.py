"""Velocity models: benchmark loaders, synthetic generators and the papers' acquisition presets.

Velocity is in m/s, layout ``[nz, nx]`` (depth first) everywhere.
"""
from jaxfwi.datasets.loaders import (  # noqa: F401
    BENCHMARKS,
    ENV_VAR,
    crop,
    data_dir,
    list_benchmarks,
    load_benchmark,
    load_binary,
    load_npy,
    load_segy,
    resample,
)
from jaxfwi.datasets.presets import (  # noqa: F401
    PRESETS,
    AcquisitionPreset,
    get_preset,
    list_presets,
    preset_model,
)
from jaxfwi.datasets.synthetic import (  # noqa: F401
    default_model,
    faulted,
    folded,
    layered,
    phantom,
    random_smooth,
    salt_body,
)

__all__ = [
    "BENCHMARKS",
    "ENV_VAR",
    "crop",
    "data_dir",
    "list_benchmarks",
    "load_benchmark",
    "load_binary",
    "load_npy",
    "load_segy",
    "resample",
    "PRESETS",
    "AcquisitionPreset",
    "get_preset",
    "list_presets",
    "preset_model",
    "default_model",
    "faulted",
    "folded",
    "layered",
    "phantom",
    "random_smooth",
    "salt_body",
]
