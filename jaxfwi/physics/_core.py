"""The jitted time loop of :func:`jaxfwi.forward` and its hand-written adjoint.

Layout of one shot's leapfrog step ``n`` (state ``u[n-1], u[n], mem[n]``):

    acc[n]  = L u[n] + sum_s E_s e_s(u[n], mem[n]) + scatter(f[n] / dV)
    u[n+1]  = 2 u[n] - u[n-1] + v2 * acc[n]            (v2 = v^2 dt^2)

where ``L`` is the Laplacian (symmetric: zero ghost cells, or the odd mirror
of a free surface), ``e_s`` the C-PML terms of absorbing strip ``s`` (the memory
variables live inside the strip; ``d(psi)/dx`` reaches ``accuracy / 2`` cells beyond it,
so ``e_s`` covers the strip widened by that much) and ``E_s`` its embedding in the grid. Receivers
record ``u[n]`` at step ``n``. The forward loop never forms ``acc[n]``: the
strip terms are formed on their strips, then one fused pass computes ``u[n+1]``
from ``L u[n]``, the source and the embedded strip terms (see "grid layout" below).

Differentiation. :func:`simulate` is a ``jax.custom_jvp`` function: its
tangent is the linear primitive ``wave_jvp_p`` whose *evaluation* is ordinary
forward-mode autodiff of the time loop (so ``jax.jvp`` works) and whose
*transpose* is the discrete adjoint written out below (so ``jax.grad`` /
``jax.vjp`` run the adjoint wave equation backwards instead of transposing
every slice of the stencil, which XLA does several times slower; under
``jax.vmap`` the primitive is re-bound batched, so ``grad(vmap(...))`` keeps it).
The primal pass keeps what the adjoint needs (:func:`records_and_starts`): every
wavefield (``plan.store_wavefield``) or the state at the start of every segment,
which the adjoint recomputes. The adjoint is exact (to float rounding): the tests
compare it with reverse-mode autodiff of the plain loop, with finite differences
and with a dot-product test. No derivative flows through ``max_vel`` /
``pml_freq`` (the C-PML profile) or the integer geometry.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxfwi import devices as _devices
from jaxfwi.physics import stencils
from jaxfwi.physics.pml import cpml_coefficients
from jaxfwi.physics.wavelets import resample

# Time steps per loop iteration. Two let XLA drop the carry's full-field copies (3 per step at one,
# 1 per pair at two), but only if every C-PML memory array of the pair's first step is stored
# (``paired`` steps divide them by ``_runtime_one``; else XLA fuses the first step's strip stencils
# into its full-grid pass, which then runs at half speed). Marmousi case, thread time per step
# (``benchmarks/loop_body.py --trace``): forward 0.94 vs 1.02 ms, the forward run 0.83 vs 0.93 s.
# The loop that stores every wavefield keeps one (two made its output a concatenation of pairs:
# gradient 5.2 vs 3.4 s), and so does the adjoint (4.1 vs 3.3-3.5 ms/step with two): both carry the
# wavefield and its last change instead (``delta`` steps, see _forward_stored and _make_adjoint_step),
# which XLA updates in place with no copies. Changing these constants needs jax.clear_caches():
# simulate_jit caches the trace per plan.
FORWARD_UNROLL = 2
STORED_UNROLL = 1
ADJOINT_UNROLL = 1


# ----------------------------------------------------------------------------
# grid layout
# ----------------------------------------------------------------------------
#
# The loop works on the padded grid (model + C-PML) surrounded by a ring of
# ``r = accuracy / 2`` ghost cells on every side ("extended grid"). The ring
# holds zeros (v^2 dt^2 = 0 there), or, above a free surface, the odd mirror
# image of the rows below it, rewritten after every step. Every stencil read
# then stays inside the array, so the Laplacian and the leapfrog update fuse
# into one pass over the grid instead of materialising a zero-padded copy.

def _ring(plan):
    return plan.accuracy // 2


def _ext_shape(plan):
    r = _ring(plan)
    return tuple(n + 2 * r for n in plan.padded_shape)


def _strips(plan):
    """``[(axis, start, width), ...]`` of the absorbing strips in extended-grid coordinates."""
    r = _ring(plan)
    out = []
    for d in range(plan.ndim):
        n = plan.padded_shape[d]
        for side, w in enumerate(plan.pml[d]):
            if w:
                out.append((d, r + (0 if side == 0 else n - w), w))
    return out


# ----------------------------------------------------------------------------
# small stencil helpers (the last ``nd`` axes are space; any leading batch axes)
# ----------------------------------------------------------------------------

def _shift(u, axis, k, start, n):
    """``u[start + k : start + k + n]`` along ``axis``."""
    return lax.slice_in_dim(u, start + k, start + k + n, axis=axis)


def _d2(up, axis, n, r, c0, ck, inv_h2):
    """Second derivative along ``axis`` at the ``n`` centre points of an array padded by ``r``."""
    acc = c0 * _shift(up, axis, 0, r, n)
    for k, c in enumerate(ck, start=1):
        acc = acc + c * (_shift(up, axis, k, r, n) + _shift(up, axis, -k, r, n))
    return acc * inv_h2


def _d1(up, axis, n, r, ck, inv_h):
    """First derivative along ``axis`` at the ``n`` centre points of an array padded by ``r``."""
    acc = ck[0] * (_shift(up, axis, 1, r, n) - _shift(up, axis, -1, r, n))
    for k, c in enumerate(ck[1:], start=2):
        acc = acc + c * (_shift(up, axis, k, r, n) - _shift(up, axis, -k, r, n))
    return acc * inv_h


def _pad_axis(u, axis, lo, hi):
    cfg = [(0, 0)] * u.ndim
    cfg[axis] = (lo, hi)
    return jnp.pad(u, cfg)


def _interior_laplacian(u, nd, r, c0, ck2, inv_h2):
    """Laplacian at the interior points of an extended-grid field, zero on the ring (same shape as ``u``)."""
    lead = u.ndim - nd
    n = [u.shape[lead + e] - 2 * r for e in range(nd)]

    def sl(d, k):
        starts = [0] * lead + [r + (k if e == d else 0) for e in range(nd)]
        return lax.slice(u, starts, [a + b for a, b in zip(starts, list(u.shape[:lead]) + n)])

    out = sum(c0 * inv_h2[d] for d in range(nd)) * sl(0, 0)
    for d in range(nd):
        for k, c in enumerate(ck2, start=1):
            out = out + (c * inv_h2[d]) * (sl(d, k) + sl(d, -k))
    return jnp.pad(out, [(0, 0)] * lead + [(r, r)] * nd)


def _mirror_top(u, nd, r):
    """Write the odd mirror image of rows ``r+1 .. 2r`` into the ring rows ``0 .. r-1`` of axis 0 (free surface)."""
    a0 = u.ndim - nd
    top = -jnp.flip(lax.slice_in_dim(u, r + 1, 2 * r + 1, axis=a0), a0)
    return lax.dynamic_update_slice_in_dim(u, top, 0, axis=a0)


# ----------------------------------------------------------------------------
# setup shared by the forward loop and the adjoint
# ----------------------------------------------------------------------------

def _pml_setup(plan, dtype, max_vel, pml_freq):
    coefs, mem0 = [], []
    dt = plan.dt_internal
    ext = _ext_shape(plan)
    for d, start, w in _strips(plan):
        a, b = cpml_coefficients(w, plan.spacing[d], dt, max_vel, pml_freq, dtype=dtype)
        if start != _ring(plan):
            a, b = a[::-1], b[::-1]
        bshape = [1] * plan.ndim
        bshape[d] = w
        coefs.append((a.reshape(bshape), b.reshape(bshape)))
        shape = list(ext)
        shape[d] = w
        z = jnp.zeros(shape, dtype)
        mem0.append((z, z))
    return tuple(coefs), tuple(mem0)


def _v2dt2(plan, v):
    """``(v dt)^2`` on the extended grid: edge-replicated into the C-PML, zero on the ring and the surface row."""
    r = _ring(plan)
    vp = jnp.pad(v, plan.pml, mode="edge")
    v2 = (vp * plan.dt_internal) ** 2
    if plan.free_surface:
        v2 = v2.at[0].set(0.0)  # keeps u = 0 on the surface row
    return jnp.pad(v2, r)


def _flat_indices(plan, locs):
    lo = np.array([p[0] + _ring(plan) for p in plan.pml])
    idx = locs + lo
    return jnp.ravel_multi_index(tuple(idx[..., k] for k in range(plan.ndim)), _ext_shape(plan), mode="clip")


def _segments(plan):
    """``(segment length, number of segments)`` of the time loop (internal steps)."""
    nt_i = plan.nt_internal
    seg = plan.checkpoint
    if plan.snapshot_every is not None:
        seg = plan.snapshot_every * plan.nt_internal // plan.nt  # a whole number of steps per sample
    if seg is None:
        return nt_i, 1
    return seg, -(-nt_i // seg)


def _adjoint_segment(plan):
    """Segment length of the adjoint's recomputation (sqrt(nt) unless the plan sets one; one segment,
    nothing recomputed, when the plan stores the wavefield)."""
    nt_i = plan.nt_internal
    if plan.store_wavefield:
        return nt_i, 1
    seg = plan.checkpoint or max(1, int(math.ceil(math.sqrt(nt_i))))
    return seg, -(-nt_i // seg)


def _stencil_constants(plan):
    """``(c0, d2 coefficients, d1 coefficients, half-width r, 1/h, 1/h^2, 1/cell volume)``."""
    c0, ck2 = stencils.d2_coefficients(plan.accuracy)
    return (c0, ck2, stencils.d1_coefficients(plan.accuracy), plan.accuracy // 2,
            [1.0 / h for h in plan.spacing], [1.0 / h**2 for h in plan.spacing], 1.0 / math.prod(plan.spacing))


def _embed(part, axis, start, full):
    """``part`` zero-padded along ``axis`` to length ``full``, its first cell at ``start``.

    Inside one fused expression XLA evaluates the pad as a bounds test per cell, so the C-PML
    terms join the interior update without a separate in-place pass over the grid."""
    return _pad_axis(part, axis, start, full - start - part.shape[axis])


def _runtime_one(x):
    """A scalar 1 that XLA cannot fold (``max(x) / max(x)``, no derivative; ``x > 0`` somewhere).

    Dividing a strip-sized intermediate by it marks the producer as expensive, so XLA's fusion
    stores it once for its readers instead of re-evaluating its zero-padded stencil inside the
    full-grid pass that embeds it: on the CPU backend the forward's main fusion ran 0.71 -> 0.39 ms
    per step on the 13-shot Marmousi case (``benchmarks/loop_body.py --trace``). Costs one divide per
    strip cell."""
    m = lax.stop_gradient(jnp.max(x))
    return m / m


def _make_step(plan, v2dt2, pml_coefs, paired=False, delta=False):
    """One leapfrog step ``(state, f, src_idx) -> (state', u[n])`` for one shot.

    The C-PML terms of every strip are formed on their (widened) strips first, from ``u[n]`` and
    the memory variables; the interior Laplacian, the source and the embedded strip terms then
    make ``u[n+1]`` in one fused pass. The state is ``(u[n-1], u[n], mem)``, or with ``delta``
    ``(u[n], w[n] = u[n] - u[n-1], mem)``, stepped as ``w[n+1] = w[n] + v^2 dt^2 acc[n]``,
    ``u[n+1] = u[n] + w[n+1]``: the same recursion (to float rounding), each field updated in its
    own buffer, where the first form hands ``u[n]`` from one carry slot to the other, which XLA
    implements with full-grid copies unless two steps are taken per iteration (``paired``).
    """
    c0, ck2, ck1, r, inv_h, inv_h2, inv_dv = _stencil_constants(plan)
    nd = plan.ndim
    strips = _strips(plan)
    ext = _ext_shape(plan)

    unit = _runtime_one(v2dt2)

    def step(state, f, src_idx):
        if delta:
            u, u_prev, mem = state  # u_prev holds u[n] - u[n-1] here
        else:
            u_prev, u, mem = state
        rhs = _interior_laplacian(u, nd, r, c0, ck2, inv_h2)
        # the source enters in the same pass (one compare per cell) instead of a scatter afterwards
        flat = lax.broadcasted_iota(jnp.int32, ext, 0)
        for e in range(1, nd):
            flat = flat * ext[e] + lax.broadcasted_iota(jnp.int32, ext, e)
        fk = f * inv_dv
        for k in range(src_idx.shape[0]):
            rhs = rhs + jnp.where(flat == src_idx[k], fk, 0.0)
        new_mem = []
        for (d, start, w), (a, b), (psi, zeta) in zip(strips, pml_coefs, mem):
            h = lax.slice_in_dim(u, start - r, start + w + r, axis=d)
            psi = b * psi + a * _d1(h, d, w, r, ck1, inv_h[d])
            # d(psi)/dx reaches r cells beyond the strip on both sides (psi is zero outside it):
            # evaluated on the strip widened by r, [start - r, start + w + r)
            psi_x = _d1(_pad_axis(psi, d, 2 * r, 2 * r), d, w + 2 * r, r, ck1, inv_h[d])
            # dividing by a runtime 1 (see _runtime_one) makes XLA store psi_x once for its two
            # readers instead of re-evaluating its padded stencil inside the full-grid pass
            psi_x = psi_x / unit
            zeta = b * zeta + a * (_d2(h, d, w, r, c0, ck2, inv_h2[d]) + lax.slice_in_dim(psi_x, r, r + w, axis=d))
            if paired:  # store them in the first step of a pair too (see FORWARD_UNROLL); x / 1 == x
                psi, zeta = psi / unit, zeta / unit
            new_mem.append((psi, zeta))
            rhs = rhs + _embed(psi_x + _pad_axis(zeta, d, r, r), d, start - r, ext[d])
        if delta:  # state (u[n], u[n] - u[n-1]): both updated in their own buffers
            w = (u_prev + v2dt2 * rhs) / unit
            if plan.free_surface:
                w = _mirror_top(w, nd, r)
            return (u + w, w, tuple(new_mem)), u
        u_next = 2.0 * u - u_prev + v2dt2 * rhs
        if plan.free_surface:
            u_next = _mirror_top(u_next, nd, r)
        return (u, u_next, tuple(new_mem)), u

    return step


def _strip_zeros(plan, dtype):
    """Zero accumulators, one per absorbing strip widened by the stencil half-width on both sides."""
    r, ext = _ring(plan), _ext_shape(plan)
    return tuple(jnp.zeros(ext[:d] + (w + 2 * r,) + ext[d + 1:], dtype) for d, _, w in _strips(plan))


def _gather_strips(plan, g):
    """``(full-grid sum, strip accumulators)`` -> their sum on the full grid (once, after the loop)."""
    full, parts = g
    r, ext = _ring(plan), _ext_shape(plan)
    for (d, start, _), part in zip(_strips(plan), parts):
        full = full + _embed(part, d, start - r, ext[d])
    return full


def _make_adjoint_step(plan, v2dt2, pml_coefs):
    """Transpose of one step: ``(adj state, g, u[n], ct of record[n], rec_idx, src_idx) ->
    (adj state', g', ct of f[n])``.

    With ``lam1``, ``lam2`` the cotangents of ``u[n+1]``, ``u[n+2]``, the state holds the scaled
    adjoint fields ``p1 = v^2 dt^2 lam1`` and ``p2 = v^2 dt^2 lam2`` (with the free surface's
    mirror image on the ghost ring, like ``u``) and the cotangents of the C-PML memory ``mem[n+1]``
    before their decay factor ``b`` (which the next step applies).
    In these variables the transposed step is the forward step's shape,

        beta   = L p1 + sum_s E_s h_s(p1, mem ct) + scatter(ct of record[n])
        p[n]   = 2 p1 - p2 + v^2 dt^2 beta          (= v^2 dt^2 lam[n])

    carried, like the forward's ``delta`` step, as ``(p1, q = p1 - p2)``: ``q' = q + v^2 dt^2 beta``,
    ``p[n] = p1 + q'`` (each in its own buffer: no full-grid copies per step).

    one fused pass (the receivers' few cells are added afterwards, in place), which also accumulates ``g += u[n] beta``
    (the interior Laplacian's share on the full grid, each strip's share in a strip-sized accumulator added
    in once after the loop: then the strip terms have one full-grid reader). Summed over all steps this is, by
    summation by parts (``u[-1] = u[0] = 0``; ``lam`` of the last step is zero),
    ``sum_n lam1[n] (u[n+1] - 2 u[n] + u[n-1]) = v^2 dt^2 sum_n lam1[n] acc[n]``, i.e.
    ``v^2 dt^2`` times the cotangent of ``v^2 dt^2``: the adjoint needs only the wavefield ``u[n]``
    that the forward loop has (stored, or recomputed per segment), never ``acc[n]``.
    """
    c0, ck2, ck1, r, inv_h, inv_h2, inv_dv = _stencil_constants(plan)
    nd = plan.ndim
    strips = _strips(plan)
    ext = _ext_shape(plan)

    unit = _runtime_one(v2dt2)

    def adj(state, g, u_n, c_rec, rec_idx, src_idx):
        p1, q, mem_ct = state  # q = p1 - p2
        g, g_strips = g
        g_f = jnp.sum(p1.reshape(-1)[src_idx]) * inv_dv
        lap = _interior_laplacian(p1, nd, r, c0, ck2, inv_h2)
        beta = lap
        new_ct, new_gs = [], []
        for (d, start, w), (a, b), (psi_ct, zeta_ct), g_s in zip(strips, pml_coefs, mem_ct, g_strips):
            e_ct = lax.slice_in_dim(p1, start - r, start + w + r, axis=d)  # the widened strip
            # the carried memory cotangents are taken before their decay factor b, applied here
            # (one pass fewer per strip than storing b * ct)
            zeta_ct = lax.slice_in_dim(e_ct, r, r + w, axis=d) + b * zeta_ct
            psix_ct = e_ct + _pad_axis(a * zeta_ct, d, r, r)
            psi_ct = -_d1(psix_ct, d, w, r, ck1, inv_h[d]) + b * psi_ct
            h_ct = (-_d1(_pad_axis(a * psi_ct, d, 2 * r, 2 * r), d, w + 2 * r, r, ck1, inv_h[d])
                    + _d2(_pad_axis(a * zeta_ct, d, 2 * r, 2 * r), d, w + 2 * r, r, c0, ck2, inv_h2[d]))
            # dividing by a runtime 1 (see _runtime_one): XLA stores h_ct once for its two readers
            h_ct = h_ct / unit
            beta = beta + _embed(h_ct, d, start - r, ext[d])
            new_gs.append(g_s + lax.slice_in_dim(u_n, start - r, start + w + r, axis=d) * h_ct)
            new_ct.append((psi_ct, zeta_ct))
        q = (q + v2dt2 * beta) / unit  # one pass; beta is never stored (q' = p[n] - p1)
        g = g + u_n * lap  # the strips' share goes to their own small accumulators
        # the receivers' cotangent joins beta at its cells: in place on the fresh buffers
        # (by grid coordinates, not on a flattened view: a flat scatter makes the fused pass that
        # produces q or g index its output flat, and its embedded strips then divide every index)
        at = jnp.unravel_index(rec_idx, ext)
        q = q.at[at].add(v2dt2[at] * c_rec)
        g = g.at[at].add(u_n[at] * c_rec)
        if plan.free_surface:
            q = _mirror_top(q, nd, r)
        return (p1 + q, q, tuple(new_ct)), (g, tuple(new_gs)), g_f

    return adj


# ----------------------------------------------------------------------------
# plain time loop (forward values, forward-mode derivatives, snapshots)
# ----------------------------------------------------------------------------

def simulate_plain(plan, v, sources, receivers, wavelets, max_vel, pml_freq):
    """``v [shape]`` -> ``(records [n_shots, n_rec, nt], snapshots or None)``; plain autodiff."""
    dtype = v.dtype
    nt_i = plan.nt_internal
    shape = _ext_shape(plan)
    v2dt2 = _v2dt2(plan, v)
    pml_coefs, mem0 = _pml_setup(plan, dtype, max_vel, pml_freq)
    src_idx = _flat_indices(plan, sources)
    rec_idx = _flat_indices(plan, receivers)
    w_int = resample(wavelets.astype(dtype), plan.nt_internal)  # [S, nt_i]
    step = _make_step(plan, v2dt2, pml_coefs, paired=FORWARD_UNROLL > 1)
    seg_len, n_seg = _segments(plan)
    snap = plan.snapshot_every is not None

    def one_shot(s_idx, r_idx, w):
        def inner(state, f):
            state, u = step(state, f, s_idx)
            return state, u.reshape(-1)[r_idx]

        def segment(state, fs):
            state, recs = lax.scan(inner, state, fs, unroll=FORWARD_UNROLL)
            return state, (recs, state[0] if snap else None)

        if plan.checkpoint is not None:
            segment = jax.checkpoint(segment)
        u0 = jnp.zeros(shape, dtype)
        fs = jnp.pad(w, (0, n_seg * seg_len - nt_i)).reshape(n_seg, seg_len)
        _, (recs, snaps) = lax.scan(segment, (u0, u0, mem0), fs)
        return recs.reshape(n_seg * seg_len, -1)[:nt_i].T, snaps

    recs, snaps = _over_shots(plan, one_shot, (src_idx, rec_idx, w_int))
    recs = resample(recs, plan.nt)
    if snaps is not None:
        crop = tuple(slice(p[0] + _ring(plan), p[0] + _ring(plan) + n) for p, n in zip(plan.pml, plan.shape))
        snaps = snaps[(slice(None), slice(None)) + crop]
    return recs, snaps


def _over_shots(plan, fn, args):
    batch = plan.shot_batch or args[0].shape[0]
    if batch >= args[0].shape[0]:
        return jax.vmap(fn)(*args)
    return lax.map(lambda a: fn(*a), args, batch_size=batch)


# ----------------------------------------------------------------------------
# the adjoint (transpose of the linearised map v, wavelets -> records)
# ----------------------------------------------------------------------------

def _forward_segments(plan, step, shape, dtype, mem0, s_idx, r_idx, fs, record):
    """One shot's forward loop over the adjoint's segments: ``(records [n_seg, seg_len, n_rec] or None,
    the state at the start of every segment)``."""
    def inner(state, f):
        state, u = step(state, f, s_idx)
        return state, (u.reshape(-1)[r_idx] if record else None)

    def segment(state, f_seg):
        new, recs = lax.scan(inner, state, f_seg, unroll=FORWARD_UNROLL)
        return new, (recs, state)  # store the state at the segment's start

    u0 = jnp.zeros(shape, dtype)
    _, (recs, starts) = lax.scan(segment, (u0, u0, mem0), fs)
    return recs, starts


def _forward_stored(plan, step, shape, dtype, mem0, s_idx, r_idx, fs):
    """One shot's forward loop keeping every wavefield: ``(records [nt_i, n_rec], u [nt_i, *ext])``
    with ``u[n] = u[n + 1]`` of the time loop (``u[0] = 0`` is not kept). ``step`` is a ``delta`` step:
    storing the wavefield it has just written lets XLA update the state in place (storing ``u[n]``,
    which the step then overwrites, made it copy ``u[n]`` every step)."""
    def inner(state, f):
        state, _ = step(state, f, s_idx)
        return state, (state[0].reshape(-1)[r_idx], state[0])

    u0 = jnp.zeros(shape, dtype)
    _, (recs, us) = lax.scan(inner, (u0, u0, mem0), fs, unroll=STORED_UNROLL)
    # recs[n] = record of u[n + 1]: shift by one sample (u[0] = 0)
    return jnp.concatenate([jnp.zeros_like(recs[:1]), recs[:-1]]), us


def records_and_starts(plan, v, sources, receivers, wavelets, max_vel, pml_freq):
    """Records as :func:`simulate_plain`, plus the residuals :func:`adjoint` needs, so that a gradient
    runs the forward loop only once: every wavefield ``u[n + 1]`` as ``[n_shots, nt_i, *ext]`` when
    ``plan.store_wavefield`` (see :func:`_forward_stored`), else the loop state at the start of every
    adjoint segment."""
    dtype = v.dtype
    nt_i = plan.nt_internal
    shape = _ext_shape(plan)
    pml_coefs, mem0 = _pml_setup(plan, dtype, max_vel, pml_freq)
    step = _make_step(plan, _v2dt2(plan, v), pml_coefs, paired=not plan.store_wavefield and FORWARD_UNROLL > 1,
                      delta=plan.store_wavefield)  # (see _forward_stored)
    seg_len, n_seg = _adjoint_segment(plan)
    w_int = resample(wavelets.astype(dtype), plan.nt_internal)

    def one_shot(s_idx, r_idx, w):
        if plan.store_wavefield:
            recs, us = _forward_stored(plan, step, shape, dtype, mem0, s_idx, r_idx, w)
            return recs.T, us
        fs = jnp.pad(w, (0, n_seg * seg_len - nt_i)).reshape(n_seg, seg_len)
        recs, starts = _forward_segments(plan, step, shape, dtype, mem0, s_idx, r_idx, fs, True)
        return recs.reshape(n_seg * seg_len, -1)[:nt_i].T, starts

    recs, starts = _over_shots(plan, one_shot, (_flat_indices(plan, sources), _flat_indices(plan, receivers), w_int))
    return resample(recs, plan.nt), starts


def adjoint(plan, v, wavelets, sources, receivers, max_vel, pml_freq, ct, starts=None):
    """Cotangents ``(dL/dv, dL/dwavelets)`` for a records cotangent ``ct [n_shots, n_rec, nt]``.

    ``starts`` (from :func:`records_and_starts`) are every wavefield (``plan.store_wavefield``)
    or the loop states at the segment boundaries; without them the forward loop runs once more
    to make them. With segments, each is recomputed from its start state (keeping its wavefields)
    before the adjoint wave equation is stepped back through it.
    """
    dtype = v.dtype
    nt_i = plan.nt_internal
    shape = _ext_shape(plan)
    (v2dt2, w_int), prep_vjp = jax.vjp(lambda vv, ww: (_v2dt2(plan, vv), resample(ww.astype(dtype), plan.nt_internal)),
                                       v, wavelets)
    (ct_int,) = jax.linear_transpose(lambda x: resample(x, plan.nt),
                                     jax.ShapeDtypeStruct(ct.shape[:-1] + (nt_i,), dtype))(ct.astype(dtype))
    pml_coefs, mem0 = _pml_setup(plan, dtype, max_vel, pml_freq)
    src_idx = _flat_indices(plan, sources)
    rec_idx = _flat_indices(plan, receivers)
    step_store = _make_step(plan, v2dt2, pml_coefs, delta=True)  # for the loops that keep every wavefield
    step_seg = _make_step(plan, v2dt2, pml_coefs, paired=FORWARD_UNROLL > 1)  # for the segment starts
    adj = _make_adjoint_step(plan, v2dt2, pml_coefs)
    inv_dv = _stencil_constants(plan)[-1]
    seg_len, n_seg = _adjoint_segment(plan)
    n_pad = n_seg * seg_len - nt_i

    def _first_wavelet_ct(p1, s_idx, g_f):
        """The wavelet cotangent of step 0 (from the adjoint state ``p1`` left by step 1) before those
        of steps 1 .. nt_i - 1."""
        return jnp.concatenate([(jnp.sum(p1.reshape(-1)[s_idx]) * inv_dv)[None], g_f])

    def one_shot(s_idx, r_idx, w, c, starts):
        u0 = jnp.zeros(shape, dtype)
        zero_ct = tuple((jnp.zeros_like(p), jnp.zeros_like(z)) for p, z in mem0)
        init = ((u0, u0, zero_ct), (jnp.zeros(shape, dtype), _strip_zeros(plan, dtype)))

        def adj_inner(carry, xs):
            astate, g = carry
            u_n, c_n = xs
            astate, g, g_f = adj(astate, g, u_n, c_n, r_idx, s_idx)
            return (astate, g), g_f

        if plan.store_wavefield:
            # us[k] = u[k + 1], so iteration k steps the adjoint of step k + 1 (records' cotangent
            # shifted to match): steps nt_i .. 1, the first with a zero cotangent and state (a no-op).
            # Step 0 adds nothing to g (u[0] = 0); its wavelet cotangent reads the final state.
            us = starts if starts is not None else _forward_stored(plan, step_store, shape, dtype, mem0, s_idx, r_idx, w)[1]
            c_next = jnp.pad(c[:, 1:], ((0, 0), (0, 1)))
            ((p1, _, _), g), g_f = lax.scan(adj_inner, init, (us, c_next.T), reverse=True, unroll=ADJOINT_UNROLL)
            return _gather_strips(plan, g), _first_wavelet_ct(p1, s_idx, g_f[:-1])

        fs = jnp.pad(w, (0, n_pad)).reshape(n_seg, seg_len)
        # as in the stored case: each segment's recomputation keeps u[n + 1] and the adjoint's iteration
        # k steps back through step k + 1, so the records' cotangent is shifted by one step
        cs = jnp.pad(c[:, 1:], ((0, 0), (0, n_pad + 1))).T.reshape(n_seg, seg_len, -1)
        if starts is None:
            starts = _forward_segments(plan, step_seg, shape, dtype, mem0, s_idx, r_idx, fs, False)[1]

        def rec_inner(state, f):
            state, _ = step_store(state, f, s_idx)
            return state, state[0]

        def adj_segment(carry, xs):
            (u_prev, u, mem), f_seg, c_seg = xs
            _, us = lax.scan(rec_inner, (u, u - u_prev, mem), f_seg, unroll=STORED_UNROLL)
            carry, g_fs = lax.scan(adj_inner, carry, (us, c_seg), reverse=True, unroll=ADJOINT_UNROLL)
            return carry, g_fs

        ((p1, _, _), g), g_f = lax.scan(adj_segment, init, (starts, fs, cs), reverse=True)
        return _gather_strips(plan, g), _first_wavelet_ct(p1, s_idx, g_f.reshape(-1)[:nt_i - 1])

    if starts is None:
        g, g_w = _over_shots(plan, lambda *a: one_shot(*a, None), (src_idx, rec_idx, w_int, ct_int))
    else:
        g, g_w = _over_shots(plan, one_shot, (src_idx, rec_idx, w_int, ct_int, starts))
    # sum_n u[n] beta[n] = v^2 dt^2 * (cotangent of v^2 dt^2) where v^2 dt^2 > 0; elsewhere (ghost ring,
    # free-surface row) v^2 dt^2 is a constant zero and its cotangent is discarded
    g_v2 = jnp.where(v2dt2 > 0, jnp.sum(g, axis=0) / jnp.where(v2dt2 > 0, v2dt2, 1.0), 0.0)
    return prep_vjp((g_v2, g_w))


# ----------------------------------------------------------------------------
# custom_jvp + linear primitive: forward mode by autodiff, reverse mode by the adjoint
# ----------------------------------------------------------------------------

def _jvp_single(v, wavelets, dv, dw, sources, receivers, max_vel, pml_freq, *starts, plan, treedef):
    def f(vv, ww):
        return simulate_plain(plan, vv, sources, receivers, ww, max_vel, pml_freq)[0]

    return jax.jvp(f, (v, wavelets), (dv, dw))[1]


def _vmapped(fn, levels, out_axes=0):
    """``fn`` vmapped once per batching level (outermost first; each level's ``in_axes`` is 0 or None
    per operand, batch axes leading in level order)."""
    for axes in reversed(levels):
        fn = jax.vmap(fn, in_axes=axes, out_axes=out_axes)
    return fn


def _jvp_impl(*args, plan, treedef, levels=()):
    return _vmapped(partial(_jvp_single, plan=plan, treedef=treedef), levels)(*args)


# operands: v, wavelets, dv, dw, sources, receivers, max_vel, pml_freq, *leaves of the segment-start
# states (residuals of the forward pass for the transpose; the evaluation ignores them). ``levels``:
# the vmaps applied to it (see _jvp_batch), so that a batched tangent keeps its hand-written transpose
wave_jvp_p = Primitive("jaxfwi_wave_jvp")
wave_jvp_p.def_impl(_jvp_impl)


def _batch_shape(args, levels):
    """Sizes of the batching levels, read off the operands (batch axes lead, outermost first)."""
    sizes = []
    for k, axes in enumerate(levels):
        i = next(n for n, a in enumerate(axes) if a is not None)
        pos = sum(1 for outer in levels[:k] if outer[i] is not None)
        sizes.append(args[i].shape[pos])
    return tuple(sizes)


@wave_jvp_p.def_abstract_eval
def _jvp_abstract(*args, plan, treedef, levels=()):
    sources, receivers, v = args[4], args[5], args[0]
    nb = lambda i: sum(1 for ax in levels if ax[i] is not None)  # noqa: E731
    return jax.core.ShapedArray(_batch_shape(args, levels) + (sources.shape[nb(4)], receivers.shape[nb(5) + 1], plan.nt),
                                v.dtype)


mlir.register_lowering(wave_jvp_p, mlir.lower_fun(_jvp_impl, multiple_results=False))


def _jvp_transpose(ct, v, wavelets, dv, dw, sources, receivers, max_vel, pml_freq, *starts, plan, treedef, levels=()):
    if type(ct) is ad.Zero:
        ct = jnp.zeros(ct.aval.shape, ct.aval.dtype)

    def one(v, wavelets, sources, receivers, max_vel, pml_freq, ct, *starts):
        states = jax.tree_util.tree_unflatten(treedef, starts) if starts else None
        return adjoint(plan, v, wavelets, sources, receivers, max_vel, pml_freq, ct, states)

    # every level's vmap over the adjoint: ct is batched at every level, the primal operands as bound
    tr_levels = tuple(ax[:2] + ax[4:8] + (0,) + ax[8:] for ax in levels)
    g_v, g_w = _vmapped(one, tr_levels)(v, wavelets, sources, receivers, max_vel, pml_freq, ct, *starts)

    def unbatch(g, i):  # sum over the levels at which the tangent operand i is not batched
        for k in reversed(range(len(levels))):
            if levels[k][i] is None:
                g = jnp.sum(g, axis=k)
        return g

    out_v = unbatch(g_v, 2) if ad.is_undefined_primal(dv) else None
    out_w = unbatch(g_w, 3).astype(dw.aval.dtype) if ad.is_undefined_primal(dw) else None
    return [None, None, out_v, out_w, None, None, None, None] + [None] * len(starts)


ad.primitive_transposes[wave_jvp_p] = _jvp_transpose


def _jvp_batch(args, dims, *, plan, treedef, levels=()):
    """Batching rule: the batch axis goes first and the primitive is bound again with one more level,
    so that ``grad(vmap(forward))`` still transposes with the hand-written adjoint (vmapped) instead of
    JAX's generic transpose of the vmapped tangent loop."""
    moved = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    axes = tuple(None if d is None else 0 for d in dims)  # (not_mapped is None)
    out = wave_jvp_p.bind(*moved, plan=plan, treedef=treedef, levels=(axes,) + tuple(levels))
    return out, 0


batching.primitive_batchers[wave_jvp_p] = _jvp_batch


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _records(plan, v, wavelets, sources, receivers, max_vel, pml_freq):
    return simulate_plain(plan, v, sources, receivers, wavelets, max_vel, pml_freq)[0]


@_records.defjvp
def _records_jvp(plan, primals, tangents):
    v, wavelets, sources, receivers, max_vel, pml_freq = primals
    dv, dw = tangents[0], tangents[1]
    out, starts = records_and_starts(plan, v, sources, receivers, wavelets, max_vel, pml_freq)
    leaves, treedef = jax.tree_util.tree_flatten(starts)
    dv = jnp.zeros_like(v) if type(dv) is ad.Zero else dv
    dw = jnp.zeros_like(wavelets) if type(dw) is ad.Zero else dw
    return out, wave_jvp_p.bind(v, wavelets, dv, dw, sources, receivers, max_vel, pml_freq, *leaves,
                                plan=plan, treedef=treedef)


def simulate(plan, v, sources, receivers, wavelets, max_vel, pml_freq):
    """``(records, snapshots or None)``; records differentiate with the hand-written adjoint."""
    if plan.snapshot_every is not None:
        return simulate_plain(plan, v, sources, receivers, wavelets, max_vel, pml_freq)
    return _records(plan, v, wavelets, sources, receivers, max_vel, pml_freq), None


simulate_jit = jax.jit(simulate, static_argnums=0)
#: the same, with jaxfwi's XLA options, for calls outside any transformation (JAX accepts
#: compiler options only on a top-level jit)
simulate_jit_top = _devices.jit(simulate, static_argnums=0)
