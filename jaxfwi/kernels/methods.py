"""Kernels of the named FWI methods (``jaxfwi.models.build`` names) on a survey.

    lam = jaxfwi.kernels.eigenvalues(method, v_init, survey, dx, key=jax.random.key(0))

``jaxfwi.physics`` and ``jaxfwi.models`` are imported lazily, so the generic
machinery of this package works without them.
"""
from __future__ import annotations

import dataclasses

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.kernels.jacobian import DataSubsample
from jaxfwi.kernels.materialize import wave_kernel, wave_ntk, wave_ntk_factor
from jaxfwi.kernels.spectra import eigenvalues_from_factor

__all__ = [
    "GRID_METHODS",
    "make_forward",
    "apply_shot_subsample",
    "method_problem",
    "method_kernel",
    "eigenvalues",
]



def _identity_kernel_methods() -> tuple:
    from jaxfwi import methods  # noqa: PLC0415

    return tuple(s.name for s in methods.specs() if s.identity_kernel)


#: methods whose representation is the grid itself (v = m0 + params): K_theta = identity,
#: their wave-based NTK is the wave kernel J_m J_m^T (``MethodSpec.identity_kernel`` in
#: :mod:`jaxfwi.methods`; a snapshot taken at import).
GRID_METHODS = _identity_kernel_methods()


def make_forward(survey, dx, *, max_vel: Optional[float] = None, **forward_kwargs) -> Callable:
    """``G(v) = jaxfwi.forward(v, dx, survey, max_vel=max_vel, **forward_kwargs)``.

    Pass ``max_vel`` (m/s) whenever G is differentiated or traced (jvp/vjp/jit/vmap),
    so the CFL sub-step count is static.  ``pml_freq`` defaults to the peak frequency
    of the (concrete) survey wavelet, computed here once so G can be traced.
    """
    from jaxfwi import forward
    from jaxfwi.physics import peak_frequency

    if forward_kwargs.get("pml_freq") is None:
        forward_kwargs["pml_freq"] = peak_frequency(np.asarray(survey.wavelet), survey.dt)

    def G(v):
        return forward(v, dx, survey, max_vel=max_vel, **forward_kwargs)

    return G


def apply_shot_subsample(survey, subsample: Optional[DataSubsample]):
    """Apply the shot part of a sub-sample to the survey itself (cheaper than propagating
    every shot and discarding some).  Returns ``(survey, remaining_subsample)``."""
    if subsample is None or subsample.shots is None or not hasattr(survey, "select"):
        return survey, subsample
    survey = survey.select(np.asarray(subsample.shots))
    return survey, dataclasses.replace(subsample, shots=None)


def method_problem(method: str, v_init, survey, dx, *, key: Optional[jax.Array] = None,
                   params: Any = None, model_overrides: Optional[dict] = None,
                   max_vel: Optional[float] = None, **forward_kwargs
                   ) -> Tuple[Callable, Optional[Callable], Any, jax.Array]:
    """Build ``(G, represent, point, v0)`` for a named method at its initialisation.

    ``represent`` is None for the methods whose model-space kernel is the identity (the grid
    methods: the point is then ``v0`` itself, the wave kernel), else the Parameterization's
    ``velocity`` with ``point = params``
    (``build(method, v_init).init(key)`` unless ``params`` is given).
    ``max_vel`` defaults to ``max(v0)`` (exact for linearisation at v0).
    """
    from jaxfwi import methods

    spec = methods.get(method)
    param = spec.build(v_init, **(model_overrides or {}))
    if params is None:
        params = param.init(jax.random.key(0) if key is None else key)
    v0 = _velocity(param, params)
    if max_vel is None:
        max_vel = float(jnp.max(v0))
    G = make_forward(survey, dx, max_vel=max_vel, **forward_kwargs)
    if spec.identity_kernel:
        return G, None, v0, v0
    return G, _Represent(param), params, v0


@jax.jit
def _velocity(param, params):
    return param.velocity(params)


@jax.tree_util.register_pytree_node_class
class _Represent:
    """``params -> velocity`` of a Parameterization as a pytree (``m0`` and bounds are leaves),
    so jitted kernels built on it compile once for every initial model of the same shape."""

    def __init__(self, param):
        self.param = param

    def __call__(self, params):
        return self.param.velocity(params)

    def tree_flatten(self):
        return (self.param,), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(children[0])


def method_kernel(method: str, v_init, survey, dx, *, key: Optional[jax.Array] = None,
                  params: Any = None, subsample: Optional[DataSubsample] = None, chunk: Optional[int] = None,
                  model_overrides: Optional[dict] = None, **forward_kwargs) -> jax.Array:
    """The materialised wave-based NTK ``[n_data, n_data]`` of a named method at init, or at
    ``params`` (e.g. a training snapshot; the wave kernel ``J_m J_m^T`` at the velocity of
    ``params`` for the grid methods)."""
    survey, subsample = apply_shot_subsample(survey, subsample)
    G, rep, point, _ = method_problem(method, v_init, survey, dx, key=key, params=params,
                                      model_overrides=model_overrides, **forward_kwargs)
    if rep is None:
        return wave_kernel(G, point, subsample=subsample, chunk=chunk)
    return wave_ntk(G, rep, point, subsample=subsample, chunk=chunk)


def eigenvalues(method: str, v_init, survey, dx, *, key: Optional[jax.Array] = None,
                params: Any = None, subsample: Optional[DataSubsample] = None, chunk: Optional[int] = None,
                full: bool = True, model_overrides: Optional[dict] = None,
                **forward_kwargs) -> jax.Array:
    """Eigenvalues (descending) of the wave-based NTK of ``method`` at initialisation, or at
    ``params`` (the kernel along training: pass a snapshot such as
    ``jaxfwi.invert(..., snapshot_params_every=100).snapshots[j][1]``).

    Args:
      method: a ``jaxfwi.models.build`` name ("adfwi", "ifwi", "mpe-fwi", "ig-fwi", ...);
        grid methods give the wave kernel ``J_m J_m^T``.
      v_init: initial velocity (m/s), ``[nz]``, ``[nz, nx]`` or ``[nz, ny, nx]``.
      survey, dx: as for ``jaxfwi.forward``.
      key: initialisation key of the representation (default ``jax.random.key(0)``).
      params: the representation's parameters to linearise at (default: ``init(key)``); they
        must come from ``build(method, v_init, **model_overrides)`` (same ``v_init``).
      subsample: optional :class:`DataSubsample` of the data (time / receivers / shots).
      chunk: products run vmapped per chunk (memory bound).
      full: return all ``n_data`` eigenvalues (the kernel's size); beyond its rank
        (<= min(n_data, n_model, n_params)) they are exactly zero.  ``False`` returns
        only the first ``min(n_data, rank bound)``.
      model_overrides: keyword overrides for ``jaxfwi.models.build``.
      **forward_kwargs: ``accuracy``, ``pml_width``, ``free_surface``, ``max_vel``, ...

    Computed exactly from a factor ``B`` (``Theta = B B^T``, see ``wave_ntk_factor``)
    as ``svd(B)**2``; cost ``min(n_data, n_model)`` wave propagations.  For float64
    run under ``with jax.enable_x64(True):`` with a float64 ``v_init``.
    """
    survey, subsample = apply_shot_subsample(survey, subsample)
    G, rep, point, _ = method_problem(method, v_init, survey, dx, key=key, params=params,
                                      model_overrides=model_overrides, **forward_kwargs)
    B = wave_ntk_factor(G, rep, point, subsample=subsample, chunk=chunk)
    n = B.shape[0] if full else min(B.shape)
    return eigenvalues_from_factor(B, n)
