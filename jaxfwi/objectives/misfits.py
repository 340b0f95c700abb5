"""Data misfits: ``f(d_syn, d_obs) -> scalar``.

Every misfit takes the synthetic and the observed receiver data, two arrays of
the same shape whose **last axis is time** (usually ``[n_shots, n_receivers,
nt]``; any number of leading "trace" axes is accepted, also a single ``[nt]``
trace), and returns a scalar. All are written in ``jax.numpy``: they can be
``jit``-ed, ``vmap``-ed and differentiated with respect to ``d_syn`` (the
gradient is the adjoint source).

Composition works like optax's small transformations: misfits are plain
functions, so ``combine((1.0, l2), (0.1, envelope))`` or a ``lambda`` gives a new
one, and :func:`get_misfit` maps the names used in configs to functions.

Regularisation constants ``eps`` are **relative**: they are multiplied by the
mean energy of ``d_obs`` (held constant for differentiation), so the misfits
behave the same whatever the amplitude units of the data, and stay finite
(with finite gradients) where the data are exactly zero.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

#: the type of a misfit: ``f(d_syn, d_obs) -> scalar`` (the loop wraps it in :class:`jaxfwi.inversion.Misfit`)
MisfitFn = Callable[[jax.Array, jax.Array], jax.Array]

__all__ = [
    "l2",
    "l1",
    "analytic_signal",
    "envelope_of",
    "envelope",
    "global_correlation",
    "trace_normalized_l2",
    "weci",
    "weci_weight",
    "combine",
    "get_misfit",
    "MISFITS",
]


def _check_pair(name: str, d_syn, d_obs):
    d_syn = jnp.asarray(d_syn)
    d_obs = jnp.asarray(d_obs)
    if d_syn.shape != d_obs.shape:
        raise ValueError(
            f"{name}: d_syn has shape {d_syn.shape} but d_obs has shape {d_obs.shape}; "
            "both must be the same [n_shots, n_receivers, nt] (time last). "
            "Select the same shots/receivers for both."
        )
    if d_syn.ndim == 0:
        raise ValueError(f"{name}: data must have a time axis (last axis); got a scalar.")
    dtype = jnp.result_type(d_syn.dtype, d_obs.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    return d_syn.astype(dtype), d_obs.astype(dtype)


def _floor(d_obs, eps, per: str):
    """``eps`` times the (constant) mean energy of ``d_obs`` per sample or per trace.

    A tiny absolute floor keeps it positive when ``d_obs`` is all zeros.
    """
    e = jax.lax.stop_gradient(jnp.mean(jnp.square(d_obs)))
    if per == "trace":
        e = e * d_obs.shape[-1]
    # sqrt(tiny): small enough to be negligible for any real data, large enough
    # that 1 / floor**2 does not overflow in the derivative of s / |s|.
    tiny = jnp.asarray(float(jnp.finfo(d_obs.dtype).tiny) ** 0.5, d_obs.dtype)
    return eps * e + tiny


# --------------------------------------------------------------------------- L2 / L1


@jax.jit
def l2(d_syn, d_obs):
    """Least-squares misfit ``0.5 * sum((d_syn - d_obs)**2)`` (METHODS.md objective).

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data (same shape, time last), any units.

    Returns:
      scalar, in data units squared. Zero iff ``d_syn == d_obs``.
    """
    d_syn, d_obs = _check_pair("l2", d_syn, d_obs)
    return 0.5 * jnp.sum(jnp.square(d_syn - d_obs))


@jax.jit
def l1(d_syn, d_obs):
    """Least-absolute misfit ``sum(|d_syn - d_obs|)``.

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data (same shape).

    Returns:
      scalar in data units. Its gradient is ``sign(d_syn - d_obs)`` (JAX takes
      the derivative of ``|r|`` at ``r = 0`` as 1, which is finite).
    """
    d_syn, d_obs = _check_pair("l1", d_syn, d_obs)
    return jnp.sum(jnp.abs(d_syn - d_obs))


# --------------------------------------------------------------------------- envelope


def analytic_signal(x, n_fft: int | None = None):
    """Analytic signal ``x + i H[x]`` along the last (time) axis, by FFT.

    Same construction as ``scipy.signal.hilbert``: the spectrum's negative
    frequencies are zeroed and the positive ones doubled.

    Args:
      x: real ``[..., nt]`` array.
      n_fft: FFT length (``>= nt``; default ``nt``, i.e. exactly scipy's result).
        A longer FFT zero-pads the trace, which reduces wrap-around at the ends.

    Returns:
      complex ``[..., nt]`` array.
    """
    x = jnp.asarray(x)
    nt = x.shape[-1]
    n = nt if n_fft is None else int(n_fft)
    if n < nt:
        raise ValueError(f"analytic_signal: n_fft={n} is shorter than the trace (nt={nt}); use n_fft >= nt.")
    h = [0.0] * n
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        for k in range(1, n // 2):
            h[k] = 2.0
    else:
        for k in range(1, (n + 1) // 2):
            h[k] = 2.0
    spec = jnp.fft.fft(x, n=n, axis=-1)
    out = jnp.fft.ifft(spec * jnp.asarray(h, dtype=spec.real.dtype), axis=-1)
    return out[..., :nt]


def envelope_of(x, eps: float | jax.Array = 0.0, n_fft: int | None = None):
    """Instantaneous amplitude ``sqrt(x**2 + H[x]**2 + eps)`` along the last axis.

    Args:
      x: real ``[..., nt]`` data.
      eps: absolute squared-amplitude floor (data units squared). Any ``eps > 0``
        makes the gradient finite where the envelope is zero.
      n_fft: FFT length for the Hilbert transform (see :func:`analytic_signal`).

    Returns:
      ``[..., nt]`` envelope, same units as ``x``.
    """
    z = analytic_signal(x, n_fft)
    return jnp.sqrt(jnp.square(z.real) + jnp.square(z.imag) + eps)


@functools.partial(jax.jit, static_argnames=('n_fft',))
def envelope(d_syn, d_obs, eps: float = 1e-8, n_fft: int | None = None):
    """Envelope misfit: ``0.5 * sum((E[d_syn] - E[d_obs])**2)``.

    ``E[d] = sqrt(d**2 + H[d]**2 + eps_abs)`` is the Hilbert envelope along time
    (Hilbert transform by FFT). The envelope carries the low-frequency
    (low-wavenumber) content of the data and is less prone to cycle skipping
    than the waveform itself (Bozdag et al. 2011; Wu et al. 2014).

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data (same shape, time last).
      eps: relative floor: ``eps_abs = eps * mean(d_obs**2)`` (constant w.r.t.
        ``d_syn``) plus a tiny absolute floor. Keeps the gradient finite where
        the envelope is exactly zero (e.g. all-zero data).
      n_fft: FFT length of the Hilbert transform (default ``nt``).

    Returns:
      scalar, data units squared; zero iff the envelopes agree.
    """
    d_syn, d_obs = _check_pair("envelope", d_syn, d_obs)
    e = _floor(d_obs, eps, "sample")
    r = envelope_of(d_syn, e, n_fft) - envelope_of(d_obs, e, n_fft)
    return 0.5 * jnp.sum(jnp.square(r))


# --------------------------------------------------------------------------- correlation


def _trace_norm(x, floor):
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1) + floor)


@jax.jit
def global_correlation(d_syn, d_obs, eps: float = 1e-10):
    """Global-correlation misfit: ``sum_traces (1 - <s, o> / (|s| |o|))``.

    The normalised zero-lag cross-correlation of every trace (Choi & Alkhalifah
    2012). Up to the constant ``n_traces`` this is the usual
    ``-sum <s, o>/(|s||o|)``; the constant is added so that the misfit is 0 for
    a perfect match (and for any positive rescaling of ``d_obs``) and positive
    otherwise; the gradient is unchanged. It ignores amplitudes: it is
    invariant to a positive scale factor per trace of ``d_syn``.

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data; every ``[nt]`` slice is a trace.
      eps: relative floor on the squared trace norms:
        ``|s| = sqrt(sum s**2 + eps * mean trace energy of d_obs)``. Keeps
        values and gradients finite for all-zero traces. An all-zero observed
        trace contributes the constant 1.

    Returns:
      scalar in ``[0, 2 * n_traces]`` (dimensionless).
    """
    d_syn, d_obs = _check_pair("global_correlation", d_syn, d_obs)
    f = _floor(d_obs, eps, "trace")
    s = d_syn / _trace_norm(d_syn, f)[..., None]
    o = d_obs / _trace_norm(d_obs, f)[..., None]
    return jnp.sum(1.0 - jnp.sum(s * o, axis=-1))


@jax.jit
def trace_normalized_l2(d_syn, d_obs, eps: float = 1e-10):
    """L2 misfit of traces each divided by its own norm.

    ``0.5 * sum_traces |s/|s| - o/|o|| ** 2``. For non-zero traces this equals
    ``sum (1 - corr)``, i.e. :func:`global_correlation`; it differs for all-zero
    traces (which contribute 0 here when both are zero).

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data (same shape).
      eps: relative floor on squared trace norms (see :func:`global_correlation`).

    Returns:
      scalar (dimensionless), zero iff every trace matches up to a positive scale.
    """
    d_syn, d_obs = _check_pair("trace_normalized_l2", d_syn, d_obs)
    f = _floor(d_obs, eps, "trace")
    s = d_syn / _trace_norm(d_syn, f)[..., None]
    o = d_obs / _trace_norm(d_obs, f)[..., None]
    return 0.5 * jnp.sum(jnp.square(s - o))


# --------------------------------------------------------------------------- WECI


@jax.jit
def weci(d_syn, d_obs, weight, eps: float = 1e-8):
    """Weighted envelope + global-correlation misfit (WECI-FWI; Song et al. 2023).

    ``weight * envelope(d_syn, d_obs) + (1 - weight) * global_correlation(d_syn, d_obs)``.

    Early iterations use ``weight ~ 1`` (envelope: low wavenumbers, robust to
    cycle skipping); later ones ``weight ~ 0`` (correlation: phase, high
    wavenumbers). Use :func:`weci_weight` for the schedule. Note the two terms
    have different units (data units squared vs. a count of traces); scale the
    data (or wrap the envelope term) if the balance matters to you.

    Args:
      d_syn, d_obs: ``[..., nt]`` receiver data (same shape).
      weight: scalar in ``[0, 1]`` (may be traced, e.g. from :func:`weci_weight`).
      eps: relative floor of the envelope term (the correlation term uses its
        own default).

    Returns:
      scalar.
    """
    d_syn, d_obs = _check_pair("weci", d_syn, d_obs)
    w = jnp.asarray(weight, d_syn.dtype)
    return w * envelope(d_syn, d_obs, eps) + (1.0 - w) * global_correlation(d_syn, d_obs)


def weci_weight(iteration, n_iterations, midpoint: float = 0.5, width: float | None = None):
    """Logistic WECI schedule: the weight of the envelope term at ``iteration``.

    ``w = 1 / (1 + exp((iteration - midpoint * n_iterations) / width))``

    It starts near 1 (envelope, low wavenumbers), crosses 0.5 at
    ``midpoint * n_iterations`` and ends near 0 (global correlation).

    Chosen defaults: ``midpoint = 0.5`` (switch half-way, as in ADFWI's WECI) and
    ``width = n_iterations / 20``, so ``w(0) ~ 1 - 4.5e-5`` and
    ``w(n_iterations) ~ 4.5e-5``: a smooth transition, 0.88 -> 0.12 over the
    middle 20 % of the run. ADFWI uses
    ``width = 1`` iteration, a near-step switch; pass ``width=1`` to reproduce it.

    Args:
      iteration: current iteration (int or traced scalar), 0-based.
      n_iterations: total number of iterations (> 0).
      midpoint: fraction of the run where ``w = 0.5``.
      width: transition width in iterations (> 0); default ``n_iterations / 20``.

    Returns:
      scalar in ``(0, 1)``: pass it as ``weight`` to :func:`weci`.
    """
    if not isinstance(n_iterations, jax.core.Tracer) and not n_iterations > 0:
        raise ValueError(f"weci_weight: n_iterations={n_iterations!r} must be a positive number of iterations.")
    if width is None:
        width = n_iterations / 20.0
    if not isinstance(width, jax.core.Tracer) and not width > 0:
        raise ValueError(f"weci_weight: width={width!r} must be positive (iterations); e.g. n_iterations / 20.")
    t = (jnp.asarray(iteration, jnp.float32) - midpoint * n_iterations) / width
    return jax.nn.sigmoid(-t)


# --------------------------------------------------------------------------- composition


def combine(*terms) -> MisfitFn:
    """A weighted sum of misfits: ``combine((1.0, l2), (0.5, envelope))``.

    Args:
      *terms: ``(weight, misfit)`` pairs, or bare misfits (weight 1).

    Returns:
      ``f(d_syn, d_obs) -> sum_i weight_i * misfit_i(d_syn, d_obs)``.
    """
    pairs = []
    for t in terms:
        if callable(t):
            pairs.append((1.0, t))
        elif isinstance(t, (tuple, list)) and len(t) == 2 and callable(t[1]):
            pairs.append((t[0], t[1]))
        else:
            raise TypeError(f"combine: got {t!r}; pass (weight, misfit) pairs or misfit functions.")
    if not pairs:
        raise ValueError("combine: give at least one misfit.")

    def combined(d_syn, d_obs):
        return sum(w * f(d_syn, d_obs) for w, f in pairs)

    return combined


MISFITS: dict[str, MisfitFn] = {
    "l2": l2,
    "l1": l1,
    "envelope": envelope,
    "gc": global_correlation,
    "global_correlation": global_correlation,
    "trace_l2": trace_normalized_l2,
    "trace_normalized_l2": trace_normalized_l2,
    "weci": weci,
}


def get_misfit(name: str):
    """The misfit function called ``name``.

    Names: ``"l2"``, ``"l1"``, ``"envelope"``, ``"gc"`` (global correlation),
    ``"trace_l2"`` (trace-normalised L2), ``"weci"`` (needs a ``weight``
    argument: ``weci(d_syn, d_obs, weight)``). Long names are accepted too.
    A callable is returned unchanged.
    """
    if callable(name):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in MISFITS:
        raise ValueError(f"get_misfit: unknown misfit name={name!r}; choose one of {sorted(MISFITS)}.")
    return MISFITS[key]
