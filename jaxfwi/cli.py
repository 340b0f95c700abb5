"""Command-line interface: ``jaxfwi forward | invert | kernels | run | report``.

Every subcommand works out of the box on the built-in default model
(:func:`jaxfwi.datasets.synthetic.default_model`); ``--model path.npy`` uses
your own ``[nz, nx]`` velocity (m/s). Run ``jaxfwi SUBCOMMAND --help``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _add_model_args(p):
    p.add_argument("--model", default=None, help="velocity model .npy [nz, nx] in m/s (default: built-in layered+fault model)")
    p.add_argument("--shape", type=int, nargs=2, default=(40, 80), metavar=("NZ", "NX"),
                   help="grid of the built-in model (default 40 80)")
    p.add_argument("--dx", type=float, default=15.0, help="grid spacing in m (default 15)")
    p.add_argument("--shots", type=int, default=8, help="number of shots along the surface (default 8)")
    p.add_argument("--freq", type=float, default=8.0, help="Ricker peak frequency in Hz (default 8)")
    p.add_argument("--dt", type=float, default=0.0018, help="sample interval in s (default 0.0018)")
    p.add_argument("--nt", type=int, default=450, help="number of time samples (default 450)")
    p.add_argument("--accuracy", type=int, default=8, choices=(2, 4, 6, 8), help="spatial FD order (default 8)")
    p.add_argument("--pml-width", type=int, default=20, help="C-PML width in cells (default 20)")
    p.add_argument("--free-surface", action="store_true", help="pressure-free top boundary instead of a PML")
    p.add_argument("--out", default="jaxfwi_out", help="output folder (default ./jaxfwi_out)")


def _setup(args):
    import numpy as np

    import jaxfwi
    from jaxfwi.datasets.synthetic import default_model

    if args.model:
        if not os.path.exists(args.model):
            sys.exit(f"jaxfwi: --model {args.model!r} does not exist; give a .npy file with a [nz, nx] model in m/s.")
        v = np.load(args.model).astype("float32")
        if v.ndim != 2:
            sys.exit(f"jaxfwi: --model has shape {v.shape}; expected a 2-D [nz, nx] array in m/s.")
    else:
        v = np.asarray(default_model(tuple(args.shape)))
    w = jaxfwi.ricker(args.freq, args.nt, args.dt)
    depth = 1 if args.free_surface else 0
    survey = jaxfwi.Survey.surface_line(v.shape, args.shots, w, args.dt, src_depth=depth + 1, rec_depth=depth + 1)
    fwd = dict(accuracy=args.accuracy, pml_width=args.pml_width, free_surface=args.free_surface)
    os.makedirs(args.out, exist_ok=True)
    return v, survey, fwd


def cmd_forward(args):
    """Forward modelling: shot gather + wavefield snapshot PNGs and the data as .npz."""
    import numpy as np

    import jaxfwi
    from jaxfwi import plotting

    v, survey, fwd = _setup(args)
    t0 = time.time()
    d, snaps, plan = jaxfwi.forward(v, args.dx, survey, snapshot_every=max(1, args.nt // 8), return_plan=True, **fwd)
    d = np.asarray(d)
    print(f"jaxfwi forward: {survey.n_shots} shots, model {v.shape}, {plan.substeps} internal step(s) per sample, "
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


def cmd_invert(args):
    """Synthetic inversion on the chosen model: observed data from the true model, then FWI."""
    import jax
    import numpy as np

    import jaxfwi
    from jaxfwi import metrics, plotting
    from jaxfwi.models import initial

    v, survey, fwd = _setup(args)
    d_obs = jaxfwi.forward(v, args.dx, survey, **fwd)
    if args.init == "smooth":
        v0 = initial.smooth(v, args.smooth_sigma)
    elif args.init == "linear":
        v0 = initial.linear(v.shape, float(v.min()), float(v.max()))
    else:
        v0 = initial.constant(v.shape, float(np.mean(v)))
    print(f"jaxfwi invert: method {args.method}, model {v.shape} at {args.dx} m, {survey.n_shots} shots, "
          f"{args.epochs} epochs, initial model '{args.init}'")
    t0 = time.time()
    res = jaxfwi.invert(d_obs, survey, args.dx, v0, method=args.method, epochs=args.epochs,
                        key=jax.random.key(args.seed), v_true=v, checkpoint_dir=os.path.join(args.out, "checkpoint"),
                        **fwd)
    vinv = np.asarray(res.velocity)
    m0 = {k: float(x) for k, x in metrics.all_metrics(v0, v).items()}
    m1 = {k: float(x) for k, x in metrics.all_metrics(vinv, v).items()}
    np.save(os.path.join(args.out, "inverted.npy"), vinv)
    hist = {k: np.asarray(x).tolist() for k, x in res.history.items()}
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump({"method": args.method, "initial_metrics": m0, "final_metrics": m1, "history": hist}, f, indent=1)
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="jaxfwi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("forward", help="model shot gathers; write PNGs and data.npz")
    _add_model_args(p)
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("invert", help="synthetic FWI on a model (the main job)")
    _add_model_args(p)
    p.add_argument("--method", default="adfwi", help="adfwi, adfwi-tv, weci-fwi, ms-fwi, ifwi, winfwi, lr-fwi, "
                   "mpe-fwi, ig-fwi, lrg-fwi, fad-fwi, gnn-fwi (default adfwi)")
    p.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
    p.add_argument("--init", choices=("smooth", "linear", "constant"), default="smooth", help="initial model")
    p.add_argument("--smooth-sigma", type=float, default=4.0, help="Gaussian smoothing (cells) of the smooth initial model")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("kernels", help="eigenvalue decay of wave-based NTKs")
    _add_model_args(p)
    p.set_defaults(shape=(12, 24), shots=2, nt=200, dx=20.0, pml_width=8, accuracy=4)
    p.add_argument("--methods", nargs="+", default=["adfwi", "mpe-fwi", "ig-fwi", "ifwi"], help="methods to compare")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_kernels)

    from jaxfwi.experiments.cli import add_report_parser, add_run_parser

    add_run_parser(sub)
    add_report_parser(sub)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
