"""Tests for jaxfwi.signal (filters, noise, shots, bands) and jaxfwi.metrics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from jaxfwi import metrics
from jaxfwi import signal as sig

DT = 0.002
NT = 1000
T = np.arange(NT) * DT


def _ratio(y, x):
    m = slice(300, 700)  # away from the trace ends
    return float(np.std(np.asarray(y)[m]) / np.std(x[m]))


def test_lowpass_highpass_pass_and_attenuate():
    fc = 8.0
    lo = np.sin(2 * np.pi * 3.0 * T)
    hi = np.sin(2 * np.pi * 20.0 * T)
    assert _ratio(sig.lowpass(lo, fc, DT), lo) > 0.99
    assert _ratio(sig.lowpass(hi, fc, DT), hi) < 2e-3
    assert _ratio(sig.highpass(hi, fc, DT), hi) > 0.99
    assert _ratio(sig.highpass(lo, fc, DT), lo) < 2e-3
    # at the cutoff the zero-phase (two-pass) response is |H|^2 = 0.5
    at = np.sin(2 * np.pi * fc * T)
    np.testing.assert_allclose(_ratio(sig.lowpass(at, fc, DT), at), 0.5, atol=0.02)
    f, r = sig.filter_response(NT, DT, "lowpass", fc)
    np.testing.assert_allclose(np.interp(fc, f, r), 0.5, atol=1e-3)
    mid = np.sin(2 * np.pi * 10.0 * T)
    assert _ratio(sig.bandpass(mid, 6.0, 14.0, DT), mid) > 0.98
    assert _ratio(sig.bandpass(lo, 6.0, 14.0, DT), lo) < 2e-2
    assert _ratio(sig.bandpass(np.sin(2 * np.pi * 30 * T), 6.0, 14.0, DT), mid) < 2e-2


def test_filter_is_zero_phase_and_equals_forward_backward():
    pulse = np.exp(-(((T - 1.0) / 0.01) ** 2))  # symmetric about sample 500
    for y in (sig.lowpass(pulse, 10.0, DT), sig.bandpass(pulse, 4.0, 20.0, DT)):
        y = np.asarray(y)
        assert int(np.argmax(np.abs(y))) == 500
        np.testing.assert_allclose(y[500 - 50 : 500], y[501 : 551][::-1], atol=1e-5)
    # same as scipy's sosfilt run forward then backward over a zero-padded copy
    x = np.random.default_rng(0).normal(size=NT)
    sos = scipy.signal.butter(4, 8.0, fs=1 / DT, output="sos")
    pad = 4000
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    ref = scipy.signal.sosfilt(sos, scipy.signal.sosfilt(sos, xp)[::-1])[::-1][pad : pad + NT]
    np.testing.assert_allclose(np.asarray(sig.lowpass(x, 8.0, DT, order=4)), ref, atol=1e-5 * np.abs(ref).max())


def test_filter_batched_jit_grad_and_errors():
    d = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 200))
    y = jax.jit(lambda a: sig.lowpass(a, 10.0, DT))(d)
    assert y.shape == d.shape and y.dtype == d.dtype
    np.testing.assert_allclose(np.asarray(y[1, 2]), np.asarray(sig.lowpass(d[1, 2], 10.0, DT)), atol=1e-5)
    g = jax.grad(lambda a: jnp.sum(sig.highpass(a, 5.0, DT) ** 2))(d)
    assert bool(jnp.all(jnp.isfinite(g)))
    with pytest.raises(ValueError, match="Nyquist"):
        sig.lowpass(d, 300.0, DT)
    with pytest.raises(ValueError, match="low=.*below"):
        sig.bandpass(d, 10.0, 5.0, DT)
    with pytest.raises(ValueError, match="order"):
        sig.lowpass(d, 5.0, DT, order=0)


def test_add_noise_statistics_and_determinism():
    clean = jnp.asarray(np.sin(2 * np.pi * 7 * T[:250]))[None, None, :] * jnp.ones((4, 40, 1))
    s0 = float(jnp.std(clean))
    for k in (0.5, 4.0):
        noisy = sig.add_noise(clean, jax.random.PRNGKey(1), k)
        assert noisy.shape == clean.shape
        np.testing.assert_allclose(float(jnp.std(noisy - clean)), k * s0, rtol=0.02)
    a = sig.add_noise(clean, jax.random.PRNGKey(5), 1.0)
    b = sig.add_noise(clean, jax.random.PRNGKey(5), 1.0)
    c = sig.add_noise(clean, jax.random.PRNGKey(6), 1.0)
    assert bool(jnp.all(a == b)) and not bool(jnp.all(a == c))
    assert bool(jnp.all(sig.add_noise(clean, jax.random.PRNGKey(1), 0.0) == clean))


def test_decimate_and_select_shots():
    np.testing.assert_array_equal(sig.decimate_shots(13, 5), [0, 3, 6, 9, 12])
    nine = sig.decimate_shots(13, 9)
    assert len(set(nine.tolist())) == 9 and nine[0] == 0 and nine[-1] == 12
    np.testing.assert_array_equal(sig.decimate_shots(13, 13), np.arange(13))
    with pytest.raises(ValueError, match="n_keep"):
        sig.decimate_shots(5, 6)

    class FakeSurvey:
        n_shots = 13

        def select(self, idx):
            return ("selected", np.asarray(idx).tolist())

    data = jnp.arange(13 * 2 * 3.0).reshape(13, 2, 3)
    idx = sig.decimate_shots(13, 5)
    d, s = sig.select_shots(data, FakeSurvey(), idx)
    np.testing.assert_array_equal(np.asarray(d[:, 0, 0]), idx * 6)
    assert s == ("selected", idx.tolist())
    with pytest.raises(ValueError, match="do not fit"):
        sig.select_shots(data[:3], None, idx)


def test_multiscale_bands():
    assert sig.multiscale_bands() == [4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    assert sig.multiscale_bands(2.5, 5.0, 0.5) == [2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    with pytest.raises(ValueError):
        sig.multiscale_bands(5, 4, 1)


# --------------------------------------------------------------------------- metrics


def test_mse_mae_units_and_psnr_formula():
    vt = jnp.asarray([[1500.0, 2500.0], [3500.0, 4500.0]])
    v = vt + jnp.asarray([[100.0, -100.0], [200.0, 0.0]])
    np.testing.assert_allclose(float(metrics.mse(v, vt)), (0.01 + 0.01 + 0.04) / 4, rtol=1e-6)  # (km/s)^2
    np.testing.assert_allclose(float(metrics.mse(v, vt, units="m/s")), (1e4 + 1e4 + 4e4) / 4, rtol=1e-6)
    np.testing.assert_allclose(float(metrics.mae(v, vt)), 0.4 / 4, rtol=1e-6)
    np.testing.assert_allclose(float(metrics.psnr(v, vt)), 10 * np.log10(3000.0**2 / 1.5e4), rtol=1e-6)
    # PSNR is the same in any unit; FAD-FWI's Overthrust numbers: MSE 113.94 (m/s)^2 over a ~3634 m/s range
    np.testing.assert_allclose(10 * np.log10(3634.3**2 / 113.94), 50.6, atol=0.1)
    with pytest.raises(ValueError, match="units"):
        metrics.mse(v, vt, units="ft/s")
    with pytest.raises(ValueError, match="same grid"):
        metrics.mae(v, vt[:1])


def test_ssim_properties_and_reference_values():
    rng = np.random.default_rng(0)
    x = scipy.ndimage.gaussian_filter(rng.normal(size=(40, 60)), 3) * 1000 + 3000
    x = x.astype(np.float32)
    assert abs(float(metrics.ssim(x, x)) - 1.0) < 1e-5
    noisy1 = x + rng.normal(0, 20, x.shape).astype(np.float32)
    noisy2 = x + rng.normal(0, 80, x.shape).astype(np.float32)
    s1, s2 = float(metrics.ssim(noisy1, x)), float(metrics.ssim(noisy2, x))
    assert 1.0 > s1 > s2 > 0.0
    # symmetric when the data range is given
    L = float(x.max() - x.min())
    np.testing.assert_allclose(float(metrics.ssim(noisy1, x, L)), float(metrics.ssim(x, noisy1, L)), rtol=1e-5)
    # unit-free: m/s and km/s give the same SSIM
    np.testing.assert_allclose(float(metrics.ssim(noisy1 / 1000, x / 1000)), s1, rtol=1e-4)
    # independent float64 numpy implementation (Gaussian window via scipy, 'valid' region)
    a, b = noisy1.astype(np.float64), x.astype(np.float64)
    filt = lambda im: scipy.ndimage.gaussian_filter(im, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
    mx, my = filt(a), filt(b)
    sxx, syy, sxy = filt(a * a) - mx**2, filt(b * b) - my**2, filt(a * b) - mx * my
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ref = np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    np.testing.assert_allclose(s1, ref, atol=1e-4)
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(x[:8], x[:8])


def test_all_metrics_dict():
    vt = np.broadcast_to(np.linspace(1500, 4500, 20)[:, None], (20, 30)).astype(np.float32)
    m = metrics.all_metrics(vt + 50.0, vt)
    assert set(m) == {"mse", "mae", "ssim", "psnr", "rel_err"}
    np.testing.assert_allclose(m["mse"], 0.0025, rtol=1e-5)
    np.testing.assert_allclose(m["mae"], 0.05, rtol=1e-5)
    np.testing.assert_allclose(m["psnr"], 10 * np.log10(3000.0**2 / 2500.0), rtol=1e-5)
    assert all(isinstance(val, float) for val in m.values())
    small = jnp.asarray(vt[:12, :12])
    g = jax.grad(lambda v: metrics.ssim(v, small))(small + jnp.arange(12.0))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
