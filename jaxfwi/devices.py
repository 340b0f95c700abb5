"""Every device-specific choice of jaxfwi, in one place.

The propagator, the representations and the training loop are one JAX program for
CPU, one GPU, several GPUs and several hosts. The few defaults that depend on the
machine live here, each with the reasoning behind it (``docs/gpu_and_multidevice.md``
says the same for users):

* :func:`default_shot_batch`: how many shots the propagator vmaps together;
* :func:`default_store_wavefield`: whether the gradient keeps every wavefield of the
  forward pass (one pass fewer) or recomputes segments from stored states (less memory);
* :func:`default_checkpoint`: the adjoint's segment length when it recomputes;
* :func:`memory_info` / :func:`gradient_memory_bytes`: the memory a device has and
  the memory one gradient needs, for memory estimates made before compiling.

**How XLA lays out the time loop.** A ``lax.scan`` over time steps becomes a loop whose
body is a handful of fused kernels (the interior stencil + leapfrog update, one per
absorbing strip, the free-surface mirror, the source scatter, the receiver gather).
On a **CPU** each kernel is a loop nest split over the cores; its cost is the memory
traffic of the grid, so it matters whether one batched wavefield stays in the caches —
hence the cache-sized shot groups below (measured on the 2-core test machine: the
BP-size case ran 1.9x faster in groups of 4 than with all 20 shots vmapped). On a
**GPU** each kernel is one launch over a grid of thread blocks, and a 2-D shot has only
~10^5 cells: one shot fills a small fraction of the device (an H100/H200 runs ~2.7 x 10^5
threads at once) and every step pays the launch latency of every kernel (microseconds
each, i.e. more than the arithmetic of a small grid). Vmapping shots adds a leading
batch axis to the *same* kernels, so all shots share each launch: the device fills and
the per-step overhead is paid once. Groups (``lax.map``) run one after another and
multiply the launches. So on an accelerator all shots go together, unless the gradient
of all shots does not fit in the device's memory; then the largest group that fits.
There is no cache to fit on a GPU: its L2 (50 MB on an H100) is not managed by the
program and the stencil streams from HBM at 3-5 TB/s either way.

Nothing CPU-specific is on the accelerator path and the CPU path is unchanged.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import jax
import numpy as np

__all__ = [
    "CPU_ALL_SHOTS_BYTES", "CPU_BATCH_BYTES", "DEVICE_MEMORY_FRACTION", "MemoryInfo", "backend_of",
    "is_accelerator", "default_shot_batch", "default_checkpoint", "default_store_wavefield", "STORE_MEMORY_FRACTION", "memory_info", "gradient_memory_bytes",
    "peak_memory_bytes", "describe", "COMPILER_OPTIONS", "jit",
]

#: CPU: vmap every shot while one batched wavefield stays below this (bytes)
CPU_ALL_SHOTS_BYTES = 4 * 2**20
#: CPU: otherwise shots per group so that one batched wavefield is about this size (bytes)
CPU_BATCH_BYTES = 2 * 2**20
#: accelerators: share of the device memory a default shot group may plan to use for a gradient
#: (the rest: XLA's temporaries beyond the estimate, the representation, optimizer state, data).
#: :func:`gradient_memory_bytes` came within 10 % of XLA's buffer assignment (CPU
#: ``memory_analysis().temp_size_in_bytes``) for the Marmousi, BP-size and a 3-D case.
DEVICE_MEMORY_FRACTION = 0.75
#: share of the device's total memory the stored wavefields of one gradient may take by default
#: (:func:`default_store_wavefield`); the total, not the free memory, so the choice (part of the
#: jit key) does not change from call to call. A quarter leaves room for XLA's temporaries,
#: the rest of a training step, and a few vmapped seeds.
STORE_MEMORY_FRACTION = 0.25
#: XLA options of jaxfwi's own compiled programs (the propagator called on its own, the inversion
#: epoch, the eigensolvers' products); pass them to your own ``jax.jit(..., compiler_options=...)`` of a
#: function that calls the propagator. ``xla_cpu_prefer_vector_width=512``: XLA's CPU backend
#: prefers 256-bit vectors by default even where the CPU has AVX-512; the stencil passes are
#: bandwidth- and vector-bound, and on the 2-core AVX-512 test machine the 13-shot Marmousi
#: forward ran 1.05 -> 0.92 s and its gradient 4.09 -> 3.84 s with bitwise identical records. On a
#: CPU without AVX-512 LLVM keeps to the vectors it has; the GPU backend ignores CPU options.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def jit(fun, **kwargs):
    """``jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)``."""
    return jax.jit(fun, compiler_options=dict(COMPILER_OPTIONS), **kwargs)


def backend_of(device=None) -> str:
    """Platform name (``"cpu"``, ``"gpu"``, ``"tpu"``) of ``device`` or of the default backend."""
    if device is not None:
        return str(device.platform)
    return jax.default_backend()


def is_accelerator(backend: Optional[str] = None) -> bool:
    """True for any backend other than the host CPU (GPU, TPU, ...)."""
    return (backend or jax.default_backend()) != "cpu"


# --------------------------------------------------------------------------- memory


@dataclasses.dataclass(frozen=True)
class MemoryInfo:
    """Memory of one device, bytes (``None`` where the runtime does not say).

    Attributes:
      total: memory the device's allocator may use (GPU: ``bytes_limit`` of
        ``device.memory_stats()``, i.e. after XLA's preallocation fraction; CPU: the
        host's physical memory).
      free: what is left now (GPU: ``bytes_limit - bytes_in_use``; CPU: ``MemAvailable``).
      peak: the allocator's peak use so far in this process (GPU only).
      source: where the numbers come from.
    """
    total: Optional[int]
    free: Optional[int]
    peak: Optional[int]
    source: str


def _host_memory():
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ":" in ln}
        return info.get("MemTotal"), info.get("MemAvailable", info.get("MemFree"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        return int(total), int(free)
    except (ValueError, OSError, AttributeError):
        return None, None


def memory_info(device=None) -> MemoryInfo:
    """Total / free / peak memory of ``device`` (default: the first of ``jax.devices()``).

    On an accelerator the numbers come from ``device.memory_stats()`` (XLA's allocator:
    ``bytes_limit``, ``bytes_in_use``, ``peak_bytes_in_use``). On the CPU, or where
    ``memory_stats()`` returns nothing, from the host (``/proc/meminfo``). This is the
    one function a memory estimate should compare against.
    """
    dev = device if device is not None else jax.devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001  (backends without the query raise various errors)
        stats = None
    if stats and stats.get("bytes_limit"):
        limit = int(stats["bytes_limit"])
        used = int(stats.get("bytes_in_use", 0))
        peak = stats.get("peak_bytes_in_use")
        return MemoryInfo(total=limit, free=max(0, limit - used), peak=None if peak is None else int(peak),
                          source=f"{dev.platform} memory_stats")
    total, free = _host_memory()
    return MemoryInfo(total=total, free=free, peak=None, source="host /proc/meminfo")


def peak_memory_bytes(device=None) -> Optional[int]:
    """Peak bytes the device allocator has held in this process (``None`` where unknown, e.g. CPU)."""
    return memory_info(device).peak


def _ext_cells(shape, pml, accuracy):
    """Cells of one wavefield on the extended grid (model + C-PML + ghost ring of accuracy/2)."""
    return math.prod(n + lo + hi + accuracy for n, (lo, hi) in zip(shape, pml))


def _strip_cells(shape, pml, accuracy):
    """Cells of the C-PML memory arrays of one shot (two per absorbing strip: psi and zeta)."""
    ext = [n + lo + hi + accuracy for n, (lo, hi) in zip(shape, pml)]
    total = 0
    for d, (lo, hi) in enumerate(pml):
        other = math.prod(e for k, e in enumerate(ext) if k != d)
        total += 2 * (lo + hi) * other
    return total


def stored_wavefield_bytes(shape, pml, accuracy, nt_internal, n_shots, dtype=np.float32) -> int:
    """Bytes of every internal wavefield of ``n_shots`` shots (extended grid), what a gradient with
    ``store_wavefield`` keeps between the forward and the adjoint pass."""
    return int(n_shots) * int(nt_internal) * _ext_cells(shape, pml, accuracy) * np.dtype(dtype).itemsize


def gradient_memory_bytes(shape, pml, accuracy, nt_internal, n_shots, dtype=np.float32, checkpoint=None,
                          n_receivers=None, store_wavefield=False) -> int:
    """Estimated device memory of one misfit gradient (forward + adjoint) of ``n_shots`` shots.

    The adjoint (``jaxfwi.physics._core``) stores the loop state (two wavefields + the C-PML
    memory arrays) at the start of each of ``n_seg`` segments of ``seg`` internal steps, then
    recomputes one segment at a time, keeping its ``seg`` wavefields, while stepping the
    adjoint state back. Per shot, in wavefields of the extended grid::

        n_seg * (2 + m) + seg + 8 + 2 m        (m = C-PML memory cells / grid cells)

    (the 8 + 2 m: forward, recompute and adjoint states, the gradient accumulator, the model
    terms) plus the records and their residual (``2 n_receivers nt``). With ``store_wavefield``
    the segments are replaced by every wavefield: ``nt + 8 + 2 m``. ``checkpoint=None``
    means the adjoint's default ``seg = ceil(sqrt(nt))``. Measured against XLA's buffer
    assignment of ``jit(value_and_grad(misfit))`` on CPU (temp bytes): Marmousi case (13 shots,
    2000 internal steps) 402 vs 375 MB, BP-size (4 shots, 4000 steps) 514 vs 485 MB, 3-D
    30 x 40 x 40 (4 shots, 600 steps) 1003 vs 1011 MB.
    """
    itemsize = np.dtype(dtype).itemsize
    cells = _ext_cells(shape, pml, accuracy)
    m = _strip_cells(shape, pml, accuracy) / cells
    seg = checkpoint or max(1, int(math.ceil(math.sqrt(nt_internal))))
    seg = min(int(seg), int(nt_internal))
    n_seg = -(-int(nt_internal) // seg)
    fields = n_seg * (2 + m) + seg + 8 + 2 * m
    if store_wavefield:
        fields = int(nt_internal) + 8 + 2 * m
    n_rec = n_receivers if n_receivers is not None else math.prod(shape[1:]) if len(shape) > 1 else 1
    per_shot = fields * cells + 2 * n_rec * nt_internal
    return int(math.ceil(n_shots * per_shot * itemsize))


# --------------------------------------------------------------------------- defaults


def default_shot_batch(shape, pml, accuracy, n_shots, dtype=np.float32, backend=None, *, nt_internal=None,
                       checkpoint=None, device=None):
    """Shots propagated together (vmapped) by default; ``None`` means all of them.

    * CPU: one wavefield of the group (padded grid + ghost ring, ``dtype``) is kept near
      the size of the caches: all shots while the batched wavefield is at most
      :data:`CPU_ALL_SHOTS_BYTES`, else groups of about :data:`CPU_BATCH_BYTES`.
    * accelerators (GPU, TPU): all shots (one kernel launch per step serves every shot),
      unless the :func:`gradient_memory_bytes` of all shots exceeds
      :data:`DEVICE_MEMORY_FRACTION` of the device's memory (:func:`memory_info`); then
      groups of equal size, as large as fits (at least 1). Without ``nt_internal``, or where the
      device does not report its memory, all shots.
    """
    backend = backend or backend_of(device)
    if backend == "cpu":
        per_shot = _ext_cells(shape, pml, accuracy) * np.dtype(dtype).itemsize
        if n_shots * per_shot <= CPU_ALL_SHOTS_BYTES:
            return None
        return max(1, min(n_shots, CPU_BATCH_BYTES // per_shot))
    if nt_internal is None:
        return None
    dev = device
    if dev is None:
        try:
            dev = jax.devices(backend)[0]
        except RuntimeError:  # asked about a backend this process does not have
            return None
    mem = memory_info(dev)
    if dev.platform == "cpu" or mem.total is None or mem.source.startswith("host"):
        return None
    total = mem.total
    one = gradient_memory_bytes(shape, pml, accuracy, nt_internal, 1, dtype, checkpoint)
    fit = int(DEVICE_MEMORY_FRACTION * total // max(one, 1))
    if fit >= n_shots:
        return None
    if fit < 1:
        return 1
    groups = -(-n_shots // fit)
    return -(-n_shots // groups)  # equal groups: 36 shots that fit 28 at a time run as 2 x 18, not 28 + 8


def default_store_wavefield(shape, pml, accuracy, nt_internal, n_shots, dtype=np.float32, device=None) -> bool:
    """Whether a gradient keeps every forward wavefield by default (one forward and one adjoint pass)
    rather than recomputing segments from stored states (about one forward pass more).

    True when :func:`stored_wavefield_bytes` of all ``n_shots`` is at most
    :data:`STORE_MEMORY_FRACTION` of the device's total memory (:func:`memory_info`; the host's
    physical memory on a CPU). Both ways give the same gradient up to float rounding.
    """
    mem = memory_info(device)
    if mem.total is None:
        return False
    need = stored_wavefield_bytes(shape, pml, accuracy, nt_internal, n_shots, dtype)
    return need <= STORE_MEMORY_FRACTION * mem.total


def default_checkpoint(backend=None):
    """The default segment length of the gradient's adjoint when it recomputes segments (when
    :func:`default_store_wavefield` says the wavefields do not fit): ``None``, i.e.
    ``ceil(sqrt(nt))`` internal steps, on every backend.

    Every segment is recomputed once from its stored start state whatever its length, so
    ``sqrt(nt)`` minimises the stored wavefields (``n_seg + seg``) at equal cost, and on a GPU the
    memory it frees lets more shots share each kernel launch (:func:`default_shot_batch`).
    """
    return None


def describe(device=None) -> dict:
    """What the device run records about the machine: platform, kind, count, memory."""
    dev = device if device is not None else jax.devices()[0]
    mem = memory_info(dev)
    return {"platform": dev.platform, "device_kind": getattr(dev, "device_kind", str(dev)),
            "n_devices": len(jax.devices()), "n_local_devices": jax.local_device_count(),
            "n_processes": jax.process_count(), "memory_total_bytes": mem.total, "memory_source": mem.source,
            "jax_version": jax.__version__}
