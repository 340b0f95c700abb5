"""Run one jaxfwi command as several processes on this machine, each on its own cores.

On a CPU host the fastest layout measured for the propagator is Devito's: one single-thread
process per core, each with a share of the shots. jaxfwi gets it through its multi-host code
path: :func:`launch` starts ``n`` copies of a ``python -m MODULE ARGS`` command with the
environment variables below; in each copy :func:`init_worker` (called before JAX starts its
backend) pins the process to its share of the cores (``os.sched_setaffinity``: XLA then runs it
on that many threads) and joins the others with ``jax.distributed`` over loopback (gloo CPU
collectives). ``jax.devices()`` then lists every process's CPU device, and
``jaxfwi.invert(..., devices=None)`` shards the shots over all of them and all-reduces the
gradient: the same program that runs over several hosts or GPUs.

Measured on the 2-core test machine (``docs/physics.md``): a full-size Marmousi adfwi epoch
(13 shots, nt 1000) 1.30-1.34 s as two pinned processes against 1.54-1.60 s at best (medians 2.4-3.4 s
while the host was busy) in one 2-thread process; the pinned pair also stayed steady.

Environment of a worker: ``JAXFWI_PROCESS_ID`` (0 .. n-1), ``JAXFWI_NUM_PROCESSES`` (n),
``JAXFWI_COORDINATOR`` (``host:port`` of process 0's coordinator).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

__all__ = ["ENV_RANK", "ENV_NUM", "ENV_COORDINATOR", "worker_rank", "available_cores", "core_shares", "init_worker",
           "free_port", "launch"]

ENV_RANK = "JAXFWI_PROCESS_ID"
ENV_NUM = "JAXFWI_NUM_PROCESSES"
ENV_COORDINATOR = "JAXFWI_COORDINATOR"


def worker_rank() -> Optional[int]:
    """This process's index among the launched processes, or None when it was not launched by :func:`launch`."""
    r = os.environ.get(ENV_RANK)
    return None if r is None else int(r)


def available_cores() -> list:
    """The cores this process may run on (its affinity mask; all of ``os.cpu_count()`` where the
    platform has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_shares(cores: Sequence[int], n: int) -> list:
    """``cores`` split into ``n`` contiguous, near-equal shares (the first ones get the extra core).

    Raises ValueError naming the fix when there are fewer cores than processes.
    """
    cores = sorted(cores)
    if not 1 <= n <= len(cores):
        raise ValueError(f"procs={n}: this process may run on {len(cores)} core(s) ({cores}); use 1 to "
                         f"{len(cores)} processes.")
    base, extra = divmod(len(cores), n)
    out, i = [], 0
    for r in range(n):
        k = base + (1 if r < extra else 0)
        out.append(cores[i:i + k])
        i += k
    return out


def init_worker() -> Optional[int]:
    """In a process started by :func:`launch`: pin it to its share of the cores and join the others.

    Call it before anything starts JAX's backend (``jax.devices()``, the first array). Returns the
    process index, or None (doing nothing) outside a launched process.
    """
    rank = worker_rank()
    if rank is None:
        return None
    n = int(os.environ[ENV_NUM])
    share = core_shares(available_cores(), n)[rank]
    if hasattr(os, "sched_setaffinity"):  # elsewhere the processes share the cores unpinned
        os.sched_setaffinity(0, share)
    import jax  # noqa: PLC0415

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=os.environ[ENV_COORDINATOR], num_processes=n, process_id=rank,
                               initialization_timeout=120)
    return rank


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: Sequence[str], n: int, *, module: str = "jaxfwi.cli", python: Optional[str] = None,
           poll_s: float = 0.2) -> int:
    """Run ``python -m module *args`` as ``n`` processes joined by ``jax.distributed``; wait for them.

    Process 0 keeps this process's standard output and error; the others' output is dropped but
    the end of a failing one's error output is printed. When one process fails, the others are
    stopped. Returns the first non-zero exit status, else 0. Ctrl-C stops all of them (status 130).
    """
    core_shares(available_cores(), n)  # fewer cores than processes: refuse before starting any
    coord = f"127.0.0.1:{free_port()}"
    procs = []
    for r in range(n):
        env = {**os.environ, ENV_RANK: str(r), ENV_NUM: str(n), ENV_COORDINATOR: coord}
        procs.append(subprocess.Popen([python or sys.executable, "-m", module, *args], env=env,
                                      stdout=None if r == 0 else subprocess.DEVNULL,
                                      stderr=None if r == 0 else subprocess.PIPE, text=True))
    status, first_bad = 0, None
    try:
        while first_bad is None and any(p.poll() is None for p in procs):
            first_bad = next((r for r, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            if first_bad is None:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        status = 130
    if first_bad is None:
        first_bad = next((r for r, p in enumerate(procs) if p.poll() not in (None, 0)), None)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    errs = []
    for p in procs:
        try:
            errs.append(p.communicate(timeout=30)[1])
        except subprocess.TimeoutExpired:
            p.kill()
            errs.append(p.communicate()[1])
    if status == 0 and first_bad is not None:
        code = procs[first_bad].returncode
        status = code if code > 0 else 1
        if first_bad > 0 and errs[first_bad]:
            print(f"jaxfwi: process {first_bad} of {n} failed (status {code}):\n{errs[first_bad][-3000:]}",
                  file=sys.stderr)
    return status
