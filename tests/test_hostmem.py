"""Huge pages for the host allocator: when the environment changes, and that a restart keeps the command."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from jaxfwi.hostmem import HUGEPAGE_TUNABLE, hugepage_env

LINUX = dict(thp=True, libc=("glibc", "2.36"), system="Linux")


def test_hugepage_env_adds_the_tunable_after_existing_ones():
    assert hugepage_env({"PATH": "/bin"}, **LINUX) == {"PATH": "/bin", "GLIBC_TUNABLES": HUGEPAGE_TUNABLE}
    env = hugepage_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **LINUX)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + HUGEPAGE_TUNABLE


def test_hugepage_env_leaves_the_environment_alone_where_it_should():
    assert hugepage_env({"JAXFWI_HUGEPAGES": "0"}, **LINUX) is None
    assert hugepage_env({"JAXFWI_HUGEPAGES": "off"}, **LINUX) is None
    assert hugepage_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, **LINUX) is None  # the user's choice
    assert hugepage_env({}, thp=False, libc=("glibc", "2.36"), system="Linux") is None
    assert hugepage_env({}, thp=True, libc=("glibc", "2.31"), system="Linux") is None  # tunable from 2.35 on
    assert hugepage_env({}, thp=True, libc=("", ""), system="Linux") is None  # musl and others
    assert hugepage_env({}, thp=True, libc=("glibc", "2.36"), system="Darwin") is None


def test_reexec_restarts_the_same_command_once_with_the_tunable(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:], flush=True)
        from jaxfwi.hostmem import reexec_with_hugepages
        reexec_with_hugepages()
        print("after", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:], flush=True)
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXFWI_HUGEPAGES")}
    out = subprocess.run([sys.executable, str(script), "a", "b c"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    expected = hugepage_env(env)
    if expected is None:  # this machine gets no huge pages: nothing restarts
        assert [ln.split()[0] for ln in lines] == ["start", "after"]
        return
    assert [ln.split()[0] for ln in lines] == ["start", "start", "after"], lines
    pids = {ln.split()[1] for ln in lines}
    assert len(pids) == 1  # exec: the same process
    assert HUGEPAGE_TUNABLE in lines[-1] and "['a', 'b c']" in lines[-1]
    off = subprocess.run([sys.executable, str(script)], env={**env, "JAXFWI_HUGEPAGES": "0"}, capture_output=True,
                         text=True, timeout=60)
    assert [ln.split()[0] for ln in off.stdout.splitlines()] == ["start", "after"]


def test_console_entry_point_runs_through_the_restart():
    out = subprocess.run([sys.executable, "-m", "jaxfwi.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower() and "invert" in out.stdout
