"""Reproduce (a CPU-sized version of) the papers' comparison tables with jaxfwi.experiments.

    python benchmarks/reproduce.py --measure                 # time per epoch of the preset first
    python benchmarks/reproduce.py --max-minutes 40          # run the blocks in priority order
    python benchmarks/reproduce.py --report-only             # rebuild every committed report from its records

Suites (``--suite``), each with its raw-run folder, report folder and record folder:

  quarter    presets reduced by 4, 40 epochs, lr x4, 3 seeds (blocks ABECDIGH below): report in
             ``benchmarks/results``; raw runs ``benchmarks/out/repro_runs``; records
             ``benchmarks/results/records``
  half       the Marmousi block at half size with the paper's learning rates and iteration counts
             (blocks abcde below): report ``benchmarks/results/half``; raw runs
             ``benchmarks/out/repro_half``; records ``benchmarks/results/half/records``
  fad        blocks E and I (FAD-FWI with the normalised U-Net beside ADFWI) at quarter size with the
             papers' learning rates and 300 epochs, seed 0: report and records in ``benchmarks/results/fad``;
             raw runs ``benchmarks/out/repro_fad``
  synthetic  a seconds-long check on a tiny built-in model (no data files): report and records in
             ``benchmarks/results/synthetic`` (the test suite rebuilds its table from the record)

Raw runs are git-ignored (they hold copies of the third-party benchmark models). Every finished
scenario also gets a compact **record** (``jaxfwi.experiments.records``: float16 model update,
per-epoch histories, the metrics; no true model), written into the suite's record folder as it
finishes; commit that folder. ``--report-only`` restores each suite's records into
``benchmarks/out/<suite>_restored`` (true and initial models recomputed from the data folder) and
rebuilds the suite's tables and figures from them; with no records it falls back to the raw runs.
``--export-records`` writes records for every finished run of the raw-run folder (runs made
before the runner wrote records). The run is resumable: start the same command again and finished
scenarios are skipped, an interrupted one continues from its last checkpoint.

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

Half-size blocks (suite ``half``, Marmousi reduced by 2: 47 x 144 at 30 m, 4 Hz, 13 shots, every
surface receiver, free surface, accuracy 8, 10-cell PML; learning rates as the paper: grid 5 m/s, CR
methods 1e-4; 500 epochs from smooth / linear, 1500 from constant), in priority order:

  a  all ten methods (Table 1's nine + LRG-FWI), smooth (500) then constant (1500), seed 0
  b  seeds 1, 2 of the CR methods (ifwi winfwi lr-fwi mpe-fwi ig-fwi lrg-fwi) from constant
  c  linear initial model (500), all ten, seed 0
  d  noise 8 sigma0, high-pass 6 Hz (scaled: 3 Hz) and 5 shots from smooth (500) for adfwi, ms-fwi,
     ifwi, lr-fwi, mpe-fwi, ig-fwi, seed 0
  e  the Denorm paper's comparison: IFWI by denormalisation (the runs of a and c) against pretraining
     on the initial model, from smooth and linear (500), seed 0

Sizes (suite quarter): the presets reduced by 4 (grid, peak frequency, time axis; the frequencies of the data
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
TEN = TABLE1 + ["lrg-fwi"]
CR_METHODS = ["ifwi", "winfwi", "lr-fwi", "mpe-fwi", "ig-fwi", "lrg-fwi"]

#: the half-size Marmousi block (issue 16): the paper's learning rates and iteration counts
HALF = dict(reduce=2, lr_scale=1.0, acquisition=ACQUISITION, epochs_smooth=500, epochs_constant=1500)

#: the seconds-long synthetic suite whose committed record the tests rebuild
SYNTHETIC = {"reduce": 1, "epochs": 6, "lr_scale": 1.0,
             "acquisition": {"shape": [12, 24], "nt": 120, "n_shots": 2, "pml_width": 6, "src_spacing_m": 200.0},
             "options": {"accuracy": 4}}

SUITES = {
    "quarter": dict(runs=HERE / "out" / "repro_runs", out=HERE / "results", records=HERE / "results" / "records",
                    blocks="ABECDIGH", title="jaxfwi reproduction (CPU-sized)",
                    figures=["marmousi_r4_smooth_clean", "marmousi_r4_constant_clean", "overthrust_r4_constant_clean"]),
    "half": dict(runs=HERE / "out" / "repro_half", out=HERE / "results" / "half",
                 records=HERE / "results" / "half" / "records", blocks="abcde",
                 title="jaxfwi reproduction: Marmousi at half size, the paper's schedule",
                 figures=["marmousi_r2_smooth_clean", "marmousi_r2_constant_clean", "marmousi_r2_linear_clean"]),
    "fad": dict(runs=HERE / "out" / "repro_fad", out=HERE / "results" / "fad", records=HERE / "results" / "fad" / "records",
                blocks="EI", title="jaxfwi reproduction: FAD-FWI (normalised U-Net) beside ADFWI, the paper's learning rates",
                figures=["fadfwi_overthrust_r4_profile_noise"]),
    "synthetic": dict(runs=HERE / "out" / "repro_synthetic", out=HERE / "results" / "synthetic",
                      records=HERE / "results" / "synthetic" / "records", blocks="s",
                      title="jaxfwi record check (tiny synthetic model)", figures=[]),
}


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


def half_blocks(seeds=None, epochs=None, reduce=None, lr_scale=None):
    """The half-size Marmousi blocks a-e (module docs); ``epochs`` overrides both counts (tests)."""
    h = dict(HALF)
    if reduce is not None:
        h["reduce"] = reduce
    if lr_scale is not None:
        h["lr_scale"] = lr_scale
    e_s = epochs or h["epochs_smooth"]
    e_c = epochs or h["epochs_constant"]
    base = dict(models=["marmousi"], reduce=h["reduce"], lr_scale=h["lr_scale"], acquisition=h["acquisition"])
    s0 = [0] if seeds is None else [seeds[0]]
    s12 = [1, 2] if seeds is None else list(seeds[1:])
    out = {
        "a": [dict(base, inits=["smooth"], epochs=e_s, methods=TEN, seeds=s0),
              dict(base, inits=["constant"], epochs=e_c, methods=TEN, seeds=s0)],
        "b": [dict(base, inits=["constant"], epochs=e_c, methods=CR_METHODS, seeds=s12)] if s12 else [],
        "c": [dict(base, inits=["linear"], epochs=e_s, methods=TEN, seeds=s0)],
        "d": [dict(base, inits=["smooth"], epochs=e_s, conditions=["noise:8", "highpass:6", "shots:5"],
                   methods=CORE, seeds=s0)],
        # the Denorm paper's comparison: its denorm runs are those of blocks a and c (same scenario)
        "e": [dict(base, inits=["smooth", "linear"], epochs=e_s, methods=["ifwi"],
                   strategies=["denorm", "pretrain"], seeds=s0)],
    }
    return out


def synthetic_blocks(seeds=None, epochs=None, reduce=None, lr_scale=None):
    base = dict(SYNTHETIC)
    if epochs:
        base["epochs"] = epochs
    return {"s": [dict(base, models=["synthetic:default"], inits=["smooth", "constant"], methods=["adfwi", "ifwi"],
                       seeds=[0] if seeds is None else list(seeds))]}


#: the FAD-FWI re-run (issue 16 item 3): blocks E and I of the quarter suite with the normalised U-Net,
#: the papers' learning rates (FAD-FWI Adam 0.01, ADFWI 5 m/s: no x4) and more epochs than 40
FAD = dict(epochs=300, lr_scale=1.0, seeds=[0])


def fad_blocks(seeds=None, epochs=None, reduce=None, lr_scale=None):
    q = blocks(seeds=seeds or FAD["seeds"], epochs=epochs or FAD["epochs"], reduce=reduce or REDUCE,
               lr_scale=lr_scale or FAD["lr_scale"])
    return {"E": q["E"], "I": q["I"]}


def suite_blocks(suite, **kw):
    if suite == "fad":
        return fad_blocks(**kw)
    if suite == "half":
        return half_blocks(**kw)
    if suite == "synthetic":
        return synthetic_blocks(**kw)
    return blocks(**{k: v for k, v in kw.items() if v is not None})


def scenarios(which, suite="quarter", **kw):
    from jaxfwi.experiments import expand_grid

    out, seen = [], set()
    for name in which:
        for g in suite_blocks(suite, **kw)[name]:
            for sc in expand_grid(**g):
                if sc not in seen:
                    seen.add(sc)
                    out.append(sc)
    return out


def _only_methods(scs, methods):
    """The scenarios of ``scs`` whose method is in the comma-separated ``methods``, in that order."""
    want = [m.strip() for m in methods.split(",") if m.strip()]
    return [sc for m in want for sc in scs if sc.method == m]


def _check_methods(methods, scs):
    """Exit with a clear message if a name in ``--methods`` is in none of the chosen blocks."""
    known = {sc.method for sc in scs}
    bad = [m.strip() for m in methods.split(",") if m.strip() and m.strip() not in known]
    if bad:
        sys.exit(f"reproduce: --methods {','.join(bad)}: not in the chosen blocks, which hold "
                 f"{', '.join(sorted(known))}; pick from those or add the block with --blocks")


def _only_perturbs(scs, perturbs):
    """The scenarios of ``scs`` whose initial-model perturbation (percent) is in ``perturbs``, in that
    order (``--perturbs 30 -30`` runs the +30 % scenarios first)."""
    return [sc for p in perturbs for sc in scs if float(sc.perturb) == float(p)]


def _check_perturbs(perturbs, scs):
    """Exit with a clear message if a value in ``--perturbs`` is in none of the chosen blocks."""
    known = sorted({float(sc.perturb) for sc in scs})
    bad = [p for p in perturbs if float(p) not in known]
    if bad:
        sys.exit(f"reproduce: --perturbs {' '.join(f'{p:g}' for p in bad)}: no scenario of the chosen blocks "
                 f"starts from that perturbation; they hold {', '.join(f'{p:g}' for p in known)} (percent)")


def measure(reduce, epochs=6):
    """Seconds per epoch (after compilation) of the reduced Marmousi preset, one seed; also the
    1-minute load average of the machine at the end (other processes share the CPU)."""
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
              f"{t[0]:.1f} s, then {sum(t[1:]) / max(1, len(t) - 1):.2f} s/epoch (median {sorted(t[1:])[len(t[1:]) // 2]:.2f}); "
              f"total {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.2f}", flush=True)


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


def curves_by_start(records_dir, out_path, epochs, dpi=80):
    """One panel per initial model: model MSE along the run of every method in the records of
    ``records_dir`` that ran ``epochs`` epochs (seed mean as a line, the seeds' range shaded) and the
    initial model's MSE (dashed). Panels are ordered by the initial model's perturbation. Returns the
    panel titles, or [] when no record ran that many epochs (nothing is written then)."""
    import numpy as np

    from jaxfwi.experiments.records import read_record

    curves = {}   # init label -> method -> [seeds, epochs]
    start = {}
    order = {}
    for f in sorted(Path(records_dir).glob("*.npz")):
        meta, arrays = read_record(f)
        sc = meta["scenario_json"]["scenario"]
        if int(sc["epochs"]) != int(epochs):
            continue
        seeds = sorted(meta["seeds"], key=int)
        first = meta["seeds"][seeds[0]]["metrics"]
        init = first["labels"]["init"]
        hs = [arrays[f"seed{s}/history/mse"] for s in seeds]
        n = min(len(h) for h in hs)  # seeds of one record share their length; guard anyway
        curves.setdefault(init, {})[sc["method"]] = np.stack([h[:n] for h in hs])
        start[init] = float(first["initial"]["mse"])
        order[init] = float(sc.get("perturb", 0.0))
    if not curves:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits = sorted(curves, key=lambda k: (abs(order[k]), order[k], k))
    ncol = min(4, len(inits))
    nrow = -(-len(inits) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax, init in zip(axes.flat, inits):
        for j, (method, h) in enumerate(sorted(curves[init].items())):
            ep = np.arange(1, h.shape[1] + 1)
            ax.plot(ep, h.mean(0), color=f"C{j}", lw=1.2, label=f"{method} ({h.shape[0]} seeds)")
            ax.fill_between(ep, h.min(0), h.max(0), color=f"C{j}", alpha=0.25, lw=0)
        ax.axhline(start[init], color="k", ls="--", lw=0.8, label="initial model")
        ax.set_title(init, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("model MSE (km/s)$^2$", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(inits):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return inits


def _has_runs(runs) -> bool:
    from jaxfwi.experiments import collect

    return bool(collect(runs))


def _report(suite, cfg, args, kw):
    """Rebuild one suite's report: from its records (restored into ``out/<suite>_restored``), else from
    its raw runs. Returns False when there is neither."""
    from jaxfwi.experiments import build_report
    from jaxfwi.experiments.records import record_size, restore_records

    records = Path(args.records or cfg["records"])
    runs = Path(args.runs or cfg["runs"])
    out = Path(args.out or cfg["out"])
    figures = args.figures if args.figures is not None else cfg["figures"]
    n_rec = len(list(records.glob("*.npz"))) if records.is_dir() else 0
    if n_rec:
        src = HERE / "out" / f"{suite}_restored"
        pats = [str(p) for p in figures]

        def want(m):  # residual gathers only for the scenarios whose figures are drawn
            from jaxfwi.experiments.report import _slug
            lab = m["labels"]
            block = (lab["model"], lab["init"], lab["condition"], m["scenario"]["epochs"], m["scenario"]["lr_scale"])
            return any(p in _slug(block) for p in pats)

        info = restore_records(records, src, gathers=want, log=print)
        print(f"{suite}: restored {len(info['restored'])} of {n_rec} records ({record_size(records) / 1024:.0f} KiB) "
              f"into {src}; skipped {len(info['skipped'])}; largest |metric(float16 model) - stored metric|: "
              + ", ".join(f"{k} {v:.2e}" for k, v in info["max_metric_error"].items()))
        if not info["restored"]:
            print(f"{suite}: nothing restored (data folder missing?): {sorted(set(info['skipped'].values()))[:1]}")
            return False
    elif runs.is_dir() and _has_runs(runs):
        src = runs
        print(f"{suite}: no records in {records}; building from the raw runs in {runs}")
    else:
        print(f"{suite}: no records in {records} and no raw runs in {runs}: its committed tables cannot be rebuilt")
        return False
    if suite == "quarter":
        notes = NOTES.format(reduce=kw["reduce"] or REDUCE, epochs=kw["epochs"] or EPOCHS,
                             lr=kw["lr_scale"] or LR_SCALE)
    elif suite == "half":
        from jaxfwi.experiments import collect

        done = {(r["dir_name"], r["seed"]) for r in collect(src)}
        lines = []
        for b in cfg["blocks"]:
            want = {(sc.dir_name, sc.seed) for sc in scenarios([b], suite="half", **kw)}
            n = len(want & done)
            lines.append(f"block {b}: {n} of {len(want)} runs" + (" (partial)" if 0 < n < len(want) else
                                                                   " (not run)" if n == 0 else " (complete)"))
        notes = NOTES_HALF + "\n\n" + "; ".join(lines) + "."
    elif suite == "fad":
        notes = NOTES_FAD
    else:
        notes = NOTES_SYNTHETIC
    res = build_report(src, out, figures=figures or "none", title=cfg["title"], notes=notes, dpi=70)
    print("wrote", res["markdown"], res["csv"], f"and {len(res['figures'])} figures")
    if suite != "synthetic":
        update_spectra(src, out / "spectra.md")
        print("wrote", out / "spectra.md")
    if suite == "fad" and n_rec:
        fig = out / "fig_mse_by_start_e2000.png"
        if curves_by_start(records, fig, 2000):
            print("wrote", fig)
    return True


NOTES_HALF = """Generated by `benchmarks/reproduce.py --suite half` (see ../README.md, section "Half-size Marmousi
block"). Marmousi reduced by 2: 47 x 144 at 30 m, 4 Hz, 13 shots, every surface receiver, free surface,
accuracy 8, 10-cell PML. The paper's learning rates (grid 5 m/s, CR methods 1e-4) and iteration counts
(500 epochs from smooth / linear, 1500 from constant). Rebuilt from the records in `records/`."""

NOTES_FAD = """Generated by `benchmarks/reproduce.py --suite fad` (see ../README.md, section "FAD-FWI re-run"):
the FAD-FWI Overthrust case reduced by 4 (24 x 101, 20 shots, receivers at 85 m depth, noise
0.5 sigma0, data below the scaled 2.5 Hz removed), the normalised U-Net, the papers' learning rates
(FAD-FWI Adam 0.01, ADFWI 5 m/s), seeds 0, 1 and 2, at 300 epochs and at the paper's 2000 (each count in
its own tables). Rebuilt from `records/`."""

NOTES_SYNTHETIC = """Generated by `benchmarks/reproduce.py --suite synthetic`: a tiny built-in model (no data files),
used by `tests/test_records.py` to check that a committed record rebuilds its table."""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default=None,
                    help="quarter (default for runs), half, synthetic; --report-only without it: every suite")
    ap.add_argument("--runs", default=None, help="raw results folder (git-ignored; default per suite)")
    ap.add_argument("--out", default=None, help="report folder (committed; default per suite)")
    ap.add_argument("--records", default=None, help="record folder (committed; default per suite)")
    ap.add_argument("--blocks", default=None, help="which blocks, in this order (quarter: ABECDIGH, half: abcde)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs (half: both counts)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--methods", default=None,
                    help="comma-separated: run only these methods of the blocks, in this order")
    ap.add_argument("--perturbs", type=float, nargs="+", default=None,
                    help="run only the scenarios whose initial model is perturbed by these percents, in this "
                         "order (fad blocks E, I: 0, -20, 20, -10, 10, -30, 30)")
    ap.add_argument("--reduce", type=int, default=None)
    ap.add_argument("--lr-scale", type=float, default=None)
    ap.add_argument("--max-minutes", type=float, default=None, help="start no new scenario after this long")
    ap.add_argument("--measure", action="store_true", help="only time an epoch of the reduced preset")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report(s) from records / runs")
    ap.add_argument("--export-records", action="store_true",
                    help="only write records of every finished run in --runs to --records")
    ap.add_argument("--no-report", action="store_true", help="run, but do not rebuild the report afterwards")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--figures", nargs="*", default=None,
                    help="scenario slugs to draw (default per suite, e.g. marmousi_r4_smooth_clean)")
    args = ap.parse_args(argv)
    # scenarios that differ only in data or initial model compile the same programs: keep them on disk
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(HERE / "out" / "jax_cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    kw = dict(seeds=args.seeds, epochs=args.epochs, reduce=args.reduce, lr_scale=args.lr_scale)
    if args.measure:
        suite = args.suite or "quarter"
        measure(args.reduce or (HALF["reduce"] if suite == "half" else REDUCE))
        return
    if args.report_only and args.suite is None:
        done = [s for s in ("quarter", "half", "fad", "synthetic") if _report(s, SUITES[s], args, kw)]
        print("rebuilt:", ", ".join(done) or "nothing")
        return
    suite = args.suite or "quarter"
    cfg = SUITES[suite]
    runs = Path(args.runs or cfg["runs"])
    records = Path(args.records or cfg["records"])
    if args.export_records:
        from jaxfwi.experiments.records import export_records, record_size

        if not runs.is_dir():
            sys.exit(f"reproduce: no runs in {runs}")
        paths = export_records(runs, records)
        print(f"wrote {len(paths)} records to {records} ({record_size(records) / 1024:.0f} KiB in all)")
        return
    if not args.report_only:
        from jaxfwi.experiments import run_scenarios

        which = args.blocks or cfg["blocks"]
        if args.methods:
            _check_methods(args.methods, scenarios(list(which), suite=suite, **kw))
        if args.perturbs:
            _check_perturbs(args.perturbs, scenarios(list(which), suite=suite, **kw))
        t0 = time.perf_counter()
        for b in which:
            # one call per block: a later block's extra seeds of a scenario (half: b) must not run
            # inside an earlier block's group
            scs = scenarios([b], suite=suite, **kw)
            if args.methods:
                scs = _only_methods(scs, args.methods)
            if args.perturbs:
                scs = _only_perturbs(scs, args.perturbs)
            left = None if args.max_minutes is None else 60 * args.max_minutes - (time.perf_counter() - t0)
            print(f"reproduce: suite {suite}, block {b}: {len(scs)} runs -> {runs} (records: {records})", flush=True)
            run_scenarios(scs, runs, progress=False, dry_run=args.dry_run, checkpoint_every=10,
                          stop_after_s=None if left is None else max(0.0, left), records_dir=records,
                          log=lambda s: print(time.strftime("%H:%M:%S"), s, flush=True))
    if args.dry_run or args.no_report:
        return
    if not _report(suite, cfg, args, kw):
        sys.exit(f"reproduce: nothing to report for suite {suite}")


if __name__ == "__main__":
    from jaxfwi.hostmem import reexec_with_hugepages

    reexec_with_hugepages()  # huge pages for the stored wavefields (JAXFWI_HUGEPAGES=0: off)
    main()
