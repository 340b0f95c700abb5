"""Source wavelets and band-limited resampling of time series.

All times in seconds, frequencies in Hz.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def ricker(freq: float, nt: int, dt: float, delay: float | None = None, dtype=None):
    """Ricker wavelet (second derivative of a Gaussian), peak amplitude 1.

    Args:
      freq: peak (dominant) frequency in Hz, > 0.
      nt: number of samples.
      dt: sample interval in s, > 0.
      delay: time of the peak in s; default ``1.5 / freq``.
      dtype: output dtype (default: jnp's default float type).

    Returns:
      ``[nt]`` array, ``w(t) = (1 - 2 (pi f (t - delay))^2) exp(-(pi f (t - delay))^2)``
      sampled at ``t = n * dt``.

    Example:
      >>> w = ricker(10.0, 500, 0.002)
      >>> int(w.argmax())  # peak at 1.5 / 10 s = sample 75
      75
    """
    if not freq > 0:
        raise ValueError(f"ricker: freq={freq!r} must be a positive frequency in Hz.")
    if not dt > 0:
        raise ValueError(f"ricker: dt={dt!r} must be a positive time step in s.")
    if int(nt) != nt or nt < 1:
        raise ValueError(f"ricker: nt={nt!r} must be a positive integer number of samples.")
    if delay is None:
        delay = 1.5 / freq
    t = jnp.arange(int(nt), dtype=dtype or jnp.result_type(float)) * dt - delay
    arg = (jnp.pi * freq * t) ** 2
    return (1.0 - 2.0 * arg) * jnp.exp(-arg)


def resample(x, n_out: int, axis: int = -1):
    """Band-limited (Fourier) resampling of ``n`` samples onto ``n_out`` samples over the same duration.

    Input sample ``k`` lies at ``t = k dt``; output sample ``j`` at ``t = j dt * n / n_out`` (the
    ratio need not be an integer). The series is zero-padded to twice its length first, so the
    periodic interpolation does not wrap the end onto the start; the spectrum of the padded
    series is zero-padded (``n_out > n``) or truncated (``n_out < n``) and transformed back at the
    new interval, scaled by ``n_out / n`` so that sample values are kept. For ``n_out = f n``
    (integer ``f``) output sample ``k f`` equals input sample ``k`` for band-limited input, and
    truncation is the inverse for signals band-limited below the output Nyquist frequency.
    Linear, so differentiable in both modes (its transpose is the reverse resampling, up to scale).
    """
    n_out = int(n_out)
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n_out == n:
        return jnp.moveaxis(x, -1, axis)
    if n_out < 1:
        raise ValueError(f"resample: n_out={n_out} must be a positive number of samples.")
    spec = jnp.fft.rfft(x, n=2 * n, axis=-1)[..., : min(n, n_out) + 1]
    out = jnp.fft.irfft(spec, n=2 * n_out, axis=-1) * (n_out / n)
    return jnp.moveaxis(out[..., :n_out], -1, axis)


def upsample(x, factor: int, axis: int = -1):
    """Band-limited upsampling by an integer factor along ``axis`` (output length ``factor * n``);
    :func:`resample` onto ``factor * n`` samples."""
    if factor == 1:
        return x
    return resample(x, factor * x.shape[axis], axis)


def downsample(x, factor: int, axis: int = -1):
    """Band-limited downsampling by an integer factor along ``axis``; inverse of :func:`upsample` for
    signals band-limited below the output Nyquist frequency. Input length must be a multiple of ``factor``."""
    if factor == 1:
        return x
    n = x.shape[axis]
    if n % factor:
        raise ValueError(f"downsample: length {n} is not a multiple of factor {factor}.")
    return resample(x, n // factor, axis)


def peak_frequency(wavelet, dt: float) -> float:
    """Frequency (Hz) of the amplitude-spectrum maximum of a concrete wavelet ``[..., nt]``."""
    w = np.asarray(wavelet, dtype=np.float64).reshape(-1, np.shape(wavelet)[-1])
    n = max(4 * w.shape[-1], 256)
    spec = np.abs(np.fft.rfft(w, n=n, axis=-1)).mean(axis=0)
    freqs = np.fft.rfftfreq(n, dt)
    return float(freqs[int(np.argmax(spec))])
