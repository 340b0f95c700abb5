"""The finite-difference Laplacian as a self-adjoint linear JAX primitive.

Reverse-mode autodiff of a stencil written with slices transposes every slice
into a zero-padded copy of the grid, which XLA executes several times slower
than the stencil itself. The Laplacian with zero (Dirichlet) ghost cells is a
symmetric matrix, so its transpose is itself: registering it as a linear
primitive whose transpose rule re-applies the same stencil makes the backward
time step as cheap as the forward one, while forward mode (``jax.jvp``),
``vmap`` and ``jit`` keep working.

With a free surface (odd mirror about row 0, where ``u = 0`` is enforced) the
operator is applied as ``P L P`` with ``P`` zeroing row 0; that operator is
exactly symmetric too, and equals ``L`` on every field the propagator produces.
"""
from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxfwi.physics import stencils


def laplacian_reference(u, *, accuracy: int, inv_h2: tuple, free_surface: bool):
    """Plain-jnp Laplacian over the trailing ``len(inv_h2)`` axes of ``u``.

    Zero ghost cells beyond every edge; with ``free_surface`` the first spatial
    axis is mirrored oddly about index 0 and rows 0 of input and output are zero.
    One zero-padded copy of ``u`` feeds every shifted slice (XLA fuses the
    slices into a single loop); the odd-mirror ghost terms of the free surface
    only touch the first ``r`` rows and are added there.
    """
    nd = len(inv_h2)
    lead = u.ndim - nd
    r = accuracy // 2
    c0, ck = stencils.d2_coefficients(accuracy)
    a0 = lead  # first spatial axis
    if free_surface:
        u = _zero_first_row(u, a0)
    up = jnp.pad(u, [(0, 0)] * lead + [(r, r)] * nd)
    grid = u.shape[lead:]

    def shifted(d, k):
        x = up
        for e in range(nd):
            start = r + (k if e == d else 0)
            x = lax.slice_in_dim(x, start, start + grid[e], axis=lead + e)
        return x

    out = sum(c0 * inv_h2[d] for d in range(nd)) * u
    for d in range(nd):
        for k, c in enumerate(ck, start=1):
            out = out + (c * inv_h2[d]) * (shifted(d, k) + shifted(d, -k))
    if free_surface:
        # ghost row -j holds -u[j]: row i (< r) gains -c_k u[k - i] for every k > i
        rows = []
        for i in range(r):
            acc = 0.0
            for k in range(i + 1, r + 1):
                acc = acc - ck[k - 1] * lax.slice_in_dim(u, k - i, k - i + 1, axis=a0)
            rows.append(acc * inv_h2[0])
        corr = jnp.concatenate(rows, axis=a0)
        top = lax.slice_in_dim(out, 0, r, axis=a0) + corr
        out = lax.dynamic_update_slice_in_dim(out, top, 0, axis=a0)
        out = _zero_first_row(out, a0)
    return out


def _zero_first_row(x, axis):
    return lax.dynamic_update_slice_in_dim(x, jnp.zeros_like(lax.slice_in_dim(x, 0, 1, axis=axis)), 0, axis=axis)


laplacian_p = Primitive("jaxfwi_laplacian")
laplacian_p.def_impl(partial(laplacian_reference))
laplacian_p.def_abstract_eval(lambda u, **params: u)  # ShapedArray in, same out
mlir.register_lowering(laplacian_p, mlir.lower_fun(laplacian_reference, multiple_results=False))
ad.deflinear2(laplacian_p, lambda ct, u, **params: [laplacian_p.bind(ct, **params)])


def _batch(args, dims, **params):
    (u,), (d,) = args, dims
    return laplacian_p.bind(jnp.moveaxis(u, d, 0), **params), 0


batching.primitive_batchers[laplacian_p] = _batch


def laplacian(u, spacing, accuracy: int = 8, free_surface: bool = False):
    """Discrete Laplacian of ``u`` (its trailing ``len(spacing)`` axes are space), 1/m^2 * [u].

    Args:
      u: ``[..., *grid]`` field.
      spacing: cell size per spatial axis, m.
      accuracy: 2, 4, 6 or 8.
      free_surface: odd mirror about index 0 of the first spatial axis (pressure-free surface).
    """
    inv_h2 = tuple(1.0 / float(h) ** 2 for h in spacing)
    return laplacian_p.bind(u, accuracy=int(accuracy), inv_h2=inv_h2, free_surface=bool(free_surface))
