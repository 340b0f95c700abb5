"""Comparison tables (Markdown + CSV) and figures from a results folder.

:func:`build_report` reads every ``<scenario>/seed<k>/metrics.json`` written by
:func:`jaxfwi.experiments.run_scenarios` and writes to ``out_dir``:

* ``results.md``: a CR-FWI-Table-1-style MSE table per model (methods x scenarios,
  ``mean ± std`` over seeds, the published value in brackets, best in bold), then
  per scenario a table of MSE, MAE, SSIM, PSNR (mean ± std, best in bold) with the
  initial model's values and the published ones beside ours;
* ``results.csv``: the same numbers, one row per scenario and method;
* figures per scenario (``fig_<slug>_models.png``: true / initial / each method,
  ``_mse.png``: model MSE against epochs, ``_profiles.png``: vertical velocity
  profiles, ``_residuals.png``: middle-shot observed data and residuals).

Units: MSE (km/s)^2, MAE km/s, PSNR dB, SSIM on the true model's range.
"""
from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from jaxfwi.experiments.published import lookup

__all__ = ["collect", "summarize", "build_report", "METHOD_ORDER"]

def _registry_order() -> tuple:
    from jaxfwi import methods  # noqa: PLC0415

    return methods.names()


#: the order of methods in tables: the registry's (:mod:`jaxfwi.methods`), the papers' order
METHOD_ORDER = _registry_order()
METRICS = ("mse", "mae", "ssim", "psnr")
LOWER_IS_BETTER = {"mse": True, "mae": True, "ssim": False, "psnr": False}
DIGITS = {"mse": 4, "mae": 4, "ssim": 3, "psnr": 2}


def collect(results_dir) -> list[dict]:
    """Every finished run's ``metrics.json`` (with ``"path"`` of its seed folder added)."""
    out = []
    for p in sorted(Path(results_dir).glob("*/seed*/metrics.json")):
        try:
            with open(p) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        rec["path"] = str(p.parent)
        out.append(rec)
    return out


def _method_key(label: str):
    m, _, strat = label.partition("+")
    return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m, strat)


def _stats(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    a = np.asarray(vals, np.float64)
    return float(a.mean()), float(a.std()) if len(a) > 1 else 0.0


def summarize(records: Iterable[dict]) -> list[dict]:
    """One row per scenario (all seeds): labels, ``<metric>_mean`` / ``_std``, initial metrics,
    seeds, status counts, seconds per epoch, parameters and the published values."""
    groups: "OrderedDict[str, list]" = OrderedDict()
    for r in records:
        groups.setdefault(r["dir_name"], []).append(r)
    rows = []
    for name, recs in groups.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        sc = recs[0]["scenario"]
        lab = recs[0]["labels"]
        ok = [r for r in recs if r["status"] == "ok"]
        row = {"dir_name": name, "model": lab["model"], "init": lab["init"], "condition": lab["condition"],
               "method": lab["method"], "epochs": sc["epochs"], "lr_scale": sc["lr_scale"],
               "seeds": [r["seed"] for r in recs], "n_ok": len(ok), "n_diverged": len(recs) - len(ok)}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = _stats([r["final"].get(m) for r in ok])
            row[f"initial_{m}"] = recs[0]["initial"].get(m)
        runs = [r for r in recs if r.get("copied_from_seed") is None]
        tpe = []
        for r in runs:
            if r.get("time_per_epoch_s"):
                # older records stored the epoch time of the whole vmapped group
                tpe.append(r["time_per_epoch_s"] / (1 if "n_together" in r else len(runs)))
        row["n_copied"] = len(recs) - len(runs)
        row["s_per_epoch"] = float(np.median(tpe)) if tpe else None
        row["n_params"] = recs[0].get("n_params")
        eff = recs[0].get("effective", {})
        row["grid"] = "x".join(str(n) for n in eff.get("shape", [])) + (f" @ {eff['dx']:g} m" if "dx" in eff else "")
        row["f_peak_hz"] = eff.get("f_peak_hz")
        pub_init = sc["init"] if (sc.get("perturb", 0) == 0 and sc.get("init_value") is None) else lab["init"]
        pub = lookup(lab["model"], pub_init, lab["condition"], lab["method"])
        for m in ("mse", "ssim", "psnr"):
            v = pub.get(m)
            row[f"paper_{m}"] = v[0] if v else None
            row[f"paper_{m}_source"] = v[1] if v else None
        row["paths"] = [r["path"] for r in recs]
        rows.append(row)
    return sorted(rows, key=_row_order)


_INIT_ORDER = ("smooth", "linear", "constant", "profile")


def _row_order(row):
    init = row["init"]
    kind = next((i for i, k in enumerate(_INIT_ORDER) if init.startswith(k)), len(_INIT_ORDER))
    cond = row["condition"]
    return (row["model"], row["epochs"], row["lr_scale"], cond != "clean", cond, kind, init,
            _method_key(row["method"]))


def _block_key(row):
    return (row["model"], row["init"], row["condition"], row["epochs"], row["lr_scale"])


def _fmt(mean, std, digits):
    if mean is None:
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def _best(rows, metric):
    vals = [(r[f"{metric}_mean"], i) for i, r in enumerate(rows) if r[f"{metric}_mean"] is not None]
    if len(vals) < 2:
        return set()
    target = min(v for v, _ in vals) if LOWER_IS_BETTER[metric] else max(v for v, _ in vals)
    return {i for v, i in vals if v == target}


def _slug(block) -> str:
    model, init, cond, epochs, lr = block
    s = f"{model}_{init}_{cond}_e{epochs}" + (f"_lr{lr:g}" if lr != 1 else "")
    return "".join(c if c.isalnum() or c in "-." else "_" for c in s.replace("%", "pc").replace("+", "p"))


def _markdown(rows, title, notes, figures) -> str:
    blocks: "OrderedDict[tuple, list]" = OrderedDict()
    for r in rows:
        blocks.setdefault(_block_key(r), []).append(r)
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["MSE in (km/s)^2, MAE in km/s, PSNR in dB; mean ± std over seeds; **bold** = best of the block. "
              "Published values (in brackets or the `paper` columns) are for the paper's full-size grid and "
              "schedule; ours may be reduced (see the grid and epochs columns). † = the seeds start from "
              "identical params and data (grid methods on noise-free data): one run, copied to the other seeds. "
              "s/epoch = wall seconds per epoch of one run after compilation (seeds run together share it).", ""]

    # --- Table-1 style pivot per model
    models = OrderedDict()
    for r in rows:
        models.setdefault((r["model"], r["epochs"], r["lr_scale"]), []).append(r)
    lines += ["## MSE overview (CR-FWI Table 1 layout)", ""]
    for (model, epochs, lr), rs in models.items():
        cols = list(OrderedDict.fromkeys((r["init"], r["condition"]) for r in rs))
        methods = sorted(OrderedDict.fromkeys(r["method"] for r in rs), key=_method_key)
        cell = {(r["method"], r["init"], r["condition"]): r for r in rs}
        best = {}
        for c in cols:
            col_rows = [cell[(m, *c)] for m in methods if (m, *c) in cell]
            idx = _best(col_rows, "mse")
            best[c] = {col_rows[i]["method"] for i in idx}
        lines += [f"### {model}, {epochs} epochs" + (f", lr x{lr:g}" if lr != 1 else ""), ""]
        lines.append("| method | " + " | ".join(f"{i} / {c}" for i, c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        init_row = []
        for c in cols:
            any_r = next(cell[(m, *c)] for m in methods if (m, *c) in cell)
            init_row.append(_fmt(any_r["initial_mse"], 0, 4))
        lines.append("| *initial model* | " + " | ".join(init_row) + " |")
        for m in methods:
            out = []
            for c in cols:
                r = cell.get((m, *c))
                if r is None:
                    out.append("")
                    continue
                s = _fmt(r["mse_mean"], r["mse_std"], 4)
                if r["n_diverged"]:
                    s += f" ({r['n_diverged']} diverged)"
                if m in best[c]:
                    s = f"**{s}**"
                if r["paper_mse"] is not None:
                    s += f" [{r['paper_mse']:.4g}]"
                out.append(s)
            lines.append(f"| {m} | " + " | ".join(out) + " |")
        lines.append("")

    # --- per scenario
    lines += ["## Per scenario", ""]
    for block, rs in blocks.items():
        rs = sorted(rs, key=lambda r: _method_key(r["method"]))
        model, init, cond, epochs, lr = block
        r0 = rs[0]
        lines += [f"### {model} · initial {init} · {cond} · {epochs} epochs" + (f" · lr x{lr:g}" if lr != 1 else ""),
                  "", f"grid {r0['grid']}, peak {r0['f_peak_hz']} Hz, seeds {r0['seeds']}", ""]
        lines.append("| method | MSE | MAE | SSIM | PSNR | paper MSE | paper SSIM | paper PSNR | s/epoch | params |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        lines.append("| *initial model* | " + " | ".join(_fmt(r0[f"initial_{m}"], 0, DIGITS[m]) for m in METRICS)
                     + " | | | | | |")
        bests = {m: _best(rs, m) for m in METRICS}
        for i, r in enumerate(rs):
            cells = []
            for m in METRICS:
                s = _fmt(r[f"{m}_mean"], r[f"{m}_std"], DIGITS[m])
                cells.append(f"**{s}**" if i in bests[m] else s)
            pubs = []
            for m in ("mse", "ssim", "psnr"):
                v = r[f"paper_{m}"]
                pubs.append("" if v is None else f"{v:.{DIGITS[m] if v >= 1e-3 else 6}g} ({r[f'paper_{m}_source']})")
            name = r["method"] + (f" ({r['n_diverged']}/{len(r['seeds'])} diverged)" if r["n_diverged"] else "")
            if r.get("n_copied"):
                name += " †"
            spe = "" if r["s_per_epoch"] is None else f"{r['s_per_epoch']:.2f}"
            npar = "" if r["n_params"] is None else f"{r['n_params'] / 1000:.1f}K"
            lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(pubs) + f" | {spe} | {npar} |")
        lines += _convergence_lines(rs, epochs)
        figs = figures.get(block, [])
        if figs:
            lines.append("")
            lines += [f"![{Path(f).stem}]({Path(f).name})" for f in figs]
        lines.append("")
    return "\n".join(lines)


#: epochs at which the convergence table reads the model-MSE curve (those <= the run's epochs)
CONVERGENCE_EPOCHS = (1, 10, 50, 100, 250, 500, 1000, 1500)


def _mse_curves(paths) -> Optional[np.ndarray]:
    """Per-epoch model MSE ``[n_seeds, n_epochs]`` from the runs' ``history.json`` (cut to the
    shortest; None when no run has one)."""
    curves = []
    for sp in paths:
        try:
            with open(Path(sp) / "history.json") as f:
                h = json.load(f)
        except (OSError, ValueError):
            continue
        if h.get("mse"):
            curves.append(np.asarray([np.nan if x is None else x for x in h["mse"]], np.float64))
    if not curves:
        return None
    n = min(c.size for c in curves)
    return np.stack([c[:n] for c in curves])


def epochs_to_fraction(curve, initial, fraction: float) -> Optional[int]:
    """First epoch (1-based) at which the MSE has fallen by ``fraction`` of its overall drop
    ``initial - min(curve)``; None when the curve never falls below ``initial``."""
    c = np.asarray(curve, np.float64)
    drop = initial - np.nanmin(c)
    if not np.isfinite(drop) or drop <= 0:
        return None
    hit = np.nonzero(c <= initial - fraction * drop)[0]
    return int(hit[0]) + 1 if hit.size else None


def _convergence_lines(rs, epochs) -> list:
    """Markdown table: model MSE after 1, 10, 50, ... epochs and the epochs each method took to
    reach half and 90 % of its own largest MSE drop (convergence speed measured in epochs)."""
    marks = [e for e in CONVERGENCE_EPOCHS if e <= epochs]
    if epochs not in marks:
        marks.append(epochs)
    rows = []
    for r in rs:
        cs = _mse_curves(r["paths"])
        if cs is None or r["initial_mse"] is None:
            continue
        c = np.nanmean(cs, 0)
        cells = [_fmt(float(c[e - 1]), 0, 4) if e <= c.size and np.isfinite(c[e - 1]) else "—" for e in marks]
        cells += [str(v) if v is not None else "never" for v in
                  (epochs_to_fraction(c, r["initial_mse"], f) for f in (0.5, 0.9))]
        cells.append(_fmt(float(np.nanmin(c)), 0, 4))
        rows.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = " | ".join(f"MSE @{e}" for e in marks)
    return ["", "Convergence in epochs (model MSE along the run, seed mean; epochs to 50 % / 90 % of the "
            "method's own largest MSE drop below the initial model; 'never': it did not fall below it):", "",
            f"| method | {head} | to 50 % | to 90 % | min MSE |", "|---|" + "---|" * (len(marks) + 3)] + rows


CSV_FIELDS = ["model", "init", "condition", "method", "epochs", "lr_scale", "grid", "f_peak_hz", "n_seeds", "n_ok",
              "n_diverged", "n_copied"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")] + \
             [f"initial_{m}" for m in METRICS] + ["paper_mse", "paper_ssim", "paper_psnr", "paper_source",
                                                  "s_per_epoch", "n_params", "dir_name"]


def _csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            src = sorted({r[f"paper_{m}_source"] for m in ("mse", "ssim", "psnr") if r[f"paper_{m}_source"]})
            out = {k: r.get(k) for k in CSV_FIELDS}
            out["n_seeds"] = len(r["seeds"])
            out["paper_source"] = ";".join(src)
            w.writerow({k: ("" if v is None else v) for k, v in out.items()})


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _first_ok(row):
    for p in row["paths"]:
        if (Path(p) / "velocity.npy").exists():
            return Path(p)
    return None


def _figures(block, rs, out_dir: Path, dpi: int) -> list[str]:
    plt = _plt()
    rs = sorted(rs, key=lambda r: _method_key(r["method"]))
    root = Path(rs[0]["paths"][0]).parent
    v_true = np.load(root / "true.npy") / 1000.0
    v_init = np.load(root / "initial.npy") / 1000.0
    with open(root / "scenario.json") as f:
        dx = float(json.load(f)["acquisition"]["dx"])
    finals = OrderedDict()
    for r in rs:
        p = _first_ok(r)
        if p is not None:
            finals[r["method"]] = (np.load(p / "velocity.npy") / 1000.0, p)
    slug = _slug(block)
    nz, nx = v_true.shape
    ext = [0, nx * dx / 1000, nz * dx / 1000, 0]
    files = []

    # models
    panels = [("true", v_true), ("initial", v_init)] + [(m, v) for m, (v, _) in finals.items()]
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    aspect = nz / nx
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 3.0 * aspect * nrow + 0.6), squeeze=False)
    lo, hi = float(v_true.min()), float(v_true.max())
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, v) in zip(axes.ravel(), panels):
        ax.axis("on")
        im = ax.imshow(v, extent=ext, cmap="jet", vmin=lo, vmax=hi, aspect="auto")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="km/s")
    p = out_dir / f"fig_{slug}_models.png"
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    files.append(str(p))

    # MSE curves
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    for r in rs:
        c = _mse_curves(r["paths"])
        if c is None:
            continue
        x = np.arange(1, c.shape[1] + 1)
        line, = ax.plot(x, np.nanmean(c, 0), label=r["method"], lw=1.2)
        if len(c) > 1:
            ax.fill_between(x, np.nanmin(c, 0), np.nanmax(c, 0), color=line.get_color(), alpha=0.15)
    ax.axhline(rs[0]["initial_mse"], color="k", ls=":", lw=1, label="initial")
    ax.set_xlabel("epoch")
    ax.set_ylabel("model MSE (km/s)$^2$")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    ax.tick_params(labelsize=7)
    p = out_dir / f"fig_{slug}_mse.png"
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    files.append(str(p))

    # vertical profiles
    xs = [nx // 4, nx // 2, (3 * nx) // 4]
    z = np.arange(nz) * dx / 1000
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.2), sharey=True)
    for ax, ix in zip(axes, xs):
        ax.plot(v_true[:, ix], z, "k", lw=1.5, label="true")
        ax.plot(v_init[:, ix], z, "k--", lw=1, label="initial")
        for m, (v, _) in finals.items():
            ax.plot(v[:, ix], z, lw=1, label=m)
        ax.set_title(f"x = {ix * dx / 1000:.2f} km", fontsize=8)
        ax.set_xlabel("km/s", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("z (km)", fontsize=7)
    axes[-1].legend(fontsize=5, loc="lower left")
    p = out_dir / f"fig_{slug}_profiles.png"
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    files.append(str(p))

    # residual gathers
    gathers = OrderedDict()
    for m, (_, sp) in finals.items():
        g = sp / "gather.npz"
        if g.exists():
            with np.load(g) as z_:
                gathers[m] = (z_["observed"], z_["synthetic"], float(z_["dt"]))
    if gathers:
        obs, _, dt = next(iter(gathers.values()))
        clip = float(np.quantile(np.abs(obs), 0.98)) or 1.0
        panels = [("observed", obs)] + [(f"{m} residual", o - s) for m, (o, s, _) in gathers.items()]
        ncol = min(5, len(panels))
        nrow = -(-len(panels) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.0 * ncol, 2.6 * nrow), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (name, d) in zip(axes.ravel(), panels):
            ax.axis("on")
            ax.imshow(d.T, cmap="gray", vmin=-clip, vmax=clip, aspect="auto",
                      extent=[0, d.shape[0], d.shape[1] * dt, 0])
            ax.set_title(name, fontsize=7)
            ax.tick_params(labelsize=5)
        p = out_dir / f"fig_{slug}_residuals.png"
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        files.append(str(p))
    return files


def build_report(results_dir, out_dir, *, figures="all", title: str = "jaxfwi experiment results",
                 notes: Optional[str] = None, dpi: int = 80) -> dict:
    """Write ``results.md``, ``results.csv`` and figures for the runs in ``results_dir``.

    Args:
      results_dir: folder written by :func:`~jaxfwi.experiments.run_scenarios`.
      out_dir: where the report goes (created).
      figures: ``"all"``, ``"none"``/``None``/``0``, an int (figures for the first N scenarios),
        or a list of substrings matched against the scenario slug
        (``model_init_condition_e<epochs>``, e.g. ``"marmousi_r4_smooth_clean"``).
      title: Markdown title.
      notes: Markdown paragraph placed under the title.
      dpi: figure resolution.

    Returns:
      ``{"rows": summary rows, "markdown": path, "csv": path, "figures": [paths]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(collect(results_dir))
    blocks: "OrderedDict[tuple, list]" = OrderedDict()
    for r in rows:
        blocks.setdefault(_block_key(r), []).append(r)
    chosen = []
    if figures in (None, "none", 0, False):
        chosen = []
    elif figures == "all" or figures is True:
        chosen = list(blocks)
    elif isinstance(figures, int):
        chosen = list(blocks)[:figures]
    else:
        pats = [str(p) for p in figures]
        chosen = [b for b in blocks if any(p in _slug(b) for p in pats)]
    fig_map = {}
    all_figs = []
    for b in chosen:
        try:
            fs = _figures(b, blocks[b], out, dpi)
        except (OSError, ValueError, KeyError) as e:
            fs = []
            print(f"report: no figures for {_slug(b)} ({e})")
        fig_map[b] = fs
        all_figs += fs
    md = out / "results.md"
    md.write_text(_markdown(rows, title, notes, fig_map))
    cs = out / "results.csv"
    _csv(rows, cs)
    return {"rows": rows, "markdown": str(md), "csv": str(cs), "figures": all_figs}
