"""Command-line interface: ``jaxfwi forward | invert | kernels | run | report``.

Every flag is checked before anything is modelled; a usage error prints one line
(``jaxfwi <command>: error: ...``) and exits with status 2, without a traceback
(set ``JAXFWI_DEBUG=1`` for one). Ctrl-C exits with 130 and says how many epochs the
checkpoint holds. ``jaxfwi invert`` records its settings in ``<out>/run.json``: the
same command again resumes that run (more ``--epochs`` extend it); other settings in
the same ``--out`` are refused, naming them, unless ``--fresh`` starts over.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings

from jaxfwi import methods as _methods

DESCRIPTION = """\
Pure-JAX full-waveform inversion. Every subcommand works out of the box on the built-in
layered + fault model; --model FILE.npy uses your own [nz, nx] velocity model in m/s.

examples:
  jaxfwi invert                                  FWI on the built-in model (the main job), into ./jaxfwi_out
  jaxfwi invert --method ig-fwi --init constant --out ig_constant
  jaxfwi forward                                 shot gathers, a wavefield snapshot and data.npz
  jaxfwi kernels                                 eigenvalue decay of wave-based NTKs of several methods
  jaxfwi run --methods adfwi --models synthetic:default   grids of scenarios (benchmark presets too)
  jaxfwi report --results jaxfwi_runs            tables and figures of a results folder

Run "jaxfwi COMMAND --help" for the options of a command and their defaults.
Exit status: 0 done, 1 the inversion diverged, 2 usage error (nothing modelled), 130 interrupted.
"""

METHOD_NAMES = _methods.names()

#: defaults of the model/survey flags per subcommand (what --help shows is what runs)
DEFAULTS = {
    "forward": dict(shape=(40, 80), dx=15.0, shots=8, freq=8.0, dt=0.0018, nt=450, accuracy=8, pml_width=20,
                    out="jaxfwi_out"),
    "invert": dict(shape=(40, 80), dx=15.0, shots=8, freq=8.0, dt=0.0018, nt=450, accuracy=8, pml_width=20,
                   out="jaxfwi_out"),
    # small enough for exact kernels on a laptop; 6 Hz keeps >= 5 cells per wavelength at 20 m
    "kernels": dict(shape=(12, 24), dx=20.0, shots=2, freq=6.0, dt=0.0018, nt=200, accuracy=4, pml_width=8,
                    out="jaxfwi_out"),
}

PRESET_HINT = ("benchmark models (marmousi, salt, overthrust, bp, ...) are not bundled: run them with their "
               "published surveys via `jaxfwi run --models marmousi ...` with JAXFWI_DATA=/path/to/data "
               "(see docs/datasets.md), or save one as .npy and pass that file")


class UsageError(Exception):
    """A bad flag or input file: printed as one line, exit status 2."""


def _g(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _add_model_args(p, d):
    p.add_argument("--model", default=None, metavar="FILE.npy",
                   help=f"velocity model, a .npy file [nz, nx] in m/s (default: the built-in layered + fault model "
                        f"of --shape); {PRESET_HINT}")
    p.add_argument("--shape", type=int, nargs=2, default=d["shape"], metavar=("NZ", "NX"),
                   help=f"grid of the built-in model (default {d['shape'][0]} {d['shape'][1]})")
    p.add_argument("--dx", type=float, default=d["dx"], help=f"grid spacing in m (default {_g(d['dx'])})")
    p.add_argument("--shots", type=int, default=d["shots"],
                   help=f"number of shots along the surface (default {d['shots']})")
    p.add_argument("--freq", type=float, default=d["freq"], help=f"Ricker peak frequency in Hz (default {_g(d['freq'])})")
    p.add_argument("--dt", type=float, default=d["dt"], help=f"sample interval in s (default {_g(d['dt'])})")
    p.add_argument("--nt", type=int, default=d["nt"], help=f"number of time samples (default {d['nt']})")
    p.add_argument("--accuracy", type=int, default=d["accuracy"], choices=(2, 4, 6, 8),
                   help=f"spatial finite-difference order (default {d['accuracy']})")
    p.add_argument("--pml-width", type=int, default=d["pml_width"],
                   help=f"C-PML width in cells (default {d['pml_width']})")
    p.add_argument("--free-surface", action="store_true", help="pressure-free top boundary instead of a PML")
    p.add_argument("--out", default=d["out"], help=f"output folder (default ./{d['out']})")


# --------------------------------------------------------------------------- checks (before any modelling)


def _check_out(out):
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".jaxfwi_write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"--out {out!r} is not a writable folder ({e.strerror or e}); choose another --out.") from None


def _load_model(path):
    import numpy as np

    from jaxfwi.datasets.presets import list_presets

    if not os.path.exists(path):
        name = path.strip().lower()
        if name in [n.lower() for n in list_presets()] or name in ("marmousi", "salt", "overthrust", "bp"):
            raise UsageError(f"--model {path!r} is a benchmark preset name, not a file; {PRESET_HINT}.")
        raise UsageError(f"--model {path!r} does not exist; give a .npy file holding a [nz, nx] model in m/s "
                         f"({PRESET_HINT}).")
    try:
        v = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises many kinds for a non-.npy file
        reason = "not a .npy array file" if "pickle" in str(e) else f"{type(e).__name__}: {e}"
        raise UsageError(f"--model {path!r} could not be read as a .npy file ({reason}); save the model with "
                         "numpy.save('model.npy', v) as a [nz, nx] array in m/s.") from None
    if not isinstance(v, np.ndarray) or v.ndim != 2:
        raise UsageError(f"--model {path!r} has shape {getattr(v, 'shape', '?')}; expected a 2-D [nz, nx] array "
                         "in m/s.")
    if np.iscomplexobj(v) or not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
        raise UsageError(f"--model {path!r} has dtype {v.dtype}; expected real velocities in m/s.")
    if min(v.shape) < 3:
        raise UsageError(f"--model {path!r} has shape {v.shape}; it needs at least 3 x 3 cells.")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise UsageError(f"--model {path!r} holds non-finite or non-positive values (min {np.nanmin(v):g}); "
                         "velocities must be positive m/s.")
    return v.astype("float32")


def _check_args(args):
    """Every flag, before anything is modelled; returns the velocity model."""
    import math

    import numpy as np

    def positive(name, x, integer=False):
        ok = math.isfinite(x) and x > 0 and (not integer or int(x) == x)
        if not ok:
            raise UsageError(f"--{name} {x!r} must be a positive {'whole number' if integer else 'number'}.")

    positive("dx", args.dx)
    positive("freq", args.freq)
    positive("dt", args.dt)
    positive("nt", args.nt, True)
    positive("shots", args.shots, True)
    if args.pml_width < 0:
        raise UsageError(f"--pml-width {args.pml_width} must be >= 0 cells.")
    if args.freq >= 0.5 / args.dt:
        raise UsageError(f"--freq {args.freq:g} Hz is above the Nyquist frequency {0.5 / args.dt:g} Hz of --dt "
                         f"{args.dt:g} s; lower --freq or --dt.")
    if args.nt < 10:
        raise UsageError(f"--nt {args.nt} is too short a record; give at least 10 samples.")
    if getattr(args, "epochs", 1) < 1:
        raise UsageError(f"--epochs {args.epochs} must be a positive number of epochs.")
    if hasattr(args, "smooth_sigma"):
        positive("smooth-sigma", args.smooth_sigma)
    if getattr(args, "seed", 0) < 0:
        raise UsageError(f"--seed {args.seed} must be >= 0.")
    if hasattr(args, "method"):
        args.method = _method(args.method, "--method")
    if hasattr(args, "methods"):
        args.methods = [_method(m, "--methods") for m in args.methods]
    if args.model:
        v = _load_model(args.model)
    else:
        if min(args.shape) < 3:
            raise UsageError(f"--shape {args.shape[0]} {args.shape[1]}: the model needs at least 3 x 3 cells.")
        from jaxfwi.datasets.synthetic import default_model
        v = np.asarray(default_model(tuple(args.shape)))
    if args.shots > v.shape[1]:
        raise UsageError(f"--shots {args.shots} is more than the {v.shape[1]} surface cells of the model; give at "
                         f"most {v.shape[1]}.")
    _check_out(args.out)
    return v


def _method(name, flag):
    try:
        return _methods.canonical_name(name)
    except ValueError as e:
        raise UsageError(f"{flag} {name!r} is not a method: {e}.") from None


def _setup(args):
    import jaxfwi

    v = _check_args(args)
    w = jaxfwi.ricker(args.freq, args.nt, args.dt)
    depth = 1 if args.free_surface else 0
    survey = jaxfwi.Survey.surface_line(v.shape, args.shots, w, args.dt, src_depth=depth + 1, rec_depth=depth + 1)
    fwd = dict(accuracy=args.accuracy, pml_width=args.pml_width, free_surface=args.free_surface)
    return v, survey, fwd


# --------------------------------------------------------------------------- commands


def cmd_forward(args):
    """Forward modelling: shot gather + wavefield snapshot PNGs and the data as .npz."""
    import numpy as np

    import jaxfwi
    from jaxfwi import plotting

    v, survey, fwd = _setup(args)
    t0 = time.time()
    d, snaps, plan = jaxfwi.propagate(v, args.dx, survey, snapshot_every=max(1, args.nt // 8), **fwd)
    d = np.asarray(d)
    print(f"jaxfwi forward: {survey.n_shots} shots, model {v.shape}, {plan.nt_internal} internal steps for {plan.nt} samples, "
          f"{time.time() - t0:.2f} s (incl. compile)")
    np.savez(os.path.join(args.out, "data.npz"), data=d, dt=args.dt, dx=args.dx, velocity=v,
             sources=np.asarray(survey.sources), receivers=np.asarray(survey.receivers))
    mid = survey.n_shots // 2
    files = [
        plotting.plot_gather(d[mid], args.dt, os.path.join(args.out, "shot_gather.png"), title=f"shot {mid}"),
        plotting.plot_snapshot(snaps[mid, snaps.shape[1] // 2], args.dx, os.path.join(args.out, "snapshot.png"),
                               title=f"wavefield, shot {mid}"),
        plotting.plot_models({"velocity": v}, args.dx, os.path.join(args.out, "model.png")),
    ]
    print("wrote", os.path.join(args.out, "data.npz"), *files)


#: flags of `jaxfwi invert` that define the run (all but --epochs, which may grow, and --out/--fresh)
RUN_FLAGS = ("model", "shape", "dx", "shots", "freq", "dt", "nt", "accuracy", "pml_width", "free_surface", "method",
             "init", "smooth_sigma", "seed")


def _run_settings(args, v):
    s = {k: (list(getattr(args, k)) if isinstance(getattr(args, k), tuple) else getattr(args, k)) for k in RUN_FLAGS}
    s["model"] = (f"{args.model} (sha256:{hashlib.sha256(v.tobytes()).hexdigest()[:16]})" if args.model
                  else "built-in")
    s["shape"] = list(v.shape)
    return s


def _flag(k):
    return "--" + k.replace("_", "-")


def _check_reuse(args, settings):
    """Refuse to continue in ``--out`` a run with other settings (unless --fresh)."""
    path = os.path.join(args.out, "run.json")
    ckpt = os.path.join(args.out, "checkpoint")
    if args.fresh:
        shutil.rmtree(ckpt, ignore_errors=True)
        return
    if not os.path.exists(path):
        if os.path.exists(os.path.join(ckpt, "checkpoint.npz")):
            raise UsageError(f"--out {args.out!r} holds a checkpoint without the run.json that names its settings; "
                             "pass --fresh to start over in it, or choose another --out.")
        return
    try:
        with open(path) as f:
            old = json.load(f)["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path} is damaged; pass --fresh to start over in --out {args.out!r}.") from None
    diff = [f"{_flag(k)} {_show(old.get(k))} -> {_show(settings.get(k))}" for k in RUN_FLAGS
            if old.get(k) != settings.get(k)]
    if diff:
        raise UsageError(f"--out {args.out!r} holds another run ({'; '.join(diff)}); pass --fresh to start over in "
                         "it (its checkpoint is deleted), or choose another --out.")
    done = _checkpoint_epochs(args.out)
    if done > args.epochs:
        raise UsageError(f"--out {args.out!r} holds this run with {done} finished epochs, more than --epochs "
                         f"{args.epochs}; pass --epochs {done} or more to return or extend it, or --fresh to start "
                         "over.")


def _show(x):
    if isinstance(x, list):
        return " ".join(str(i) for i in x)
    if x is None:
        return "none"
    return str(x)


_PROGRESS = {"epochs": 0, "out": None}


def cmd_invert(args):
    """Synthetic inversion on the chosen model: observed data from the true model, then FWI."""
    import jax
    import numpy as np

    import jaxfwi
    from jaxfwi import launch, metrics, plotting
    from jaxfwi.models import initial

    rank = launch.worker_rank()
    if rank is None and args.procs != 1:
        try:
            launch.core_shares(launch.available_cores(), args.procs)
        except ValueError as e:
            raise UsageError(f"--procs {args.procs}: {str(e).split(': ', 1)[1]}") from None
    v, survey, fwd = _setup(args)
    settings = _run_settings(args, v)
    _PROGRESS["out"] = args.out
    if rank is None:  # launched processes leave --out to the command that started them
        _check_reuse(args, settings)
        with open(os.path.join(args.out, "run.json"), "w") as f:
            json.dump({"settings": settings, "epochs": args.epochs}, f, indent=1)
        if args.procs > 1:
            print(f"jaxfwi invert: {args.procs} processes (jax.distributed, one share of the cores each)", flush=True)
            status = launch.launch(args.argv, args.procs)
            if status:
                raise SystemExit(status)
            return None
    quiet = rank not in (None, 0)  # every process computes; process 0 alone reports and writes
    d_obs = jaxfwi.forward(v, args.dx, survey, **fwd)
    if args.init == "smooth":
        v0 = initial.smooth(v, args.smooth_sigma)
    elif args.init == "linear":
        v0 = initial.linear(v.shape, float(v.min()), float(v.max()))
    else:
        v0 = initial.constant(v.shape, float(np.mean(v)))
    if not quiet:
        print(f"jaxfwi invert: method {args.method}, model {v.shape} at {args.dx:g} m, {survey.n_shots} shots, "
              f"{args.epochs} epochs, initial model '{args.init}'")
    t0 = time.time()

    def progress(done, params):
        _PROGRESS["epochs"] = done

    res = jaxfwi.invert(d_obs, survey, args.dx, v0, method=args.method, epochs=args.epochs,
                        key=jax.random.key(args.seed), v_true=v, checkpoint_dir=os.path.join(args.out, "checkpoint"),
                        resume=not args.fresh, callback=progress, **({"progress": False} if quiet else {}), **fwd)
    if quiet:
        return None
    vinv = np.asarray(res.velocity)
    m0 = {k: float(x) for k, x in metrics.all_metrics(v0, v).items()}
    m1 = {k: float(x) for k, x in metrics.all_metrics(vinv, v).items()}
    np.save(os.path.join(args.out, "inverted.npy"), vinv)
    hist = {k: np.asarray(x).tolist() for k, x in res.history.items()}
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump({"method": args.method, "settings": settings, "initial_metrics": m0, "final_metrics": m1,
                   "history": hist}, f, indent=1)
    files = [
        plotting.plot_curves({"loss": hist["loss"]}, os.path.join(args.out, "loss.png"), title=args.method),
        plotting.plot_models({"true": v, f"initial ({args.init})": v0, args.method: vinv}, args.dx,
                             os.path.join(args.out, "comparison.png")),
    ]
    print(f"done in {time.time() - t0:.1f} s. model MSE (km/s)^2: initial {m0['mse']:.4f} -> final {m1['mse']:.4f}; "
          f"SSIM {m0['ssim']:.3f} -> {m1['ssim']:.3f}")
    print("wrote", os.path.join(args.out, "inverted.npy"), os.path.join(args.out, "history.json"), *files)


def cmd_kernels(args):
    """Eigenvalue decay of the wave-based NTK of several methods on a small problem."""
    import jax
    import numpy as np

    import jaxfwi
    from jaxfwi import plotting
    from jaxfwi.models import initial

    v, survey, fwd = _setup(args)
    v0 = initial.smooth(v, 3.0)
    curves = {}
    for method in args.methods:
        lam = np.asarray(jaxfwi.kernels.eigenvalues(method, v0, survey, args.dx, key=jax.random.key(args.seed), **fwd))
        curves[method] = np.maximum(lam / lam[0], 1e-16)
        print(f"{method:10s} n={lam.size:5d}  lambda_10/lambda_1={curves[method][min(10, lam.size - 1)]:.3e}")
    plotting.plot_curves(curves, os.path.join(args.out, "eigen_decay.png"), xlabel="index i",
                         ylabel="lambda_i / lambda_1", title="wave-based NTK spectra")
    np.savez(os.path.join(args.out, "eigen_decay.npz"), **curves)
    print("wrote", os.path.join(args.out, "eigen_decay.png"))


# --------------------------------------------------------------------------- entry point


def build_parser():
    parser = argparse.ArgumentParser(prog="jaxfwi", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("forward", help="model shot gathers; write PNGs and data.npz",
                       description="Model shot gathers and a wavefield snapshot on a velocity model; write "
                                   "data.npz and PNGs into --out.")
    _add_model_args(p, DEFAULTS["forward"])
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("invert", help="synthetic FWI on a model (the main job)",
                       description="Model observed data on the true model, then invert them from an initial model; "
                                   "write inverted.npy, history.json and PNGs into --out. The same command again "
                                   "resumes (a larger --epochs extends the run); other settings in the same --out "
                                   "are refused unless --fresh.")
    _add_model_args(p, DEFAULTS["invert"])
    p.add_argument("--method", default="adfwi", help=f"{', '.join(METHOD_NAMES)} (default adfwi)")
    p.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
    p.add_argument("--init", choices=("smooth", "linear", "constant"), default="smooth",
                   help="initial model (default smooth)")
    p.add_argument("--smooth-sigma", type=float, default=4.0,
                   help="Gaussian smoothing (cells) of the smooth initial model (default 4)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.add_argument("--fresh", action="store_true",
                   help="start over in --out, discarding its checkpoint (default: resume the same run)")
    p.add_argument("--procs", type=int, default=1,
                   help="run as this many processes on this machine, each pinned to its share of the CPU cores "
                        "and joined by jax.distributed, the shots sharded over them (CPU hosts; default 1; "
                        "2 on a 2-core machine is the fastest layout measured, docs/gpu_and_multidevice.md)")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("kernels", help="eigenvalue decay of wave-based NTKs",
                       description="Eigenvalues of the wave-based NTK of several methods on a small problem; "
                                   "write eigen_decay.png and .npz into --out.")
    _add_model_args(p, DEFAULTS["kernels"])
    p.add_argument("--methods", nargs="+", default=["adfwi", "mpe-fwi", "ig-fwi", "ifwi"],
                   help="methods to compare (default adfwi mpe-fwi ig-fwi ifwi)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.set_defaults(func=cmd_kernels)

    from jaxfwi.experiments.cli import add_report_parser, add_run_parser

    add_run_parser(sub)
    add_report_parser(sub)
    return parser


def _checkpoint_epochs(out):
    if not out:
        return 0
    try:
        import numpy as np
        with np.load(os.path.join(out, "checkpoint", "checkpoint.npz")) as z:
            return int(z["epochs_done"])
    except Exception:  # noqa: BLE001 - no (readable) checkpoint
        return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --procs starts again
    from jaxfwi import launch  # noqa: PLC0415

    launch.init_worker()  # in a process that --procs started: its cores, jax.distributed (before JAX starts)
    debug = os.environ.get("JAXFWI_DEBUG")
    _PROGRESS.update(epochs=0, out=None)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="fit interrupted")
            return args.func(args)
    except KeyboardInterrupt:
        if args.cmd == "invert":
            n = max(_checkpoint_epochs(_PROGRESS["out"]), 0) if _PROGRESS["out"] else 0
            print(f"\njaxfwi invert: interrupted after {n} epochs; run the same command again to resume.",
                  file=sys.stderr)
        else:
            print(f"\njaxfwi {args.cmd}: interrupted.", file=sys.stderr)
        raise SystemExit(130) from None
    except FloatingPointError as e:  # DivergenceError
        if debug:
            raise
        print(f"jaxfwi {args.cmd}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except (UsageError, ValueError, TypeError, MemoryError, FileNotFoundError) as e:
        if debug:
            raise
        msg = str(e) or type(e).__name__
        if args.cmd == "invert" and "belongs to another run" in msg:
            msg += " (here: pass --fresh)"
        print(f"jaxfwi {args.cmd}: error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


def console_main():
    """The ``jaxfwi`` command: :func:`main` in a process with huge pages for its large buffers
    (:func:`jaxfwi.hostmem.reexec_with_hugepages`; ``JAXFWI_HUGEPAGES=0`` turns that off)."""
    from jaxfwi.hostmem import reexec_with_hugepages  # noqa: PLC0415

    reexec_with_hugepages()
    return main()


if __name__ == "__main__":
    console_main()
