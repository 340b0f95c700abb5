"""The papers' FWI methods: one registry, one frozen :class:`MethodSpec` per method.

Everything that knows a method by name reads this module: ``models.build`` (the
representation and its denormalisation scale), ``inversion.invert`` / ``method_defaults``
(optimizer, learning rate, misfit, regulariser, multiscale schedule), ``kernels.eigenvalues``
(whether the model-space kernel is the identity), the experiment runner and both command
lines. A name is normalised in one place, :func:`canonical_name` (case, ``_`` or blanks for
``-``, aliases). Adding a method is one :func:`register` call (see ``docs/extending.md``).

=========  ==========================================================  ======================
method     representation, objective (CR-FWI settings, METHODS.md 2)   Adam learning rate
=========  ==========================================================  ======================
adfwi      the grid itself (v = m0 + params), l2                       5 (m/s per step)
adfwi-tv   grid, l2 + ADFWI's first-order TV (2e-9, x0.9 every 20)     5
weci-fwi   grid, WECI misfit (envelope -> global correlation)          5
ms-fwi     grid, l2 on data low-passed at 4, 6, ..., 14 Hz             5
ifwi       SIREN, v = m0 + 1000 m/s x F                                1e-4
winfwi     Gabor (WIRE) MLP                                            1e-4
lr-fwi     low-rank tensor function of 1-D SIRENs                      1e-4
mpe-fwi    hash-grid encoding + small MLP                              1e-4
ig-fwi     hash grid + SIREN features -> fusion MLP                    1e-4
lrg-fwi    IG-FWI with a low-rank branch                               1e-4
fad-fwi    U-Net on a GRF latent, linear output in m/s                 0.01 (FAD-FWI)
gnn-fwi    generative CNN, ``scale * tanh`` output in m/s              1e-3 (our choice)
=========  ==========================================================  ======================
"""
from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any, Mapping, Optional

import numpy as np

from jaxfwi.models.gabor import Gabor
from jaxfwi.models.generator import Generator
from jaxfwi.models.grid import Grid
from jaxfwi.models.hashgrid import HashGrid
from jaxfwi.models.hybrid import Hybrid
from jaxfwi.models.lowrank import LowRank
from jaxfwi.models.parameterize import Parameterization, default_bounds
from jaxfwi.models.siren import Siren
from jaxfwi.models.unet import UNet

__all__ = ["MethodSpec", "register", "get", "canonical_name", "names", "specs", "method_for_module",
           "PARAMETERIZATION_FIELDS"]

#: the build overrides that go to :class:`~jaxfwi.models.Parameterization` (all others go to the module)
PARAMETERIZATION_FIELDS = ("scale", "mode", "bounds", "clip")

CR_FWI = "CR-FWI (Chen et al., ICLR 2026)"
FAD_FWI = "FAD-FWI (Sun et al., J. Seismic Exploration 2025)"


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """Everything that defines a named method.

    Fields:
      name: canonical name (lower case, ``-`` separated), e.g. ``"ig-fwi"``.
      label: display name, e.g. ``"IG-FWI"``.
      representation: the ``flax.linen.Module`` class (built with ``shape=`` and the settings).
      settings: fixed module settings of the method (e.g. ``{"branch": "siren"}``), not overridable.
      module_defaults: module settings the method uses unless ``build`` is given others
        (e.g. mpe-fwi's ``{"table_size": 2**8}``).
      scale: denormalisation factor S of ``v = m0 + S F`` (m/s per unit of the network output).
      learning_rate: default learning rate of ``optimizer``.
      optimizer: name of the default optax optimizer (``optax.<optimizer>(learning_rate)``).
      misfit: default misfit name (:func:`jaxfwi.objectives.get_misfit`, or ``"weci"``).
      regularizer: default regulariser name (``"tv"``, ``"tikhonov"``) or None.
      multiscale: default frequency schedule: None, True (MS-FWI bands) or a list of cutoffs (Hz).
      identity_kernel: the representation is the grid itself, so its model-space kernel
        ``K_theta`` is the identity and the wave-based NTK is the wave kernel ``J_m J_m^T``.
      paper: where the method and its settings come from.
      aliases: other accepted spellings (normalised like names).
    """
    name: str
    label: str
    representation: type
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    module_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    scale: float = 1000.0
    learning_rate: float = 1e-4
    optimizer: str = "adam"
    misfit: str = "l2"
    regularizer: Optional[str] = None
    multiscale: Any = None
    identity_kernel: bool = False
    paper: str = CR_FWI
    aliases: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "name", _normalise(self.name))
        object.__setattr__(self, "settings", types.MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "module_defaults", types.MappingProxyType(dict(self.module_defaults)))
        object.__setattr__(self, "aliases", tuple(_normalise(a) for a in self.aliases))

    def __hash__(self):
        return hash((self.name, self.representation, tuple(sorted(self.settings.items())),
                     tuple(sorted(self.module_defaults.items()))))

    def fit_defaults(self) -> dict:
        """The fit options this method uses by default: ``misfit``, ``regularizer``,
        ``multiscale``, ``learning_rate`` (of its default optimizer)."""
        return {"misfit": self.misfit, "regularizer": self.regularizer, "multiscale": self.multiscale,
                "learning_rate": self.learning_rate}

    def module(self, shape, **settings):
        """The representation ``representation(shape=shape, **fixed settings, **settings)``."""
        return self.representation(shape=tuple(int(s) for s in shape), **self.settings, **settings)

    def build(self, v_init: Any, **overrides) -> Parameterization:
        """The :class:`~jaxfwi.models.Parameterization` of this method for the initial model
        ``v_init`` (see :func:`jaxfwi.models.build`)."""
        arr = np.asarray(v_init)
        if arr.ndim not in (1, 2, 3):
            raise ValueError(f"build: v_init has shape {arr.shape}; expected [nz], [nz, nx] or "
                             "[nz, ny, nx] (m/s)")
        if np.iscomplexobj(arr):
            raise ValueError(f"build: v_init has complex dtype {arr.dtype}; velocities are real m/s "
                             "(pass np.real(v_init) if that is what you mean).")
        cls, fixed = self.representation, self.settings
        valid = {f.name for f in dataclasses.fields(cls)} - {"shape", "parent", "name"}
        mod_kw, par_kw = dict(self.module_defaults), {"scale": self.scale}
        if arr.size and np.all(np.isfinite(arr)) and np.all(arr > 0):  # else Parameterization explains
            par_kw["bounds"] = default_bounds(arr)
        for k, v in overrides.items():
            if k in PARAMETERIZATION_FIELDS:
                par_kw[k] = v
            elif k in valid and k not in fixed:
                mod_kw[k] = v
            else:
                raise ValueError(f"build: unknown setting {k}={v!r} for method {self.name!r} "
                                 f"({cls.__name__}); valid: "
                                 f"{sorted(set(PARAMETERIZATION_FIELDS) | (valid - set(fixed)))}")
        return Parameterization(self.module(arr.shape, **mod_kw), v_init, **par_kw)


def _normalise(name: Any) -> str:
    return "-".join(str(name).strip().lower().replace("_", "-").split())


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method to the registry (``replace=True`` to redefine one); returns ``spec``."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register: expected a MethodSpec, got {type(spec).__name__}.")
    taken = {spec.name, *spec.aliases} & (set(_REGISTRY) | set(_ALIASES))
    if replace and spec.name in _REGISTRY:
        old = _REGISTRY[spec.name]
        taken -= {old.name, *old.aliases}
        for a in old.aliases:
            _ALIASES.pop(a, None)
    if taken:
        raise ValueError(f"register: the name(s) {sorted(taken)} are taken; pass replace=True to redefine "
                         f"{spec.name!r}.")
    _REGISTRY[spec.name] = spec
    for a in spec.aliases:
        _ALIASES[a] = spec.name
    return spec


def canonical_name(name: Any, what: str = "method") -> str:
    """The registry name of ``name`` (case-insensitive; ``_`` or blanks for ``-``; aliases);
    ``ValueError`` naming the closest valid name otherwise."""
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY) + list(_ALIASES), n=1)
        hint = f" (did you mean {_ALIASES.get(close[0], close[0])}?)" if close else ""
        raise ValueError(f"unknown {what} {name!r}{hint}; valid names: {', '.join(_REGISTRY)}")
    return key


def get(name: Any) -> MethodSpec:
    """The :class:`MethodSpec` of a method name (any accepted spelling)."""
    return _REGISTRY[canonical_name(name)]


def names() -> tuple:
    """Canonical names in registration order (the order of the papers' tables)."""
    return tuple(_REGISTRY)


def specs() -> tuple:
    """Every :class:`MethodSpec`, in registration order."""
    return tuple(_REGISTRY.values())


def method_for_module(module: Any) -> Optional[MethodSpec]:
    """The first registered method whose representation is ``type(module)`` (or None)."""
    for spec in _REGISTRY.values():
        if type(module) is spec.representation:
            return spec
    return None


# --------------------------------------------------------------------------- the papers' methods

_GRID = dict(representation=Grid, scale=1.0, learning_rate=5.0, identity_kernel=True)

for _spec in (
    MethodSpec("adfwi", "ADFWI", **_GRID, aliases=("ad-fwi",)),
    MethodSpec("adfwi-tv", "ADFWI-TV", **_GRID, regularizer="tv", aliases=("ad-fwi-tv",)),
    MethodSpec("weci-fwi", "WECI-FWI", **_GRID, misfit="weci"),
    MethodSpec("ms-fwi", "MS-FWI", **_GRID, multiscale=True),
    MethodSpec("ifwi", "IFWI", Siren, aliases=("i-fwi",)),
    MethodSpec("winfwi", "WinFWI", Gabor, aliases=("win-fwi",)),
    MethodSpec("lr-fwi", "LR-FWI", LowRank),
    # a 2**8-row table per level: the size the published 14.26K parameters imply
    # (16 x 256 x 2 = 8,192 + MLP 6,337 = 14,529; benchmarks/mpe_probe.py --count)
    MethodSpec("mpe-fwi", "MPE-FWI", HashGrid, module_defaults={"table_size": 2 ** 8}),
    MethodSpec("ig-fwi", "IG-FWI", Hybrid, {"branch": "siren"}),
    # low-rank features RMS-normalised: un-normalised (~6e-4 at init) they leave the fusion MLP's
    # output ~1e-5 and the branch never moves (benchmarks/results/README.md, "LRG-FWI")
    MethodSpec("lrg-fwi", "LRG-FWI", Hybrid, {"branch": "lowrank"}, module_defaults={"lr_normalize": True}),
    # "no output scaling": the linear U-Net output is in m/s
    MethodSpec("fad-fwi", "FAD-FWI", UNet, scale=1.0, learning_rate=0.01, paper=FAD_FWI),
    # the generator's own scale * tanh is in m/s; lr not stated in the papers: ~1e-3 x 100 m/s per step
    MethodSpec("gnn-fwi", "GNN-FWI", Generator, scale=1.0, learning_rate=1e-3,
               paper="GNN-FWI (Zhu et al. 2022), FAD-FWI's baseline"),
):
    register(_spec)
del _spec
