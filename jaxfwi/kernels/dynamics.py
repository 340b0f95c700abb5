"""Kernel dynamics: is the wave-based NTK constant?  (CR-FWI claim (i), METHODS.md section 3.)

* :func:`relative_kernel_change` ``||Theta(tau) - Theta(0)||_F / ||Theta(0)||_F``;
* :func:`init_norm_stats` Frobenius-norm statistics at initialisation over seeds (vmapped);
* :func:`wave_ntk_frobenius` ``||Theta||_F`` computed on the small side (no data x data matrix);
* :func:`project_residual` / :func:`predicted_residual` the linearised gradient-flow picture:
  residual component k decays like ``exp(-lam_k tau)``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from jaxfwi.kernels.jacobian import DataSubsample
from jaxfwi.kernels.materialize import wave_ntk_factor

__all__ = [
    "frobenius_norm",
    "relative_kernel_change",
    "kernel_change",
    "wave_ntk_frobenius",
    "init_norm_stats",
    "project_residual",
    "predicted_residual",
]


def frobenius_norm(K: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(K)))


def relative_kernel_change(K0: jax.Array, K1: jax.Array) -> jax.Array:
    """``||K1 - K0||_F / ||K0||_F``."""
    return frobenius_norm(K1 - K0) / frobenius_norm(K0)


def kernel_change(kernel_fn: Callable[[Any], jax.Array], params0: Any, params_tau: Any) -> jax.Array:
    """Relative change of ``kernel_fn(params)`` between two params pytrees."""
    return relative_kernel_change(kernel_fn(params0), kernel_fn(params_tau))


def wave_ntk_frobenius(G: Callable, represent: Optional[Callable], params: Any, *,
                       subsample: Optional[DataSubsample] = None, chunk: Optional[int] = None,
                       strategy: str = "auto") -> jax.Array:
    """``||Theta||_F = ||B^T B||_F`` with ``Theta = B B^T`` (see ``wave_ntk_factor``).

    Traceable (vmap over seeds works).  ``represent=None``: the wave kernel at ``params`` (= v).
    """
    B = wave_ntk_factor(G, represent, params, subsample=subsample, chunk=chunk, strategy=strategy)
    return frobenius_norm(B.T @ B)


def init_norm_stats(norm_fn: Callable[[Any], jax.Array], init_fn: Callable[[jax.Array], Any],
                    keys: jax.Array, *, seed_batch: Optional[int] = None) -> dict:
    """Statistics over seeds of ``norm_fn(init_fn(key))``, vmapped over ``keys``.

    ``seed_batch`` bounds memory: that many seeds run vmapped at once
    (``jax.lax.map(..., batch_size=seed_batch)``); None vmaps them all.
    Returns ``{"values", "mean", "std", "rel_std"}`` (std with ddof=0).
    """
    f = lambda k: norm_fn(init_fn(k))  # noqa: E731
    if seed_batch is None:
        vals = jax.vmap(f)(keys)
    else:
        vals = jax.lax.map(f, keys, batch_size=max(1, int(seed_batch)))
    mean, std = jnp.mean(vals), jnp.std(vals)
    return {"values": vals, "mean": mean, "std": std, "rel_std": std / mean}


def project_residual(residual: jax.Array, eigvecs: jax.Array) -> jax.Array:
    """Coefficients ``V^T r`` of a (flattened) data residual on kernel eigenvectors ``V [n, k]``."""
    return eigvecs.T @ jnp.ravel(residual)


def predicted_residual(coeffs: jax.Array, lam: jax.Array, taus: jax.Array) -> jax.Array:
    """Linearised gradient flow: coefficient k at time tau is ``c_k exp(-lam_k tau)``.

    Returns ``[len(taus), k]``.
    """
    taus = jnp.asarray(taus)
    return coeffs[None, :] * jnp.exp(-jnp.asarray(lam)[None, :] * taus[:, None])
