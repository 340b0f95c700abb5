"""Experiments: scenario config, runner (skip finished, resume interrupted), report.

A CI-sized grid: two methods x two scenarios on a tiny built-in synthetic model (no data
files), a few epochs. The grid runs once per module (fixture); the first scenario is
interrupted after 2 of its 4 epochs and resumed from its checkpoint.
"""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaxfwi import experiments as ex
from jaxfwi.experiments import cli as ex_cli
from jaxfwi.experiments.config import parse_condition

TINY = {"reduce": 1, "epochs": 4, "acquisition": {"shape": [12, 24], "nt": 120, "n_shots": 2, "pml_width": 6,
                                                  "src_spacing_m": 200.0},
        "options": {"accuracy": 4}}


def tiny_grid(**kw):
    return ex.expand_grid(TINY, models=["synthetic:default"], inits=["smooth"],
                          conditions=["clean", "noise:1+highpass:3"], methods=["adfwi", "ifwi"], seeds=[0, 1], **kw)


# --------------------------------------------------------------------------- config


def test_condition_parsing_roundtrip():
    assert parse_condition("clean") == {"noise": 0.0, "highpass": 0.0, "shots": 0}
    c = parse_condition("noise:0.5+highpass:2.5")
    assert c == {"noise": 0.5, "highpass": 2.5, "shots": 0}
    assert ex.format_condition(**c) == "noise:0.5+highpass:2.5"
    assert ex.format_condition(**parse_condition("shots:5")) == "shots:5"
    with pytest.raises(ValueError, match="noise:K"):
        parse_condition("blur:3")


def test_scenario_names_are_stable_and_seed_free():
    a = ex.Scenario(model="marmousi", init="constant", noise=8, method="IG_FWI", seed=0)
    b = ex.Scenario(model="marmousi", init="constant", noise=8.0, method="ig-fwi", seed=2)
    assert a.method == "ig-fwi" and a.dir_name == b.dir_name
    assert a.dir_name.startswith("marmousi-r2__constant__noise8__ig-fwi__e40__")
    assert a.dir_name != ex.Scenario(model="marmousi", init="constant", noise=8, method="ig-fwi", epochs=41).dir_name
    p = ex.Scenario(model="fadfwi_overthrust", init="profile", perturb=-20, strategy="pretrain", method="ifwi")
    assert "profile-20pc" in p.dir_name and "ifwi+pretrain" in p.dir_name
    with pytest.raises(ValueError, match="method"):
        ex.Scenario(method="nope")
    with pytest.raises(ValueError, match="init"):
        ex.Scenario(init="wiggly")
    with pytest.raises(ValueError, match="preset"):
        ex.Scenario(model="atlantis")


def test_expand_grid_and_toml(tmp_path):
    scs = tiny_grid()
    assert len(scs) == 8 and len(ex.group_by_seed(scs)) == 4
    toml = tmp_path / "grid.toml"
    toml.write_text("""
[defaults]
reduce = 1
epochs = 3
seeds = [0, 1, 2]
[defaults.acquisition]
pml_width = 6

[[grid]]
models = ["synthetic:default"]
inits = ["smooth", "constant"]
methods = ["adfwi", "ig-fwi"]

[[grid]]
models = ["marmousi"]
conditions = ["noise:8", "shots:5"]
methods = ["adfwi"]
perturbs = [0, 10]
""")
    scs = ex.load_config(toml)
    assert len(scs) == 2 * 2 * 3 + 2 * 2 * 3
    assert all(sc.epochs == 3 and dict(sc.acquisition) == {"pml_width": 6} for sc in scs)
    assert {sc.condition for sc in scs if sc.model == "marmousi"} == {"noise:8", "shots:5"}


def test_published_lookup():
    assert ex.published_lookup("marmousi/r2", "smooth", "clean", "ig-fwi")["mse"] == (0.1423, "CR-FWI T1")
    assert ex.published_lookup("marmousi", "constant", "clean", "ig-fwi")["ssim"][0] == 0.677
    assert ex.published_lookup("marmousi", "smooth", "shots:5", "lr-fwi")["mse"][0] == 0.2641
    assert ex.published_lookup("marmousi", "linear", "clean", "ifwi+pretrain")["mse"] == (0.3945, "Denorm")
    fad = ex.published_lookup("fadfwi_overthrust", "profile", "noise:0.5+highpass:2.5", "fad-fwi")
    assert math.isclose(fad["mse"][0], 180.29e-6) and fad["psnr"][0] == 48.55
    assert ex.published_lookup("salt", "smooth+10%", "clean", "adfwi") == {}


def test_missing_data_is_skipped(tmp_path):
    sc = ex.Scenario(model="marmousi", epochs=1)
    recs = ex.run_scenarios([sc], tmp_path / "runs", data_dir=_empty(tmp_path), progress=False,
                            log=lambda s: None)
    assert [r["state"] for r in recs] == ["skipped_data"]
    assert not list((tmp_path / "runs").glob("*/seed*/metrics.json"))


def test_clean_data_do_not_depend_on_the_initial_model_or_run_order():
    """The observed data are the true model's: a faster initial model (a higher auto velocity bound) run first
    in a process must not change the internal time step of the data the next scenario inverts."""
    from jaxfwi.experiments import runner

    slow, fast = ex.expand_grid(TINY, models=["synthetic:default"], inits=["smooth"], perturbs=[0, 30],
                                methods=["adfwi"], seeds=[0])
    runner._DATA_CACHE.clear()
    alone = runner.prepare(slow)
    runner._DATA_CACHE.clear()
    after_fast = runner.prepare(fast)
    assert after_fast.bounds[1] > alone.bounds[1]  # the two scenarios would pick different time steps
    again = runner.prepare(slow)
    runner._DATA_CACHE.clear()
    assert np.array_equal(again.d_clean, alone.d_clean)
    assert np.array_equal(after_fast.d_clean, alone.d_clean)
    cached = runner._clean_data(("k",), alone.v_true, alone.dx, alone.survey, alone.forward, alone.bounds[1])
    runner._DATA_CACHE.clear()
    assert not cached.flags.writeable  # shared by every scenario of the process


def _empty(tmp_path):
    d = tmp_path / "nodata"
    d.mkdir()
    return d


# --------------------------------------------------------------------------- runner + report


class _Interrupt:
    """Raise KeyboardInterrupt after 2 epochs of the first run only."""

    def __init__(self):
        self.fired = False

    def __call__(self, epochs_done, params):
        if epochs_done == 2 and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp") / "runs"
    scs = tiny_grid()
    logs = []
    stop = _Interrupt()
    with pytest.raises(KeyboardInterrupt):
        ex.run_scenarios(scs, root, progress=False, checkpoint_every=2, callback=stop, log=logs.append)
    first = root / scs[0].dir_name
    state = {"ckpt_after_interrupt": sorted(p.name for p in first.glob("ckpt_*")),
             "finished_after_interrupt": list(root.glob("*/seed*/metrics.json"))}
    recs = ex.run_scenarios(scs, root, progress=False, checkpoint_every=2, log=logs.append)
    recs2 = ex.run_scenarios(scs, root, progress=False, log=logs.append)
    return {"root": root, "scenarios": scs, "recs": recs, "recs2": recs2, "logs": logs, **state}


def test_interrupted_run_resumes_from_checkpoint(runs):
    assert len(runs["ckpt_after_interrupt"]) == 1
    assert runs["finished_after_interrupt"] == []
    assert any("(resuming at epoch 2 of 4)" in line for line in runs["logs"])
    first = runs["root"] / runs["scenarios"][0].dir_name
    assert not list(first.glob("ckpt_*"))  # removed once finished
    for seed in (0, 1):
        with open(first / f"seed{seed}" / "history.json") as f:
            h = json.load(f)
        assert h["epoch"] == [0, 1, 2, 3]
        assert len(h["mse"]) == 4 and all(np.isfinite(h["loss"]))


def test_runner_outputs_and_skip_finished(runs):
    root = runs["root"]
    assert sorted(r["state"] for r in runs["recs"]) == ["done"] * 8
    assert [r["state"] for r in runs["recs2"]] == ["skipped_finished"] * 8
    dirs = sorted(p.name for p in root.iterdir())
    assert dirs == sorted({sc.dir_name for sc in runs["scenarios"]})
    for sc in runs["scenarios"]:
        sd = root / sc.dir_name / f"seed{sc.seed}"
        v = np.load(sd / "velocity.npy")
        assert v.shape == (12, 24) and np.all(np.isfinite(v))
        with open(sd / "metrics.json") as f:
            m = json.load(f)
        assert m["status"] == "ok" and m["epochs_done"] == 4 and m["seed"] == sc.seed
        assert set(m["final"]) >= {"mse", "mae", "ssim", "psnr"}
        assert m["labels"] == {"model": "synthetic:default", "init": "smooth", "condition": sc.condition,
                               "method": sc.method}
        assert (sd / "gather.npz").exists()
        assert (root / sc.dir_name / "true.npy").exists() and (root / sc.dir_name / "initial.npy").exists()
    # grid method on clean data: identical seeds are run once and copied (marked); noisy data: run per seed
    for sc in runs["scenarios"]:
        with open(root / sc.dir_name / f"seed{sc.seed}" / "metrics.json") as f:
            copied = json.load(f).get("copied_from_seed")
        assert copied == (0 if (sc.method == "adfwi" and not sc.noise and sc.seed == 1) else None)
    # noise draws differ per seed; the high-pass cut-off is recorded
    noisy = [sc for sc in runs["scenarios"] if sc.noise and sc.method == "adfwi"]
    g = [np.load(root / sc.dir_name / f"seed{sc.seed}" / "gather.npz")["observed"] for sc in noisy]
    assert not np.allclose(g[0], g[1])
    with open(root / noisy[0].dir_name / "seed0" / "metrics.json") as f:
        assert json.load(f)["effective"]["highpass_hz"] == 3.0


def test_report_tables_and_figures(runs, tmp_path):
    out = ex.build_report(runs["root"], tmp_path / "report", figures=1)
    md = Path(out["markdown"]).read_text()
    assert "| adfwi |" in md and "| ifwi |" in md and "*initial model*" in md
    assert "±" in md and "**" in md and "noise:1+highpass:3" in md
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {r["method"] for r in rows} == {"adfwi", "ifwi"}
    assert all(r["n_seeds"] == "2" and float(r["mse_mean"]) > 0 for r in rows)
    names = sorted(Path(p).name for p in out["figures"])
    assert len(names) == 4 and all(Path(p).stat().st_size > 1000 for p in out["figures"])
    assert {n.rsplit("_", 1)[1] for n in names} == {"models.png", "mse.png", "profiles.png", "residuals.png"}


def test_cli_parsers(runs, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="jaxfwi")
    sub = parser.add_subparsers(dest="cmd")
    ex_cli.add_run_parser(sub)
    ex_cli.add_report_parser(sub)
    for cmd in ("run", "report"):
        with pytest.raises(SystemExit):
            parser.parse_args([cmd, "--help"])
        assert "--results" in capsys.readouterr().out
    # flags build the same grid as the Python API; a dry run against the finished folder runs nothing
    args = parser.parse_args(["run", "--results", str(runs["root"]), "--models", "synthetic:default", "--reduce",
                              "1", "--epochs", "4", "--conditions", "clean", "noise:1+highpass:3", "--methods",
                              "adfwi", "ifwi", "--seeds", "0", "1", "--acquisition", "shape=[12,24]", "nt=120",
                              "n_shots=2", "pml_width=6", "src_spacing_m=200.0", "--option", "accuracy=4",
                              "--quiet", "--dry-run"])
    recs = args.func(args)
    assert [r["state"] for r in recs] == ["skipped_finished"] * 8
    args = parser.parse_args(["report", "--results", str(runs["root"]), "--out", str(tmp_path / "r"),
                              "--figures", "none"])
    out = args.func(args)
    assert Path(out["markdown"]).exists() and out["figures"] == []


def test_cached_constants_are_read_only():
    """The arrays cached for every later run of the process (a model's fixed latent, the clean observed
    data) cannot be changed in place by one run for the others."""
    from jaxfwi.models.generator import _latent_vector
    from jaxfwi.models.unet import fixed_latent

    for a in (fixed_latent((8, 12), 0, 1.5, None), _latent_vector(16, 0)):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1.0
