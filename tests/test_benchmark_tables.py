"""The propagator benchmark's summary table (``benchmarks/propagator.py``), without running it."""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def propagator():
    spec = importlib.util.spec_from_file_location("bench_propagator", os.path.join(ROOT, "benchmarks", "propagator.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gradient_over_forward_pairs_rows_of_the_same_code_and_layout(propagator):
    rows = [
        dict(code="jaxfwi", mode="forward", checkpoint="None", median_s=0.5),
        dict(code="jaxfwi", mode="grad", checkpoint="sqrt", median_s=9.0),  # forced segments: not the default
        dict(code="jaxfwi", mode="grad", checkpoint="None", median_s=1.5),
        dict(code="jaxfwi", mode="forward", checkpoint="2 procs x 1 thread", median_s=0.4),
        dict(code="jaxfwi", mode="grad", checkpoint="2 procs x 1 thread", median_s=1.0),
        dict(code="devito", mode="forward", checkpoint="2 threads", median_s=2.0),
        dict(code="devito", mode="grad", checkpoint="2 threads", failed="see log"),
        dict(code="deepwave", mode="forward", checkpoint="-", median_s=1.0),
        dict(code="deepwave", mode="grad", checkpoint="-", median_s=8.0),
    ]
    got = {(r["code"], r["layout"]): r["ratio"] for r in propagator.gradient_over_forward(rows)}
    assert got == {("jaxfwi", "1 process"): pytest.approx(3.0), ("jaxfwi", "2 procs x 1 thread"): pytest.approx(2.5),
                   ("deepwave", "1 process"): pytest.approx(8.0)}
