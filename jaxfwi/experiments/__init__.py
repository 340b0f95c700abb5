"""Experiments: scenario grids (model x initial model x data condition x method x seed),
a resumable runner and comparison reports against the papers' published tables.

Quick start::

    from jaxfwi import experiments as ex
    scs = ex.expand_grid({"epochs": 20, "reduce": 1}, models=["synthetic:default"],
                         inits=["smooth", "constant"], methods=["adfwi", "ig-fwi"], seeds=[0, 1])
    ex.run_scenarios(scs, "runs/")            # skips finished runs, resumes interrupted ones
    ex.build_report("runs/", "report/")       # results.md, results.csv, figures
    ex.export_records("runs/", "records/")    # compact, committable (no true model)
    ex.restore_records("records/", "runs2/")  # ... and back (true model from the data folder)

or ``jaxfwi run --config grid.toml --results runs/`` and ``jaxfwi report --results runs/ --out report/``.
"""
from jaxfwi.experiments.config import (  # noqa: F401
    INIT_KINDS,
    Scenario,
    expand_grid,
    format_condition,
    group_by_seed,
    load_config,
    parse_condition,
    scenarios_from_dict,
)
from jaxfwi.experiments.published import lookup as published_lookup  # noqa: F401
from jaxfwi.experiments.records import export_records, read_record, restore_records, write_record  # noqa: F401
from jaxfwi.experiments.report import build_report, collect, summarize  # noqa: F401
from jaxfwi.experiments.runner import (  # noqa: F401
    DataMissing,
    Setup,
    is_finished,
    observed_data,
    prepare,
    resolve_preset,
    run_scenarios,
)

__all__ = [
    "INIT_KINDS", "Scenario", "expand_grid", "format_condition", "group_by_seed", "load_config", "parse_condition",
    "scenarios_from_dict", "published_lookup", "build_report", "collect", "summarize", "DataMissing", "Setup",
    "is_finished", "observed_data", "prepare", "resolve_preset", "run_scenarios",
    "write_record", "export_records", "read_record", "restore_records",
]
