"""Signal processing for receiver data ``[n_shots, n_receivers, nt]`` (time last).

- Zero-phase Butterworth filters (:func:`lowpass`, :func:`highpass`,
  :func:`bandpass`) that are ``jax.numpy`` code, hence jittable and
  differentiable with respect to the data.
- Data-quality scenarios of CR-FWI: Gaussian noise relative to the data's
  standard deviation (:func:`add_noise`), sparse shots (:func:`decimate_shots`,
  :func:`select_shots`), and the multiscale band list (:func:`multiscale_bands`).

How the filters work. The filter is designed with
``scipy.signal.butter(order, ..., output="sos")``. Running it forward and then
backward in time (``filtfilt``) over the zero-extended trace equals a
convolution with ``h(t) * h(-t)``, whose transfer function is ``|H(f)|**2``:
real, non-negative, hence **zero phase**, with twice the attenuation (dB) of a
single pass (``|H|**2 = 0.5``, i.e. -6 dB, at the cutoff). We apply exactly that:
``irfft(rfft(d, n_fft) * |H(f)|**2)``, cropped back to ``nt``. The trace is
zero-padded to ``n_fft >= nt + pad`` samples so that the filter's two-sided
impulse response does not wrap around onto the trace. The result agrees with
``scipy.signal.sosfilt`` forward + backward over a long zero-padded copy of the
trace (see the tests) — but not with ``scipy.signal.sosfiltfilt``'s default,
which pads by odd reflection instead of zeros.

The cutoff frequencies, ``dt``, ``order`` and ``pad`` are static (Python numbers,
the response is computed with scipy when the function is traced); the data may
be traced.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "filter_response",
    "lowpass",
    "highpass",
    "bandpass",
    "add_noise",
    "decimate_shots",
    "select_shots",
    "multiscale_bands",
]


# --------------------------------------------------------------------------- filters


def _static_float(fn, name, value):
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{fn}: {name} must be a Python number (the filter is designed with scipy at trace time), "
            "not a traced value; pass it as a static argument."
        )
    try:
        value = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{fn}: {name}={value!r} must be a number.") from e
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{fn}: {name}={value!r} must be a positive, finite number.")
    return value


def _check_filter_args(fn, freqs, dt, order):
    dt = _static_float(fn, "dt", dt)
    nyq = 0.5 / dt
    out = []
    for i, f in enumerate(freqs):
        label = "freq" if len(freqs) == 1 else ("low" if i == 0 else "high")
        f = _static_float(fn, label, f)
        if f >= nyq:
            raise ValueError(
                f"{fn}: {label}={f} Hz is at or above the Nyquist frequency {nyq:.6g} Hz (dt={dt} s); "
                "use a lower cutoff or a smaller dt."
            )
        out.append(f)
    if len(out) == 2 and not out[0] < out[1]:
        raise ValueError(f"{fn}: low={out[0]} Hz must be below high={out[1]} Hz.")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"{fn}: order={order!r} must be a positive integer (Butterworth order, e.g. 4).")
    return tuple(out), dt, int(order)


@functools.lru_cache(maxsize=128)
def _response(n_fft: int, dt: float, btype: str, freqs: tuple, order: int) -> np.ndarray:
    import scipy.signal  # noqa: PLC0415  (here: importing it costs ~0.4 s at every `import jaxfwi`)

    fs = 1.0 / dt
    wn = freqs[0] if len(freqs) == 1 else list(freqs)
    sos = scipy.signal.butter(order, wn, btype=btype, fs=fs, output="sos")
    f = np.fft.rfftfreq(n_fft, d=dt)
    freqz = getattr(scipy.signal, "freqz_sos", None) or scipy.signal.sosfreqz
    _, h = freqz(sos, worN=f, fs=fs)
    r = np.abs(h) ** 2
    r.setflags(write=False)
    return r


def _n_fft(nt: int, pad) -> int:
    pad = nt if pad is None else int(pad)
    if pad < 0:
        raise ValueError(f"filter: pad={pad} must be >= 0 samples of zero padding.")
    import scipy.fft  # noqa: PLC0415

    return int(scipy.fft.next_fast_len(nt + pad, real=True))


def filter_response(nt: int, dt: float, btype: str, freq, order: int = 4, pad: int | None = None):
    """The zero-phase response ``|H(f)|**2`` used by the filters, and its frequencies.

    Args:
      nt: trace length (samples).
      dt: sample interval, s.
      btype: ``"lowpass"``, ``"highpass"`` or ``"bandpass"``.
      freq: cutoff in Hz (a ``(low, high)`` pair for ``"bandpass"``).
      order: Butterworth order of one pass.
      pad: zero samples appended before the FFT (default ``nt``).

    Returns:
      ``(f, r)``: numpy arrays ``[n_fft // 2 + 1]``, frequencies in Hz and the
      real, non-negative response.
    """
    if btype not in ("lowpass", "highpass", "bandpass"):
        raise ValueError(f"filter_response: btype={btype!r}; use 'lowpass', 'highpass' or 'bandpass'.")
    freqs = tuple(np.atleast_1d(freq).tolist())
    if (btype == "bandpass") != (len(freqs) == 2):
        raise ValueError(f"filter_response: btype={btype!r} needs {'two' if btype == 'bandpass' else 'one'} cutoff(s); got freq={freq!r}.")
    freqs, dt, order = _check_filter_args("filter_response", freqs, dt, order)
    n = _n_fft(int(nt), pad)
    return np.fft.rfftfreq(n, d=dt), _response(n, dt, btype, freqs, order)


def _apply(fn, d, dt, btype, freqs, order, pad):
    freqs, dt, order = _check_filter_args(fn, freqs, dt, order)
    d = jnp.asarray(d)
    if d.ndim == 0:
        raise ValueError(f"{fn}: d must have a time axis (last axis); got a scalar.")
    if not jnp.issubdtype(d.dtype, jnp.floating):
        d = d.astype(jnp.float32)
    nt = d.shape[-1]
    n = _n_fft(nt, pad)
    r = np.asarray(_response(n, dt, btype, freqs, order), dtype=d.dtype)
    return _fft_filter(d, r, n)


@functools.partial(jax.jit, static_argnames=("n",))
def _fft_filter(d, r, n):
    nt = d.shape[-1]
    spec = jnp.fft.rfft(d, n=n, axis=-1)
    return jnp.fft.irfft(spec * r, n=n, axis=-1)[..., :nt].astype(d.dtype)


def lowpass(d, freq: float, dt: float, order: int = 4, pad: int | None = None):
    """Zero-phase Butterworth low-pass along the last (time) axis.

    Args:
      d: ``[..., nt]`` data (e.g. ``[n_shots, n_receivers, nt]``); may be traced.
      freq: cutoff in Hz (``|H|**2 = 0.5`` there; below Nyquist ``0.5 / dt``).
      dt: sample interval, s.
      order: Butterworth order of one pass (the forward-backward response
        falls off like ``f**(-4 * order)`` in power).
      pad: zero samples appended before the FFT to avoid wrap-around
        (default ``nt``).

    Returns:
      ``[..., nt]`` filtered data, same dtype.
    """
    return _apply("lowpass", d, dt, "lowpass", (freq,), order, pad)


def highpass(d, freq: float, dt: float, order: int = 4, pad: int | None = None):
    """Zero-phase Butterworth high-pass along the last (time) axis.

    Used for CR-FWI's "missing low frequencies" scenarios (``freq`` = 4 or 6 Hz).
    Arguments as :func:`lowpass`.
    """
    return _apply("highpass", d, dt, "highpass", (freq,), order, pad)


def bandpass(d, low: float, high: float, dt: float, order: int = 4, pad: int | None = None):
    """Zero-phase Butterworth band-pass between ``low`` and ``high`` Hz along time.

    Arguments as :func:`lowpass` (``order`` is that of the low-pass prototype;
    scipy's band-pass has twice as many poles).
    """
    return _apply("bandpass", d, dt, "bandpass", (low, high), order, pad)


# --------------------------------------------------------------------------- scenarios


def add_noise(d, key, k: float, sigma0=None):
    """Add white Gaussian noise with standard deviation ``k * sigma0``.

    CR-FWI's noisy-data scenarios use ``k = 4`` and ``k = 8``; FAD-FWI uses
    ``k = 0.5``.

    Args:
      d: clean data, any shape (e.g. ``[n_shots, n_receivers, nt]``).
      key: a ``jax.random`` key (the only source of randomness).
      k: noise level relative to ``sigma0`` (>= 0).
      sigma0: reference standard deviation; default the standard deviation of
        all samples of the clean ``d``.

    Returns:
      ``d + k * sigma0 * N(0, 1)``, same shape and dtype as ``d``.
    """
    d = jnp.asarray(d)
    if not jnp.issubdtype(d.dtype, jnp.floating):
        d = d.astype(jnp.float32)
    if not isinstance(k, jax.core.Tracer) and not float(k) >= 0:
        raise ValueError(f"add_noise: k={k!r} must be a non-negative noise level (multiple of sigma0).")
    return _add_noise(d, key, k, sigma0)


@jax.jit
def _add_noise(d, key, k, sigma0):
    s0 = jnp.std(d) if sigma0 is None else jnp.asarray(sigma0, d.dtype)
    return d + (k * s0).astype(d.dtype) * jax.random.normal(key, d.shape, d.dtype)


def decimate_shots(n_shots: int, n_keep: int) -> np.ndarray:
    """Indices of ``n_keep`` shots spread evenly over ``n_shots`` (first and last kept).

    CR-FWI's sparse-acquisition scenarios keep 9 or 5 of the 13 Marmousi shots:
    ``decimate_shots(13, 5) -> [0, 3, 6, 9, 12]``.

    Args:
      n_shots: number of shots available (>= 1).
      n_keep: how many to keep, ``1 <= n_keep <= n_shots``.

    Returns:
      sorted, unique ``int`` numpy array ``[n_keep]``.
    """
    n_shots, n_keep = int(n_shots), int(n_keep)
    if n_shots < 1:
        raise ValueError(f"decimate_shots: n_shots={n_shots} must be >= 1.")
    if not 1 <= n_keep <= n_shots:
        raise ValueError(f"decimate_shots: n_keep={n_keep} must be between 1 and n_shots={n_shots}.")
    if n_keep == 1:
        return np.array([(n_shots - 1) // 2])
    idx = np.floor(np.linspace(0, n_shots - 1, n_keep) + 0.5).astype(int)
    assert len(np.unique(idx)) == n_keep
    return idx


def select_shots(data=None, survey=None, indices=None):
    """Keep only the shots ``indices`` of data and/or a survey.

    Args:
      data: ``[n_shots, ...]`` array (or None).
      survey: a survey-like object with a ``select(indices)`` method (such as
        :class:`jaxfwi.Survey`), or None.
      indices: integer shot indices, e.g. from :func:`decimate_shots`.

    Returns:
      ``(data[indices], survey.select(indices))`` (None where not given).
    """
    if indices is None:
        raise ValueError("select_shots: indices is required, e.g. decimate_shots(n_shots, n_keep).")
    idx = np.asarray(indices)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"select_shots: indices must be a 1-D integer array; got {indices!r}.")
    out_data = None
    if data is not None:
        data = jnp.asarray(data)
        if data.ndim == 0 or idx.size and (idx.max() >= data.shape[0] or idx.min() < -data.shape[0]):
            raise ValueError(
                f"select_shots: indices {idx.tolist()} do not fit data with {data.shape[0] if data.ndim else 0} shots."
            )
        out_data = data[jnp.asarray(idx)]
    out_survey = None
    if survey is not None:
        if not hasattr(survey, "select"):
            raise TypeError(
                f"select_shots: survey of type {type(survey).__name__} has no select(indices) method; "
                "pass a jaxfwi.Survey."
            )
        n = getattr(survey, "n_shots", None)
        if n is not None and idx.size and idx.max() >= n:
            raise ValueError(f"select_shots: indices {idx.tolist()} do not fit a survey with {n} shots.")
        out_survey = survey.select(jnp.asarray(idx))
    return out_data, out_survey


def multiscale_bands(f_start: float = 4.0, f_stop: float = 14.0, step: float = 2.0) -> list[float]:
    """Low-pass cutoffs for frequency-multiscale FWI, from ``f_start`` to ``f_stop`` Hz.

    The default is MS-FWI's six bands: ``[4, 6, 8, 10, 12, 14]`` Hz (invert with
    ``lowpass(d, f, dt)`` for each ``f`` in turn).

    Returns:
      list of floats (Hz), ``f_stop`` included when it lies on the step grid.
    """
    f_start, f_stop, step = float(f_start), float(f_stop), float(step)
    if not (f_start > 0 and step > 0 and f_stop >= f_start):
        raise ValueError(
            f"multiscale_bands: need 0 < f_start <= f_stop and step > 0; got f_start={f_start}, "
            f"f_stop={f_stop}, step={step}."
        )
    n = int(math.floor((f_stop - f_start) / step + 1e-9)) + 1
    return [round(f_start + i * step, 10) for i in range(n)]
