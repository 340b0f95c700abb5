"""Memory of a gradient, estimated before anything is compiled.

:func:`gradient_bytes` estimates the peak memory of one ``jax.grad`` through
:func:`jaxfwi.forward` for a :class:`~jaxfwi.physics.propagation.PropagationPlan`: the
discrete adjoint stores the loop state (two wavefields plus the C-PML memory, counted as
three extended grids) at the start of each of the ``ceil(nt_internal / checkpoint)``
segments for every shot of the batch, and recomputes one segment (``checkpoint``
wavefields) per shot group of ``plan.shot_batch`` shots while stepping back. So

    bytes ~= itemsize * cells * (n_shots * 3 * n_segments + group * (checkpoint + 8))
             + itemsize * n_shots * n_receivers * nt * 4

with ``cells`` the grid including absorbing layers and ghost ring. It is an estimate
(XLA adds temporaries), meant to catch a gradient that cannot fit at all, not to
budget the last percent. :func:`available_bytes` is the free memory of a device (CPU:
``MemAvailable`` of ``/proc/meminfo``; GPU/TPU: ``bytes_limit - bytes_in_use`` of
``device.memory_stats()``), None where unknown. :func:`check_gradient_memory` raises
:class:`GradientMemoryError` when the estimate exceeds it.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import jax
import numpy as np

__all__ = ["GradientMemoryError", "gradient_bytes", "available_bytes", "check_gradient_memory"]


class GradientMemoryError(MemoryError):
    """The estimated memory of a gradient exceeds the device's free memory."""


def _cells(plan) -> int:
    r = plan.accuracy // 2
    return math.prod(n + lo + hi + 2 * r for n, (lo, hi) in zip(plan.shape, plan.pml))


def _segments(plan, checkpoint=None):
    nt_i = plan.nt_internal
    seg = checkpoint or plan.checkpoint or max(1, int(math.ceil(math.sqrt(nt_i))))
    seg = min(int(seg), nt_i)
    return seg, -(-nt_i // seg)


def gradient_bytes(plan, n_shots: int, n_receivers: int = 0, dtype=np.float32, *, shot_batch=None,
                   checkpoint=None) -> int:
    """Estimated peak bytes of one gradient of ``n_shots`` shots (see the module docs).

    ``shot_batch`` / ``checkpoint`` override the plan's (shots propagated together, internal
    steps per stored segment)."""
    b = np.dtype(dtype).itemsize
    cells = _cells(plan)
    seg, n_seg = _segments(plan, checkpoint)
    group = shot_batch or plan.shot_batch or n_shots
    group = max(1, min(int(group), int(n_shots)))
    grids = n_shots * 3 * n_seg + group * (seg + 8)
    if getattr(plan, "store_wavefield", False) and checkpoint is None:  # every wavefield kept, nothing recomputed
        grids = n_shots * (plan.nt_internal + 3) + group * 8
    return int(b * cells * grids + b * n_shots * n_receivers * plan.nt * 4)


def available_bytes(device=None) -> Optional[int]:
    """Free memory of ``device`` (default ``jax.devices()[0]``) in bytes, or None if unknown."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return None


def _gib(x) -> str:
    return f"{x / 2**30:.3g} GiB"


def check_gradient_memory(plan, n_shots: int, n_receivers: int = 0, dtype=np.float32, *, device=None,
                          what: str = "fit") -> int:
    """Raise :class:`GradientMemoryError` if :func:`gradient_bytes` exceeds :func:`available_bytes`;
    else return the estimate. The message states the estimate and the options that bound it."""
    est = gradient_bytes(plan, n_shots, n_receivers, dtype)
    free = available_bytes(device)
    if free is None or est <= free:
        return est
    seg, n_seg = _segments(plan)
    fits_one = gradient_bytes(plan, 1, n_receivers, dtype)
    best_seg = max(1, int(math.ceil(math.sqrt(3 * plan.nt_internal))))
    hint_batch = ""
    if n_shots > 1 and fits_one <= free:
        k = n_shots
        while k > 1 and gradient_bytes(plan, k, n_receivers, dtype, shot_batch=min(k, plan.shot_batch or k)) > free:
            k //= 2
        hint_batch = f" (shot_batch={k} is estimated to fit)"
    raise GradientMemoryError(
        f"{what}: the gradient of one mini-batch needs about {_gib(est)} ({n_shots} shots in a batch per device, "
        f"grid {plan.padded_shape} with absorbing layers, {plan.nt_internal} internal steps "
        f"{'all stored' if getattr(plan, 'store_wavefield', False) else f'stored in {n_seg} segments of {seg}'}) but only {_gib(free)} are free on {device or jax.devices()[0]}. Bound it with "
        f"shot_batch=... (fewer shots per mini-batch{hint_batch}) and/or forward_kwargs checkpoint=... (internal "
        f"steps per stored segment; about {best_seg} minimises this estimate), or use a coarser grid / fewer "
        "time samples. Nothing was compiled.")
