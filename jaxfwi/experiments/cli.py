"""``jaxfwi run`` and ``jaxfwi report``: argparse sub-commands for the experiment runner.

Wire them into a CLI with::

    sub = parser.add_subparsers(dest="cmd")
    add_run_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(); args.func(args)
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_run_parser", "add_report_parser", "cmd_run", "cmd_report"]


def _fail(message: str):
    """A usage error: one line on stderr, exit status 2 (no traceback)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)

_RUN_EPILOG = """\
examples:
  jaxfwi run --models synthetic:default --reduce 1 --inits smooth constant \\
             --methods adfwi ig-fwi --seeds 0 1 --epochs 20 --results runs/
  jaxfwi run --config grid.toml --results runs/            # a TOML grid (see below)
  jaxfwi run --config grid.toml --results runs/ --epochs 5 # flags override [defaults]

TOML grid (python 3.11 tomllib):
  [defaults]                # any scenario field: reduce, epochs, lr_scale, seeds, init_value, ...
  reduce = 2
  epochs = 40
  seeds = [0, 1, 2]
  [[grid]]                  # cartesian product of the lists
  models = ["marmousi"]
  inits = ["smooth", "constant"]
  conditions = ["clean", "noise:8", "highpass:6", "shots:5"]
  methods = ["adfwi", "ig-fwi"]

Finished runs are skipped; an interrupted run resumes from its checkpoint.
"""


def _kv(text):
    import json  # noqa: PLC0415

    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE (VALUE in JSON, e.g. pml_width=10, "
                                         "shape=[24,72]).")
    try:
        val = json.loads(v)
    except ValueError:
        val = v
    return k.strip(), val


def add_run_parser(subparsers):
    """Register ``run``: execute a grid of scenarios (skip finished, resume interrupted)."""
    p = subparsers.add_parser(
        "run", help="run a grid of FWI scenarios (model x initial model x data x method x seed)",
        description="Run a grid of inversion scenarios and store final models, histories and metrics in "
                    "RESULTS/<scenario>/seed<k>/. Give a TOML --config, or the axes as flags, or both "
                    "(flags override the config).",
        epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="TOML file with [defaults] and [[grid]] sections")
    p.add_argument("--results", default="jaxfwi_runs", help="results folder (default ./jaxfwi_runs)")
    p.add_argument("--models", nargs="+", default=None,
                   help="presets (marmousi, salt, overthrust, bp, fadfwi_overthrust) or synthetic:default, "
                        "synthetic:layered, ... (built-in, no data files)")
    p.add_argument("--inits", nargs="+", default=None,
                   help="initial models: smooth, linear, constant, profile (default smooth)")
    p.add_argument("--conditions", nargs="+", default=None,
                   help="data conditions: clean, noise:K (K x sigma0), highpass:F (paper Hz, scaled with "
                        "--reduce), shots:N, or combined like noise:0.5+highpass:2.5 (default clean)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="adfwi adfwi-tv weci-fwi ms-fwi ifwi winfwi lr-fwi mpe-fwi ig-fwi lrg-fwi fad-fwi gnn-fwi")
    p.add_argument("--perturbs", nargs="+", type=float, default=None,
                   help="scale the initial model by 1 + P/100 (percent, e.g. -10 10 20)")
    p.add_argument("--strategies", nargs="+", default=None, choices=("denorm", "pretrain"),
                   help="initial-model incorporation for neural methods: denorm (v = m0 + S F, default) or "
                        "pretrain (fit the network to m0 first)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="random seeds (init, shot order, noise)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 40)")
    p.add_argument("--reduce", type=int, default=None,
                   help="coarsen the preset by this factor (1 = the paper's grid, 2 = the CPU preset; default 2)")
    p.add_argument("--lr-scale", type=float, default=None,
                   help="multiply every method's default learning rate (default 1)")
    p.add_argument("--init-value", type=float, default=None,
                   help="smooth/profile: Gaussian sigma in m (default 240); constant: velocity in m/s "
                        "(default the true model's mean)")
    p.add_argument("--acquisition", nargs="+", type=_kv, default=None, metavar="KEY=VALUE",
                   help="override preset fields after reduction, e.g. pml_width=10 n_shots=7")
    p.add_argument("--option", nargs="+", type=_kv, default=None, metavar="KEY=VALUE", dest="options",
                   help="extra jaxfwi.invert options, e.g. accuracy=4 width=64 bounds=null")
    p.add_argument("--data-dir", default=None, help="benchmark data folder (default $JAXFWI_DATA or ../shared/data)")
    p.add_argument("--no-vmap-seeds", action="store_true",
                   help="run seeds one after another instead of in one vmapped program")
    p.add_argument("--checkpoint-every", type=int, default=5, help="epochs between checkpoints (default 5)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new scenario after this many minutes (run again to continue)")
    p.add_argument("--dry-run", action="store_true", help="list the scenarios and what would run, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report", default=None, metavar="DIR", help="also build the report into DIR afterwards")
    p.set_defaults(func=cmd_run)
    return p


def add_report_parser(subparsers):
    """Register ``report``: tables (Markdown, CSV) and figures from a results folder."""
    p = subparsers.add_parser(
        "report", help="comparison tables (Markdown + CSV) and figures from a results folder",
        description="Summarise RESULTS into OUT/results.md and OUT/results.csv (MSE, MAE, SSIM, PSNR per "
                    "scenario and method, mean +- std over seeds, best in bold, published values beside ours) "
                    "and figures (model panels, MSE curves, vertical profiles, residual gathers).")
    p.add_argument("--results", default="jaxfwi_runs", help="results folder written by `jaxfwi run`")
    p.add_argument("--out", default="jaxfwi_report", help="output folder (default ./jaxfwi_report)")
    p.add_argument("--figures", nargs="*", default=["all"],
                   help="'all' (default), 'none', a number N (first N scenarios) or substrings of scenario "
                        "slugs (model_init_condition_e<epochs>)")
    p.add_argument("--title", default="jaxfwi experiment results", help="title of results.md")
    p.add_argument("--notes", default=None, help="a Markdown file whose text goes under the title")
    p.add_argument("--dpi", type=int, default=80, help="figure resolution (default 80)")
    p.set_defaults(func=cmd_report)
    return p


def _config_dict(args) -> dict:
    cfg: dict = {"defaults": {}, "grid": []}
    if args.config:
        import tomllib  # noqa: PLC0415

        try:
            with open(args.config, "rb") as f:
                cfg = tomllib.load(f)
        except (OSError, ValueError) as e:  # ValueError: tomllib.TOMLDecodeError
            _fail(f"jaxfwi run: error: --config {args.config!r}: {e}")
        cfg.setdefault("defaults", {})
        cfg.setdefault("grid", [])
        if isinstance(cfg["grid"], dict):
            cfg["grid"] = [cfg["grid"]]
    d = cfg["defaults"]
    for flag, name in (("epochs", "epochs"), ("reduce", "reduce"), ("lr_scale", "lr_scale"),
                       ("init_value", "init_value"), ("seeds", "seeds")):
        v = getattr(args, flag)
        if v is not None:
            d[name] = v
    if args.acquisition:
        d["acquisition"] = {**dict(d.get("acquisition", {})), **dict(args.acquisition)}
    if args.options:
        d["options"] = {**dict(d.get("options", {})), **dict(args.options)}
    axes = {k: getattr(args, k) for k in ("models", "inits", "conditions", "methods", "perturbs", "strategies")
            if getattr(args, k) is not None}
    if not cfg["grid"]:
        if "methods" not in axes:
            _fail("jaxfwi run: error: nothing to run; give --config FILE or at least --methods (and --models).")
        cfg["grid"] = [{}]
    for g in cfg["grid"]:
        g.update(axes)
    return cfg


def cmd_run(args):
    """Execute the grid; print one line per scenario; optionally build the report."""
    from jaxfwi.experiments.config import scenarios_from_dict  # noqa: PLC0415
    from jaxfwi.experiments.runner import run_scenarios  # noqa: PLC0415

    try:
        scenarios = scenarios_from_dict(_config_dict(args))
    except (ValueError, TypeError) as e:
        _fail(f"jaxfwi run: error: {e}")
    print(f"jaxfwi run: {len(scenarios)} runs -> {args.results}")
    recs = run_scenarios(scenarios, args.results, data_dir=args.data_dir, vmap_seeds=not args.no_vmap_seeds,
                         progress=not args.quiet, checkpoint_every=args.checkpoint_every, dry_run=args.dry_run,
                         stop_after_s=None if args.max_minutes is None else 60 * args.max_minutes)
    states = {}
    for r in recs:
        states[r["state"]] = states.get(r["state"], 0) + 1
    print("jaxfwi run: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if args.report and not args.dry_run:
        from jaxfwi.experiments.report import build_report  # noqa: PLC0415

        out = build_report(args.results, args.report)
        print("wrote", out["markdown"], out["csv"], f"and {len(out['figures'])} figures")
    return recs


def cmd_report(args):
    """Build results.md / results.csv / figures."""
    from pathlib import Path  # noqa: PLC0415

    from jaxfwi.experiments.report import build_report, collect  # noqa: PLC0415

    if not Path(args.results).is_dir():
        _fail(f"jaxfwi report: error: --results {args.results!r} is not a folder; run `jaxfwi run` first.")
    if not collect(args.results):
        _fail(f"jaxfwi report: error: no finished runs in {args.results!r}.")
    figs = args.figures
    if not figs or figs == ["none"]:
        figs = "none"
    elif figs == ["all"]:
        figs = "all"
    elif len(figs) == 1 and figs[0].isdigit():
        figs = int(figs[0])
    notes = Path(args.notes).read_text() if args.notes else None
    out = build_report(args.results, args.out, figures=figs, title=args.title, notes=notes, dpi=args.dpi)
    print("wrote", out["markdown"], out["csv"], f"and {len(out['figures'])} figures")
    return out


def main(argv=None):
    """Stand-alone entry (``python -m jaxfwi.experiments.cli run ...``) until the main CLI wires these in."""
    parser = argparse.ArgumentParser(prog="jaxfwi-experiments")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_run_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
