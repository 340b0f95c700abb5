"""Analytic homogeneous-medium solutions for the propagator tests."""
import numpy as np
from scipy.special import hankel2


def greens_trace(wavelet, dt, dist, vel, ndim, pad=4):
    """Wavelet convolved with the causal Green's function of (1/v^2) u_tt - lap u = delta.

    ``wavelet [nt]`` sampled at t = n dt; ``dist`` in m. Computed in the frequency
    domain (numpy convention X(w) = sum x(t) e^{-i w t}), zero-padded ``pad`` times.
    """
    w = np.asarray(wavelet, np.float64)
    nt = w.shape[-1]
    n = pad * nt
    W = np.fft.rfft(w, n)
    om = 2 * np.pi * np.fft.rfftfreq(n, dt)
    k = om / vel
    G = np.zeros_like(W)
    nz = om > 0
    if ndim == 1:
        # G(t) = v/2 H(t - r/v)  ->  (v/2) e^{-ikr} / (i w)
        G[nz] = vel / 2 * np.exp(-1j * k[nz] * dist) / (1j * om[nz])
    elif ndim == 2:
        G[nz] = -0.25j * hankel2(0, k[nz] * dist)
    else:
        G[nz] = np.exp(-1j * k[nz] * dist) / (4 * np.pi * dist)
    return np.fft.irfft(W * G, n)[:nt]
