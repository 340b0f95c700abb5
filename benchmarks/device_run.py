"""The prepared device run: correctness, propagator timings, method epochs, then the full-size
Marmousi block, within a wall-clock budget, resumable.

    python benchmarks/device_run.py --out benchmarks/out/gpu                  # 540 s on jax.devices()
    python benchmarks/device_run.py --out benchmarks/out/gpu --budget 300     # shorter
    python benchmarks/device_run.py --dry-run --out /tmp/dry                  # every step at toy size, CPU
    JAXFWI_DATA=/path/to/data python benchmarks/device_run.py ...             # the Marmousi model (else skipped)

Stages, in order (each item is skipped, with the reason recorded, when its estimated time does not fit
in what is left of the budget):

  a. ``correct/2d``, ``correct/3d``: forward data and the gradient of 0.5 ||d(v) - d_obs||^2 of a small
     2-D and 3-D problem against the CPU reference arrays ``benchmarks/reference/device_reference.npz``
     (``benchmarks/device_reference.py`` writes them). float32 tolerances, relative to the largest
     reference value: data max-abs 1e-4, gradient max-abs 1e-3 and cosine >= 0.99999.
  b. ``prop/<case>/<mode>``: the propagator on the cases of ``benchmarks/propagator.py`` (Marmousi
     94 x 288, 13 shots, nt 1000; BP size 188 x 500, 20 shots, nt 2000) and the 3-D Overthrust size of
     CR-FWI (60 x 160 x 160 at 50 m, 36 shots, 12 Hz, dt 2.5 ms, nt 1000, checkpoint="sqrt"); forward and
     exact gradient: compile time, median run, M cell-updates/s (internal steps x padded cells x shots /
     s), XLA's temp memory of the compiled program and the device's peak memory.
  c. ``epoch/<method>``: one epoch (after a compiling one) of every method on the full Marmousi preset
     (CR-FWI App. B.2: 94 x 288, 15 m, 13 shots, 8 Hz, dt 1.9 ms, nt 1000); ``seeds/ig-fwi``: 8 seeds
     vmapped in one program against 8 sequential runs.
  d. ``repro/<init>/<method>``: the full-size Marmousi block (paper's learning rates, 500 epochs from the
     smooth initial model, 1500 from the constant one), methods adfwi, ig-fwi, ifwi, lr-fwi, mpe-fwi,
     ms-fwi, winfwi, adfwi-tv, weci-fwi, through ``jaxfwi.experiments.run_scenarios`` (checkpoints every
     25 epochs and when the budget runs out): the next device run continues where this one stopped.
  e. a summary table (printed, and ``summary.md`` in the output folder).

Output folder (``--out``): ``results.jsonl`` (one JSON object per finished item, appended as it
finishes; a line per invocation with the device), ``summary.json``, ``summary.md``, ``repro/`` (the
runner's folder: holds copies of the Marmousi model, do not commit it), ``jax_cache/`` (XLA's
compilation cache). Re-running with the same ``--out`` skips items whose status is ``ok`` or
``failed`` (``--retry-failed`` re-runs failed ones) and continues the reproduction.

The Marmousi stages need the model ``marmousi/marmousi_94x288.npy`` under ``--data-dir`` or
``$JAXFWI_DATA``; without it they are skipped with the reason. ``--dry-run`` runs every stage at toy
size on the built-in synthetic model (a CPU check of the script, well under a minute).

On a lent device machine (whose returned files must be few and shallow) run in a scratch folder and
bring back one archive; see ``benchmarks/results/gpu/README.md`` for the exact command.

The work runs in a child process (``--isolate``: one per item, so that peak memory is per item); the
parent enforces the deadline, and records an item as failed if the child dies in it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
def _bench(name):
    """A sibling script of this folder as a module (``benchmarks/`` is not a package)."""
    import importlib.util

    key = f"_jaxfwi_benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, os.path.join(HERE, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


DEFAULT_BUDGET_S = 540.0
RESERVE_S = 15.0  # kept back at the end: summary, last checkpoint, process exit
REPRO_CHECKPOINT_EVERY = 25
REPRO_METHODS = ["adfwi", "ig-fwi", "ifwi", "lr-fwi", "mpe-fwi", "ms-fwi", "winfwi", "adfwi-tv", "weci-fwi"]
REPRO_EPOCHS = {"smooth": 500, "constant": 1500}
N_SEEDS = 8
SEED_METHOD = "ig-fwi"
DONE = ("ok", "failed", "timeout")

# the 3-D Overthrust size of CR-FWI (METHODS.md section 5): nz, ny, nx, dx, shots, f0, dt, nt
OVERTHRUST_3D = dict(shape=(60, 160, 160), dx=50.0, n_shots=36, f0=12.0, dt=0.0025, nt=1000, vmin=2000.0,
                     vmax=6000.0)
DRY = dict(
    prop2d=(24, 40, 2, 100, 0.0019, 8.0, 15.0),  # nz, nx, shots, nt, dt, f0, dx (as propagator.CASES)
    prop3d=dict(shape=(10, 12, 12), dx=50.0, n_shots=1, f0=6.0, dt=0.004, nt=40, vmin=2000.0, vmax=4500.0),
    acquisition={"nt": 100},  # on the synthetic preset (24 x 48, 4 shots)
    epoch_methods=["adfwi"],  # the seeds and repro stages reuse its compiled epoch (fastest to compile)
    seed_method="adfwi",
    epochs=2,
    n_seeds=2,
    repro_methods=["adfwi"],
    repro_epochs={"smooth": 3, "constant": 4},
)


# =========================================================================== items


def item_list(dry_run: bool):
    """``[(id, stage)]`` in run order."""
    ALL_METHODS = _bench("inversion").ALL_METHODS  # noqa: N806  (benchmarks/inversion.py)

    items = [("correct/2d", "correctness"), ("correct/3d", "correctness")]
    for case in ("marmousi", "bp"):
        for mode in ("forward", "grad"):
            items.append((f"prop/{case}/{mode}", "propagator"))
    items += [("prop/overthrust3d/forward", "propagator"), ("prop/overthrust3d/grad", "propagator")]
    for m in (DRY["epoch_methods"] if dry_run else ALL_METHODS):
        items.append((f"epoch/{m}", "epochs"))
    items.append((f"seeds/{DRY['seed_method'] if dry_run else SEED_METHOD}", "seeds"))
    for m in (DRY["repro_methods"] if dry_run else REPRO_METHODS):
        for init in ("smooth", "constant"):
            items.append((f"repro/{init}/{m}", "reproduction"))
    return items


# =========================================================================== bookkeeping


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_results(out_dir):
    path = os.path.join(out_dir, "results.jsonl")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for ln in f:
                ln = ln.strip()
                if ln:
                    try:
                        rows.append(json.loads(ln))
                    except ValueError:  # a line cut by a kill: ignore
                        pass
    return rows


def append_result(out_dir, row):
    with open(os.path.join(out_dir, "results.jsonl"), "a") as f:
        f.write(json.dumps(row, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
    except ImportError:
        pass
    return str(x)


def latest(rows):
    """The last row of every item id."""
    out = {}
    for r in rows:
        if "id" in r and r.get("stage") != "run":
            out[r["id"]] = r
    return out


def finished_ids(rows, retry_failed=False):
    done = ("ok",) if retry_failed else DONE
    return {i for i, r in latest(rows).items() if r.get("status") in done}


# =========================================================================== child: measurements


def _block(x):
    import jax

    return jax.block_until_ready(x)


def _mem():
    from jaxfwi import devices

    return devices.memory_info().peak


def _memory_analysis(compiled):
    try:
        ma = compiled.memory_analysis()
        return int(ma.temp_size_in_bytes), int(ma.argument_size_in_bytes + ma.output_size_in_bytes)
    except Exception:  # noqa: BLE001  (not every backend provides it)
        return None, None


def run_correctness(name, ctx):
    ref = _bench("device_reference")

    path = ctx["reference"]
    if not os.path.exists(path):
        return dict(status="skipped_missing", reason=f"no reference arrays at {path}: run python "
                    "benchmarks/device_reference.py on a CPU and commit the npz")
    refs = ref.load(path)[name]
    case = ref.cases()[name]
    v_true, v_smooth = ref.models(case)
    if ref.checksum(v_smooth) != refs["v_checksum"]:
        return dict(status="failed", reason="the models of device_reference.py changed since the npz was written; "
                    "regenerate it (python benchmarks/device_reference.py)")
    t0 = time.perf_counter()
    out = ref.compute(name, timed=not ctx["dry_run"])
    first = out.get("first_s", time.perf_counter() - t0)
    run = out.get("run_s", first)
    c = ref.compare(out, refs)
    import jaxfwi

    s = ref.survey(case)
    plan, _ = jaxfwi.plan_propagation(v_smooth, case["dx"], s, case["accuracy"], case["pml_width"],
                                      case["free_surface"], max_vel=3500.0, warn=False)
    work = _ext_cells(plan) * plan.nt_internal * s.n_shots
    # grad_cell_rate: cell-updates of one gradient per second of compute() (which also models the observed
    # data: a conservative seed for the time estimates of the later items)
    return dict(status="ok" if c["passed"] else "failed", **c, f32_vs_f64_cpu_data=refs["f32_vs_f64_data"],
                f32_vs_f64_cpu_grad=refs["f32_vs_f64_grad"], first_call_s=first, run_s=run,
                shape=list(case["shape"]), nt=case["nt"], ndim=len(case["shape"]),
                work_cells_steps=work, grad_cell_rate=work / max(run, 1e-9), compile_s=max(first - run, 0.0),
                reason=None if c["passed"] else "device result outside the float32 tolerances (see the numbers)")


def _ext_cells(plan):
    return math.prod(n + plan.accuracy for n in plan.padded_shape)


def _linear_model(shape, vmin, vmax):
    import numpy as np

    prof = np.linspace(vmin, vmax, shape[0], dtype=np.float32)
    return np.broadcast_to(prof.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


def prop_problem(case, dry_run):
    """``(v, dx, survey, forward kwargs, description)`` of a propagator case."""
    import numpy as np

    import jaxfwi
    prop = _bench("propagator")  # benchmarks/propagator.py: the case definitions
    CASES, _model = prop.CASES, prop._model  # noqa: N806

    if dry_run:  # the correctness problems: their compiled programs are reused (XLA's compilation cache)
        ref = _bench("device_reference")

        name = "3d" if case == "overthrust3d" else "2d"
        _, v, dx, survey, kw = ref.problem(name)
        return v, dx, survey, kw, f"dry run: the {name} correctness problem"
    if case == "overthrust3d":
        c = DRY["prop3d"] if dry_run else OVERTHRUST_3D
        nz, ny, nx = c["shape"]
        v = _linear_model(c["shape"], c["vmin"], c["vmax"])
        w = jaxfwi.ricker(c["f0"], c["nt"], c["dt"])
        k = int(round(math.sqrt(c["n_shots"])))
        ys = np.round(np.linspace(0, ny - 1, k + 2)[1:-1]).astype(int)
        xs = np.round(np.linspace(0, nx - 1, -(-c["n_shots"] // k) + 2)[1:-1]).astype(int)
        src = np.array([[[1, y, x]] for y in ys for x in xs][: c["n_shots"]])
        ry, rx = np.meshgrid(np.arange(0, ny, 4), np.arange(0, nx, 4), indexing="ij")
        rec_one = np.stack([np.ones(ry.size, int), ry.ravel(), rx.ravel()], -1)
        survey = jaxfwi.Survey(src, np.broadcast_to(rec_one, (len(src),) + rec_one.shape).copy(), w, c["dt"])
        kw = dict(accuracy=8, pml_width=20, free_surface=True, checkpoint="sqrt", max_vel=c["vmax"])
        desc = (f"3-D {nz}x{ny}x{nx} at {c['dx']:g} m, {len(src)} shots, {c['f0']:g} Hz, dt {c['dt']} s, nt "
                f"{c['nt']}, {rec_one.shape[0]} receivers (every 4th cell), free surface, PML 20, checkpoint sqrt")
        return v, c["dx"], survey, kw, desc
    name = "dry" if dry_run else case
    nz, nx, ns, nt, dt, f0, dx = DRY["prop2d"] if dry_run else CASES[name]
    v = _model(nz, nx)
    survey = jaxfwi.Survey.surface_line((nz, nx), ns, jaxfwi.ricker(f0, nt, dt), dt)
    kw = dict(accuracy=8, pml_width=20, max_vel=4500.0)
    desc = f"benchmarks/propagator.py case {name!r}: {nz}x{nx} at {dx:g} m, {ns} shots, nt {nt}, PML 20 all sides"
    return v, dx, survey, kw, desc


def run_propagator(case, mode, ctx):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxfwi

    v, dx, survey, kw, desc = prop_problem(case, ctx["dry_run"])
    plan, _ = jaxfwi.plan_propagation(v, dx, survey, **{k: x for k, x in kw.items() if k != "pml_freq"}, warn=False)
    cells = _ext_cells(plan)
    work = cells * plan.nt_internal * survey.n_shots
    est = ctx["estimate"](mode, work, len(plan.shape))
    if est is not None and est > ctx["remaining"]():
        return dict(status="skipped_budget", reason=f"estimated {est:.0f} s > {ctx['remaining']():.0f} s left",
                    estimate_s=est, description=desc)
    from jaxfwi import devices

    mem_est = devices.gradient_memory_bytes(plan.shape, plan.pml, plan.accuracy, plan.nt_internal, survey.n_shots,
                                            checkpoint=plan.checkpoint, n_receivers=survey.n_receivers)
    ref = _bench("device_reference")

    args = (jnp.asarray(v),)
    if mode == "forward":
        fn = ref.make_forward(dx, survey, kw)
    else:
        fn = ref.make_gradient(dx, survey, kw)
        args += (jnp.zeros((survey.n_shots, survey.n_receivers, survey.nt), jnp.float32),)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    temp, io = _memory_analysis(compiled)
    t0 = time.perf_counter()
    _block(compiled(*args))
    first = time.perf_counter() - t0
    repeats = 1 if (first > 20 or ctx["dry_run"]) else (2 if first > 5 else 3)
    times = []
    for _ in range(repeats):
        if time.perf_counter() + first > ctx["deadline_perf"]:
            break
        t0 = time.perf_counter()
        _block(compiled(*args))
        times.append(time.perf_counter() - t0)
    med = float(np.median(times)) if times else first
    return dict(status="ok", description=desc, mode=mode, ndim=len(plan.shape), shape=list(plan.shape),
                n_shots=survey.n_shots, nt=survey.nt, substeps=plan.substeps, checkpoint=plan.checkpoint,
                shot_batch=plan.shot_batch, padded_cells=cells, compile_s=compile_s, first_run_s=first,
                median_s=med, repeats=len(times), mcells_per_s=work / med / 1e6, work_cells_steps=work,
                xla_temp_bytes=temp, xla_io_bytes=io, estimated_grad_bytes=mem_est,
                device_peak_bytes_so_far=_mem(), estimate_s=est)


def marmousi_setup(ctx, method="adfwi", init="smooth", epochs=1):
    """The runner's Setup of the full Marmousi preset (dry run: the synthetic preset, shorter records)."""
    from jaxfwi.experiments import Scenario, prepare

    if ctx["dry_run"]:
        sc = Scenario(model="synthetic:default", reduce=1, acquisition=DRY["acquisition"], init=init,
                      method=method, epochs=epochs)
    else:
        sc = Scenario(model="marmousi", reduce=1, init=init, method=method, epochs=epochs)
    return sc, prepare(sc, ctx["data_dir"])


def _no_data(ctx):
    if ctx["dry_run"] or ctx["data_dir"]:
        return None
    return dict(status="skipped_data", reason="the Marmousi model is needed: set JAXFWI_DATA or pass --data-dir "
                "(folder with marmousi/marmousi_94x288.npy)")


def _marmousi_or_skip(ctx, method):
    """``(scenario, state, None)`` of the full Marmousi set-up, or ``(None, None, skip record)`` without the data."""
    from jaxfwi.experiments import DataMissing

    miss = _no_data(ctx)
    if miss:
        return None, None, miss
    try:
        return (*marmousi_setup(ctx, method), None)
    except DataMissing as e:
        return None, None, dict(status="skipped_data", reason=str(e))


def _invert_kwargs(st):
    kw = dict(st.forward)
    if st.bounds:
        kw.update(bounds=st.bounds, max_vel=st.bounds[1])
    if st.scenario.method == "ms-fwi":
        from jaxfwi.signal import multiscale_bands

        kw["multiscale"] = [round(b * st.freq_scale, 4) for b in multiscale_bands()]
    return kw


def _epoch_work(st):
    import jaxfwi

    plan, _ = jaxfwi.plan_propagation(st.v_init, st.dx, st.survey, st.forward["accuracy"], st.forward["pml_width"],
                                      st.forward["free_surface"], max_vel=st.bounds[1] if st.bounds else None,
                                      warn=False)
    return _ext_cells(plan) * plan.nt_internal * st.survey.n_shots


def run_epoch(method, ctx):
    import jax
    import numpy as np

    from jaxfwi.inversion import invert

    sc, st, skip = _marmousi_or_skip(ctx, method)
    if skip:
        return skip
    work = _epoch_work(st)
    est = ctx["estimate"]("epoch", work, 2)
    if est is not None and 2 * est > ctx["remaining"]():
        return dict(status="skipped_budget", reason=f"estimated {2 * est:.0f} s > {ctx['remaining']():.0f} s left",
                    estimate_s=2 * est)
    from jaxfwi import inversion

    epochs = DRY["epochs"] if ctx["dry_run"] else 3
    lr = inversion.method_defaults(method)["learning_rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = invert(st.d_clean, st.survey, st.dx, st.v_init, method=method, epochs=epochs, key=jax.random.key(0),
                     v_true=st.v_true, progress=False, learning_rate=lr, **_invert_kwargs(st))
    t = np.asarray(res.history["time"])
    steady = float(np.median(t[1:]))
    from jaxfwi import models

    return dict(status="ok", method=method, preset=sc.model, shape=list(st.preset.shape), n_shots=st.survey.n_shots,
                nt=st.preset.nt, epochs=epochs, first_epoch_s=float(t[0]), s_per_epoch=steady,
                compile_s=float(t[0] - steady), params=int(models.count_params(res.params)),
                loss_first=float(res.history["loss"][0]), loss_last=float(res.history["loss"][-1]),
                device_peak_bytes_so_far=_mem(), work_cells_steps=work, estimate_s=est)


def run_seeds(method, ctx):
    import jax
    import numpy as np

    from jaxfwi.inversion import invert, invert_seeds

    sc, st, skip = _marmousi_or_skip(ctx, method)
    if skip:
        return skip
    n = DRY["n_seeds"] if ctx["dry_run"] else N_SEEDS
    epochs = DRY["epochs"] if ctx["dry_run"] else 3
    work = _epoch_work(st)
    one = ctx["estimate"]("epoch", work, 2)
    est = None if one is None else 2 * n * epochs * one
    if est is not None and est > ctx["remaining"]():
        return dict(status="skipped_budget", reason=f"estimated {est:.0f} s > {ctx['remaining']():.0f} s left "
                    f"({n} seeds x {epochs} epochs, vmapped and sequential)", estimate_s=est)
    keys = jax.random.split(jax.random.key(0), n)
    common = dict(method=method, epochs=epochs, progress=False, v_true=st.v_true, **_invert_kwargs(st))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        many = invert_seeds(st.d_clean, st.survey, st.dx, st.v_init, keys=keys, **common)
        t_many = time.perf_counter() - t0
        seq, t0 = [], time.perf_counter()
        for i in range(n):
            r = invert(st.d_clean, st.survey, st.dx, st.v_init, key=keys[i], **common)
            seq.append(float(np.median(np.asarray(r.history["time"])[1:])))
        t_seq = time.perf_counter() - t0
    v_epoch = float(np.median(np.asarray(many.history["time"])[1:]))
    s_epoch = float(np.sum(seq))
    return dict(status="ok", method=method, seeds=n, epochs=epochs, vmapped_s_per_epoch=v_epoch,
                sequential_s_per_epoch=s_epoch, speedup_per_epoch=s_epoch / v_epoch, vmapped_total_s=t_many,
                sequential_total_s=t_seq, speedup_total=t_seq / t_many, device_peak_bytes_so_far=_mem(),
                estimate_s=est)


class BudgetExhausted(KeyboardInterrupt):
    """Raised from the inversion callback at the deadline: ``fit`` saves a checkpoint and re-raises."""


def run_repro(init, method, ctx):
    from jaxfwi.experiments import Scenario, is_finished, run_scenarios

    miss = _no_data(ctx)
    if miss:
        return miss
    dry = ctx["dry_run"]
    epochs = (DRY["repro_epochs"] if dry else REPRO_EPOCHS)[init]
    if dry:
        sc = Scenario(model="synthetic:default", reduce=1, acquisition=DRY["acquisition"], init=init, method=method,
                      epochs=epochs, lr_scale=1.0, seed=0)
    else:
        sc = Scenario(model="marmousi", reduce=1, init=init, method=method, epochs=epochs, lr_scale=1.0, seed=0)
    root = os.path.join(ctx["out"], "repro")
    seed_dir = os.path.join(root, sc.dir_name, f"seed{sc.seed}")
    if is_finished(seed_dir):
        return _repro_row(sc, seed_dir, "ok")
    # a new scenario (or its continuation) costs data modelling + compilation + a few epochs at least
    est = None
    e_epoch = ctx["known_epoch_s"](method)
    if e_epoch is not None:
        comp = ctx["known_compile_s"](method) or 0.0
        est = comp + 5 * e_epoch
        if est > ctx["remaining"]():
            return dict(status="skipped_budget", reason=f"compiling and 5 epochs need ~{est:.0f} s, "
                        f"{ctx['remaining']():.0f} s left", estimate_s=est, epochs_total=epochs)
    stop_epochs = ctx["stop_repro_after_epochs"]
    state = {"start": None}

    def callback(done, params):
        if state["start"] is None:
            state["start"] = done
        if time.perf_counter() > ctx["deadline_perf"] - RESERVE_S:
            raise BudgetExhausted
        if stop_epochs is not None and done - state["start"] >= stop_epochs:
            raise BudgetExhausted
        return False

    t0 = time.perf_counter()
    try:
        recs = run_scenarios([sc], root, data_dir=ctx["data_dir"], progress=False,
                             checkpoint_every=REPRO_CHECKPOINT_EVERY, log=lambda s: None, callback=callback)
    except BudgetExhausted:
        done = _checkpoint_epochs(root, sc)
        return dict(status="partial", scenario=sc.dir_name, method=method, init=init, epochs_total=epochs,
                    epochs_done=done, wall_s=time.perf_counter() - t0,
                    reason="budget reached: checkpoint saved, the next run continues" if stop_epochs is None
                    else f"--stop-repro-after-epochs {stop_epochs}: checkpoint saved", estimate_s=est)
    rec = recs[0] if recs else {}
    if rec.get("state") == "skipped_data":
        return dict(status="skipped_data", reason=rec.get("error"))
    row = _repro_row(sc, seed_dir, "ok" if is_finished(seed_dir) else "failed")
    row["wall_s"] = time.perf_counter() - t0
    return row


def _checkpoint_epochs(root, sc):
    import numpy as np

    path = os.path.join(root, sc.dir_name, f"ckpt_seeds-{sc.seed}", "checkpoint.npz")
    try:
        return int(np.load(path)["epochs_done"])
    except (OSError, KeyError, ValueError):
        return 0


def _repro_row(sc, seed_dir, status):
    try:
        with open(os.path.join(seed_dir, "metrics.json")) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return dict(status=status, scenario=sc.dir_name, method=sc.method, init=sc.init, epochs_total=sc.epochs)
    from jaxfwi.experiments import published

    try:
        pub = published.lookup(sc.model, sc.init, "clean", sc.method)
    except Exception:  # noqa: BLE001
        pub = {}
    return dict(status="ok" if m.get("status") in ("ok", "diverged") else status, scenario=sc.dir_name,
                method=sc.method, init=sc.init, epochs_total=sc.epochs, epochs_done=m.get("epochs_done"),
                run_status=m.get("status"), final=m.get("final"), initial=m.get("initial"),
                time_per_epoch_s=m.get("time_per_epoch_s"), published=pub)


# =========================================================================== child: estimates


def make_context(args, deadline_wall):
    """What the measurement functions need: output paths, the deadline, time estimates from earlier items."""
    known = latest(read_results(args.out))
    t_offset = time.time() - time.perf_counter()
    deadline_perf = deadline_wall - t_offset

    def rate(kind, ndim):
        """Best measured cell-updates/s for 'forward' / 'grad' work in ``ndim`` dims (any dims as fallback)."""
        best = {}
        for r in known.values():
            if r.get("status") != "ok":
                continue
            if r["id"].startswith("prop/") and r.get("mode") == kind:
                best.setdefault(r["ndim"], []).append(r["mcells_per_s"] * 1e6)
            if r["id"].startswith("correct/") and kind == "grad" and r.get("grad_cell_rate"):
                best.setdefault(r["ndim"], []).append(r["grad_cell_rate"])
        for d in (ndim, 2, 3):
            if best.get(d):
                return max(best[d]), d
        return None, None

    def compile_s(ndim):
        cs = [r.get("compile_s") or 0.0 for r in known.values() if r.get("status") == "ok"
              and r.get("ndim") == ndim and (r["id"].startswith("prop/") or r["id"].startswith("correct/"))]
        return max(cs) if cs else 0.0

    def estimate(kind, work, ndim):
        if kind == "epoch":
            r, _ = rate("grad", 2)
            if r is None:
                return None
            return compile_s(2) * 2 + 1.2 * work / r
        r, d = rate(kind, ndim)
        if r is None and kind == "forward":
            r, d = rate("grad", ndim)
            r = None if r is None else 3 * r  # a gradient is ~3 forward passes
        if r is None:
            return None
        runs = 3 if work / r < 5 else 2
        return compile_s(ndim) * (1 if d == ndim else 3) + runs * work / r

    def known_epoch_s(method):
        r = known.get(f"epoch/{method}")
        return r.get("s_per_epoch") if r and r.get("status") == "ok" else None

    def known_compile_s(method):
        r = known.get(f"epoch/{method}")
        return r.get("compile_s") if r and r.get("status") == "ok" else None

    def remaining():
        return deadline_perf - time.perf_counter() - RESERVE_S

    return dict(out=args.out, dry_run=args.dry_run, data_dir=args.data_dir, reference=args.reference,
                deadline_perf=deadline_perf, remaining=remaining, estimate=estimate, known=known,
                known_epoch_s=known_epoch_s, known_compile_s=known_compile_s,
                stop_repro_after_epochs=args.stop_repro_after_epochs)


def run_item(item_id, ctx):
    parts = item_id.split("/")
    if parts[0] == "correct":
        return run_correctness(parts[1], ctx)
    if parts[0] == "prop":
        return run_propagator(parts[1], parts[2], ctx)
    if parts[0] == "epoch":
        return run_epoch(parts[1], ctx)
    if parts[0] == "seeds":
        return run_seeds(parts[1], ctx)
    if parts[0] == "repro":
        return run_repro(parts[1], parts[2], ctx)
    raise ValueError(f"unknown item {item_id}")


def child_main(args):
    """Run ``args.items`` in order; print ``START <id>`` before and ``RESULT <json>`` after each."""
    warnings.simplefilter("ignore")  # CFL substeps etc. are recorded in the results instead
    if args.compile_cache:
        import jax

        try:
            jax.config.update("jax_compilation_cache_dir", args.compile_cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        except Exception:  # noqa: BLE001
            pass
    deadline = float(args.deadline)
    stages = dict(item_list(args.dry_run))
    for item_id in args.items.split(","):
        ctx = make_context(args, deadline)  # re-read: estimates use the items finished so far
        print(f"START {item_id}", flush=True)
        t0 = time.perf_counter()
        if ctx["remaining"]() <= 0:
            row = dict(status="skipped_budget", reason="no time left in the budget")
        else:
            try:
                row = run_item(item_id, ctx)
            except BudgetExhausted:
                row = dict(status="partial", reason="budget reached")
            except Exception as e:  # noqa: BLE001
                row = dict(status="failed", reason=f"{type(e).__name__}: {str(e)[:800]}",
                           traceback=traceback.format_exc()[-3000:])
        row = dict(id=item_id, stage=stages.get(item_id, "?"), **row, item_wall_s=time.perf_counter() - t0,
                   finished_at=now_iso())
        append_result(args.out, row)
        print("RESULT " + json.dumps(row, default=_jsonable), flush=True)
    return 0


# =========================================================================== parent


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_children(args, todo, deadline_wall, log):
    """Run ``todo`` item ids in child processes until done or out of time."""
    groups = [[i] for i in todo] if args.isolate else [list(todo)]
    stages = dict(item_list(args.dry_run))
    for group in groups:
        pending = list(group)
        while pending:
            left = deadline_wall - time.time()
            if left <= RESERVE_S:
                return
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--items", ",".join(pending), "--out",
                   args.out, "--deadline", repr(deadline_wall), "--reference", args.reference]
            if args.dry_run:
                cmd.append("--dry-run")
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            if args.compile_cache:
                cmd += ["--compile-cache", args.compile_cache]
            if args.stop_repro_after_epochs is not None:
                cmd += ["--stop-repro-after-epochs", str(args.stop_repro_after_epochs)]
            env = os.environ.copy()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, start_new_session=True,
                                    env=env)
            current = None
            timed_out = False
            import threading

            def watchdog():
                nonlocal timed_out
                while proc.poll() is None:
                    if time.time() > deadline_wall + 30.0:  # the child stops itself at the deadline; 30 s grace
                        timed_out = True
                        _kill(proc)
                        return
                    time.sleep(0.5)

            th = threading.Thread(target=watchdog, daemon=True)
            th.start()
            try:
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    if line.startswith("START "):
                        current = line[6:]
                    elif line.startswith("RESULT "):
                        row = json.loads(line[7:])
                        log(_one_line(row))
                        if row["id"] in pending:
                            pending.remove(row["id"])
                        current = None
            except KeyboardInterrupt:
                _kill(proc)
                raise
            proc.wait()
            th.join(timeout=1.0)
            if current is not None:
                status = "timeout" if timed_out else "failed"
                why = ("killed at the deadline (+30 s): the item ran past its estimate" if timed_out else
                       f"the child process died in this item (exit code {proc.returncode}; "
                       f"{'SIGKILL: out of host memory?' if proc.returncode == -9 else 'see stderr'})")
                row = dict(id=current, stage=stages.get(current, "?"), status=status, reason=why,
                           finished_at=now_iso())
                append_result(args.out, row)
                log(_one_line(row))
                pending.remove(current)
            elif pending and proc.returncode != 0:
                log(f"child exited with code {proc.returncode} before starting {pending[0]}; stopping")
                return
            if timed_out:
                return


def _gb(x):
    return "-" if x is None else f"{x / 2**30:.2f}"


def _f(x, spec=".3g"):
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return "-" if x is None else str(x)


def _one_line(r):
    s = f"  {r['id']:28s} {r.get('status', '?'):15s}"
    if r.get("reason") and r.get("status") != "ok":
        s += f" {r['reason'][:150]}"
    elif r["id"].startswith("correct/"):
        s += f" data {r['data_rel']:.2e}  grad {r['grad_rel']:.2e}  cos {r['grad_cosine']:.7f}"
    elif r["id"].startswith("prop/"):
        s += (f" compile {r['compile_s']:.1f} s  run {r['median_s']:.3f} s  {r['mcells_per_s']:.0f} Mcells/s  "
              f"XLA temp {_gb(r.get('xla_temp_bytes'))} GiB  peak {_gb(r.get('device_peak_bytes_so_far'))} GiB")
    elif r["id"].startswith("epoch/"):
        s += f" {r['s_per_epoch']:.3f} s/epoch  compile {r['compile_s']:.1f} s  params {r['params']}"
    elif r["id"].startswith("seeds/"):
        s += (f" {r['seeds']} vmapped {r['vmapped_s_per_epoch']:.3f} s/epoch vs sequential "
              f"{r['sequential_s_per_epoch']:.3f} s/epoch: {r['speedup_per_epoch']:.2f}x")
    elif r["id"].startswith("repro/"):
        fin = r.get("final") or {}
        s += f" epochs {r.get('epochs_done')}/{r.get('epochs_total')}  MSE {_f(fin.get('mse'), '.4f')}"
    return s


def summary(out_dir, items):
    rows = latest(read_results(out_dir))
    runs = [r for r in read_results(out_dir) if r.get("stage") == "run"]
    dev = runs[-1].get("device", {}) if runs else {}
    lines = [f"# Device run: {dev.get('device_kind', '?')} x {dev.get('n_devices', '?')} "
             f"({dev.get('platform', '?')}), jax {dev.get('jax_version', '?')}", ""]
    if runs and runs[-1].get("dry_run"):
        lines += ["**Dry run** (toy sizes on the synthetic model): the numbers check the script, not a device.", ""]
    lines += [f"{len(runs)} invocation(s); last {runs[-1]['started_at'] if runs else '-'}", "",
              "## Correctness (float32 vs the CPU reference)", "",
              "| case | data max rel | tol | gradient max rel | tol | cosine | min | CPU f32 vs f64 (data / grad) | "
              "status |", "|---|---|---|---|---|---|---|---|---|"]
    for i, _ in items:
        r = rows.get(i)
        if i.startswith("correct/") and r:
            if r.get("status") in ("ok", "failed") and "data_rel" in r:
                lines.append(f"| {i[8:]} | {r['data_rel']:.2e} | {r['data_rtol']:.0e} | {r['grad_rel']:.2e} | "
                             f"{r['grad_rtol']:.0e} | {r['grad_cosine']:.7f} | {r['grad_min_cosine']} | "
                             f"{r['f32_vs_f64_cpu_data']:.1e} / {r['f32_vs_f64_cpu_grad']:.1e} | {r['status']} |")
            else:
                lines.append(f"| {i[8:]} | | | | | | | | {r.get('status')}: {r.get('reason')} |")
    lines += ["", "## Propagator", "", "| case | mode | shots | substeps | shot batch | compile s | run s | "
              "M cell-updates/s | XLA temp GiB | est. grad GiB | device peak GiB | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, _ in items:
        r = rows.get(i)
        if i.startswith("prop/") and r:
            _, case, mode = i.split("/")
            if r.get("status") == "ok":
                lines.append(f"| {case} | {mode} | {r['n_shots']} | {r['substeps']} | {r['shot_batch'] or 'all'} | "
                             f"{r['compile_s']:.1f} | {r['median_s']:.3f} | {r['mcells_per_s']:.0f} | "
                             f"{_gb(r.get('xla_temp_bytes'))} | {_gb(r.get('estimated_grad_bytes'))} | "
                             f"{_gb(r.get('device_peak_bytes_so_far'))} | ok |")
            else:
                lines.append(f"| {case} | {mode} | | | | | | | | | | {r.get('status')}: {r.get('reason')} |")
    lines += ["", "## One epoch per method (full Marmousi preset; CR-FWI reports 1.88-3.12 s/epoch on an RTX 3090)",
              "", "| method | s/epoch | compile s | params | device peak GiB (so far) | status |",
              "|---|---|---|---|---|---|"]
    for i, _ in items:
        r = rows.get(i)
        if (i.startswith("epoch/") or i.startswith("seeds/")) and r:
            if i.startswith("seeds/") and r.get("status") == "ok":
                lines.append(f"| {r['seeds']} seeds of {r['method']}: vmapped {r['vmapped_s_per_epoch']:.3f} s/epoch "
                             f"vs sequential {r['sequential_s_per_epoch']:.3f} s/epoch ({r['speedup_per_epoch']:.2f}x; "
                             f"wall {r['vmapped_total_s']:.1f} vs {r['sequential_total_s']:.1f} s) | | | | "
                             f"{_gb(r.get('device_peak_bytes_so_far'))} | ok |")
            elif r.get("status") == "ok":
                lines.append(f"| {r['method']} | {r['s_per_epoch']:.3f} | {r['compile_s']:.1f} | {r['params']} | "
                             f"{_gb(r.get('device_peak_bytes_so_far'))} | ok |")
            else:
                lines.append(f"| {i} | | | | | {r.get('status')}: {r.get('reason')} |")
    lines += ["", "## Full-size Marmousi block (paper's learning rates)", "",
              "| init | method | epochs | MSE | SSIM | published MSE | s/epoch | status |", "|---|---|---|---|---|---|---|---|"]
    for i, _ in items:
        r = rows.get(i)
        if i.startswith("repro/"):
            _, init, method = i.split("/")
            if r is None:
                lines.append(f"| {init} | {method} | | | | | | not started |")
                continue
            fin = r.get("final") or {}
            pub = (r.get("published") or {}).get("mse")  # [value, source]
            pub = pub[0] if isinstance(pub, (list, tuple)) else pub
            lines.append(f"| {init} | {method} | {r.get('epochs_done', 0)}/{r.get('epochs_total', '?')} | "
                         f"{_f(fin.get('mse'), '.4f')} | {_f(fin.get('ssim'), '.3f')} | {_f(pub, '.4f')} | "
                         f"{_f(r.get('time_per_epoch_s'), '.3f')} | {r.get('status')}"
                         f"{': ' + r['reason'] if r.get('reason') and r.get('status') != 'ok' else ''} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"device": dev, "items": [rows.get(i, {"id": i, "status": "not started"}) for i, _ in items]}, f,
                  indent=1, default=_jsonable)
    return text


ARCHIVE_SKIP = ("jax_cache", "gather.npz", "true.npy", "initial.npy")


def write_archive(out_dir, path):
    """One ``.tar.gz`` of the output folder that the next device run can unpack and continue from:
    results, summaries and the reproduction's checkpoints and finished runs; not the compilation
    cache, the residual gathers or the copies of the true/initial models (re-made on resume)."""
    import tarfile

    def keep(info):
        return None if any(part in ARCHIVE_SKIP for part in info.name.split("/")) else info

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for name in sorted(os.listdir(out_dir)):
            if name not in ARCHIVE_SKIP:
                tar.add(os.path.join(out_dir, name), arcname=name, filter=keep)
    os.replace(tmp, path)


def parent_main(args):
    t_start = time.time()
    deadline = t_start + float(args.budget)
    os.makedirs(args.out, exist_ok=True)
    items = item_list(args.dry_run)
    rows = read_results(args.out)
    prev = [r for r in rows if r.get("stage") == "run"]
    if prev and bool(prev[-1].get("dry_run")) != bool(args.dry_run):
        print(f"error: {args.out} holds a {'dry' if prev[-1].get('dry_run') else 'real'} run; use another --out",
              file=sys.stderr)
        return 2
    done = finished_ids(rows, args.retry_failed)
    # repro items: the runner's folder is the truth (a finished scenario has metrics.json)
    todo = [i for i, _ in items if i not in done]
    if args.only:
        want = set(args.only.split(","))
        todo = [i for i in todo if i in want or i.split("/")[0] in want]
    import jax

    from jaxfwi import devices

    info = devices.describe()
    head = dict(id=f"run/{len(prev) + 1}", stage="run", started_at=now_iso(), budget_s=float(args.budget),
                dry_run=bool(args.dry_run), device=info, devices=[str(d) for d in jax.devices()],
                data_dir=args.data_dir, todo=todo, argv=sys.argv[1:])
    append_result(args.out, head)
    print(f"device run {head['id']}: {info['device_kind']} x {info['n_devices']} ({info['platform']}), budget "
          f"{args.budget:g} s, {len(todo)} of {len(items)} items to do{' (dry run)' if args.dry_run else ''}",
          flush=True)
    if done:
        print(f"  skipping {len(done)} finished item(s) from earlier runs", flush=True)
    if todo:
        run_children(args, todo, deadline, lambda s: print(s, flush=True))
    seen = {r["id"] for r in read_results(args.out)[len(rows) + 1:] if "id" in r}
    stages = dict(items)
    for i in todo:  # never started: say why in the results
        if i not in seen:
            row = dict(id=i, stage=stages[i], status="skipped_budget", finished_at=now_iso(),
                       reason=f"the budget of {args.budget:g} s ran out before this item started")
            append_result(args.out, row)
            print(_one_line(row), flush=True)
    text = summary(args.out, items)
    if args.archive:
        write_archive(args.out, args.archive)
        print(f"state archived in {args.archive} ({os.path.getsize(args.archive) / 2**20:.1f} MiB)")
    print()
    print(text)
    print(f"wall {time.time() - t_start:.1f} s; results in {os.path.join(args.out, 'results.jsonl')}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="wall-clock seconds (default 540)")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "gpu"), help="output folder (resumable)")
    ap.add_argument("--dry-run", action="store_true", help="every step at toy size (CPU check of the script)")
    ap.add_argument("--data-dir", default=os.environ.get("JAXFWI_DATA") or None,
                    help="benchmark data folder (default $JAXFWI_DATA; without it the Marmousi stages are skipped)")
    ap.add_argument("--reference", default=os.path.join(HERE, "reference", "device_reference.npz"))
    ap.add_argument("--isolate", action="store_true", help="one child process per item (peak memory per item)")
    ap.add_argument("--retry-failed", action="store_true", help="run failed / timed-out items again")
    ap.add_argument("--only", default=None, help="comma-separated item ids or prefixes (correct, prop, epoch, ...)")
    ap.add_argument("--compile-cache", default=None, help="XLA compilation cache folder (default OUT/jax_cache)")
    ap.add_argument("--archive", default=None,
                    help="also write the state (results, checkpoints) to this .tar.gz; unpack it into --out to resume")
    ap.add_argument("--stop-repro-after-epochs", type=int, default=None,
                    help="stop each reproduction run after this many epochs this invocation (tests resumption)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--items", default="", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.out = os.path.abspath(args.out)
    if args.compile_cache is None and not args.child:
        args.compile_cache = os.path.join(args.out, "jax_cache")
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
