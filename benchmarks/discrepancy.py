"""When would a data-only stopping rule have stopped a recorded run? The discrepancy principle.

The FAD-FWI block at the paper's 2000 epochs (noise 0.5 sigma0 + high-pass) fits the noise: from the
exact profile both methods reach their best model near epoch 400 and end worse than the initial one
(`benchmarks/results/README.md`). The model error is not known in practice; the noise level is (or can
be estimated). Morozov's discrepancy principle stops at the first epoch whose data misfit falls to
``tau`` times the misfit the *true* model has against the same noisy data (the noise floor).

For every record given (default: the 2000-epoch FAD records), this script rebuilds each seed's noisy,
filtered observed data exactly as the runner made them (`jaxfwi.experiments.runner.prepare` /
`observed_data`), evaluates the run's own loss (`jaxfwi.inversion.make_loss`, the run's misfit, forward
options and time step) at the true model, and reads the run's recorded per-epoch misfit and model MSE:
the epoch where ``misfit <= tau * floor`` first holds and the MSE there, beside the best and the final
MSE. Needs the benchmark model files (``--data``); prints a table and writes JSON.

    python benchmarks/discrepancy.py --data ../shared/data
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RECORDS = os.path.join(HERE, "results", "fad", "records", "*__e2000__*.npz")


def noise_floor(meta: dict, data_dir) -> dict:
    """``{seed: misfit of the true model}`` for the run of a record, with the run's loss and data."""
    import jax

    from jaxfwi import models
    from jaxfwi.experiments import runner
    from jaxfwi.experiments.config import Scenario
    from jaxfwi.inversion import make_loss

    sj = meta["scenario_json"]["scenario"]
    seeds = sorted(int(s) for s in meta["seeds"])
    sc = Scenario(**{**sj, "acquisition": tuple(tuple(a) for a in sj["acquisition"]),
                     "options": tuple(tuple(a) for a in sj["options"]), "seed": seeds[0]})
    setup = runner.prepare(sc, data_dir)
    d_obs, survey, info = runner.observed_data(setup, seeds)
    kw = runner._invert_kwargs(setup, info)
    fwd = {k: kw[k] for k in ("accuracy", "pml_width", "free_surface", "max_vel") if k in kw}
    param = models.build("adfwi", setup.v_true, bounds=None)  # the grid at the true model: v = v_true
    with runner._expected_warnings():
        loss = make_loss(param, survey, setup.dx, misfit=kw.get("misfit", "l2"), forward_kwargs=fwd)
        p0 = param.init(jax.random.key(0))
        f = jax.jit(loss)
        d = np.asarray(d_obs)
        per_seed = d.ndim == 4
        return {s: float(f(p0, d[i] if per_seed else d)) for i, s in enumerate(seeds)}


def stopping_table(meta: dict, arrays: dict, floors: dict, taus, at=(300,)) -> list:
    """One row per seed: the run's start, method and planned epochs (:func:`scenario_fields`), the noise floor, the misfit at the start and end, the model MSE initially, at its
    best (and that epoch), at the epochs ``at`` (``mse_at<E>``, when the run got that far), at the end, and
    per ``tau`` the discrepancy-stop epoch and the MSE there (None: the misfit never reached the floor)."""
    start = scenario_fields(meta)
    rows = []
    for s, floor in floors.items():
        h = {k.split("/")[-1]: v for k, v in arrays.items() if k.startswith(f"seed{s}/history/")}
        mis, mse = np.asarray(h["misfit"], float), np.asarray(h["mse"], float)
        init_mse = meta["seeds"][str(s)]["metrics"]["initial"]["mse"]
        row = dict(record=meta["dir_name"], **start, seed=s, floor=floor, misfit_start=float(mis[0]), misfit_end=float(mis[-1]),
                   initial_mse=init_mse, best_mse=float(mse.min()), best_epoch=int(np.argmin(mse)) + 1,
                   final_mse=float(mse[-1]), epochs=int(len(mse)))
        row.update({f"mse_at{e}": float(mse[e - 1]) for e in at if len(mse) >= e})
        for tau in taus:
            hit = np.nonzero(mis <= tau * floor)[0]
            e = int(hit[0]) if hit.size else None  # misfit of epoch e is at the model before its update
            row[f"stop_epoch_tau{tau:g}"] = None if e is None else e
            row[f"stop_mse_tau{tau:g}"] = None if e is None else float(mse[e - 1] if e > 0 else init_mse)
        rows.append(row)
    return rows


def scenario_fields(meta: dict) -> dict:
    """The run's ``init`` label (``Scenario.init_label``: "profile", "profile+10%"), ``perturb`` (percent),
    ``method`` and planned ``epochs_planned``, read from a record's meta (nothing is parsed from its name)."""
    sc = meta["scenario_json"]["scenario"]
    first = meta["seeds"][min(meta["seeds"], key=int)]["metrics"]
    return dict(init=first["labels"]["init"], perturb=float(sc.get("perturb") or 0.0), method=sc["method"],
                epochs_planned=int(sc["epochs"]))


def _init_label(init: str) -> str:
    """Readable initial-model label: ``profile`` -> "exact 1-D profile", ``profile-10%`` -> "profile -10 %"."""
    import re

    if init == "profile":
        return "exact 1-D profile"
    m = re.fullmatch(r"(.*?)([+-]\d+(?:\.\d+)?)%", init)
    return f"{m.group(1)} {m.group(2)} %" if m else init


def _method_label(method: str) -> str:
    """The method's display name (``adfwi`` -> "ADFWI"), or the name itself if it is not registered."""
    from jaxfwi import methods

    try:
        return methods.get(method).label
    except ValueError:   # not a registered method name
        return method


def summary_markdown(rows: list, tau: float = 1.0, at: int = 300) -> str:
    """The per-start table of the README (section "At the paper's 2000 epochs"): per initial model and
    method, the model MSE at epoch ``at``, at its best along the run (seed mean; the seeds' best epochs), at the
    discrepancy stop with ``tau`` (mean ± std; the stop epochs; "never" / "k of n never") and at the end,
    mean ± std over the seeds. Rows ordered by |perturbation|, then sign; methods in order of first appearance, headed by their display names; the last
    column is headed ``@<epochs>`` when every record ran the same number of epochs."""
    groups, inits, methods, epochs = {}, {}, [], set()
    for r in rows:
        p, init, method, e = r["perturb"], r["init"], r["method"], r["epochs_planned"]
        groups.setdefault((init, method), []).append(r)
        inits[init] = (abs(p), p, init)
        methods += [method] if method not in methods else []
        epochs.add(e)
    ms = lambda a: f"{np.mean(a):.3f} ± {np.std(a):.3f}"
    end = f"@{epochs.pop()}" if len(epochs) == 1 and None not in epochs else "final"
    head = ["initial model", "initial"]
    for m in map(_method_label, methods):
        head += [f"{m} @{at}", f"{m} best (epochs)", f"{m} at stop (epochs)", f"{m} {end}"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for init in sorted(inits, key=inits.get):
        first = next(g for (i, _), g in groups.items() if i == init)
        cells = [_init_label(init), f"{first[0]['initial_mse']:.4f}"]
        for m in methods:
            g = groups.get((init, m))
            if not g:
                cells += ["not run"] * 4
                continue
            key_e, key_m = f"stop_epoch_tau{tau:g}", f"stop_mse_tau{tau:g}"
            never = sum(r.get(key_e) is None for r in g)
            if never:
                stop = "never" if never == len(g) else f"{never} of {len(g)} never"
            else:
                e = [r[key_e] for r in g]
                stop = f"{ms([r[key_m] for r in g])} ({min(e)}-{max(e)})"
            be = [r["best_epoch"] for r in g]
            cells += [ms([r[f"mse_at{at}"] for r in g]) if all(f"mse_at{at}" in r for r in g) else "-",
                      f"{np.mean([r['best_mse'] for r in g]):.3f} ({min(be)}-{max(be)})", stop,
                      ms([r["final_mse"] for r in g])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: the README's generated table sits between these two lines (``--readme``)
TABLE_BEGIN, TABLE_END = "<!-- discrepancy-summary: generated by benchmarks/discrepancy.py -->", "<!-- /discrepancy-summary -->"


def replace_table(text: str, table: str) -> str:
    """``text`` with whatever lies between :data:`TABLE_BEGIN` and :data:`TABLE_END` replaced by ``table``.
    Raises ValueError if the markers are missing, repeated or out of order (nothing is guessed)."""
    nb, ne = text.count(TABLE_BEGIN), text.count(TABLE_END)
    if nb != 1 or ne != 1 or text.index(TABLE_BEGIN) > text.index(TABLE_END):
        raise ValueError(f"--readme: expected the marker lines {TABLE_BEGIN!r} and {TABLE_END!r} once each, in that "
                         f"order (found {nb} and {ne}); add them around the table to replace.")
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    return head + TABLE_BEGIN + "\n" + table.rstrip("\n") + "\n" + TABLE_END + tail


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="*", help=f"record files (default: {os.path.relpath(DEFAULT_RECORDS)})")
    p.add_argument("--data", default=os.environ.get("JAXFWI_DATA"), help="folder of the benchmark models")
    p.add_argument("--tau", nargs="+", type=float, default=[1.0, 1.1])
    p.add_argument("--out", default=os.path.join(HERE, "out", "discrepancy.json"))
    p.add_argument("--summary", default=os.path.join(HERE, "out", "discrepancy_summary.md"),
                   help="per-start summary table (Markdown), with the first --tau")
    p.add_argument("--readme", help="also write the summary table into this Markdown file, between the lines "
                                    f"{TABLE_BEGIN} and {TABLE_END}")
    a = p.parse_args(argv)
    if a.readme:   # check the markers before any work
        with open(a.readme) as fh:
            replace_table(fh.read(), "")
    from jaxfwi.experiments.records import read_record
    from jaxfwi.experiments.runner import DataMissing

    paths = a.records or sorted(glob.glob(DEFAULT_RECORDS))
    if not paths:
        print("no records found", file=sys.stderr)
        return 1
    rows = []
    for path in paths:
        meta, arrays = read_record(path)
        try:
            floors = noise_floor(meta, a.data)
        except DataMissing as e:
            print(f"skipped {os.path.basename(path)}: {e}", file=sys.stderr)
            continue
        rows += stopping_table(meta, arrays, floors, a.tau)
    cols = ["seed", "floor", "misfit_end", "initial_mse", "best_mse", "best_epoch", "final_mse"]
    for tau in a.tau:
        cols += [f"stop_epoch_tau{tau:g}", f"stop_mse_tau{tau:g}"]
    print("| start, method | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        cells = [f"{x:.4g}" if isinstance(x, float) else str(x) for x in (r[c] for c in cols)]
        print(f"| {r['init']} {r['method']} | " + " | ".join(cells) + " |")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump({"tau": a.tau, "rows": rows}, fh, indent=1)
    print(f"wrote {a.out}")
    table = summary_markdown(rows, tau=a.tau[0])
    with open(a.summary, "w") as fh:
        fh.write(table)
    print(table + f"wrote {a.summary}")
    if a.readme:
        with open(a.readme) as fh:
            text = fh.read()
        with open(a.readme, "w") as fh:
            fh.write(replace_table(text, table))
        print(f"updated the table in {a.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
