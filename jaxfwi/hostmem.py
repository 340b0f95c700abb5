"""Host memory: transparent huge pages for the large buffers of a CPU run.

On the CPU, XLA takes every buffer of a compiled program from the C library's ``malloc``.
A gradient that keeps every wavefield allocates one large buffer per call (3.3 GB for the
13-shot Marmousi case) and frees it at the end; glibc maps such buffers afresh from the
kernel each time, so every epoch of an inversion faults in and zeroes them again, one 4 KiB
page at a time. glibc's tunable ``glibc.malloc.hugetlb=1`` (glibc >= 2.35) asks the kernel
for transparent huge pages (2 MiB) for them instead. Measured on the 2-core test machine
(``docs/physics.md``, "Host memory"): a full-size Marmousi adfwi epoch 2.15 -> 1.62 s, the
half-size block 0.566 -> 0.483 s (adfwi) and 0.642 -> 0.528 s (ig-fwi), identical results.

The tunable is read once, when the process starts, so it cannot be switched on from inside a
running Python process. :func:`reexec_with_hugepages` starts the current command again with it
set (same PID, arguments and environment otherwise); the ``jaxfwi`` command and the benchmark
drivers call it first thing. Library users set it themselves::

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python my_inversion.py

``JAXFWI_HUGEPAGES=0`` turns the re-execution off.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, Optional

__all__ = ["HUGEPAGE_TUNABLE", "hugepage_env", "reexec_with_hugepages"]

#: the glibc tunable that backs large ``malloc`` blocks with transparent huge pages (glibc >= 2.35)
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_available(path: str = _THP_SETTING) -> bool:
    """Whether the kernel hands out transparent huge pages on request (``always`` or ``madvise``)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return False
    return "[never]" not in text and ("[always]" in text or "[madvise]" in text)


def _glibc_supports_hugetlb(libc: tuple = None) -> bool:
    name, version = libc if libc is not None else platform.libc_ver()
    if name != "glibc":
        return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 35)


def hugepage_env(environ: Mapping[str, str], *, thp: Optional[bool] = None, libc: Optional[tuple] = None,
                 system: Optional[str] = None) -> Optional[dict]:
    """The environment to restart with, or None when nothing should change.

    None when ``JAXFWI_HUGEPAGES=0``, when ``GLIBC_TUNABLES`` already sets
    ``glibc.malloc.hugetlb``, off Linux, on a C library other than glibc >= 2.35, or when the
    kernel's transparent huge pages are off (``thp``, ``libc``, ``system``: the facts to use
    instead of this machine's, for tests). Otherwise a copy of ``environ`` with
    :data:`HUGEPAGE_TUNABLE` added to ``GLIBC_TUNABLES`` (after any tunables already there).
    """
    if environ.get("JAXFWI_HUGEPAGES", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    if (system if system is not None else platform.system()) != "Linux":
        return None
    if not _glibc_supports_hugetlb(libc):
        return None
    if not (thp if thp is not None else _thp_available()):
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{current}:{HUGEPAGE_TUNABLE}" if current else HUGEPAGE_TUNABLE
    return env


def reexec_with_hugepages() -> None:
    """Start this command again with :data:`HUGEPAGE_TUNABLE` set, when :func:`hugepage_env` says so.

    Call it first thing in a program's ``main`` (before JAX starts threads or touches data):
    on success it does not return (``os.execve``; same process id, ``sys.orig_argv``). Returns
    normally when nothing needs to change or the restart is not possible (no ``sys.orig_argv``,
    an interactive interpreter).
    """
    env = hugepage_env(os.environ)
    if env is None:
        return
    argv = list(getattr(sys, "orig_argv", []) or [])
    if len(argv) < 2 or argv[1] == "-c" or not sys.executable or hasattr(sys, "ps1"):
        return  # interactive or ``python -c``: nothing to restart
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable] + argv[1:], env)
    except OSError:
        return
