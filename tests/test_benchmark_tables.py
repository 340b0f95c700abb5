"""The benchmarks' summary tables (`benchmarks/propagator.py`, `benchmarks/discrepancy.py`), without running them."""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_benchmark(name):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def propagator():
    return _load_benchmark("propagator")


@pytest.fixture(scope="module")
def discrepancy():
    return _load_benchmark("discrepancy")


def test_gradient_over_forward_pairs_rows_of_the_same_code_and_layout(propagator):
    rows = [
        dict(code="jaxfwi", mode="forward", checkpoint="None", median_s=0.5),
        dict(code="jaxfwi", mode="grad", checkpoint="sqrt", median_s=9.0),  # forced segments: not the default
        dict(code="jaxfwi", mode="grad", checkpoint="None", median_s=1.5),
        dict(code="jaxfwi", mode="grad-fit", checkpoint="None", median_s=1.25),  # fit's loss: shot groups
        dict(code="jaxfwi", mode="forward", checkpoint="2 procs x 1 thread", median_s=0.4),
        dict(code="jaxfwi", mode="grad", checkpoint="2 procs x 1 thread", median_s=1.0),
        dict(code="devito", mode="forward", checkpoint="2 threads", median_s=2.0),
        dict(code="devito", mode="grad", checkpoint="2 threads", failed="see log"),
        dict(code="deepwave", mode="forward", checkpoint="-", median_s=1.0),
        dict(code="deepwave", mode="grad", checkpoint="-", median_s=8.0),
    ]
    got = {(r["code"], r["layout"]): r["ratio"] for r in propagator.gradient_over_forward(rows)}
    assert got == {("jaxfwi", "1 process"): pytest.approx(3.0), ("jaxfwi", "2 procs x 1 thread"): pytest.approx(2.5),
                   ("jaxfwi (fit's loss)", "1 process"): pytest.approx(2.5),
                   ("deepwave", "1 process"): pytest.approx(8.0)}


def test_discrepancy_stopping_epochs(discrepancy):
    """benchmarks/discrepancy.py: the first epoch whose misfit reaches tau x the noise floor, and the model
    MSE after the epoch before it (the misfit of epoch e is evaluated before its update)."""
    import numpy as np

    meta = {"dir_name": "a__b__c__d",
            "scenario_json": {"scenario": {"method": "adfwi", "perturb": -10.0, "epochs": 5}},
            "seeds": {"0": {"metrics": {"initial": {"mse": 1.0}, "labels": {"init": "profile-10%"}}}}}
    arrays = {"seed0/history/misfit": np.array([5.0, 4.0, 3.0, 2.0, 1.9]),
              "seed0/history/mse": np.array([0.9, 0.8, 0.7, 0.75, 0.8])}
    (row,) = discrepancy.stopping_table(meta, arrays, {0: 2.0}, [1.0, 1.5, 0.5])
    assert row["stop_epoch_tau1"] == 3 and row["stop_mse_tau1"] == 0.7
    assert row["stop_epoch_tau1.5"] == 2 and row["stop_mse_tau1.5"] == 0.8
    assert row["stop_epoch_tau0.5"] is None and row["stop_mse_tau0.5"] is None
    assert row["best_epoch"] == 3 and row["best_mse"] == 0.7 and row["final_mse"] == 0.8
    assert (row["init"], row["perturb"], row["method"], row["epochs_planned"]) == ("profile-10%", -10.0, "adfwi", 5)


def test_discrepancy_summary_groups_seeds_per_start_and_method(discrepancy):
    """benchmarks/discrepancy.py's per-start table: seed means ± std per (initial model, method), the seeds'
    stop epochs, "never" when a seed never reached the floor, "not run" for a missing method."""

    def row(init, method, seed, stop, final):
        perturb = float(init[len("profile"):-1] or 0)
        return {"init": init, "perturb": perturb, "method": method, "epochs_planned": 9, "seed": seed,
                "initial_mse": 1.0, "mse_at300": 0.5,
                "best_mse": 0.25, "best_epoch": 10 + seed, "final_mse": final,
                "stop_epoch_tau1": stop, "stop_mse_tau1": None if stop is None else 0.3}

    rows = [row("profile+10%", "a", 0, 5, 0.4), row("profile+10%", "a", 1, 7, 0.6),
            row("profile", "a", 0, None, 0.9), row("profile", "b", 0, 3, 0.2)]
    lines = discrepancy.summary_markdown(rows).strip().split("\n")
    assert lines[0].startswith("| initial model | initial | a @300 |") and "b @9" in lines[0]
    assert lines[2].startswith("| exact 1-D profile | 1.0000 | 0.500 ± 0.000 | 0.250 (10-10) | never | 0.900 ± 0.000 |")
    assert lines[2].endswith("0.300 ± 0.000 (3-3) | 0.200 ± 0.000 |")
    assert lines[3] == ("| profile +10 % | 1.0000 | 0.500 ± 0.000 | 0.250 (10-11) | 0.300 ± 0.000 (5-7) | 0.500 ± 0.100 | "
                        "not run | not run | not run | not run |")


def test_discrepancy_table_replaces_only_between_markers(discrepancy):
    """``discrepancy.py --readme``: the table between the two marker lines is replaced and nothing else; missing or
    repeated markers raise (the README is never guessed at)."""
    b, e = discrepancy.TABLE_BEGIN, discrepancy.TABLE_END
    text = f"intro\n| other | table |\n\n{b}\n| old |\n{e}\nafter\n"
    assert discrepancy.replace_table(text, "| new |\n| row |\n") == f"intro\n| other | table |\n\n{b}\n| new |\n| row |\n{e}\nafter\n"
    for bad in ("no markers\n", f"{e}\n{b}\n", f"{b}\n{b}\n{e}\n"):
        with pytest.raises(ValueError, match="--readme"):
            discrepancy.replace_table(bad, "| new |")
    with open(os.path.join(ROOT, "benchmarks", "results", "README.md")) as fh:   # the committed README has them
        discrepancy.replace_table(fh.read(), "")
