"""Exact wave kernels, wave-based NTKs and their spectra (CR-FWI, NeurFWI).

For the composed map ``theta -> m_theta -> G[m_theta]`` (representation, then wave
propagation):

* :mod:`~jaxfwi.kernels.jacobian`: :class:`ComposedMap` (products with J_m, J_m^T,
  J_theta, J_theta^T, K_theta and the kernels, matrix-free) and :class:`DataSubsample`;
* :mod:`~jaxfwi.kernels.materialize`: exact dense kernels: :func:`ntk` (any f),
  :func:`wave_kernel` ``J_m J_m^T``, :func:`representation_ntk` ``K_theta``,
  :func:`wave_ntk` ``J_m K_theta J_m^T``, :func:`sensitivity_kernel` ``J_m^T J_m``,
  :func:`neural_sensitivity_kernel` ``K_theta J_m^T J_m``;
* :mod:`~jaxfwi.kernels.spectra`: :func:`eigh_desc`, :func:`lanczos`,
  :func:`randomized_eigh`, decay curves;
* :mod:`~jaxfwi.kernels.dynamics`: kernel change, Frobenius statistics over seeds,
  residual projections;
* :mod:`~jaxfwi.kernels.views`: the NeurFWI views (spectral filtering, gradient
  wavenumber modulation, wave frequency bias);
* :mod:`~jaxfwi.kernels.ntk_shallow`: the NTK-scaled shallow net (CR-FWI eq. 5);
* :mod:`~jaxfwi.kernels.methods`: :func:`eigenvalues` of a named method.

Float64: enable x64 (``jax.config.update("jax_enable_x64", True)``, ``JAX_ENABLE_X64=1``
or ``with jax.enable_x64(True):``) and pass float64 arrays; everything computes in
the dtype of its inputs.
"""
from jaxfwi.kernels.jacobian import ComposedMap, DataSubsample, flatten_function
from jaxfwi.kernels.materialize import (
    DEFAULT_CHUNK,
    jacobian,
    jacobian_flat,
    neural_sensitivity_kernel,
    ntk,
    representation_jacobian,
    representation_ntk,
    resolve_mode,
    sensitivity_kernel,
    to_float64,
    wave_jacobian,
    wave_kernel,
    wave_ntk,
    wave_ntk_factor,
)
from jaxfwi.kernels.spectra import (
    EigResult,
    decay_index,
    decay_summary,
    eigenvalues_from_factor,
    eigh_desc,
    eigvalsh_desc,
    lanczos,
    normalized_decay,
    randomized_eigh,
    top_eigenpairs,
)
from jaxfwi.kernels.dynamics import (
    frobenius_norm,
    init_norm_stats,
    kernel_change,
    predicted_residual,
    project_residual,
    relative_kernel_change,
    wave_ntk_frobenius,
)
from jaxfwi.kernels.views import (
    band_convergence_index,
    band_energy,
    default_bands,
    frequency_bias,
    gradient_wavenumber_modulation,
    spectral_filtering,
    wavenumber_spectrum,
)
from jaxfwi.kernels.ntk_shallow import NTKShallow, ShallowNTKVelocity, grid_coordinates
from jaxfwi.kernels.methods import (
    GRID_METHODS,
    eigenvalues,
    make_forward,
    method_kernel,
    method_problem,
)

__all__ = [
    "ComposedMap", "DataSubsample", "flatten_function",
    "DEFAULT_CHUNK", "jacobian", "jacobian_flat", "ntk", "resolve_mode",
    "wave_jacobian", "wave_kernel", "sensitivity_kernel", "representation_jacobian",
    "representation_ntk", "wave_ntk", "wave_ntk_factor", "neural_sensitivity_kernel",
    "to_float64",
    "EigResult", "eigh_desc", "eigvalsh_desc", "eigenvalues_from_factor", "normalized_decay",
    "decay_index", "decay_summary", "lanczos", "randomized_eigh", "top_eigenpairs",
    "frobenius_norm", "relative_kernel_change", "kernel_change", "wave_ntk_frobenius",
    "init_norm_stats", "project_residual", "predicted_residual",
    "spectral_filtering", "wavenumber_spectrum", "gradient_wavenumber_modulation",
    "default_bands", "band_energy", "frequency_bias", "band_convergence_index",
    "NTKShallow", "ShallowNTKVelocity", "grid_coordinates",
    "GRID_METHODS", "eigenvalues", "make_forward", "method_kernel", "method_problem",
]
