"""Exact materialised Jacobians and kernels.

Every matrix here is built from Jacobian-vector products, choosing the cheaper
side automatically (``mode="auto"``):

* ``"rev"`` (alias ``"vjp"``, ``"rows"``): one ``jax.vjp`` (a single linearisation)
  pulled back against each output basis vector -> the rows of J; best when there
  are fewer outputs than inputs;
* ``"fwd"`` (alias ``"jvp"``, ``"columns"``): ``jax.jvp`` against each input basis
  vector -> the columns of J; best otherwise (and memory-light: forward mode keeps
  no time history of the propagator).

Basis vectors are generated inside the loop (never an identity matrix) and pushed
``chunk`` at a time through ``jax.vmap``: a Python loop over equal-size chunks when
the inputs are concrete (reuses the propagator's compiled jvp/vjp across chunks and
calls), ``jax.lax.map(..., batch_size=chunk)`` when traced (inside jit / vmap over
seeds).  Peak memory grows with ``chunk``, not with the matrix width.

Shapes are *flattened*: a kernel on data ``[n_shots, n_rec, nt]`` is
``[n_data, n_data]`` with ``n_data = n_shots * n_rec * nt`` (C order), a model-domain
kernel on ``v [nz, nx]`` is ``[nz * nx, nz * nx]``.

Float64: these functions compute in the dtype of their inputs.  For exact float64
kernels enable x64 *before* creating the arrays, either globally
(``jax.config.update("jax_enable_x64", True)`` at start-up, or the environment
variable ``JAX_ENABLE_X64=1``) or locally::

    with jax.enable_x64(True):
        v = jnp.asarray(v_np, jnp.float64)
        K = jaxfwi.kernels.wave_kernel(G, v)

(``jaxfwi.kernels.to_float64(tree)`` casts a params pytree / velocity.)
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxfwi.kernels.jacobian import DataSubsample, subsampled, flatten_function

__all__ = [
    "DEFAULT_CHUNK",
    "resolve_mode",
    "jacobian",
    "jacobian_flat",
    "ntk",
    "wave_jacobian",
    "wave_kernel",
    "sensitivity_kernel",
    "representation_jacobian",
    "representation_ntk",
    "wave_ntk",
    "wave_ntk_factor",
    "neural_sensitivity_kernel",
    "to_float64",
]

DEFAULT_CHUNK = 32

_FWD = ("fwd", "jvp", "columns", "forward")
_REV = ("rev", "vjp", "rows", "reverse")


def resolve_mode(mode: str, n_out: int, n_in: int) -> str:
    """Return ``"fwd"`` or ``"rev"``; ``"auto"`` picks rows (vjp) when n_out < n_in."""
    if mode == "auto":
        return "rev" if n_out < n_in else "fwd"
    if mode in _FWD:
        return "fwd"
    if mode in _REV:
        return "rev"
    raise ValueError(f"mode={mode!r}: use 'auto', 'fwd' (jvp columns) or 'rev' (vjp rows).")


def _chunk(chunk: Optional[int], n: int) -> int:
    c = DEFAULT_CHUNK if chunk is None else int(chunk)
    if c < 1:
        raise ValueError(f"chunk={chunk!r} must be a positive int (products run vmapped per chunk).")
    return max(1, min(c, n))


def _is_concrete(*trees) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def _basis_map(fn: Callable, n: int, dtype, chunk: Optional[int], eager: bool = False) -> jax.Array:
    """``stack([fn(e_i) for i in range(n)])`` without materialising the identity.

    ``eager=False``: ``jax.lax.map(..., batch_size=chunk)`` (traceable, one compiled loop).
    ``eager=True`` (concrete inputs): a Python loop over chunks of ``jax.vmap(fn)``; every
    chunk has the same size (the last one is padded), so the propagator's compiled
    jvp/vjp is reused across chunks and across calls with the same shapes.
    """

    def body(i):
        return fn(jnp.zeros((n,), dtype).at[i].set(1))

    c = _chunk(chunk, n)
    if not eager:
        return jax.lax.map(body, jnp.arange(n), batch_size=c)
    vbody = jax.vmap(body)
    outs = []
    for start in range(0, n, c):
        idx = jnp.minimum(jnp.arange(start, start + c), n - 1)
        outs.append(vbody(idx)[: min(c, n - start)])
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=0)


def jacobian_flat(f_flat: Callable, x: jax.Array, *, mode: str = "auto",
                  chunk: Optional[int] = None) -> jax.Array:
    """Dense Jacobian ``[n_out, n_in]`` of ``f_flat: [n_in] -> [n_out]`` at ``x``."""
    n_in = int(x.size)
    out = jax.eval_shape(f_flat, x)
    n_out = math.prod(out.shape)
    mode = resolve_mode(mode, n_out, n_in)
    eager = _is_concrete(x)
    if mode == "fwd":
        cols = _basis_map(lambda e: jnp.ravel(jax.jvp(f_flat, (x,), (e,))[1]), n_in, x.dtype,
                          chunk, eager)
        return cols.T
    y, pull = jax.vjp(lambda z: jnp.ravel(f_flat(z)), x)
    return _basis_map(lambda e: pull(e)[0], n_out, y.dtype, chunk, eager)


def jacobian(f: Callable, x: Any, *, mode: str = "auto", chunk: Optional[int] = None,
             subsample: Optional[DataSubsample] = None) -> jax.Array:
    """Dense Jacobian ``[n_out, n_in]`` of ``f: pytree -> array`` at ``x``.

    Outputs are raveled (after the optional ``subsample``), inputs are the
    ``ravel_pytree`` vector of ``x``.
    """
    f_flat, x_flat, _, _ = flatten_function(subsampled(f, subsample), x)
    return jacobian_flat(f_flat, x_flat, mode=mode, chunk=chunk)


def ntk(f: Callable, params: Any, *, mode: str = "auto", chunk: Optional[int] = None,
        subsample: Optional[DataSubsample] = None) -> jax.Array:
    """Exact empirical NTK ``J J^T`` of ``f(params) -> array``: ``[n_out, n_out]``.

    ``J = d ravel(f(params)) / d ravel_pytree(params)``; the side (vjp rows or jvp
    columns) is chosen by ``mode`` (see module docstring).
    """
    J = jacobian(f, params, mode=mode, chunk=chunk, subsample=subsample)
    return J @ J.T


# --------------------------------------------------------------------------- wave maps
def wave_jacobian(G: Callable, v: jax.Array, *, subsample: Optional[DataSubsample] = None,
                  mode: str = "auto", chunk: Optional[int] = None) -> jax.Array:
    """J_m = dG/dm at velocity ``v``: ``[n_data, n_model]`` (both flattened)."""
    v = jnp.asarray(v)
    return jacobian(G, v, mode=mode, chunk=chunk, subsample=subsample)


def wave_kernel(G: Callable, v: jax.Array, *, subsample: Optional[DataSubsample] = None,
                mode: str = "auto", chunk: Optional[int] = None) -> jax.Array:
    """Wave kernel ``Theta_wave = J_m J_m^T`` (data x data), ``[n_data, n_data]``.

    This is also the wave-based NTK of the grid representation (``v = m0 + params``,
    K_theta = identity): ADFWI / ADFWI-TV / WECI-FWI / MS-FWI.
    """
    J = wave_jacobian(G, v, subsample=subsample, mode=mode, chunk=chunk)
    return J @ J.T


def sensitivity_kernel(G: Callable, v: jax.Array, *, subsample: Optional[DataSubsample] = None,
                       mode: str = "auto", chunk: Optional[int] = None) -> jax.Array:
    """Model-domain sensitivity (Gauss-Newton) kernel ``J_m^T J_m``, ``[n_model, n_model]``."""
    J = wave_jacobian(G, v, subsample=subsample, mode=mode, chunk=chunk)
    return J.T @ J


def representation_jacobian(represent: Callable, params: Any, *, mode: str = "auto",
                            chunk: Optional[int] = None) -> jax.Array:
    """J_rep = d m_theta / d theta: ``[n_model, n_theta]``."""
    return jacobian(represent, params, mode=mode, chunk=chunk)


def representation_ntk(represent: Callable, params: Any, *, mode: str = "auto",
                       chunk: Optional[int] = None) -> jax.Array:
    """Representation NTK ``K_theta = J_rep J_rep^T`` (model x model), ``[n_model, n_model]``."""
    return ntk(represent, params, mode=mode, chunk=chunk)


def _factored_cost(n_data, n_model, n_theta):
    # number of wave propagations (jvp or vjp) each strategy needs
    return min(n_data, n_model), min(n_data, n_theta)


def _sizes(G, represent, params, subsample):
    m = represent(params)
    n_model = int(m.size)
    n_theta = int(ravel_pytree(params)[0].size)
    d = jax.eval_shape(subsampled(G, subsample), m)
    return m, n_model, n_theta, math.prod(d.shape)


def _resolve_strategy(strategy, n_data, n_model, n_theta):
    if strategy == "auto":
        fac, direct = _factored_cost(n_data, n_model, n_theta)
        return "factored" if fac <= direct else "direct"
    if strategy not in ("factored", "direct"):
        raise ValueError(f"strategy={strategy!r}: use 'auto', 'factored' (J_m K_theta J_m^T) "
                         f"or 'direct' (J_theta J_theta^T).")
    return strategy


def wave_ntk(G: Callable, represent: Callable, params: Any, *, strategy: str = "auto",
             subsample: Optional[DataSubsample] = None, mode: str = "auto",
             chunk: Optional[int] = None) -> jax.Array:
    """Wave-based NTK ``Theta = J_theta J_theta^T = J_m K_theta J_m^T``: ``[n_data, n_data]``.

    strategy:
      ``"factored"``: materialise J_m (min(n_data, n_model) propagations) and K_theta
      (network only), then multiply;
      ``"direct"``: materialise J_theta of the composed map (min(n_data, n_theta)
      propagations);
      ``"auto"``: whichever needs fewer wave propagations.
    """
    m, n_model, n_theta, n_data = _sizes(G, represent, params, subsample)
    strategy = _resolve_strategy(strategy, n_data, n_model, n_theta)
    if strategy == "direct":
        comp = lambda p: G(represent(p))  # noqa: E731
        return ntk(comp, params, mode=mode, chunk=chunk, subsample=subsample)
    Jm = wave_jacobian(G, m, subsample=subsample, mode=mode, chunk=chunk)
    K = representation_ntk(represent, params, chunk=chunk)
    return Jm @ K @ Jm.T


def wave_ntk_factor(G: Callable, represent: Optional[Callable], params: Any, *,
                    strategy: str = "auto", subsample: Optional[DataSubsample] = None,
                    mode: str = "auto", chunk: Optional[int] = None) -> jax.Array:
    """A factor ``B`` with ``Theta = B B^T``, ``B: [n_data, r]``, ``r <= min(n_model, n_theta)``.

    Useful for spectra and norms without forming the data x data matrix:
    eigenvalues of Theta are ``svd(B)**2`` (padded with zeros), and
    ``||Theta||_F = ||B^T B||_F``.  ``represent=None`` gives B = J_m (wave kernel).
    """
    if represent is None:
        return wave_jacobian(G, params, subsample=subsample, mode=mode, chunk=chunk)
    m, n_model, n_theta, n_data = _sizes(G, represent, params, subsample)
    strategy = _resolve_strategy(strategy, n_data, n_model, n_theta)
    if strategy == "direct":
        comp = lambda p: G(represent(p))  # noqa: E731
        return jacobian(comp, params, mode=mode, chunk=chunk, subsample=subsample)
    Jm = wave_jacobian(G, m, subsample=subsample, mode=mode, chunk=chunk)
    if n_theta <= n_model:
        return Jm @ representation_jacobian(represent, params, chunk=chunk)
    K = representation_ntk(represent, params, chunk=chunk)
    s, U = jnp.linalg.eigh(0.5 * (K + K.T))
    return Jm @ (U * jnp.sqrt(jnp.clip(s, 0.0, None)))


def neural_sensitivity_kernel(G: Callable, represent: Callable, params: Any, *,
                              subsample: Optional[DataSubsample] = None, mode: str = "auto",
                              chunk: Optional[int] = None) -> jax.Array:
    """Neural sensitivity kernel (NeurFWI) ``K_theta J_m^T J_m``: ``[n_model, n_model]``.

    Not symmetric; it is similar to ``K^{1/2} J_m^T J_m K^{1/2}`` so its eigenvalues are
    real, non-negative and equal the non-zero eigenvalues of the wave-based NTK.
    """
    m = represent(params)
    H = sensitivity_kernel(G, m, subsample=subsample, mode=mode, chunk=chunk)
    K = representation_ntk(represent, params, chunk=chunk)
    return K @ H


def to_float64(tree: Any) -> Any:
    """Cast every floating leaf of a pytree to float64 (x64 must be enabled)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "to_float64: jax_enable_x64 is off, float64 arrays would silently become float32. "
            "Use `with jax.enable_x64(True): ...` or jax.config.update('jax_enable_x64', True).")

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)
