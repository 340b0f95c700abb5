"""Objective assembly for the inversion loop.

The loss of one mini-batch of shots is

    J(theta) = sum_s w_s * misfit(F_b(d_syn[s]), F_b(d_obs[s]); iteration)  +  r * R(v_theta; epoch)

where ``v_theta`` is the velocity of the parameterisation, ``d_syn = forward(v_theta)``,
``F_b`` the low-pass filter of the current multiscale band (identity without
multiscale), ``w_s`` a per-shot weight (0 for the padding shots that make batches
equal-sized and divisible by the device count, else 1) and ``r`` is 1 for the first
batch of an optimizer update (the regulariser enters each update once).

**Misfits are evaluated shot by shot and summed.** For the additive misfits (l2,
l1, envelope, global correlation) that is the misfit over all shots; for misfits
whose internal normalisation uses data statistics (the relative ``eps`` floors of
:mod:`jaxfwi.objectives`) it makes the loss independent of how the shots are split
into batches or devices.

Misfit and regulariser specifications are turned into small frozen dataclasses
(:class:`Misfit`, :class:`Regularizer`) that are hashable, so they can be part of
the static configuration of the jit-compiled training step.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxfwi import objectives, signal

__all__ = ["Misfit", "Regularizer", "resolve_misfit", "resolve_regularizer", "tv_regularizer",
           "resolve_bands", "band_index"]


def _n_positional(fn) -> Optional[int]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


@dataclasses.dataclass(frozen=True)
class Misfit:
    """A data misfit ``(d_syn, d_obs, iteration, n_iterations) -> scalar`` for one shot.

    Fields:
      fn: the underlying function.
      kind: ``"plain"`` (``fn(d_syn, d_obs)``), ``"weci"`` (WECI with the logistic weight
        ``weci_weight(iteration, n_iterations)``) or ``"scheduled"``
        (``fn(d_syn, d_obs, iteration, n_iterations)``).
      name: label for histories and checkpoints.
    """
    fn: Callable
    kind: str = "plain"
    name: str = "custom"

    def __call__(self, d_syn, d_obs, iteration, n_iterations):
        if self.kind == "plain":
            return self.fn(d_syn, d_obs)
        if self.kind == "weci":
            return self.fn(d_syn, d_obs, objectives.weci_weight(iteration, n_iterations))
        return self.fn(d_syn, d_obs, iteration, n_iterations)


def resolve_misfit(spec: Any) -> Misfit:
    """A :class:`Misfit` from a name (``"l2"``, ``"l1"``, ``"envelope"``, ``"gc"``,
    ``"trace_l2"``, ``"weci"``), a callable ``f(d_syn, d_obs)``, a callable
    ``f(d_syn, d_obs, iteration, n_iterations)`` (iteration-dependent), or a Misfit."""
    if isinstance(spec, Misfit):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_")
        if key == "weci":
            return Misfit(objectives.weci, "weci", "weci")
        return Misfit(objectives.get_misfit(key), "plain", key)
    if callable(spec):
        n = _n_positional(spec)
        kind = "scheduled" if n is not None and n >= 4 else "plain"
        return Misfit(spec, kind, getattr(spec, "__name__", "custom"))
    raise TypeError(f"misfit={spec!r}: pass a name such as 'l2' or 'weci', or a function "
                    "f(d_syn, d_obs) -> scalar (optionally f(d_syn, d_obs, iteration, n_iterations)).")


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """A model regulariser ``(v, epoch) -> scalar`` (``v`` in m/s, ``epoch`` traced int).

    Fields:
      fn: ``fn(v)`` (kind ``"plain"``) or ``fn(v, epoch)`` (kind ``"epoch"``); unused for
        ``"tv"``.
      kind: ``"plain"``, ``"epoch"`` or ``"tv"``.
      tv: for ``"tv"``: ``(alpha0, step_size, gamma, isotropic, wz, wx)``; the weights are
        ``alpha0 * gamma ** (epoch // step_size)`` times ``wz`` / ``wx`` (ADFWI-TV, see
        :func:`tv_regularizer`).
      name: label.
    """
    fn: Optional[Callable] = None
    kind: str = "plain"
    tv: tuple = ()
    name: str = "custom"

    def __call__(self, v, epoch):
        if self.kind == "tv":
            alpha0, step, gamma, iso, wz, wx = self.tv
            a = objectives.tv_weight_schedule(epoch, alpha0, step, gamma)
            return objectives.total_variation(v, a * wz, a * wx, isotropic=iso)
        if self.kind == "epoch":
            return self.fn(v, epoch)
        return self.fn(v)


def tv_regularizer(alpha0: float = 2e-9, step_size: int = 20, gamma: float = 0.9, isotropic: bool = False,
                   spacing=None) -> Regularizer:
    """ADFWI-TV's regulariser with the step-decayed weight ``a = alpha0 * gamma ** (epoch // step_size)``
    (CR-FWI: 2e-9, 20, 0.9).

    Default (``isotropic=False``), ADFWI's first-order TV::

        a * sum(|v[i, j+1] - v[i, j]| / dx_km) + a * sum(|v[i+1, j] - v[i, j]| / dz_km)

    with ``v`` in m/s and the grid spacing in km when ``spacing=(dz, dx)`` (m) is given
    (:func:`fit` passes the model's spacing for ``regularizer="tv"``), else per cell.
    ``isotropic=True`` uses the isotropic form of :func:`jaxfwi.objectives.total_variation`
    (weights inside the square root). The balance with the data misfit depends on the data's
    amplitude units: compare ``history["regularizer"]`` with ``history["misfit"]``."""
    if not alpha0 >= 0:
        raise ValueError(f"tv_regularizer: alpha0={alpha0!r} must be >= 0.")
    if int(step_size) < 1:
        raise ValueError(f"tv_regularizer: step_size={step_size!r} must be a positive number of epochs.")
    if spacing is None:
        wz = wx = 1.0
    else:
        dz, dx = (float(h) for h in (spacing if len(spacing) == 2 else (spacing[0], spacing[-1])))
        if not (dz > 0 and dx > 0):
            raise ValueError(f"tv_regularizer: spacing={spacing!r} must be positive grid spacings (dz, dx) in m.")
        wz, wx = 1000.0 / dz, 1000.0 / dx
    return Regularizer(None, "tv", (float(alpha0), int(step_size), float(gamma), bool(isotropic), wz, wx), "tv")


def resolve_regularizer(spec: Any, spacing=None) -> Optional[Regularizer]:
    """None, ``"tv"`` (ADFWI-TV defaults, see :func:`tv_regularizer`; ``spacing`` (m) per axis
    normalises the differences), ``"tikhonov"`` (first-order, weight 1), a :class:`Regularizer`,
    or a callable ``f(v)`` / ``f(v, epoch)``."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in ("tv", "total_variation"):
            return tv_regularizer(spacing=spacing)
        if key == "tikhonov":
            return Regularizer(objectives.tikhonov, "plain", (), "tikhonov")
        raise ValueError(f"regularizer={spec!r}: use 'tv', 'tikhonov', None, or a function f(v) / f(v, epoch).")
    if callable(spec):
        n = _n_positional(spec)
        kind = "epoch" if n is not None and n >= 2 else "plain"
        return Regularizer(spec, kind, (), getattr(spec, "__name__", "custom"))
    raise TypeError(f"regularizer={spec!r}: pass None, 'tv', 'tikhonov' or a function f(v) -> scalar.")


def resolve_bands(multiscale: Any, dt: float) -> Optional[tuple]:
    """Low-pass cutoffs (Hz) for frequency multiscale, or None.

    ``multiscale``: None/False (off), True (MS-FWI: 4, 6, ..., 14 Hz), or a sequence
    of cutoffs in Hz (increasing). Each must lie below the Nyquist ``0.5 / dt``.
    """
    if multiscale is None or multiscale is False:
        return None
    bands = signal.multiscale_bands() if multiscale is True else list(multiscale)
    try:
        bands = tuple(float(f) for f in bands)
    except (TypeError, ValueError):
        raise ValueError(f"multiscale={multiscale!r}: pass True or a list of low-pass cutoffs in Hz.") from None
    if not bands:
        raise ValueError("multiscale=[]: give at least one low-pass cutoff in Hz (or None to disable).")
    nyq = 0.5 / dt
    for f in bands:
        if not 0 < f < nyq:
            raise ValueError(f"multiscale: cutoff {f} Hz must be between 0 and the Nyquist frequency "
                             f"{nyq:g} Hz (dt={dt} s).")
    if any(b >= a for a, b in zip(bands[1:], bands[:-1])):
        raise ValueError(f"multiscale={list(bands)}: cutoffs must increase (low frequencies first).")
    return bands


def band_index(epoch, n_epochs, n_bands: int):
    """Band of ``epoch`` when ``n_epochs`` are split evenly over ``n_bands`` bands
    (``epoch * n_bands // n_epochs``; works on ints and traced ints)."""
    if isinstance(epoch, int) and isinstance(n_epochs, int):
        return min(epoch * n_bands // max(n_epochs, 1), n_bands - 1)
    b = (jnp.asarray(epoch) * n_bands) // jnp.maximum(jnp.asarray(n_epochs), 1)
    return jnp.clip(b, 0, n_bands - 1)


def apply_band(d, band, bands: Optional[tuple], dt: float):
    """Low-pass ``d [..., nt]`` at ``bands[band]`` (``band`` may be traced); identity if no bands."""
    if bands is None:
        return d
    if len(bands) == 1:
        return signal.lowpass(d, bands[0], dt)
    branches = [lambda x, f=f: signal.lowpass(x, f, dt) for f in bands]
    return lax.switch(band, branches, d)


def shots_misfit(misfit: Misfit, d_syn, d_obs, weights, iteration, n_iterations):
    """``sum_s weights[s] * misfit(d_syn[s], d_obs[s])`` over the leading shot axis."""
    per = jax.vmap(lambda s, o: misfit(s, o, iteration, n_iterations))(d_syn, d_obs)
    return jnp.sum(jnp.where(weights > 0, weights * per, 0.0))
