"""Scenario configuration: one inversion experiment, and grids of them from TOML or flags.

A **scenario** is one cell of the papers' comparison tables::

    model x initial model x data condition x method x seed

* ``model``: an acquisition preset of :mod:`jaxfwi.datasets.presets` (``marmousi``,
  ``salt``, ``overthrust``, ``bp``, ``fadfwi_overthrust``) whose true model comes
  from the benchmark data folder, or ``synthetic:<name>`` (``default``,
  ``layered``, ``faulted``, ``folded``, ``salt_body``) on a small built-in
  acquisition (no data files needed). ``reduce`` coarsens the preset with
  :meth:`~jaxfwi.datasets.AcquisitionPreset.reduced` (1 = the paper's grid);
  ``acquisition`` overrides preset fields (e.g. ``pml_width``, ``n_shots``, ``shape``).
* initial model ``init``: ``smooth`` (Gaussian, sigma ``init_value`` m, default 240 m),
  ``linear`` (top-row mean -> bottom-row mean of the true model), ``constant``
  (``init_value`` m/s, default the true model's mean), ``profile`` (FAD-FWI's smoothed
  1-D profile, sigma ``init_value`` m), scaled by ``1 + perturb / 100``.
* data condition: ``noise`` (Gaussian, k x sigma0; 0 = none), ``highpass`` (data and
  wavelet missing below this frequency, **in the paper's Hz**: a preset reduced by
  ``f`` scales it by ``1 / f`` like its peak frequency; 0 = none), ``shots`` (keep this
  many shots spread evenly; 0 = all). Written ``clean``, ``noise:8``, ``highpass:6``,
  ``shots:5`` or combined ``noise:0.5+highpass:2.5``.
* ``method``: any name of the method registry (:mod:`jaxfwi.methods`); ``strategy`` ``denorm`` (the
  default, v = m0 + S F) or ``pretrain`` (the Denorm paper's alternative: no m0, the
  network is first fitted to the initial model for ``pretrain_steps``).
* ``epochs``, ``lr_scale`` (multiplies the method's default learning rate) and ``seed``
  (init key, shot order and noise draw).

TOML layout (python 3.11 ``tomllib``)::

    [defaults]              # any Scenario field, plus seeds = [0, 1, 2]
    reduce = 2
    epochs = 40
    seeds = [0, 1, 2]

    [[grid]]                # the cartesian product of the lists (plural names)
    models = ["marmousi"]
    inits = ["smooth", "constant"]
    conditions = ["clean", "noise:8"]
    methods = ["adfwi", "ig-fwi"]
    perturbs = [0]          # optional; any other Scenario field as a scalar

Every scenario has a stable directory name (readable slug + hash of its settings),
so a grid can be re-run to fill in what is missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Scenario", "parse_condition", "format_condition", "expand_grid", "load_config", "scenarios_from_dict",
           "INIT_KINDS", "STRATEGIES"]

INIT_KINDS = ("smooth", "linear", "constant", "profile")
STRATEGIES = ("denorm", "pretrain")
SYNTHETIC_MODELS = ("default", "layered", "faulted", "folded", "salt_body")


def _canon(value):
    """A hashable, JSON-stable version of an override value (lists -> tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    return value


def _items(value, name) -> tuple:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    try:
        return tuple(sorted((str(k), _canon(v)) for k, v in value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"Scenario: {name}={value!r} must be a dict (or (key, value) pairs).") from e


def _num(x) -> str:
    """Short, stable text of a number for names: 8, 0.5, -10."""
    x = float(x)
    return str(int(x)) if x == int(x) else f"{x:g}"


def parse_condition(text: str) -> dict:
    """``"noise:8+highpass:6"`` -> ``{"noise": 8.0, "highpass": 6.0, "shots": 0}``.

    Parts: ``clean``, ``noise:K`` (K x sigma0), ``highpass:F`` (paper Hz),
    ``shots:N`` (keep N shots).
    """
    out = {"noise": 0.0, "highpass": 0.0, "shots": 0}
    text = str(text).strip().lower()
    if text in ("", "clean", "full"):
        return out
    for part in text.split("+"):
        part = part.strip()
        if part in ("clean", "full"):
            continue
        name, sep, val = part.partition(":")
        name = {"g-noise": "noise", "cutoff": "highpass", "f-cutoff": "highpass", "s-shots": "shots"}.get(name, name)
        if not sep or name not in out:
            raise ValueError(f"condition {text!r}: part {part!r} is not one of clean, noise:K, highpass:F, shots:N "
                             "(join several with '+', e.g. 'noise:0.5+highpass:2.5').")
        try:
            out[name] = int(val) if name == "shots" else float(val)
        except ValueError as e:
            raise ValueError(f"condition {text!r}: {val!r} is not a number.") from e
    return out


def format_condition(noise=0.0, highpass=0.0, shots=0) -> str:
    """The canonical condition text (inverse of :func:`parse_condition`)."""
    parts = []
    if noise:
        parts.append(f"noise:{_num(noise)}")
    if highpass:
        parts.append(f"highpass:{_num(highpass)}")
    if shots:
        parts.append(f"shots:{int(shots)}")
    return "+".join(parts) or "clean"


@dataclass(frozen=True)
class Scenario:
    """One inversion experiment (see the module docs for every field's meaning and units)."""

    model: str = "marmousi"
    reduce: int = 2
    acquisition: tuple = ()
    init: str = "smooth"
    init_value: float | None = None
    perturb: float = 0.0
    noise: float = 0.0
    highpass: float = 0.0
    shots: int = 0
    method: str = "adfwi"
    strategy: str = "denorm"
    pretrain_steps: int = 300
    epochs: int = 40
    lr_scale: float = 1.0
    seed: int = 0
    options: tuple = ()

    def __post_init__(self):
        from jaxfwi.methods import canonical_name  # noqa: PLC0415

        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("acquisition", _items(self.acquisition, "acquisition"))
        set_("options", _items(self.options, "options"))
        model = str(self.model).strip().lower()
        if model.startswith("synthetic"):
            kind = model.partition(":")[2] or "default"
            if kind not in SYNTHETIC_MODELS:
                raise ValueError(f"Scenario: model={self.model!r}: synthetic models are "
                                 f"{', '.join('synthetic:' + k for k in SYNTHETIC_MODELS)}.")
            model = f"synthetic:{kind}"
        else:
            from jaxfwi.datasets import get_preset  # noqa: PLC0415

            get_preset(model)  # raises a helpful error for unknown names
        set_("model", model)
        try:
            set_("method", canonical_name(self.method))
        except ValueError as e:
            raise ValueError(f"Scenario: method={self.method!r}: {e}.") from None
        if self.init not in INIT_KINDS:
            raise ValueError(f"Scenario: init={self.init!r}; choose one of {INIT_KINDS}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Scenario: strategy={self.strategy!r}; choose one of {STRATEGIES}.")
        if int(self.reduce) != self.reduce or self.reduce < 1:
            raise ValueError(f"Scenario: reduce={self.reduce!r} must be a positive integer (1 = the paper's grid).")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ValueError(f"Scenario: epochs={self.epochs!r} must be a positive integer.")
        if not self.noise >= 0 or not self.highpass >= 0 or int(self.shots) != self.shots or self.shots < 0:
            raise ValueError(f"Scenario: noise={self.noise!r}, highpass={self.highpass!r} must be >= 0 and "
                             f"shots={self.shots!r} a count >= 0 (0 = all shots).")
        if not self.perturb > -100:
            raise ValueError(f"Scenario: perturb={self.perturb!r} must be > -100 (percent).")
        if not (self.lr_scale > 0 and math.isfinite(self.lr_scale)):
            raise ValueError(f"Scenario: lr_scale={self.lr_scale!r} must be a positive factor.")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"Scenario: seed={self.seed!r} must be a non-negative integer.")
        set_("reduce", int(self.reduce))
        set_("epochs", int(self.epochs))
        set_("shots", int(self.shots))
        set_("seed", int(self.seed))
        set_("pretrain_steps", int(self.pretrain_steps))
        for k in ("perturb", "noise", "highpass", "lr_scale"):
            set_(k, float(getattr(self, k)))
        if self.init_value is not None:
            set_("init_value", float(self.init_value))

    # -- names ----------------------------------------------------------------
    @property
    def condition(self) -> str:
        return format_condition(self.noise, self.highpass, self.shots)

    @property
    def init_label(self) -> str:
        """``smooth``, ``constant``, ``profile+10%``, ..."""
        s = self.init
        if self.init_value is not None:
            s += f"({_num(self.init_value)})"
        if self.perturb:
            s += f"{'+' if self.perturb > 0 else ''}{_num(self.perturb)}%"
        return s

    @property
    def method_label(self) -> str:
        """The method, with ``+pretrain`` for the pretraining strategy and any lr scaling left out."""
        return self.method + ("+pretrain" if self.strategy == "pretrain" else "")

    @property
    def model_label(self) -> str:
        return self.model + (f"/r{self.reduce}" if self.reduce != 1 else "")

    def settings(self, with_seed: bool = False) -> dict:
        """The fields as a JSON-able dict (the seed left out unless asked)."""
        d = dataclasses.asdict(self)
        d["acquisition"] = [list(kv) for kv in self.acquisition]
        d["options"] = [list(kv) for kv in self.options]
        if not with_seed:
            d.pop("seed")
        return d

    def group_key(self) -> str:
        """Hash of the settings without the seed: scenarios differing only in the seed share it."""
        blob = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def dir_name(self) -> str:
        """Stable directory name of the scenario (without the seed), e.g.
        ``marmousi-r2__smooth__clean__adfwi__e40__3f2a9c01d4``."""
        def clean(s):
            return "".join(c if c.isalnum() or c in "+-.%" else "-" for c in s).replace("%", "pc")
        parts = [clean(self.model.replace("synthetic:", "syn-")) + (f"-r{self.reduce}" if self.reduce != 1 else ""),
                 clean(self.init_label), clean(self.condition.replace(":", "")), clean(self.method_label),
                 f"e{self.epochs}", self.group_key()]
        return "__".join(parts)

    def with_seed(self, seed: int) -> "Scenario":
        return dataclasses.replace(self, seed=int(seed))

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        d = dict(d)
        if "condition" in d:
            d.update(parse_condition(d.pop("condition")))
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Scenario: unknown field(s) {sorted(unknown)}; valid: "
                             f"{[f.name for f in dataclasses.fields(cls)]} (and 'condition').")
        return cls(**d)


# --------------------------------------------------------------------------- grids

_PLURALS = {"models": "model", "inits": "init", "conditions": "condition", "methods": "method", "seeds": "seed",
            "perturbs": "perturb", "strategies": "strategy", "reduces": "reduce", "epochs_list": "epochs",
            "lr_scales": "lr_scale", "init_values": "init_value"}


def expand_grid(defaults: dict | None = None, **axes) -> list[Scenario]:
    """Scenarios of the cartesian product of ``axes`` (plural names, lists) on top of ``defaults``.

    ``expand_grid({"epochs": 20}, models=["synthetic"], inits=["smooth"], methods=["adfwi", "ifwi"],
    seeds=[0, 1])`` -> 4 scenarios. Scalars (singular field names) are allowed too.
    """
    base = dict(defaults or {})
    fixed = {}
    lists = {}
    for k, v in {**base, **axes}.items():
        name = _PLURALS.get(k, k)
        if k in _PLURALS:
            vals = list(v) if isinstance(v, (list, tuple)) else [v]
            if not vals:
                raise ValueError(f"expand_grid: {k} is empty.")
            lists[name] = vals
        else:
            fixed[name] = v
    for name in lists:
        fixed.pop(name, None)
    lists.setdefault("seed", [fixed.pop("seed", 0)])
    names = list(lists)
    out = []
    seen = set()
    for combo in itertools.product(*(lists[n] for n in names)):
        sc = Scenario.from_dict({**fixed, **dict(zip(names, combo))})
        if sc not in seen:
            seen.add(sc)
            out.append(sc)
    return out


def scenarios_from_dict(cfg: dict) -> list[Scenario]:
    """Scenarios of a parsed config ``{"defaults": {...}, "grid": [{...}, ...]}`` (see module docs)."""
    defaults = dict(cfg.get("defaults", {}))
    grids = cfg.get("grid", [])
    if isinstance(grids, dict):
        grids = [grids]
    extra = set(cfg) - {"defaults", "grid", "report"}
    if extra:
        raise ValueError(f"config: unknown top-level section(s) {sorted(extra)}; use [defaults] and [[grid]].")
    if not grids:
        raise ValueError("config: no [[grid]] section: nothing to run.")
    out, seen = [], set()
    for g in grids:
        g = dict(g)
        g.pop("name", None)
        for sc in expand_grid(defaults, **g):
            if sc not in seen:
                seen.add(sc)
                out.append(sc)
    return out


def load_config(path) -> list[Scenario]:
    """Scenarios of a TOML config file (see the module docs for the layout)."""
    import tomllib  # noqa: PLC0415

    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    return scenarios_from_dict(cfg)


def group_by_seed(scenarios: Iterable[Scenario]) -> dict[str, list[Scenario]]:
    """``{dir_name: [scenarios of that directory, one per seed]}`` in first-seen order."""
    out: dict[str, list[Scenario]] = {}
    for sc in scenarios:
        out.setdefault(sc.dir_name, []).append(sc)
    return out


def scenario_summary(sc: Scenario) -> dict[str, Any]:
    """Short labels used by reports: model, init, condition, method."""
    return {"model": sc.model_label, "init": sc.init_label, "condition": sc.condition, "method": sc.method_label}


