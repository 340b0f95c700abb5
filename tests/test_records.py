"""Run records (jaxfwi.experiments.records): a committed record rebuilds its committed table; the
runner writes records; a record round-trips a run within the float16 bound; no data, clean skip."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from jaxfwi import experiments as ex
from jaxfwi.experiments import records as rec

ROOT = Path(__file__).resolve().parents[1]
SYN = ROOT / "benchmarks" / "results" / "synthetic"


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_record_rebuilds_its_table(tmp_path):
    """benchmarks/results/synthetic/records -> the committed results.csv / results.md, byte for byte."""
    repro = _reproduce()
    paths = sorted((SYN / "records").glob("*.npz"))
    assert len(paths) == 4
    info = rec.restore_records(SYN / "records", tmp_path / "runs", log=lambda s: None)
    assert len(info["restored"]) == 4 and not info["skipped"]
    # the rebuilt float16 models give the stored metrics to within the record's precision
    assert 0 < info["max_metric_error"]["mse"] < 1e-4
    assert info["max_metric_error"]["ssim"] < 1e-3
    assert info["max_initial_error"] < 1e-6
    out = ex.build_report(tmp_path / "runs", tmp_path / "report", figures="none", title=repro.SUITES["synthetic"]["title"],
                          notes=repro.NOTES_SYNTHETIC, dpi=70)
    assert Path(out["csv"]).read_text() == (SYN / "results.csv").read_text()
    assert Path(out["markdown"]).read_text() == (SYN / "results.md").read_text()
    # and the scenarios in the records are the ones the suite defines (same settings, same names)
    names = {sc.dir_name for sc in repro.scenarios(["s"], suite="synthetic")}
    assert names == {p.stem for p in paths}


TINY = {"reduce": 1, "epochs": 3, "acquisition": {"shape": [12, 24], "nt": 100, "n_shots": 2, "pml_width": 6,
                                                  "src_spacing_m": 200.0}, "options": {"accuracy": 4}}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("rec")
    scs = ex.expand_grid(TINY, models=["synthetic:layered"], inits=["smooth"], conditions=["clean", "noise:1"],
                         methods=["adfwi"], seeds=[0, 1])
    ex.run_scenarios(scs, base / "runs", progress=False, records_dir=base / "records", log=lambda s: None)
    return base, scs


def test_runner_writes_records_that_round_trip(tiny_runs, tmp_path):
    base, scs = tiny_runs
    names = sorted({sc.dir_name for sc in scs})
    assert sorted(p.stem for p in (base / "records").glob("*.npz")) == names
    for n in names:
        assert (base / "runs" / n / "record.npz").read_bytes() == (base / "records" / f"{n}.npz").read_bytes()
        meta, arrays = rec.read_record(base / "records" / f"{n}.npz")
        assert not any("true" in k for k in arrays)  # no copy of the true model
        assert all(a.dtype == np.float16 for k, a in arrays.items() if k.endswith("/update"))
    info = rec.restore_records(base / "records", tmp_path / "restored", gathers=True, log=lambda s: None)
    assert sorted(info["restored"]) == names
    for n in names:
        raw, back = base / "runs" / n, tmp_path / "restored" / n
        np.testing.assert_array_equal(np.load(back / "true.npy"), np.load(raw / "true.npy"))
        v0 = np.load(raw / "initial.npy")
        for seed in (0, 1):
            v = np.load(raw / f"seed{seed}" / "velocity.npy")
            w = np.load(back / f"seed{seed}" / "velocity.npy")
            bound = np.abs(v - v0) * 2.0 ** -11 + 1e-3  # half a float16 step of the update (+ float32 sum)
            assert np.all(np.abs(w - v) <= bound)
            for f in ("metrics.json",):
                assert json.loads((back / f"seed{seed}" / f).read_text()) == json.loads((raw / f"seed{seed}" / f).read_text())
            h0 = json.loads((raw / f"seed{seed}" / "history.json").read_text())
            h1 = json.loads((back / f"seed{seed}" / "history.json").read_text())
            assert list(h1) == list(h0)
            for k in h0:
                np.testing.assert_allclose(np.asarray(h1[k], float), np.asarray(h0[k], float), rtol=1e-6)
            g0, g1 = np.load(raw / f"seed{seed}" / "gather.npz"), np.load(back / f"seed{seed}" / "gather.npz")
            np.testing.assert_array_equal(g1["observed"], g0["observed"])  # the noise draw is re-made exactly
            scale = np.abs(g0["synthetic"]).max()
            assert np.abs(g1["synthetic"] - g0["synthetic"]).max() < 1e-2 * scale
    a = ex.build_report(base / "runs", tmp_path / "r0", figures="none")
    b = ex.build_report(tmp_path / "restored", tmp_path / "r1", figures="none")
    assert Path(a["csv"]).read_text() == Path(b["csv"]).read_text()


def test_records_are_deterministic_and_export(tiny_runs, tmp_path):
    base, scs = tiny_runs
    out = rec.export_records(base / "runs", tmp_path / "exp")
    assert len(out) == 2
    for p in out:
        assert p.read_bytes() == (base / "records" / p.name).read_bytes()
    assert rec.record_size(tmp_path / "exp") == sum(p.stat().st_size for p in out) < 20_000


def test_restore_without_data_skips(tiny_runs, tmp_path):
    base, scs = tiny_runs
    src = sorted((base / "records").glob("*.npz"))[0]
    meta, arrays = rec.read_record(src)
    meta["scenario_json"]["scenario"]["model"] = "marmousi"
    meta["scenario_json"]["scenario"]["acquisition"] = []
    meta["dir_name"] = ex.Scenario.from_dict(meta["scenario_json"]["scenario"]).dir_name
    rec._write_npz(tmp_path / "m.npz", {"meta": np.asarray(json.dumps(meta)), **arrays})
    (tmp_path / "nodata").mkdir()
    info = rec.restore_records([tmp_path / "m.npz"], tmp_path / "r", data_dir=tmp_path / "nodata", log=lambda s: None)
    assert info["restored"] == [] and list(info["skipped"]) == [meta["dir_name"]]


def test_runner_treats_a_committed_record_as_finished(tiny_runs, tmp_path):
    """Raw runs gone, records kept (a new session on a fresh clone): nothing is run again."""
    base, scs = tiny_runs
    dry = ex.run_scenarios(scs, tmp_path / "fresh", progress=False, records_dir=base / "records", dry_run=True,
                           log=lambda s: None)
    assert sorted(r["state"] for r in dry) == ["skipped_record"] * len(scs)
    assert not any((tmp_path / "fresh").iterdir())  # a dry run writes nothing

    def boom(*a, **k):
        raise AssertionError("a scenario with a covering record was run again")

    out = ex.run_scenarios(scs, tmp_path / "fresh", progress=False, records_dir=base / "records",
                           callback=boom, log=lambda s: None)
    assert sorted(r["state"] for r in out) == ["skipped_finished"] * len(scs)
    for r in out:
        raw = json.loads((base / "runs" / r["dir_name"] / f"seed{r['seed']}" / "metrics.json").read_text())
        assert r["final"] == raw["final"]
    # a seed the record does not hold still runs; the ones it holds do not
    extra = ex.expand_grid(TINY, models=["synthetic:layered"], inits=["smooth"], conditions=["clean"],
                           methods=["adfwi"], seeds=[0, 1, 2])
    dry = ex.run_scenarios(extra, tmp_path / "fresh2", progress=False, records_dir=base / "records", dry_run=True,
                           log=lambda s: None)
    assert sorted((r["seed"], r["state"]) for r in dry) == [(0, "skipped_record"), (1, "skipped_record"),
                                                            (2, "pending")]


def test_a_new_record_keeps_the_seeds_of_the_committed_one(tiny_runs, tmp_path):
    """Seeds 1, 2 run in a new session (seed 0 only in the committed record): the record written
    afterwards holds all three (it used to keep only the folder's seeds and drop seed 0)."""
    import shutil

    base, scs = tiny_runs
    name = sorted({sc.dir_name for sc in scs})[0]
    committed = tmp_path / "records" / f"{name}.npz"
    committed.parent.mkdir()
    shutil.copy(base / "records" / f"{name}.npz", committed)
    folder = tmp_path / "runs" / name
    shutil.copytree(base / "runs" / name, folder)
    shutil.rmtree(folder / "seed0")  # this session's folder: seed 1 only
    rec.write_record(folder, committed)
    meta, arrays = rec.read_record(committed)
    assert sorted(meta["seeds"]) == ["0", "1"]
    old_meta, old_arrays = rec.read_record(base / "records" / f"{name}.npz")
    assert meta["seeds"] == old_meta["seeds"]
    assert sorted(arrays) == sorted(old_arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], old_arrays[k])


def test_epochs_to_fraction_of_the_drop():
    from jaxfwi.experiments.report import epochs_to_fraction
    curve = [1.0, 0.9, 0.6, 0.5, 0.55]           # drop 1.0 -> 0.5 (min), initial 1.0
    assert epochs_to_fraction(curve, 1.0, 0.5) == 3
    assert epochs_to_fraction(curve, 1.0, 0.2) == 2
    assert epochs_to_fraction(curve, 1.0, 0.9) == 4
    assert epochs_to_fraction([1.1, 1.2], 1.0, 0.5) is None   # never below the initial model


def test_half_block_e_reuses_the_denorm_runs_of_blocks_a_and_c():
    """Block e (Denorm vs pretraining) adds only the two pretraining runs: its denorm scenarios are
    those of blocks a (smooth) and c (linear), so the runner finds them finished."""
    repro = _reproduce()
    e = repro.scenarios(["e"], suite="half")
    ac = set(repro.scenarios(["a", "c"], suite="half"))
    assert sorted((sc.init, sc.strategy) for sc in e) == [
        ("linear", "denorm"), ("linear", "pretrain"), ("smooth", "denorm"), ("smooth", "pretrain")]
    assert {sc for sc in e if sc.strategy == "denorm"} <= ac
    assert not {sc for sc in e if sc.strategy == "pretrain"} & ac
    assert {sc.epochs for sc in e} == {500} and {sc.method for sc in e} == {"ifwi"}


def test_perturbs_selects_fad_scenarios_in_the_given_order():
    """--perturbs 30 -30 runs block I's +30 % scenarios before the -30 % ones; a value no block holds exits."""
    repro = _reproduce()
    scs = repro.scenarios(["I"], suite="fad", seeds=[0])
    picked = repro._only_perturbs(repro._only_methods(scs, "fad-fwi"), [30, -30])
    assert [(sc.perturb, sc.method) for sc in picked] == [(30.0, "fad-fwi"), (-30.0, "fad-fwi")]
    repro._check_perturbs([30, -10], scs)      # both are in block I
    with pytest.raises(SystemExit, match=r"--perturbs 20: .* -30, -10, 10, 30"):
        repro._check_perturbs([20], scs)


def test_curves_by_start_draws_one_panel_per_initial_model(tmp_path):
    """The FAD report's MSE-by-start figure: a panel per initial model of the records that ran the given
    number of epochs; none (and no file) for an epoch count no record has."""
    repro = _reproduce()
    panels = repro.curves_by_start(SYN / "records", tmp_path / "f.png", 6)
    assert panels == ["constant", "smooth"] and (tmp_path / "f.png").stat().st_size > 1000
    assert repro.curves_by_start(SYN / "records", tmp_path / "g.png", 7) == []
    assert not (tmp_path / "g.png").exists()
