"""Reproduce (a CPU-sized version of) the papers' comparison tables with jaxfwi.experiments.

    python benchmarks/reproduce.py --measure                 # time per epoch of the preset first
    python benchmarks/reproduce.py --max-minutes 40          # run the blocks in priority order
    python benchmarks/reproduce.py --report-only             # rebuild benchmarks/results/ from the runs

Raw runs go to ``benchmarks/out/repro_runs`` (git-ignored: they hold copies of the
third-party benchmark models); the committed report (tables, a few figures) goes to
``benchmarks/results``. The run is resumable: start the same command again and
finished scenarios are skipped, an interrupted one continues from its checkpoint.

Blocks (METHODS.md section 6); the default order is ABECDIGH:

  A  Marmousi, CR-FWI Table 1 smooth / constant columns, all nine methods
  B  Marmousi data conditions: noise 8 sigma0, high-pass 6 Hz, 5 shots (smooth initial model), all but WECI-FWI
  D  Overthrust and Salt, smooth / constant, the grid, INR and low-rank methods
  E  FAD-FWI vs grid FWI on Overthrust (noise 0.5 sigma0 + missing < 2.5 Hz; 1-D initial model
     exact and perturbed by -20 / +20 %)
  C  Denorm vs pretraining on Marmousi (IFWI; smooth, linear)
  G  Overthrust and Salt, the remaining Table-1 methods (ADFWI-TV, WECI-FWI, WinFWI)
  H  Marmousi linear initial model (the SSIM table's middle column), all nine
  I  FAD-FWI and grid FWI on the FAD-FWI case, initial model perturbed by -10 / +10 / -30 / +30 %

Sizes: the presets reduced by 4 (grid, peak frequency, time axis; the frequencies of the data
conditions and of MS-FWI's bands scale with it), a 10-cell PML, 40 epochs with every method's
learning rate x4 (see benchmarks/results/README.md for why, and what one epoch costs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

REDUCE = 4
EPOCHS = 40
LR_SCALE = 4.0
SEEDS = [0, 1, 2]
ACQUISITION = {"pml_width": 10}

TABLE1 = ["adfwi", "adfwi-tv", "weci-fwi", "ms-fwi", "ifwi", "winfwi", "lr-fwi", "mpe-fwi", "ig-fwi"]
CORE = ["adfwi", "ms-fwi", "ifwi", "lr-fwi", "mpe-fwi", "ig-fwi"]


def blocks(seeds=SEEDS, epochs=EPOCHS, reduce=REDUCE, lr_scale=LR_SCALE):
    base = dict(reduce=reduce, epochs=epochs, lr_scale=lr_scale, seeds=list(seeds), acquisition=ACQUISITION)
    out = {}
    # A: smooth and constant next to each other per method, so a partial run still pairs them
    out["A"] = [dict(base, models=["marmousi"], inits=["smooth", "constant"], methods=[m]) for m in TABLE1]
    out["B"] = [dict(base, models=["marmousi"], inits=["smooth"], conditions=["noise:8", "highpass:6", "shots:5"],
                     methods=[m]) for m in TABLE1 if m != "weci-fwi"]
    out["D"] = [dict(base, models=[mod], inits=["smooth", "constant"], methods=[m])
                for m in CORE for mod in ("overthrust", "salt")]
    fad = dict(base, models=["fadfwi_overthrust"], inits=["profile"], conditions=["noise:0.5+highpass:2.5"],
               methods=["adfwi", "fad-fwi"])
    # FAD-FWI: the committed rows were run with the plain U-Net (now norm="none"), which diverges within a
    # few Adam updates at lr x4 and at the paper's lr (README); the default U-Net normalises its
    # convolutions and trains. Both blocks include FAD-FWI; re-run them to replace the committed rows.
    out["E"] = [dict(fad, perturbs=[p]) for p in (0, -20, 20)]
    out["I"] = [dict(fad, perturbs=[p]) for p in (-10, 10, -30, 30)]
    out["C"] = [dict(base, models=["marmousi"], inits=["smooth", "linear"], methods=["ifwi"],
                     strategies=["denorm", "pretrain"])]
    out["G"] = [dict(base, models=[mod], inits=["smooth", "constant"], methods=[m])
                for m in ("adfwi-tv", "weci-fwi", "winfwi") for mod in ("overthrust", "salt")]
    out["H"] = [dict(base, models=["marmousi"], inits=["linear"], methods=TABLE1)]
    return out


def scenarios(which, **kw):
    from jaxfwi.experiments import expand_grid

    out, seen = [], set()
    for name in which:
        for g in blocks(**kw)[name]:
            for sc in expand_grid(**g):
                if sc not in seen:
                    seen.add(sc)
                    out.append(sc)
    return out


def measure(reduce, epochs=3):
    """Seconds per epoch (after compilation) of the reduced Marmousi preset, one seed."""
    import jax
    import warnings

    from jaxfwi.experiments import Scenario, observed_data, prepare
    from jaxfwi.inversion import invert

    warnings.simplefilter("ignore")
    for method in ("adfwi", "ig-fwi"):
        sc = Scenario(model="marmousi", reduce=reduce, acquisition=ACQUISITION, method=method, epochs=epochs)
        st = prepare(sc)
        d, survey, _ = observed_data(st, [0])
        t0 = time.perf_counter()
        res = invert(d, survey, st.dx, st.v_init, method=method, epochs=epochs, key=jax.random.key(0),
                     v_true=st.v_true, progress=False, max_vel=st.bounds[1], bounds=st.bounds, **st.forward)
        t = res.history["time"]
        print(f"{method:8s} reduce={reduce} grid={st.preset.shape} nt={st.preset.nt}: first epoch (compile) "
              f"{t[0]:.1f} s, then {sum(t[1:]) / max(1, len(t) - 1):.2f} s/epoch; total {time.perf_counter() - t0:.1f} s")


NOTES = """Generated by `benchmarks/reproduce.py` (command and the reductions: see README.md in this folder).
Marmousi/Overthrust/Salt presets reduced by {reduce} (grid, peak frequency and time axis), 10-cell PML,
{epochs} epochs, all learning rates x{lr:g}. Published numbers are for the full-size problems with
hundreds to thousands of iterations: compare directions and orderings, not values."""


def update_spectra(runs, out_path, cut=0.5):
    """Finding 4 (spectral bias): share of the model update's energy (v_final - v_init, seed mean of
    the per-seed shares) above ``cut`` x the Nyquist wavenumber (2-D FFT, radial |k| / k_Nyquist), per
    scenario and method. Writes a Markdown table."""
    import json

    import numpy as np

    rows = []
    for d in sorted(Path(runs).iterdir()):
        if not (d / "initial.npy").exists():
            continue
        v0 = np.load(d / "initial.npy")
        shares = []
        label = None
        for sd in sorted(d.glob("seed*")):
            if not (sd / "velocity.npy").exists() or not (sd / "metrics.json").exists():
                continue
            with open(sd / "metrics.json") as f:
                m = json.load(f)
            if m.get("copied_from_seed") is not None:
                continue
            label = m["labels"]
            du = np.load(sd / "velocity.npy") - v0
            du = du - du.mean()
            p = np.abs(np.fft.fft2(du)) ** 2
            kz = np.fft.fftfreq(du.shape[0])[:, None] / 0.5
            kx = np.fft.fftfreq(du.shape[1])[None, :] / 0.5
            k = np.sqrt(kz ** 2 + kx ** 2)
            shares.append(float(p[k > cut].sum() / max(p.sum(), 1e-30)))
        if shares:
            rows.append((label["model"], label["init"], label["condition"], label["method"], float(np.mean(shares)),
                         float(np.std(shares)), len(shares)))
    lines = [f"| model | initial | data | method | update energy above {cut:g} k_Nyquist | runs |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} ± {r[5]:.3f} | {r[6]} |")
    Path(out_path).write_text("# Wavenumber content of the model updates (finding 4)\n\n"
                              + update_spectra.__doc__.split("\n\n")[0].replace("\n   ", "") + "\n\n"
                              + "\n".join(lines) + "\n")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(HERE / "out" / "repro_runs"), help="raw results folder (git-ignored)")
    ap.add_argument("--out", default=str(HERE / "results"), help="report folder (committed)")
    ap.add_argument("--blocks", default="ABECDIGH", help="which blocks, in this order (default ABECDIGH)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    ap.add_argument("--reduce", type=int, default=REDUCE)
    ap.add_argument("--lr-scale", type=float, default=LR_SCALE)
    ap.add_argument("--max-minutes", type=float, default=None, help="start no new scenario after this long")
    ap.add_argument("--measure", action="store_true", help="only time an epoch of the reduced preset")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from --runs")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--figures", nargs="*", default=["marmousi_r4_smooth_clean", "marmousi_r4_constant_clean",
                                                    "overthrust_r4_constant_clean"],
                    help="scenario slugs to draw (default: Marmousi smooth and constant)")
    args = ap.parse_args(argv)
    # scenarios that differ only in data or initial model compile the same programs: keep them on disk
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(HERE / "out" / "jax_cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    if args.measure:
        measure(args.reduce)
        return
    from jaxfwi.experiments import build_report, run_scenarios

    kw = dict(seeds=args.seeds, epochs=args.epochs, reduce=args.reduce, lr_scale=args.lr_scale)
    if not args.report_only:
        scs = scenarios(list(args.blocks), **kw)
        print(f"reproduce: {len(scs)} runs, blocks {args.blocks}, -> {args.runs}", flush=True)
        run_scenarios(scs, args.runs, progress=False, dry_run=args.dry_run,
                      stop_after_s=None if args.max_minutes is None else 60 * args.max_minutes,
                      log=lambda s: print(time.strftime("%H:%M:%S"), s, flush=True))
    if args.dry_run:
        return
    if not os.path.isdir(args.runs):
        sys.exit(f"reproduce: no runs in {args.runs}")
    out = build_report(args.runs, args.out, figures=args.figures, title="jaxfwi reproduction (CPU-sized)",
                       notes=NOTES.format(reduce=args.reduce, epochs=args.epochs, lr=args.lr_scale), dpi=70)
    print("wrote", out["markdown"], out["csv"], f"and {len(out['figures'])} figures")
    update_spectra(args.runs, Path(args.out) / "spectra.md")
    print("wrote", Path(args.out) / "spectra.md")


if __name__ == "__main__":
    main()
