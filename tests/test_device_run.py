"""The prepared device run (``benchmarks/device_run.py``) at toy size on CPU, and ``jaxfwi.devices``.

The dry run exercises every stage (correctness against the committed CPU reference, propagator
timings, an epoch, vmapped vs sequential seeds, the reproduction with checkpoints); a second
invocation in the same folder must skip every finished item and continue the reproduction from
its checkpoints. The Marmousi stages of a real run skip with a reason when no data folder is given.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
SCRIPT = os.path.join(BENCH, "device_run.py")
REGENERATE = "python benchmarks/device_reference.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("JAXFWI_DATA", None)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run(out, *extra, timeout=300):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out), *extra], capture_output=True,
                       text=True, env=_env(), cwd=ROOT, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout, time.perf_counter() - t0


def _rows(out):
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def _items():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_device_run_under_test", SCRIPT)
    device_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_run)
    return device_run, device_run.item_list(dry_run=True)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_dry")
    stdout, wall = _run(out, "--stop-repro-after-epochs", "2", "--archive", str(out / "state.tar.gz"))
    return out, stdout, wall


def test_dry_run_records_every_item(dry):
    out, stdout, wall = dry
    _, items = _items()
    rows = _rows(out)
    assert rows[0]["stage"] == "run" and rows[0]["dry_run"] and rows[0]["device"]["platform"] == "cpu"
    by_id = {r["id"]: r for r in rows if r.get("stage") != "run"}
    assert [i for i, _ in items] == [r["id"] for r in rows[1:]], "one line per item, in order"
    for i, stage in items:
        r = by_id[i]
        assert r["stage"] == stage
        if i.startswith("correct/"):
            assert r["status"] == "ok", (
                f"{i}: the device check fails on CPU against the committed reference ({r.get('reason')}; data "
                f"{r.get('data_rel')}, gradient {r.get('grad_rel')}): if the physics changed, regenerate it with "
                f"`{REGENERATE}` and commit the npz")
            assert r["data_rel"] <= r["data_rtol"] and r["grad_rel"] <= r["grad_rtol"]
        elif i.startswith("repro/"):
            assert r["status"] == "partial" and r["epochs_done"] == 2 < r["epochs_total"], r
        else:
            assert r["status"] == "ok", r
    prop = by_id["prop/overthrust3d/grad"]
    assert prop["ndim"] == 3 and prop["mcells_per_s"] > 0 and prop["compile_s"] >= 0
    assert by_id["seeds/adfwi"]["seeds"] == 2 and by_id["seeds/adfwi"]["speedup_per_epoch"] > 0
    assert by_id["epoch/adfwi"]["s_per_epoch"] > 0
    summary = (out / "summary.md").read_text()
    assert "Dry run" in summary and "Correctness" in summary and "| smooth | adfwi | 2/3 |" in summary
    json.loads((out / "summary.json").read_text())
    print(f"dry run: {wall:.1f} s")


def test_second_run_skips_finished_items_and_continues_the_reproduction(dry, tmp_path):
    import tarfile

    src, _, _ = dry
    out = tmp_path / "resumed"  # as on a fresh device machine: the archive of the last run, unpacked
    out.mkdir()
    with tarfile.open(src / "state.tar.gz") as tar:
        names = tar.getnames()
        assert "results.jsonl" in names and any(n.endswith("checkpoint.npz") for n in names)
        assert not any("jax_cache" in n or n.endswith(("true.npy", "gather.npz")) for n in names)
        tar.extractall(out)
    n_before = len(_rows(out))
    stdout, wall = _run(out)
    rows = _rows(out)
    new = rows[n_before:]
    assert new[0]["stage"] == "run" and new[0]["id"] == "run/2"
    assert all(i.startswith("repro/") for i in new[0]["todo"]) and new[0]["todo"], new[0]["todo"]
    assert {r["id"] for r in new[1:]} == set(new[0]["todo"]), "only the unfinished items ran"
    for r in new[1:]:
        assert r["status"] == "ok" and r["epochs_done"] == r["epochs_total"], r
        hist = json.loads((out / "repro" / r["scenario"] / "seed0" / "history.json").read_text())
        assert hist["epoch"] == list(range(r["epochs_total"]))  # epochs 0-1 from the checkpoint, then the rest
    assert "skipping" in stdout
    stdout, _ = _run(out)  # nothing left: no child process, same summary
    assert len(_rows(out)) == len(rows) + 1
    print(f"resumed run: {wall:.1f} s")


def test_marmousi_stages_skip_without_data_and_items_skip_past_the_budget(tmp_path):
    device_run, _ = _items()
    args = argparse.Namespace(out=str(tmp_path), dry_run=False, data_dir=None, reference="none.npz",
                              stop_repro_after_epochs=None)
    ctx = device_run.make_context(args, time.time() + 100.0)
    for item in ("epoch/adfwi", "seeds/ig-fwi", "repro/smooth/adfwi"):
        r = device_run.run_item(item, ctx)
        assert r["status"] == "skipped_data" and "JAXFWI_DATA" in r["reason"], r
    assert device_run.run_item("correct/2d", ctx)["status"] == "skipped_missing"
    # with a measured rate, an item whose estimate exceeds what is left is skipped, with the estimate
    device_run.append_result(str(tmp_path), dict(id="prop/marmousi/grad", stage="propagator", status="ok",
                                                 mode="grad", ndim=3, mcells_per_s=1e-3, compile_s=1.0))
    ctx = device_run.make_context(args, time.time() + 60.0)
    r = device_run.run_item("prop/overthrust3d/grad", ctx)
    assert r["status"] == "skipped_budget" and r["estimate_s"] > 60 and "left" in r["reason"], r


def test_budget_too_small_records_why_nothing_ran(tmp_path):
    p = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(tmp_path), "--budget", "5"],
                       capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _rows(tmp_path)[1:]
    assert rows and all(r["status"] == "skipped_budget" and "budget" in r["reason"] for r in rows)


class _FakeGPU:
    platform = "gpu"
    device_kind = "fake"

    def __init__(self, limit, used=0):
        self.limit, self.used = limit, used

    def memory_stats(self):
        return {"bytes_limit": self.limit, "bytes_in_use": self.used, "peak_bytes_in_use": self.used}


def test_devices_defaults():
    from jaxfwi import devices
    from jaxfwi.physics.propagation import default_shot_batch

    pml2, pml3 = ((0, 20), (20, 20)), ((0, 20), (20, 20), (20, 20))
    # CPU: unchanged cache heuristic (also reached through the propagator's name)
    assert default_shot_batch((94, 288), pml2, 8, 13, backend="cpu") is None
    assert devices.default_shot_batch((188, 500), ((20, 20), (20, 20)), 8, 20, backend="cpu") == 4
    # accelerators: all shots while the gradient fits, else equal groups that fit
    big = _FakeGPU(140 * 2**30)
    assert devices.default_shot_batch((94, 288), pml2, 8, 13, nt_internal=2000, device=big) is None
    one = devices.gradient_memory_bytes((60, 160, 160), pml3, 8, 1000, 1)
    assert 1.5 * 2**30 < one < 3 * 2**30  # ~2.3 GB per 3-D Overthrust shot with sqrt(nt) segments
    small = _FakeGPU(int(one * 20 / devices.DEVICE_MEMORY_FRACTION) + 1)
    b = devices.default_shot_batch((60, 160, 160), pml3, 8, 36, nt_internal=1000, device=small)
    assert b == 18  # 20 fit: two equal groups of 18, not 20 + 16
    tiny = _FakeGPU(one // 2)
    assert devices.default_shot_batch((60, 160, 160), pml3, 8, 36, nt_internal=1000, device=tiny) == 1
    # no nt, or a device without memory statistics: all shots (never a CPU rule on an accelerator)
    assert devices.default_shot_batch((60, 160, 160), pml3, 8, 36, device=small) is None
    info = devices.memory_info(small)
    assert info.total == small.limit and info.free == small.limit and info.source.startswith("gpu")
    host = devices.memory_info()
    assert host.total is None or host.total > 0
    assert devices.default_checkpoint() is None
    # the estimate's segment arithmetic: storing every step costs far more than sqrt(nt) segments
    full = devices.gradient_memory_bytes((94, 288), pml2, 8, 2000, 1, checkpoint=1)
    sq = devices.gradient_memory_bytes((94, 288), pml2, 8, 2000, 1)
    assert full > 10 * sq
    np.testing.assert_equal(devices.describe()["platform"], "cpu")
