"""Eigen-spectra of kernels: dense (eigh / svd) and matrix-free (Lanczos, randomised).

All eigenvalues are returned in **descending** order.

Matrix-free solvers need only a symmetric positive semi-definite product
``matvec(x: [n]) -> [n]``, e.g. ``ComposedMap.ntk`` (the wave-based NTK product,
a jvp of a vjp), ``ComposedMap.pgram`` or ``ComposedMap.gn``.  Recall that the
non-zero spectra of ``J J^T`` and ``J^T J`` coincide, so the solver can run in
whichever space is smaller (model space for big surveys); data-space eigenvectors
are ``u_i = J w_i / sqrt(lam_i)``.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi import devices as _devices

__all__ = [
    "EigResult",
    "eigh_desc",
    "eigvalsh_desc",
    "eigenvalues_from_factor",
    "normalized_decay",
    "decay_index",
    "decay_summary",
    "lanczos",
    "randomized_eigh",
    "top_eigenpairs",
]


class EigResult(NamedTuple):
    """Top-k eigenpairs: ``values [k]`` (descending), ``vectors [n, k]`` (orthonormal
    columns), ``residuals [k]`` = ``||K v_i - lam_i v_i||_2``, and the number of
    kernel-vector products used."""

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    num_matvecs: int


def eigh_desc(K: jax.Array):
    """``(lam [n], V [n, n])`` of the symmetric part of K, eigenvalues descending."""
    K = 0.5 * (K + K.T)
    w, V = jnp.linalg.eigh(K)
    return w[::-1], V[:, ::-1]


def eigvalsh_desc(K: jax.Array) -> jax.Array:
    """Eigenvalues of the symmetric part of K, descending."""
    return jnp.linalg.eigvalsh(0.5 * (K + K.T))[::-1]


def eigenvalues_from_factor(B: jax.Array, n: Optional[int] = None) -> jax.Array:
    """Eigenvalues of ``B B^T`` as ``svd(B)**2`` (descending), zero-padded to length n.

    More accurate than eigh of the Gram matrix (no squared condition number), and
    works from the smaller side automatically.  ``n`` defaults to ``B.shape[0]``.
    """
    s = jnp.linalg.svd(B, compute_uv=False)
    lam = jnp.sort(s * s)[::-1]
    n = B.shape[0] if n is None else int(n)
    if lam.shape[0] < n:
        lam = jnp.concatenate([lam, jnp.zeros((n - lam.shape[0],), lam.dtype)])
    return lam[:n]


def normalized_decay(lam) -> jax.Array:
    """``lam_i / lam_1`` (the normalised decay curve)."""
    lam = jnp.asarray(lam)
    return lam / lam[0]


def decay_index(lam, threshold: float = 1e-3) -> int:
    """First (0-based) index i with ``lam_i / lam_1 < threshold``; ``len(lam)`` if none."""
    r = np.asarray(lam, dtype=np.float64)
    r = r / r[0]
    below = np.nonzero(r < threshold)[0]
    return int(below[0]) if below.size else int(r.size)


def decay_summary(lam, indices: Sequence[int] = (1, 5, 10, 20, 50),
                  threshold: float = 1e-3) -> dict:
    """Dict with ``lam_1``, ``ratio@i`` = lam_i/lam_1 (0-based i) and ``index<threshold``."""
    r = np.asarray(lam, dtype=np.float64)
    out = {"lam_1": float(r[0])}
    for i in indices:
        if i < r.size:
            out[f"ratio@{i}"] = float(r[i] / r[0])
    out[f"index<{threshold:g}"] = decay_index(r, threshold)
    return out


def _operator_dtype(dtype):
    if dtype is not None:
        return jnp.dtype(dtype)
    return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


def lanczos(matvec: Callable, n: int, k: int, *, key: Optional[jax.Array] = None,
            v0=None, max_iter: Optional[int] = None, tol: float = 1e-8,
            check_every: int = 5, residuals: str = "exact", dtype=None,
            jit: bool = False, verbose: bool = False,
            max_time: Optional[float] = None) -> EigResult:
    """Top-k eigenpairs of a symmetric PSD operator by Lanczos with full reorthogonalisation.

    Args:
      matvec: ``x [n] -> K x [n]``.
      n: operator size.  k: number of eigenpairs.
      key / v0: random start vector (``key``) or an explicit one.
      max_iter: Krylov dimension cap (default ``min(n, max(3 k + 20, 40))``).
      tol: stop when every top-k Ritz residual estimate ``|beta_m s_{m,i}|`` is
        below ``tol * lam_1`` (checked every ``check_every`` steps).
      residuals: ``"exact"`` recomputes ``||K v_i - lam_i v_i||`` with k extra products;
        ``"estimate"`` returns the Lanczos estimates (equal in exact arithmetic).
      dtype: dtype fed to ``matvec`` (default float64 if x64 is on, else float32).
        The Krylov basis and the reorthogonalisation are kept in float64 numpy.
      jit: wrap ``matvec`` in ``jax.jit`` (default False: call it as given; jit it yourself
        when its eager dispatch is slow).
      verbose: print progress at every convergence check.
      max_time: wall-clock budget in seconds: stop after the first iteration past it
        and return the current Ritz pairs (check ``residuals`` for convergence).

    Returns an :class:`EigResult`.
    """
    n, k = int(n), int(k)
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: need 1 <= k <= n, got k={k}, n={n}.")
    m_max = int(min(n, max(3 * k + 20, 40)) if max_iter is None else min(max_iter, n))
    if m_max < k:
        raise ValueError(f"lanczos: max_iter={max_iter} < k={k}.")
    dt = _operator_dtype(dtype)
    mv = _devices.jit(matvec) if jit else matvec

    def apply(x):
        return np.asarray(mv(jnp.asarray(x, dt)), dtype=np.float64)

    if v0 is None:
        key = jax.random.key(0) if key is None else key
        v0 = np.asarray(jax.random.normal(key, (n,), jnp.float32), np.float64)
    q = np.asarray(v0, np.float64).ravel()
    q = q / np.linalg.norm(q)
    Q = np.zeros((m_max + 1, n))
    Q[0] = q
    alpha, beta = [], []
    n_mv = 0
    t0 = time.time()
    m = 0
    for j in range(m_max):
        w = apply(Q[j])
        n_mv += 1
        a = float(Q[j] @ w)
        alpha.append(a)
        # full reorthogonalisation (classical Gram-Schmidt, twice)
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        m = j + 1
        beta.append(b)
        if b <= 1e-14 * max(abs(a), 1e-300) or m == n:
            break  # invariant subspace found
        Q[j + 1] = w / b
        out_of_time = max_time is not None and time.time() - t0 > max_time
        if m >= k and (m % check_every == 0 or out_of_time):
            T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
            th, S = np.linalg.eigh(T)
            est = np.abs(b * S[-1, ::-1][:k])
            if verbose:
                print(f"  lanczos it {m:4d}: lam_1={th[-1]:.4e} max res/lam_1={est.max() / th[-1]:.2e} "
                      f"({time.time() - t0:.1f}s)", flush=True)
            if np.all(est <= tol * abs(th[-1])):
                break
        if out_of_time:
            break
    T = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    th, S = np.linalg.eigh(T)
    th, S = th[::-1], S[:, ::-1]
    kk = min(k, m)
    vals = th[:kk]
    vecs = Q[:m].T @ S[:, :kk]
    if residuals == "exact":
        res = np.array([np.linalg.norm(apply(vecs[:, i]) - vals[i] * vecs[:, i]) for i in range(kk)])
        n_mv += kk
    elif residuals == "estimate":
        res = np.abs(beta[m - 1] * S[-1, :kk])
    else:
        raise ValueError(f"residuals={residuals!r}: use 'exact' or 'estimate'.")
    return EigResult(vals, vecs, res, n_mv)


def _block_apply(matvec, X, chunk):
    """K X for X [n, l]: products vmapped ``chunk`` at a time."""
    l = X.shape[1]
    bs = l if chunk is None else max(1, min(int(chunk), l))
    return jax.lax.map(matvec, X.T, batch_size=bs).T


def randomized_eigh(matvec: Callable, n: int, k: int, *, key: Optional[jax.Array] = None,
                    oversample: int = 10, power_iters: int = 2, chunk: Optional[int] = None,
                    dtype=None) -> EigResult:
    """Top-k eigenpairs of a symmetric PSD operator by the randomised range finder
    (Halko, Martinsson & Tropp) with ``power_iters`` subspace iterations.

    Uses ``(power_iters + 2) * (k + oversample)`` products, batched with vmap
    ``chunk`` at a time.  Residuals ``||K v - lam v||`` are exact at no extra cost
    (``K Q`` is known from the last product block).
    """
    n, k = int(n), int(k)
    l = min(n, k + int(oversample))
    dt = _operator_dtype(dtype)
    key = jax.random.key(0) if key is None else key
    block = _devices.jit(lambda X: _block_apply(matvec, X, chunk))
    X = jax.random.normal(key, (n, l), dt)
    Y = block(X)
    for _ in range(int(power_iters)):
        Q, _ = jnp.linalg.qr(Y)
        Y = block(Q)
    Q, _ = jnp.linalg.qr(Y)
    Z = block(Q)
    Qn, Zn = np.asarray(Q, np.float64), np.asarray(Z, np.float64)
    Bm = Qn.T @ Zn
    th, S = np.linalg.eigh(0.5 * (Bm + Bm.T))
    th, S = th[::-1][:k], S[:, ::-1][:, :k]
    vecs = Qn @ S
    res = np.linalg.norm(Zn @ S - vecs * th, axis=0)
    return EigResult(th, vecs, res, (int(power_iters) + 2) * l)


def top_eigenpairs(matvec: Callable, n: int, k: int, *, method: str = "lanczos", **kw) -> EigResult:
    """Dispatch to :func:`lanczos` or :func:`randomized_eigh`."""
    if method == "lanczos":
        return lanczos(matvec, n, k, **kw)
    if method in ("randomized", "randomised"):
        return randomized_eigh(matvec, n, k, **kw)
    raise ValueError(f"method={method!r}: use 'lanczos' or 'randomized'.")
