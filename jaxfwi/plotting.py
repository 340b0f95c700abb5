"""Figures: velocity models, shot gathers, wavefield snapshots, loss curves.

matplotlib is imported lazily with the non-interactive Agg backend, so these
functions work on machines without a display. Every function writes a PNG and
returns its path.
"""
from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _extent(shape, dx):
    nz, nx = shape
    return [0, nx * dx / 1000, nz * dx / 1000, 0]


def plot_models(models: dict, dx: float, path, vmin=None, vmax=None, title=None):
    """Side-by-side velocity panels ``{name: v [nz, nx] m/s}`` in km/s on a shared colour scale."""
    plt = _plt()
    arrs = {k: np.asarray(v) / 1000.0 for k, v in models.items()}
    lo = min(a.min() for a in arrs.values()) if vmin is None else vmin / 1000
    hi = max(a.max() for a in arrs.values()) if vmax is None else vmax / 1000
    n = len(arrs)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.2), squeeze=False, constrained_layout=True)
    for ax, (name, a) in zip(axes[0], arrs.items()):
        im = ax.imshow(a, extent=_extent(a.shape, dx), cmap="jet", vmin=lo, vmax=hi, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("x (km)")
        ax.set_ylabel("z (km)")
    fig.colorbar(im, ax=axes[0].tolist(), label="velocity (km/s)", shrink=0.9)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def plot_gather(d, dt: float, path, title="shot gather", clip=0.98):
    """One shot gather ``d [n_receivers, nt]`` (time down), clipped at a quantile of |d|."""
    plt = _plt()
    d = np.asarray(d)
    c = np.quantile(np.abs(d), clip) or 1.0
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(d.T, cmap="gray", vmin=-c, vmax=c, aspect="auto",
              extent=[0, d.shape[0], d.shape[1] * dt, 0])
    ax.set_xlabel("receiver")
    ax.set_ylabel("time (s)")
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def plot_snapshot(u, dx: float, path, title="wavefield"):
    """A wavefield snapshot ``u [nz, nx]`` with a symmetric colour scale."""
    plt = _plt()
    u = np.asarray(u)
    c = np.abs(u).max() or 1.0
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.imshow(u, cmap="seismic", vmin=-c, vmax=c, extent=_extent(u.shape, dx), aspect="auto")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("z (km)")
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def plot_curves(curves: dict, path, xlabel="epoch", ylabel="loss", log=True, title=None):
    """Line plot of ``{label: values [n]}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, y in curves.items():
        ax.plot(np.asarray(y), label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path
