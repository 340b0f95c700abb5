"""Inversion benchmark: time per epoch and peak memory per method; multi-seed vmap throughput.

Every measurement runs in its own subprocess (so ``ru_maxrss`` is that run's peak
resident memory, compilation included, and no compiled code is shared).

Presets (CR-FWI App. B.2 for ``marmousi``; METHODS.md section 5):

    marmousi  94 x 288, 15 m, 13 shots 300 m apart, 8 Hz Ricker, dt 1.9 ms, nt 1000,
              free surface, PML 20, accuracy 8
    reduced   the same survey coarsened by 2: 47 x 144, 30 m, 13 shots, 4 Hz, dt 3.8 ms, nt 500
    quick     24 x 72, 60 m, 5 shots, 2 Hz, dt 4 ms, nt 250, free surface, PML 10, accuracy 4
    tiny      16 x 48, 20 m, 3 shots, 8 Hz, dt 2 ms, nt 200, free surface, PML 6, accuracy 4 (test size)

The true model is ``--model PATH`` (an ``.npy`` velocity in m/s, resampled to the preset
grid) when given and present, else ``/work/shared/data/marmousi/marmousi_94x288.npy`` if it
exists, else a synthetic layered model; the initial model is the true one Gaussian-smoothed.

Reported per method: ``compile_s`` (first epoch minus a steady epoch: tracing + XLA
compilation), ``s_per_epoch`` (mean of the epochs after the first), ``peak_rss_mb``,
``params`` (number of trainable scalars). Multi-seed: ``--seeds N`` runs N seeds of
``--seed-method`` vmapped in one program and N sequential runs (one compilation reused),
both for ``--epochs`` epochs, and reports the steady per-epoch time of each and the speedup.

Usage::

    python benchmarks/inversion.py --quick                     # all methods, small preset
    python benchmarks/inversion.py --preset marmousi --epochs 2 --methods adfwi,ifwi,ig-fwi
    python benchmarks/inversion.py --preset marmousi --seeds 8 --seed-preset quick

Writes ``benchmarks/out/inversion.json`` (``--out``) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = "/work/shared/data/marmousi/marmousi_94x288.npy"
ALL_METHODS = ["adfwi", "adfwi-tv", "weci-fwi", "ms-fwi", "ifwi", "winfwi", "lr-fwi", "mpe-fwi", "ig-fwi",
               "lrg-fwi", "fad-fwi", "gnn-fwi"]

PRESETS = {
    "marmousi": dict(shape=(94, 288), dx=15.0, n_shots=13, src_spacing=20, f0=8.0, dt=0.0019, nt=1000,
                     free_surface=True, pml_width=20, accuracy=8),
    "reduced": dict(shape=(47, 144), dx=30.0, n_shots=13, src_spacing=10, f0=4.0, dt=0.0038, nt=500,
                    free_surface=True, pml_width=20, accuracy=8),
    "quick": dict(shape=(24, 72), dx=60.0, n_shots=5, src_spacing=15, f0=2.0, dt=0.004, nt=250,
                  free_surface=True, pml_width=10, accuracy=4),
    "tiny": dict(shape=(16, 48), dx=20.0, n_shots=3, src_spacing=20, f0=8.0, dt=0.002, nt=200,
                 free_surface=True, pml_width=6, accuracy=4),
}


# --------------------------------------------------------------------------- worker side


def _problem(preset: dict, model_path):
    import numpy as np
    from scipy.ndimage import gaussian_filter, zoom

    import jaxfwi

    nz, nx = preset["shape"]
    v_true, source = None, "synthetic layered"
    for path in ([model_path] if model_path else []) + [DEFAULT_MODEL]:
        if path and os.path.exists(path):
            v = np.load(path).astype(np.float64)
            if v.shape != (nz, nx):
                v = zoom(v, (nz / v.shape[0], nx / v.shape[1]), order=1)
            v_true, source = v.astype(np.float32), path
            break
    if v_true is None:
        z = np.arange(nz)[:, None] / nz
        x = np.arange(nx)[None, :] / nx
        v_true = (1500.0 + 2500.0 * z + 300.0 * np.sin(2 * np.pi * (3 * z + 0.5 * x))).astype(np.float32)
        v_true = np.round(v_true / 250.0) * 250.0
    v_init = gaussian_filter(v_true, sigma=max(2.0, nz / 10), mode="nearest").astype(np.float32)
    w = jaxfwi.ricker(preset["f0"], preset["nt"], preset["dt"])
    span = (preset["n_shots"] - 1) * preset["src_spacing"]
    first = max(0, (nx - 1 - span) // 2)
    survey = jaxfwi.Survey.surface_line((nz, nx), preset["n_shots"], w, preset["dt"], src_first=first,
                                        src_spacing=preset["src_spacing"])
    fk = dict(accuracy=preset["accuracy"], pml_width=preset["pml_width"], free_surface=preset["free_surface"])
    d_obs = jaxfwi.forward(v_true, preset["dx"], survey, **fk)
    d_obs.block_until_ready()
    return v_true, v_init, survey, d_obs, fk, source


def _rss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def worker_method(args):
    import warnings

    import jax
    import numpy as np

    from jaxfwi import models
    from jaxfwi.inversion import fit, method_defaults

    warnings.simplefilter("ignore")
    preset = PRESETS[args.preset]
    v_true, v_init, survey, d_obs, fk, source = _problem(preset, args.model)
    param = models.build(args.worker, v_init)
    kw = method_defaults(args.worker)
    t0 = time.perf_counter()
    r = fit(param, d_obs, survey, preset["dx"], epochs=args.epochs, key=jax.random.key(0), forward_kwargs=fk,
            progress=False, v_true=v_true, method=args.worker, **kw)
    total = time.perf_counter() - t0
    t = r.history["time"]
    steady = float(np.mean(t[1:])) if len(t) > 1 else float("nan")
    return dict(method=args.worker, preset=args.preset, epochs=args.epochs, s_per_epoch=steady,
                first_epoch_s=float(t[0]), compile_s=float(t[0] - steady) if len(t) > 1 else float("nan"),
                total_s=total, peak_rss_mb=_rss_mb(), params=int(models.count_params(r.params)),
                loss_first=float(r.history["loss"][0]), loss_last=float(r.history["loss"][-1]),
                mse_last=float(r.history["mse"][-1]), model=source, devices=len(jax.devices()),
                backend=jax.default_backend())


def worker_seeds(args):
    import warnings

    import jax
    import numpy as np

    from jaxfwi import models
    from jaxfwi.inversion import fit, fit_seeds, method_defaults

    warnings.simplefilter("ignore")
    preset = PRESETS[args.preset]
    v_true, v_init, survey, d_obs, fk, source = _problem(preset, args.model)
    param = models.build(args.seed_method, v_init)
    kw = method_defaults(args.seed_method)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    common = dict(epochs=args.epochs, forward_kwargs=fk, progress=False, method=args.seed_method, **kw)
    t0 = time.perf_counter()
    many = fit_seeds(param, d_obs, survey, preset["dx"], keys=keys, **common)
    t_many = time.perf_counter() - t0
    seq_epoch, t0 = [], time.perf_counter()
    for i in range(args.seeds):
        one = fit(param, d_obs, survey, preset["dx"], key=keys[i], **common)
        seq_epoch.append(float(np.mean(one.history["time"][1:])))
    t_seq = time.perf_counter() - t0
    v_epoch = float(np.mean(many.history["time"][1:]))
    s_epoch = float(np.sum(seq_epoch))
    return dict(kind="seeds", method=args.seed_method, preset=args.preset, seeds=args.seeds, epochs=args.epochs,
                vmapped_s_per_epoch=v_epoch, sequential_s_per_epoch=s_epoch, speedup_per_epoch=s_epoch / v_epoch,
                vmapped_total_s=t_many, sequential_total_s=t_seq, speedup_total=t_seq / t_many,
                peak_rss_mb=_rss_mb(), model=source, backend=jax.default_backend())


# --------------------------------------------------------------------------- driver


def _run_child(argv, timeout):
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            out["wall_s"] = time.perf_counter() - t0
            return out
    return {"error": (p.stderr or p.stdout)[-800:]}


def _fmt(x, spec):
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="marmousi", choices=sorted(PRESETS))
    ap.add_argument("--quick", action="store_true", help="use the quick preset (and the quick seed preset)")
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated methods ('' for none)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2: the first includes compilation)")
    ap.add_argument("--model", default=None, help="true velocity .npy (m/s); optional")
    ap.add_argument("--seeds", type=int, default=8, help="seeds for the vmap throughput test (0 to skip)")
    ap.add_argument("--seed-method", default="ig-fwi")
    ap.add_argument("--seed-preset", default=None, help="preset of the seed test (default: quick)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "inversion.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker is not None:
        res = worker_seeds(args) if args.worker == "seeds" else worker_method(args)
        print("RESULT " + json.dumps(res))
        return 0

    if args.quick:
        args.preset = "quick"
    seed_preset = args.seed_preset or "quick"
    methods = [m for m in args.methods.split(",") if m]
    common = ["--epochs", str(args.epochs)] + (["--model", args.model] if args.model else [])
    rows = []
    print(f"preset {args.preset}: {PRESETS[args.preset]}", flush=True)
    for m in methods:
        r = _run_child(["--worker", m, "--preset", args.preset] + common, args.timeout)
        r.setdefault("method", m)
        rows.append(r)
        if "error" in r:
            print(f"  {m:9s} ERROR {r['error'][-300:]}", flush=True)
        else:
            print(f"  {m:9s} {r['s_per_epoch']:8.3f} s/epoch  compile {r['compile_s']:7.2f} s  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB  params {r['params']}", flush=True)
    seeds = None
    if args.seeds > 0:
        seeds = _run_child(["--worker", "seeds", "--preset", seed_preset, "--seeds", str(args.seeds),
                            "--seed-method", args.seed_method] + common, args.timeout)

    print()
    print(f"| method | s/epoch | compile s | peak RSS MB | params | loss first -> last | preset |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | error | | | | | {args.preset} |")
            continue
        print(f"| {r['method']} | {_fmt(r['s_per_epoch'], '.3f')} | {_fmt(r['compile_s'], '.1f')} | "
              f"{_fmt(r['peak_rss_mb'], '.0f')} | {r['params']} | {_fmt(r['loss_first'], '.4g')} -> "
              f"{_fmt(r['loss_last'], '.4g')} | {args.preset} |")
    if seeds is not None:
        print()
        if "error" in seeds:
            print(f"multi-seed: ERROR {seeds['error'][-500:]}")
        else:
            print(f"multi-seed ({seeds['method']}, {seeds['seeds']} seeds, preset {seeds['preset']}, "
                  f"{seeds['epochs']} epochs): vmapped {seeds['vmapped_s_per_epoch']:.3f} s/epoch vs sequential "
                  f"{seeds['sequential_s_per_epoch']:.3f} s/epoch (sum of {seeds['seeds']} runs) -> "
                  f"{seeds['speedup_per_epoch']:.2f}x; wall incl. compile {seeds['vmapped_total_s']:.1f} s vs "
                  f"{seeds['sequential_total_s']:.1f} s -> {seeds['speedup_total']:.2f}x")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
                   "preset": args.preset, "preset_settings": PRESETS[args.preset], "methods": rows,
                   "seeds": seeds, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    from jaxfwi.hostmem import reexec_with_hugepages

    reexec_with_hugepages()  # huge pages for the stored wavefields (JAXFWI_HUGEPAGES=0: off)
    sys.exit(main())
