"""Compact, committable run records: one ``.npz`` per scenario, from which a results folder
(and so every table and figure of :func:`~jaxfwi.experiments.build_report`) can be rebuilt.

A raw results folder (:mod:`jaxfwi.experiments.runner`) holds the true and initial models,
which for the benchmark presets are (derived from) third-party data, plus float32 final
models and JSON histories. A **record** keeps only what the data folder cannot give back:

* ``meta``: JSON text: the scenario settings, ``scenario.json`` and every seed's
  ``metrics.json`` verbatim (final and initial MSE/MAE/SSIM/PSNR computed at run time
  against the true model, status, timing, effective settings), plus summary numbers of the
  initial model to check the one rebuilt at restore time;
* ``seed<k>/update``: the final model minus the initial model, **float16** (m/s). Rebuilt as
  ``initial + float32(update)``: the error is at most half a float16 step of the update,
  ``|update| * 2**-11`` (0.5 m/s for a 1000 m/s update, less for smaller ones);
* ``seed<k>/history/<key>``: every per-epoch history series (loss, misfit, grad_norm,
  time, mse, mae, ssim, ...), float32;
* seeds that are copies of another seed (grid methods on clean data) only point to it.

The true model is never stored: :func:`restore_records` rebuilds it (and the initial model)
from the data folder with the same code the runner used (``synthetic:*`` models need no
data), writes the results-folder layout the report reads, and re-models the middle-shot
gathers of the residual figures when asked. The tables come from the stored metrics, so
they rebuild exactly; :func:`restore_records` also recomputes the metrics from the rebuilt
float16 models and reports the largest deviation (the precision loss of the record).

Records are written with a fixed zip timestamp, so an unchanged run gives the same bytes
(no git noise on re-export).
"""
from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

__all__ = ["RECORD_FORMAT", "write_record", "export_records", "read_record", "restore_records", "record_size"]

RECORD_FORMAT = "jaxfwi-run-record/1"
_DATE = (2020, 1, 1, 0, 0, 0)


def _load_json(p: Path):
    with open(p) as f:
        return json.load(f)


def _model_summary(v) -> dict:
    v = np.asarray(v, np.float64)
    return {"shape": list(v.shape), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}


def _write_npz(path: Path, arrays: dict):
    """``np.savez_compressed`` with a fixed timestamp (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def _history_arrays(h: dict) -> dict:
    out = {}
    for k, v in h.items():
        a = np.asarray([np.nan if x is None else x for x in v], np.float64)
        if k == "epoch":
            if np.array_equal(a, np.arange(len(a))):
                out[k] = np.asarray([len(a)], np.int32)  # just the count
                continue
            out[k] = a.astype(np.int32)
        elif np.all(np.isfinite(a)) and np.all(a == np.round(a)) and k in ("at_lower", "at_upper"):
            out[k] = a.astype(np.int32)
        else:
            out[k] = a.astype(np.float32)
    return out


def write_record(group_dir, path=None) -> Optional[Path]:
    """Write the record of one scenario folder (its finished seeds) to ``path`` (default
    ``<group_dir>/record.npz``). Returns the path, or None when no seed has finished."""
    g = Path(group_dir)
    seeds = []
    for sd in sorted(g.glob("seed*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1):
        if (sd / "metrics.json").exists():
            m = _load_json(sd / "metrics.json")
            if m.get("status") in ("ok", "diverged"):
                seeds.append((sd, m))
    if not seeds or not (g / "scenario.json").exists() or not (g / "initial.npy").exists():
        return None
    v0 = np.load(g / "initial.npy").astype(np.float32)
    meta = {"format": RECORD_FORMAT, "dir_name": g.name, "scenario_json": _load_json(g / "scenario.json"),
            "initial_summary": _model_summary(v0), "seeds": {}}
    arrays = {}
    for sd, m in seeds:
        k = int(m["seed"])
        entry = {"metrics": m, "has_update": False}
        if m.get("copied_from_seed") is None:
            if (sd / "velocity.npy").exists():
                v = np.load(sd / "velocity.npy").astype(np.float32)
                arrays[f"seed{k}/update"] = (v - v0).astype(np.float16)
                entry["has_update"] = True
                entry["update_max_abs"] = float(np.max(np.abs(v - v0)))
            if (sd / "history.json").exists():
                for key, a in _history_arrays(_load_json(sd / "history.json")).items():
                    arrays[f"seed{k}/history/{key}"] = a
        meta["seeds"][str(k)] = entry
    out = Path(path) if path is not None else g / "record.npz"
    _keep_recorded_seeds(out, g.name, meta, arrays)
    arrays = {"meta": np.asarray(json.dumps(meta, sort_keys=True)), **arrays}
    _write_npz(out, arrays)
    return out


def _keep_recorded_seeds(path: Path, dir_name: str, meta: dict, arrays: dict):
    """Add to ``meta`` / ``arrays`` the seeds that an existing record of the same scenario at ``path``
    holds and the folder does not (e.g. seed 0, run in an earlier session whose raw runs are gone,
    when this session ran seeds 1 and 2): writing the record must not drop a finished seed."""
    if not path.exists():
        return
    try:
        old_meta, old_arrays = read_record(path)
    except (OSError, ValueError, KeyError):
        return
    if old_meta.get("dir_name") != dir_name:
        return
    for k, entry in old_meta.get("seeds", {}).items():
        if k not in meta["seeds"]:
            meta["seeds"][k] = entry
            arrays.update({a: v for a, v in old_arrays.items() if a.startswith(f"seed{k}/")})
    meta["seeds"] = {k: meta["seeds"][k] for k in sorted(meta["seeds"], key=int)}


def read_record(path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a record (arrays keyed as stored, e.g. ``seed0/update``)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: not a {RECORD_FORMAT} record (format {meta.get('format')!r})")
    return meta, arrays


def export_records(results_dir, out_dir, *, only: Optional[Callable[[str], bool]] = None) -> list[Path]:
    """Write a record for every scenario folder of ``results_dir`` with a finished seed to
    ``out_dir/<dir_name>.npz`` (``only(dir_name)`` filters). Unchanged records keep their bytes."""
    out = []
    for g in sorted(Path(results_dir).iterdir()):
        if not g.is_dir() or (only is not None and not only(g.name)):
            continue
        p = write_record(g, Path(out_dir) / f"{g.name}.npz")
        if p is not None:
            out.append(p)
    return out


def record_size(records_dir) -> int:
    """Total bytes of the ``*.npz`` records in a folder."""
    return sum(p.stat().st_size for p in Path(records_dir).glob("*.npz"))


def _history_dict(arrays: dict, seed: int) -> dict:
    pre = f"seed{seed}/history/"
    h = {}
    for k, a in arrays.items():
        if k.startswith(pre):
            name = k[len(pre):]
            if name == "epoch" and a.size == 1:
                h[name] = list(range(int(a[0])))
            elif np.issubdtype(a.dtype, np.integer):
                h[name] = [int(x) for x in a]
            else:
                h[name] = [float(x) if np.isfinite(x) else None for x in a.astype(np.float64)]
    if "epoch" in h:  # the runner's key order: epoch first
        h = {"epoch": h.pop("epoch"), **h}
    return h


def _atomic_json(path: Path, obj):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    tmp.replace(path)


def restore_records(records: Iterable | str | Path, runs_dir, *, data_dir=None,
                    gathers: bool | Callable[[dict], bool] = False, log: Callable[[str], object] = print) -> dict:
    """Rebuild a results folder (the runner's layout) from records.

    Args:
      records: a folder of ``*.npz`` records, or an iterable of record paths.
      runs_dir: results folder to write (created; existing scenario folders of the same name
        are replaced).
      data_dir: benchmark data folder (default ``$JAXFWI_DATA`` or the shared folder). Records of a
        model that is missing there are skipped (logged, listed under ``"skipped"``).
      gathers: re-model the middle-shot observed / synthetic gathers of the residual figures
        (``True``, or a predicate on the first seed's ``metrics.json``); needs the clean data of
        the scenario, i.e. one forward run of all shots.
      log: where messages go.

    Returns:
      ``{"restored": [dir_names], "skipped": {dir_name: reason}, "max_metric_error": {metric: largest
      |metric(rebuilt model) - stored metric| over all seeds}, "max_initial_error": largest relative
      deviation of the rebuilt initial model's summary numbers}``.
    """
    from jaxfwi import metrics  # noqa: PLC0415
    from jaxfwi.experiments.config import Scenario  # noqa: PLC0415
    from jaxfwi.experiments.runner import (DataMissing, _initial_model, _true_model,  # noqa: PLC0415
                                           resolve_preset)

    if isinstance(records, (str, Path)):
        paths = sorted(Path(records).glob("*.npz"))
    else:
        paths = [Path(p) for p in records]
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    restored, skipped = [], {}
    max_err = {"mse": 0.0, "mae": 0.0, "ssim": 0.0, "psnr": 0.0}
    max_init = 0.0
    for p in paths:
        meta, arrays = read_record(p)
        name = meta["dir_name"]
        info = meta["scenario_json"]
        sc = Scenario.from_dict(info["scenario"])
        if sc.dir_name != name:
            warnings.warn(f"{p.name}: the scenario's directory name is now {sc.dir_name!r} (recorded {name!r}); "
                          "restoring under the recorded name", stacklevel=2)
        preset, _ = resolve_preset(sc)
        try:
            v_true = _true_model(sc, preset, data_dir)
        except DataMissing as e:
            skipped[name] = str(e)
            log(f"restore: {name}: skipped, {e}")
            continue
        v_init = _initial_model(sc, v_true, preset.dx)
        want = meta["initial_summary"]
        got = _model_summary(v_init)
        if got["shape"] != want["shape"]:
            raise ValueError(f"{p.name}: rebuilt initial model has shape {got['shape']}, recorded {want['shape']}")
        dev = max(abs(got[k] - want[k]) / max(abs(want[k]), 1.0) for k in ("mean", "std", "min", "max"))
        max_init = max(max_init, dev)
        if dev > 1e-4:
            raise ValueError(f"{p.name}: the initial model rebuilt from the data folder differs from the recorded "
                             f"one (relative deviation {dev:.2e} of its mean/std/min/max): another data file?")
        g = root / name
        if g.exists():
            shutil.rmtree(g)
        g.mkdir(parents=True)
        _atomic_json(g / "scenario.json", info)
        np.save(g / "true.npy", v_true.astype(np.float32))
        np.save(g / "initial.npy", v_init.astype(np.float32))
        vels = {}
        for seed_s, entry in sorted(meta["seeds"].items(), key=lambda kv: int(kv[0])):
            seed = int(seed_s)
            m = entry["metrics"]
            sd = g / f"seed{seed}"
            sd.mkdir()
            src = m.get("copied_from_seed")
            src_seed = seed if src is None else int(src)
            if f"seed{src_seed}/update" in arrays:
                v = (v_init.astype(np.float32) + arrays[f"seed{src_seed}/update"].astype(np.float32))
                np.save(sd / "velocity.npy", v)
                vels[seed] = v
                if src is None and m.get("final", {}).get("mse") is not None:
                    fm = metrics.all_metrics(v, v_true)
                    for k in max_err:
                        if m["final"].get(k) is not None:
                            max_err[k] = max(max_err[k], abs(float(fm[k]) - m["final"][k]))
            _atomic_json(sd / "history.json", _history_dict(arrays, src_seed))
            _atomic_json(sd / "metrics.json", m)
        want_g = gathers(next(iter(meta["seeds"].values()))["metrics"]) if callable(gathers) else bool(gathers)
        if want_g and vels:
            _restore_gathers(sc, g, vels, meta, data_dir, log)
        restored.append(name)
    return {"restored": restored, "skipped": skipped, "max_metric_error": max_err, "max_initial_error": max_init}


def _restore_gathers(sc, g: Path, vels: dict, meta: dict, data_dir, log):
    """Middle-shot observed and synthetic gathers, re-modelled as the runner did."""
    from jaxfwi.experiments.runner import _invert_kwargs, _mid_gather, observed_data, prepare  # noqa: PLC0415

    try:
        setup = prepare(sc, data_dir)
    except Exception as e:  # noqa: BLE001 - a figure helper must not stop the restore
        log(f"restore: {g.name}: no gathers ({e})")
        return
    seeds = sorted(vels)
    d_obs, survey, info = observed_data(setup, seeds)
    kw = _invert_kwargs(setup, dict(info))
    for i, seed in enumerate(seeds):
        d = d_obs[i] if sc.noise > 0 else d_obs
        try:
            syn, mid = _mid_gather(setup, survey, vels[seed], kw)
        except Exception as e:  # noqa: BLE001
            log(f"restore: {g.name} seed {seed}: no gather ({e})")
            continue
        np.savez(g / f"seed{seed}" / "gather.npz", observed=np.asarray(d[mid], np.float32),
                 synthetic=syn.astype(np.float32), dt=survey.dt, shot=mid)
