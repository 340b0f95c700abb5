"""Run scenarios: set up data and initial model, invert, store the results.

Layout of a results folder (one directory per scenario without its seed, see
:attr:`Scenario.dir_name`)::

    RESULTS/<dir_name>/
        scenario.json            settings (seed left out), effective acquisition numbers
        true.npy, initial.npy    true and initial model [nz, nx] m/s
        seed<k>/
            velocity.npy         final model [nz, nx] m/s
            history.json         per-epoch loss, misfit, grad_norm, time, mse, mae, ssim (model metrics in km/s)
            metrics.json         final + initial metrics, status, timing, effective settings (written last:
                                 its presence marks the run finished)
            gather.npz           middle shot: observed and final synthetic data (for residual figures)
        ckpt_seeds-<k>-<l>/      checkpoint of an unfinished run (removed when it finishes)
        record.npz               compact record of the finished seeds (:mod:`jaxfwi.experiments.records`:
                                 float16 model updates, histories, metrics; no true model), rewritten
                                 when a seed finishes; also copied to ``records_dir`` when given

Seeds of the same scenario run together in one vmapped program
(:func:`jaxfwi.inversion.invert_seeds`) unless ``vmap_seeds=False``; every seed's result
equals a run on its own. Finished runs are skipped; an interrupted run continues from
its checkpoint (``invert``'s ``checkpoint_dir``) without losing finished epochs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from jaxfwi.experiments.config import Scenario, group_by_seed

__all__ = ["Setup", "prepare", "resolve_preset", "observed_data", "run_scenarios", "is_finished",
           "SYNTHETIC_ACQUISITION", "DataMissing"]

#: the built-in acquisition of ``synthetic:*`` models (small enough for CI)
SYNTHETIC_ACQUISITION = dict(shape=(24, 48), dx=20.0, n_shots=4, src_spacing_m=300.0, f_peak=10.0, dt=2.0e-3,
                             nt=300, free_surface=True, pml_width=10, src_depth=20.0, rec_depth=20.0)
SMOOTH_SIGMA_M = 240.0  # default Gaussian sigma of the smooth / profile initial models, m
NOISE_SALT = 0x5EED
METRICS = ("mse", "mae", "ssim", "psnr")


class DataMissing(RuntimeError):
    """The benchmark model of a scenario is not available (data folder or file missing)."""


@dataclass
class Setup:
    """Everything a scenario needs besides the seed."""
    scenario: Scenario
    preset: Any  # AcquisitionPreset
    freq_scale: float  # peak frequency of this preset / of the paper's preset
    v_true: np.ndarray
    v_init: np.ndarray
    survey: Any  # the full survey, unfiltered wavelet
    d_clean: np.ndarray
    forward: dict  # accuracy, pml_width, free_surface
    bounds: Optional[tuple]

    @property
    def dx(self) -> float:
        return float(self.preset.dx)


# --------------------------------------------------------------------------- set-up


def resolve_preset(sc: Scenario):
    """``(preset, freq_scale)`` of a scenario: the acquisition preset (reduced by ``sc.reduce``,
    overrides applied) and the ratio of its peak frequency to the unreduced preset's."""
    from jaxfwi.datasets import AcquisitionPreset, get_preset  # noqa: PLC0415

    if sc.model.startswith("synthetic:"):
        full = AcquisitionPreset(name=sc.model, data_name=sc.model, **SYNTHETIC_ACQUISITION)
    else:
        full = get_preset(sc.model)
    over = dict(sc.acquisition)  # applied to the reduced preset, in its own units
    p = full.reduced(sc.reduce) if sc.reduce > 1 else full
    if over:
        fields = {f.name for f in dataclasses.fields(p)}
        bad = set(over) - fields
        if bad:
            raise ValueError(f"scenario acquisition overrides {sorted(bad)} are not AcquisitionPreset fields "
                             f"({sorted(fields)}).")
        if "shape" in over:
            over["shape"] = tuple(int(n) for n in over["shape"])
        p = dataclasses.replace(p, **over)
    return p, float(p.f_peak) / float(full.f_peak)


def _true_model(sc: Scenario, preset, data_dir):
    if sc.model.startswith("synthetic:"):
        import jax  # noqa: PLC0415

        from jaxfwi.datasets import synthetic  # noqa: PLC0415

        kind = sc.model.split(":", 1)[1]
        if kind == "default":
            return np.asarray(synthetic.default_model(preset.shape), np.float32)
        fn = getattr(synthetic, kind)
        return np.asarray(fn(preset.shape, jax.random.key(0)), np.float32)
    from jaxfwi.datasets import preset_model  # noqa: PLC0415

    try:
        v, _ = preset_model(preset, data_dir)
    except FileNotFoundError as e:
        raise DataMissing(f"{sc.model}: benchmark model {preset.data_name!r} not found ({e}). Set JAXFWI_DATA or "
                          "pass data_dir=...") from e
    return np.asarray(v, np.float32)


def _initial_model(sc: Scenario, v_true: np.ndarray, dx: float) -> np.ndarray:
    from jaxfwi.models import initial  # noqa: PLC0415

    if sc.init == "smooth":
        sigma_m = SMOOTH_SIGMA_M if sc.init_value is None else sc.init_value
        v0 = initial.smooth(v_true, sigma_m / dx)
    elif sc.init == "profile":
        sigma_m = SMOOTH_SIGMA_M if sc.init_value is None else sc.init_value
        v0 = initial.smoothed_profile(v_true, sigma_m / dx)
    elif sc.init == "linear":
        v0 = initial.linear(v_true.shape, float(v_true[0].mean()), float(v_true[-1].mean()))
    else:
        v0 = initial.constant(v_true.shape, float(v_true.mean()) if sc.init_value is None else sc.init_value)
    if sc.perturb:
        v0 = initial.perturb(v0, sc.perturb)
    return np.asarray(v0, np.float32)


def _survey(preset):
    import jaxfwi  # noqa: PLC0415

    w = jaxfwi.ricker(preset.f_peak, preset.nt, preset.dt)
    src = [[[preset.src_depth_cells, x]] for x in preset.src_x_cells]
    rec_line = [[preset.rec_depth_cells, x] for x in preset.rec_x_cells]
    rec = [rec_line] * preset.n_shots
    return jaxfwi.Survey(np.asarray(src), np.asarray(rec), w, preset.dt)


_DATA_CACHE: dict = {}


@contextlib.contextmanager
def _expected_warnings():
    """Silence only the forward model's notes the runner expects on the papers' presets: the
    CFL substeps (``dt`` of the published acquisitions is above the stability limit at reduced
    grids) and a coarse grid (reduced presets). Every other warning is shown."""
    from jaxfwi.physics import CoarseGridWarning, SubstepWarning  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubstepWarning)
        warnings.simplefilter("ignore", CoarseGridWarning)
        yield


def _clean_data(key, v_true, dx, survey, fwd, max_vel):
    import jaxfwi  # noqa: PLC0415

    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 4:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        with _expected_warnings():
            d = np.array(jaxfwi.forward(v_true, dx, survey, max_vel=max_vel, **fwd))
            d.setflags(write=False)  # shared by every scenario of the process: no caller may change it in place
            _DATA_CACHE[key] = d
    return _DATA_CACHE[key]


def data_max_velocity(v_true) -> float:
    """``max_vel`` (m/s) of the clean observed data: ``round(1.15 * max(v_true), 1)``, a function of the true
    model alone, so a scenario's data never depend on its initial model or on the scenarios run before it."""
    return round(1.15 * float(np.max(v_true)), 1)


def _options(sc: Scenario) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sc.options}


def prepare(sc: Scenario, data_dir=None) -> Setup:
    """True model, initial model, survey and clean observed data of a scenario (no seed needed).

    Raises :class:`DataMissing` when the benchmark model cannot be found.
    """
    preset, freq_scale = resolve_preset(sc)
    v_true = _true_model(sc, preset, data_dir)
    v_init = _initial_model(sc, v_true, preset.dx)
    opts = _options(sc)
    fwd = {"accuracy": int(opts.get("accuracy", 8)), "pml_width": int(preset.pml_width),
           "free_surface": bool(preset.free_surface)}
    bounds = opts.get("bounds", "auto")
    if isinstance(bounds, str) and bounds == "auto":
        lo = 0.8 * float(min(v_true.min(), v_init.min()))
        hi = 1.15 * float(max(v_true.max(), v_init.max()))
        bounds = (round(lo, 1), round(hi, 1))
    elif bounds is not None:
        bounds = tuple(float(b) for b in bounds)
    survey = _survey(preset)

    # The observed data are the true model's physics: their internal time step (set by max_vel) must not
    # depend on the initial model or on which scenario filled the cache first. 1.15 x the true maximum,
    # rounded as the auto bounds are, equals the auto upper bound whenever the initial model is not faster
    # than the true one (before, the first scenario of a process set it for all that followed).
    data_max_vel = data_max_velocity(v_true)
    key = (sc.model, sc.reduce, sc.acquisition, fwd["accuracy"], fwd["pml_width"], fwd["free_surface"],
           data_max_vel, hashlib.sha1(np.ascontiguousarray(v_true).tobytes()).hexdigest())  # the model's values too
    d_clean = _clean_data(key, v_true, preset.dx, survey, fwd, data_max_vel)
    return Setup(scenario=sc, preset=preset, freq_scale=freq_scale, v_true=v_true, v_init=v_init, survey=survey,
                 d_clean=d_clean, forward=fwd, bounds=bounds)


def observed_data(setup: Setup, seeds: Iterable[int]):
    """``(d_obs, survey, info)`` of the data condition: noise (one draw per seed: ``d_obs`` is
    ``[n_seeds, n_shots, n_rec, nt]`` then, else ``[n_shots, n_rec, nt]``), high-pass of data *and*
    wavelet, shot decimation. ``info`` holds the effective numbers (Hz after frequency scaling)."""
    import jax  # noqa: PLC0415

    from jaxfwi import signal  # noqa: PLC0415

    sc = setup.scenario
    seeds = list(seeds)
    d = setup.d_clean
    survey = setup.survey
    info: dict = {"noise_k": sc.noise}
    if sc.noise > 0:
        sigma0 = float(np.std(d))
        d = np.stack([np.asarray(signal.add_noise(d, jax.random.fold_in(jax.random.key(s), NOISE_SALT), sc.noise,
                                                  sigma0=sigma0)) for s in seeds])
        info["sigma0"] = sigma0
    if sc.highpass > 0:
        f = sc.highpass * setup.freq_scale
        d = np.asarray(signal.highpass(d, f, survey.dt))
        survey = survey.with_wavelet(signal.highpass(survey.wavelet, f, survey.dt))
        info["highpass_hz"] = f
    if sc.shots:
        if sc.shots > survey.n_shots:
            raise ValueError(f"scenario {sc.dir_name}: shots={sc.shots} but the acquisition has only "
                             f"{survey.n_shots} shots.")
        idx = signal.decimate_shots(survey.n_shots, sc.shots)
        d = d[..., idx, :, :]
        survey = survey.select(idx)
        info["shot_indices"] = idx.tolist()
    return d, survey, info


# --------------------------------------------------------------------------- bookkeeping


def is_finished(seed_dir) -> bool:
    p = Path(seed_dir) / "metrics.json"
    if not p.exists():
        return False
    try:
        with open(p) as f:
            return json.load(f).get("status") in ("ok", "diverged")
    except (OSError, ValueError):
        return False


def _atomic_json(path, obj):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def _atomic_npy(path, arr):
    tmp = str(path) + ".tmp.npy"
    np.save(tmp, np.asarray(arr))
    os.replace(tmp, path)


def _float(x):
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- running


def _method_lr(sc: Scenario) -> float:
    from jaxfwi.inversion import method_defaults  # noqa: PLC0415

    return method_defaults(sc.method)["learning_rate"] * sc.lr_scale


def _invert_kwargs(setup: Setup, info: dict) -> dict:
    from jaxfwi.methods import get as get_method  # noqa: PLC0415
    from jaxfwi.signal import multiscale_bands  # noqa: PLC0415

    sc = setup.scenario
    opts = _options(sc)
    opts.pop("bounds", None)
    opts.pop("accuracy", None)
    kw = dict(setup.forward)
    kw["learning_rate"] = _method_lr(sc)
    if setup.bounds:
        kw["bounds"] = setup.bounds
        kw["max_vel"] = setup.bounds[1]
    else:  # bounds=null: none (invert's default would clip to 1.25 x the initial model's maximum)
        kw["bounds"] = None
    if get_method(sc.method).multiscale is True and "multiscale" not in opts:  # the MS-FWI bands, rescaled
        bands = [round(b * setup.freq_scale, 4) for b in multiscale_bands()]
        kw["multiscale"] = bands
        info["multiscale_hz"] = bands
    if sc.strategy == "pretrain":
        kw["mode"] = "none"
        kw["pretrain"] = sc.pretrain_steps
    kw.update(opts)
    return kw


def _per_seed(history: dict, i: int, n_seeds: Optional[int]) -> dict:
    out = {}
    for k, v in history.items():
        a = np.asarray(v)
        if n_seeds is not None and a.ndim >= 2:
            a = a[i]
        out[k] = [(_float(x) if np.issubdtype(np.asarray(x).dtype, np.floating) else int(x)) for x in a.ravel()]
    return out


def _write_scenario_files(root: Path, setup: Setup):
    root.mkdir(parents=True, exist_ok=True)
    p = setup.preset
    info = {"scenario": setup.scenario.settings(), "dir_name": setup.scenario.dir_name,
            "acquisition": dataclasses.asdict(p), "freq_scale": setup.freq_scale, "forward": setup.forward,
            "bounds": setup.bounds, "learning_rate": _method_lr(setup.scenario)}
    _atomic_json(root / "scenario.json", info)
    if not (root / "true.npy").exists():
        _atomic_npy(root / "true.npy", setup.v_true)
    if not (root / "initial.npy").exists():
        _atomic_npy(root / "initial.npy", setup.v_init)


def _mid_gather(setup, survey, v, kw):
    import jaxfwi  # noqa: PLC0415

    from jaxfwi.inversion.config import MAX_VEL_MARGIN  # noqa: PLC0415

    mid = survey.n_shots // 2
    fwd = dict(setup.forward)
    fwd["max_vel"] = kw.get("max_vel", None) or MAX_VEL_MARGIN * float(np.max(v))
    fwd["max_vel"] = max(fwd["max_vel"], float(np.max(v)))
    with _expected_warnings():
        return np.asarray(jaxfwi.forward(v, setup.dx, survey.select(np.asarray([mid])), **fwd))[0], mid


def _write_seed(root: Path, setup: Setup, sc: Scenario, *, velocity, history, status, wall_s, info, kw, d_obs_seed,
                survey, n_params, error=None, together=1):
    from jaxfwi import metrics  # noqa: PLC0415

    sd = root / f"seed{sc.seed}"
    sd.mkdir(parents=True, exist_ok=True)
    init_m = metrics.all_metrics(setup.v_init, setup.v_true)
    final_m = None
    if velocity is not None:
        _atomic_npy(sd / "velocity.npy", np.asarray(velocity, np.float32))
        final_m = metrics.all_metrics(velocity, setup.v_true) if np.all(np.isfinite(velocity)) else None
        try:
            syn, mid = _mid_gather(setup, survey, velocity, kw)
            np.savez(sd / "gather.npz", observed=np.asarray(d_obs_seed[mid], np.float32),
                     synthetic=syn.astype(np.float32), dt=survey.dt, shot=mid)
        except Exception as e:  # a figure helper must not lose a finished run
            warnings.warn(f"{sd}: could not model the residual gather ({e})", stacklevel=2)
    _atomic_json(sd / "history.json", history)
    times = history.get("time", [])
    per_epoch = float(np.median(times[1:])) if len(times) > 1 else (float(times[0]) if times else None)
    if per_epoch is not None:
        per_epoch /= together  # seeds run in one vmapped program share the epoch time
    rec = {
        "scenario": sc.settings(with_seed=True), "dir_name": sc.dir_name, "seed": sc.seed,
        "labels": {"model": sc.model_label, "init": sc.init_label, "condition": sc.condition,
                   "method": sc.method_label},
        "status": status, "error": error,
        "final": {k: _float(v) for k, v in final_m.items()} if final_m else {k: None for k in METRICS},
        "initial": {k: _float(v) for k, v in init_m.items()},
        "epochs_done": len(history.get("epoch", [])),
        "wall_s": wall_s, "time_per_epoch_s": per_epoch, "n_together": together, "n_params": n_params,
        "effective": {**info, "learning_rate": kw.get("learning_rate"), "bounds": setup.bounds,
                      "max_vel": kw.get("max_vel"), "f_peak_hz": setup.preset.f_peak, "dt": setup.preset.dt,
                      "nt": setup.preset.nt, "shape": list(setup.preset.shape), "dx": setup.preset.dx,
                      "n_shots": survey.n_shots, "forward": setup.forward},
    }
    _atomic_json(sd / "metrics.json", rec)
    return rec


def _run_group(root: Path, setup: Setup, todo: list[Scenario], *, vmap_seeds, progress, checkpoint_every, log,
               callback=None):
    import jax  # noqa: PLC0415

    from jaxfwi.inversion import NonFiniteLossError, invert, invert_seeds  # noqa: PLC0415
    from jaxfwi.models import count_params  # noqa: PLC0415

    sc0 = todo[0]
    seeds = [sc.seed for sc in todo]
    d_obs, survey, info = observed_data(setup, seeds)
    per_seed_data = sc0.noise > 0
    kw = _invert_kwargs(setup, info)
    common = dict(method=sc0.method, epochs=sc0.epochs, v_true=setup.v_true, progress=progress,
                  checkpoint_every=checkpoint_every, callback=callback, **kw)
    records = []

    def one(i, sc):
        ck = root / f"ckpt_seeds-{sc.seed}"
        d = d_obs[i] if per_seed_data else d_obs
        t0 = time.perf_counter()
        try:
            with _expected_warnings():
                res = invert(d, survey, setup.dx, setup.v_init, key=jax.random.key(sc.seed), checkpoint_dir=ck,
                             **common)
        except NonFiniteLossError as e:
            hist = _per_seed(e.history, 0, None)
            log(f"  seed {sc.seed}: diverged at epoch {e.epoch}")
            rec = _write_seed(root, setup, sc, velocity=None, history=hist, status="diverged",
                              wall_s=time.perf_counter() - t0, info=info, kw=kw, d_obs_seed=d, survey=survey,
                              n_params=None, error=str(e).split(". ")[0])
        else:
            rec = _write_seed(root, setup, sc, velocity=res.velocity, history=_per_seed(res.history, 0, None),
                              status="ok", wall_s=time.perf_counter() - t0, info=info, kw=kw, d_obs_seed=d,
                              survey=survey, n_params=count_params(res.params))
        shutil.rmtree(ck, ignore_errors=True)
        return rec

    twin_of = {}
    if len(todo) > 1 and _seed_independent(setup, [sc.seed for sc in todo]):
        # identical initial params and data for every seed (e.g. grid methods on clean data, where the
        # shot order of a full-batch epoch only changes float rounding): run the first seed only
        log(f"  seeds {seeds} start from identical params and data: running seed {seeds[0]}, copying it")
        twin_of = {sc.seed: todo[0] for sc in todo[1:]}
        todo = todo[:1]
        seeds = seeds[:1]
        d_obs = d_obs[:1] if per_seed_data else d_obs
    if len(todo) > 1 and vmap_seeds:
        ck = root / ("ckpt_seeds-" + "-".join(str(s) for s in seeds))
        keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
        t0 = time.perf_counter()
        try:
            with _expected_warnings():
                res = invert_seeds(d_obs, survey, setup.dx, setup.v_init, keys=keys, checkpoint_dir=ck, **common)
        except NonFiniteLossError as e:
            log(f"  seeds {seeds} together diverged at epoch {e.epoch} ({str(e).split('.')[0]}); "
                "running them one by one")
            shutil.rmtree(ck, ignore_errors=True)
        else:
            wall = (time.perf_counter() - t0) / len(todo)
            n_par = count_params(res.params) // len(todo)
            for i, sc in enumerate(todo):
                d_i = d_obs[i] if per_seed_data else d_obs
                records.append(_write_seed(root, setup, sc, velocity=res.velocity[i],
                                           history=_per_seed(res.history, i, len(todo)), status="ok", wall_s=wall,
                                           info=info, kw=kw, d_obs_seed=d_i, survey=survey, n_params=n_par,
                                           together=len(todo)))
            shutil.rmtree(ck, ignore_errors=True)
            return records + _copy_twins(root, twin_of, records)
    for i, sc in enumerate(todo):
        records.append(one(i, sc))
    return records + _copy_twins(root, twin_of, records)


def _seed_independent(setup: Setup, seeds) -> bool:
    """True when every seed would start from the same params and see the same data (the runs then
    differ at most by the float rounding of the shot order within a full-batch epoch)."""
    import jax  # noqa: PLC0415

    from jaxfwi import models  # noqa: PLC0415

    sc = setup.scenario
    opts = _options(sc)
    if sc.noise > 0 or opts.get("updates_per_epoch", 1) != 1 or opts.get("shot_batch") is not None:
        return False
    if sc.strategy != "denorm":
        return False
    build_opts = {k: v for k, v in opts.items() if k not in ("accuracy", "bounds", "multiscale", "misfit",
                                                               "regularizer", "clip_norm", "shot_order")}
    try:
        param = models.build(sc.method, setup.v_init, **build_opts)
    except (TypeError, ValueError):
        return False
    from jaxfwi.inversion.config import run_keys  # noqa: PLC0415

    p0 = param.init(run_keys(jax.random.key(seeds[0]))[0])
    for s in seeds[1:]:
        p1 = param.init(run_keys(jax.random.key(s))[0])
        if not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                   zip(jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(p1))):
            return False
    return True


def _copy_twins(root: Path, twin_of: dict, records: list) -> list:
    out = []
    for seed, src_sc in twin_of.items():
        src = root / f"seed{src_sc.seed}"
        dst = root / f"seed{seed}"
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("velocity.npy", "history.json", "gather.npz"):
            if (src / name).exists():
                shutil.copyfile(src / name, dst / name)
        with open(src / "metrics.json") as f:
            rec = json.load(f)
        rec["seed"] = seed
        rec["scenario"]["seed"] = seed
        rec["copied_from_seed"] = src_sc.seed
        _atomic_json(dst / "metrics.json", rec)
        out.append(rec)
    return out


def run_scenarios(scenarios: Iterable[Scenario], results_dir, *, data_dir=None, vmap_seeds: bool = True,
                  progress: bool = True, checkpoint_every: int = 5, dry_run: bool = False,
                  log: Callable[[str], Any] = print, stop_after_s: float | None = None,
                  callback=None, records_dir=None) -> list[dict]:
    """Run every scenario that has no finished result in ``results_dir`` yet.

    Args:
      scenarios: :class:`Scenario` objects (e.g. from :func:`load_config` or :func:`expand_grid`).
      results_dir: results folder (created); see the module docs for the layout.
      data_dir: benchmark data folder (default: ``$JAXFWI_DATA`` or the shared folder); scenarios
        whose model is missing are skipped with a ``skipped`` record.
      vmap_seeds: run the seeds of a scenario in one vmapped program (``invert_seeds``).
      progress: tqdm bars.
      checkpoint_every: epochs between checkpoints (an interrupted run resumes from the last).
      dry_run: only report what would run.
      log: where progress lines go.
      stop_after_s: do not *start* a new scenario after this many seconds (finished ones are kept;
        call again to continue).
      callback: passed to :func:`jaxfwi.inversion.invert` (``callback(epochs_done, params)``); raising
        ``KeyboardInterrupt`` in it interrupts the run with a checkpoint saved (used by the tests).
      records_dir: also write each scenario's record (``<dir_name>.npz``) here as it finishes.

    Returns:
      one record per scenario and seed: the ``metrics.json`` content for runs done now or earlier,
      with ``"state"`` = ``"done"``, ``"skipped_finished"`` (also after restoring a committed record of
      ``records_dir``), ``"skipped_record"`` (dry run, finished in a record), ``"skipped_data"``, ``"pending"`` (dry run
      or out of time).
    """
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    groups = group_by_seed(scenarios)
    out: list[dict] = []
    t_start = time.perf_counter()
    for n, (name, scs) in enumerate(groups.items(), 1):
        gdir = root / name
        todo = [sc for sc in scs if not is_finished(gdir / f"seed{sc.seed}")]
        rec_meta = _covering_record(records_dir, name, todo, len(todo) == len(scs))
        if rec_meta is not None:
            if dry_run:
                held = [sc for sc in todo if str(sc.seed) in rec_meta["seeds"]]
                out.extend({**rec_meta["seeds"][str(sc.seed)]["metrics"], "state": "skipped_record"} for sc in held)
                todo = [sc for sc in todo if sc not in held]
                if not todo:
                    log(f"[{n}/{len(groups)}] {name}: finished (record), skipped")
                    continue
                scs = [sc for sc in scs if sc not in held]
            else:
                _restore_record(records_dir, name, root, data_dir, log)
                todo = [sc for sc in scs if not is_finished(gdir / f"seed{sc.seed}")]
        for sc in scs:
            if sc not in todo:
                with open(gdir / f"seed{sc.seed}" / "metrics.json") as f:
                    out.append({**json.load(f), "state": "skipped_finished"})
        if not todo:
            log(f"[{n}/{len(groups)}] {name}: finished, skipped")
            if records_dir is not None and not (Path(records_dir) / f"{name}.npz").exists():
                _record(gdir, records_dir, log)
            continue
        done_epochs = _checkpoint_progress(gdir)
        at = "" if done_epochs is None else f", checkpoint at epoch {done_epochs} of {todo[0].epochs}"
        if dry_run or (stop_after_s is not None and time.perf_counter() - t_start > stop_after_s):
            log(f"[{n}/{len(groups)}] {name}: pending (seeds {[sc.seed for sc in todo]}{at})")
            out.extend({"dir_name": name, "seed": sc.seed, "state": "pending",
                        **({} if done_epochs is None else {"epochs_done": done_epochs})} for sc in todo)
            continue
        try:
            setup = prepare(todo[0], data_dir)
        except DataMissing as e:
            log(f"[{n}/{len(groups)}] {name}: skipped, {e}")
            out.extend({"dir_name": name, "seed": sc.seed, "state": "skipped_data", "error": str(e)} for sc in todo)
            continue
        _write_scenario_files(gdir, setup)
        log(f"[{n}/{len(groups)}] {name}: seeds {[sc.seed for sc in todo]}"
            + ("" if done_epochs is None else f" (resuming at epoch {done_epochs} of {todo[0].epochs})"))
        t0 = time.perf_counter()
        recs = _run_group(gdir, setup, todo, vmap_seeds=vmap_seeds, progress=progress,
                          checkpoint_every=checkpoint_every, log=log, callback=callback)
        for r in recs:
            f = r["final"]
            log(f"  seed {r['seed']}: {r['status']}, MSE {f['mse']}, SSIM {f['ssim']} "
                f"(initial MSE {r['initial']['mse']:.4f}), {r['time_per_epoch_s'] or 0:.2f} s/epoch")
        log(f"  {time.perf_counter() - t0:.1f} s")
        _record(gdir, records_dir, log)
        out.extend({**r, "state": "done"} for r in recs)
    return out


def _checkpoint_progress(gdir: Path) -> Optional[int]:
    """Epochs done by the furthest checkpoint in a scenario folder (``ckpt_*/``), or None without one."""
    from jaxfwi.inversion.checkpoints import checkpoint_epochs

    if not gdir.is_dir():
        return None
    done = [e for p in sorted(gdir.glob("ckpt_*")) if (e := checkpoint_epochs(p)) is not None]
    return max(done) if done else None


def _covering_record(records_dir, name: str, todo, nothing_finished: bool) -> Optional[dict]:
    """The meta of ``records_dir/<name>.npz`` (a scenario finished in an earlier session whose raw
    runs are gone) when restoring it saves work: it holds every seed still to do, or some of them and
    no seed of the scenario folder has finished (restoring replaces the folder). Else None."""
    if records_dir is None or not todo:
        return None
    path = Path(records_dir) / f"{name}.npz"
    if not path.exists():
        return None
    from jaxfwi.experiments.records import read_record  # noqa: PLC0415

    meta, _ = read_record(path)
    held = [str(sc.seed) in meta.get("seeds", {}) for sc in todo]
    if all(held) or (any(held) and nothing_finished):
        return meta
    return None


def _restore_record(records_dir, name: str, root: Path, data_dir, log):
    """Rebuild a finished scenario folder from its committed record instead of running it again."""
    from jaxfwi.experiments.records import restore_records  # noqa: PLC0415

    info = restore_records([Path(records_dir) / f"{name}.npz"], root, data_dir=data_dir, log=log)
    if name in info["restored"]:
        log(f"  {name}: restored from its record")


def _record(gdir: Path, records_dir, log):
    from jaxfwi.experiments.records import write_record  # noqa: PLC0415

    try:
        write_record(gdir)
        if records_dir is not None:
            write_record(gdir, Path(records_dir) / f"{gdir.name}.npz")
    except Exception as e:  # noqa: BLE001 - a record must not lose a finished run
        log(f"  record not written ({e})")
