"""Test-suite set-up: a persistent XLA compilation cache shared by every test process.

Most of the suite's time is XLA compilation of the propagator and its adjoint. The
cache folder (git-ignored) lets subprocess tests and notebook kernels reuse programs
compiled by earlier tests and earlier runs. Set ``JAXFWI_TEST_CACHE`` to another folder,
or to an empty string to disable it.
"""
import os

_cache = os.environ.get("JAXFWI_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
if _cache:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.abspath(_cache))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# The test workers compile with LLVM at -O0 (XLA's HLO passes and fusion decisions are unchanged; only the
# machine-code optimisation is skipped): most programs of the tests run for milliseconds after seconds of
# compilation. The notebook kernels get the flags as they were (test_notebooks.py: they run long enough
# for -O0 to cost more than it saves), and so do the subprocesses that drop XLA_FLAGS (device run,
# multi-host, sharded inversion); the CLI subprocesses (test_launch, test_hostmem) inherit -O0. Measured
# in docs/installation.md. JAXFWI_TEST_O0=0 turns it off.
_O0 = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("JAXFWI_TEST_O0", "1") == "1" and _O0 not in os.environ.get("XLA_FLAGS", ""):
    os.environ["JAXFWI_TEST_KERNEL_XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _O0).strip()


# Longest first: pytest-xdist hands tests to its workers in collection order, and the notebooks
# (the longest tests, 25-90 s each on 2 cores) collect last, so one worker used to finish them
# alone at the end. Starting them first lets the short tests fill in around them (measured on a clean
# clone: 8:10 and 8:59 against 8:01-8:15 without it, so no gain shown on this noisy host).
_LONG_FIRST = ("tests/test_notebooks.py::test_notebook_runs",)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 0 if item.nodeid.startswith(_LONG_FIRST) else 1)  # stable: order kept otherwise
