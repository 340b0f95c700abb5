"""The three NeurFWI views of a neural reparameterisation.

* **Spectral filtering** (:func:`spectral_filtering`): eigen-spectra of the neural
  sensitivity kernel ``K_theta J_m^T J_m`` vs the sensitivity kernel ``J_m^T J_m``,
  and the filter gain of K_theta on the sensitivity eigenvectors.
* **Gradient wavenumber modulation** (:func:`gradient_wavenumber_modulation`):
  wavenumber amplitude spectrum (radial, or per axis) of the NTK-filtered update
  ``K_theta g`` vs the raw FWI gradient ``g = J_m^T r``.
* **Wave frequency bias** (:func:`band_energy`, :func:`frequency_bias`):
  residual energy per temporal frequency band along an inversion.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.kernels.jacobian import ComposedMap, DataSubsample
from jaxfwi.kernels.materialize import representation_ntk, wave_jacobian
from jaxfwi.kernels.spectra import eigenvalues_from_factor, eigh_desc

__all__ = [
    "spectral_filtering",
    "wavenumber_spectrum",
    "gradient_wavenumber_modulation",
    "default_bands",
    "band_energy",
    "frequency_bias",
    "band_convergence_index",
]


def spectral_filtering(G: Callable, represent: Callable, params: Any, *,
                       subsample: Optional[DataSubsample] = None, chunk: Optional[int] = None,
                       normalize: bool = True) -> dict:
    """Spectra of ``K_theta J_m^T J_m`` (NSK) and ``J_m^T J_m`` (both ``[n_model]``, descending).

    NSK eigenvalues are computed stably as ``svd(J_m K^{1/2})**2`` (the NSK is similar
    to ``K^{1/2} J_m^T J_m K^{1/2}``).  Also returns ``gain[i] = s_i^T K_theta s_i`` on
    the eigenvectors s_i of ``J_m^T J_m`` (how much the network passes each
    sensitivity mode).  With ``normalize`` the spectra are divided by their first value.
    """
    m = represent(params)
    n_model = int(m.size)
    Jm = wave_jacobian(G, m, subsample=subsample, chunk=chunk)
    K = representation_ntk(represent, params, chunk=chunk)
    w, V = eigh_desc(K)
    B = Jm @ (V * jnp.sqrt(jnp.clip(w, 0.0, None)))
    nsk = eigenvalues_from_factor(B, n_model)
    _, s, Vt = jnp.linalg.svd(Jm, full_matrices=False)
    sens = jnp.concatenate([s * s, jnp.zeros((n_model - s.shape[0],), s.dtype)])
    S = Vt.T  # sensitivity eigenvectors (model space), [n_model, r]
    gain = jnp.einsum("ir,ij,jr->r", S, K, S)
    out = {"nsk": nsk, "sensitivity": sens, "gain": gain}
    if normalize:
        out["nsk"] = nsk / nsk[0]
        out["sensitivity"] = sens / sens[0]
        out["gain"] = gain / jnp.max(gain)
    return out


def _spacing(dx, ndim):
    if np.ndim(dx) == 0:
        return (float(dx),) * ndim
    dx = tuple(float(d) for d in dx)
    if len(dx) != ndim:
        raise ValueError(f"dx={dx} has {len(dx)} entries for a {ndim}-D field.")
    return dx


def wavenumber_spectrum(field, dx: Union[float, Sequence[float]], *, mode: str = "radial",
                        nbins: Optional[int] = None, demean: bool = True) -> dict:
    """Wavenumber amplitude spectrum of a 1-D or 2-D field (wavenumbers in cycles/m).

    1-D: ``{"k", "amplitude"}`` (one-sided |FFT|).
    2-D, ``mode="radial"``: ``{"k", "amplitude"}`` mean |FFT2| in rings of |k|;
    ``mode="axes"``: ``{"kz", "amplitude_z", "kx", "amplitude_x"}``, |FFT| along each axis
    averaged over the other.
    """
    f = np.asarray(field, np.float64)
    if demean:
        f = f - f.mean()
    if f.ndim == 1:
        (h,) = _spacing(dx, 1)
        return {"k": np.fft.rfftfreq(f.size, h), "amplitude": np.abs(np.fft.rfft(f))}
    if f.ndim != 2:
        raise ValueError(f"wavenumber_spectrum: field must be 1-D or 2-D, got shape {f.shape}.")
    hz, hx = _spacing(dx, 2)
    nz, nx = f.shape
    if mode == "axes":
        return {"kz": np.fft.rfftfreq(nz, hz), "amplitude_z": np.abs(np.fft.rfft(f, axis=0)).mean(1),
                "kx": np.fft.rfftfreq(nx, hx), "amplitude_x": np.abs(np.fft.rfft(f, axis=1)).mean(0)}
    if mode != "radial":
        raise ValueError(f"mode={mode!r}: use 'radial' or 'axes'.")
    A = np.abs(np.fft.fft2(f))
    kz, kx = np.fft.fftfreq(nz, hz), np.fft.fftfreq(nx, hx)
    kr = np.sqrt(kz[:, None] ** 2 + kx[None, :] ** 2)
    kmax = min(0.5 / hz, 0.5 / hx)
    nb = nbins or max(8, min(nz, nx) // 2)
    edges = np.linspace(0.0, kmax, nb + 1)
    idx = np.digitize(kr.ravel(), edges) - 1
    amp = np.array([A.ravel()[idx == i].mean() if np.any(idx == i) else 0.0 for i in range(nb)])
    return {"k": 0.5 * (edges[1:] + edges[:-1]), "amplitude": amp}


def gradient_wavenumber_modulation(G: Callable, represent: Callable, params: Any, d_obs: jax.Array,
                                   dx, *, mode: str = "radial", nbins: Optional[int] = None,
                                   subsample: Optional[DataSubsample] = None) -> dict:
    """Raw FWI gradient ``g = J_m^T (G(m) - d_obs)`` vs the NTK-filtered update ``K_theta g``.

    ``K_theta g`` is the model-space step a gradient step in theta induces
    (``dm = -J_rep J_rep^T g`` up to the learning rate); computed matrix-free.
    Returns the two fields, their spectra (each normalised to unit sum) and
    ``ratio = filtered / raw`` per wavenumber bin (> 1: amplified by the network).
    """
    cm = ComposedMap(G, represent, params, subsample)
    d_obs = jnp.asarray(d_obs)
    if tuple(d_obs.shape) != cm.d_shape and subsample is not None:
        d_obs = subsample(d_obs)
    r = cm.G_flat(cm.m) - jnp.ravel(d_obs)
    g = cm.jmT(r)
    u = cm.k_theta(g)
    g_f, u_f = np.asarray(g).reshape(cm.m_shape), np.asarray(u).reshape(cm.m_shape)
    out = {"gradient": g_f, "filtered": u_f}
    sg = wavenumber_spectrum(g_f, dx, mode=mode, nbins=nbins)
    su = wavenumber_spectrum(u_f, dx, mode=mode, nbins=nbins)
    tiny = 1e-30
    for key in sg:
        if key.startswith("amplitude"):
            a, b = sg[key] / (sg[key].sum() + tiny), su[key] / (su[key].sum() + tiny)
            suffix = key[len("amplitude"):]
            out["raw" + suffix] = a
            out["filtered_spectrum" + suffix] = b
            out["ratio" + suffix] = b / (a + tiny)
        else:
            out[key] = sg[key]
    return out


def default_bands(f_peak: float) -> Tuple[Tuple[float, float], ...]:
    """Temporal bands (Hz) around a Ricker peak frequency: [0, .5f), [.5f, f), [f, 1.5f),
    [1.5f, 2f), [2f, 3f)."""
    f = float(f_peak)
    e = [0.0, 0.5 * f, f, 1.5 * f, 2.0 * f, 3.0 * f]
    return tuple((e[i], e[i + 1]) for i in range(len(e) - 1))


def band_energy(residual, dt: float, bands: Sequence[Tuple[float, float]]) -> np.ndarray:
    """Energy of ``residual [..., nt]`` per temporal frequency band ``[(f_lo, f_hi), ...]`` (Hz).

    Energy = sum over all leading axes of |rfft|^2 in ``f_lo <= f < f_hi``; ``[n_bands]``.
    """
    r = np.asarray(residual, np.float64)
    R = np.abs(np.fft.rfft(r, axis=-1)) ** 2
    R = R.reshape(-1, R.shape[-1]).sum(0)
    f = np.fft.rfftfreq(r.shape[-1], dt)
    return np.array([R[(f >= lo) & (f < hi)].sum() for lo, hi in bands])


def frequency_bias(residual_history, dt: float, bands: Sequence[Tuple[float, float]], *,
                   normalize: bool = True) -> np.ndarray:
    """Residual energy per band along an inversion: ``[n_iter, n_bands]``.

    ``residual_history``: sequence (or array ``[n_iter, ...,  nt]``) of data residuals.
    With ``normalize`` each band is divided by its energy at the first iteration, so a
    frequency bias shows as low bands falling first.
    """
    E = np.stack([band_energy(r, dt, bands) for r in residual_history])
    if normalize:
        E = E / np.maximum(E[0:1], 1e-300)
    return E


def band_convergence_index(E: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Per band, the first iteration where normalised energy ``E [n_iter, n_bands]`` drops
    below ``fraction`` (``n_iter`` if never)."""
    E = np.asarray(E)
    out = []
    for b in range(E.shape[1]):
        hit = np.nonzero(E[:, b] < fraction)[0]
        out.append(int(hit[0]) if hit.size else E.shape[0])
    return np.array(out)
