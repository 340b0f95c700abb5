"""From parameters to velocity: denormalisation, adaptive background, bounds, pretraining.

METHODS.md section 4 (Denorm paper): the velocity is ``m = m0 + S * F_theta(x)``
("S-Denorm", m0 fixed) or the same with ``m0`` trainable ("A-Denorm"); the
alternative is to pretrain ``F_theta`` to reproduce the initial model (L1 loss)
and then invert without ``m0``. :func:`build` maps the papers' method names to
representations with the papers' settings.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfwi.models._common import check_shape, float_dtype
from jaxfwi.models.gabor import Gabor
from jaxfwi.models.generator import Generator
from jaxfwi.models.grid import Grid
from jaxfwi.models.hashgrid import HashGrid
from jaxfwi.models.hybrid import Hybrid
from jaxfwi.models.lowrank import LowRank
from jaxfwi.models.siren import Siren
from jaxfwi.models.unet import UNet

Array = jax.Array

MODES = ("static", "adaptive", "none")
CLIPS = ("hard", "smooth")


def count_params(params: Any, complex_as_one: bool = False) -> int:
    """Number of real scalars in a params pytree.

    Works on arrays and on ``jax.ShapeDtypeStruct`` trees, so
    ``count_params(jax.eval_shape(p.init, key))`` counts without allocating.
    With ``complex_as_one=True`` leaves whose name ends in ``_im`` (imaginary parts
    of complex weights, see :class:`~jaxfwi.models.Gabor`) are skipped: the PyTorch
    ``numel`` convention used for the published WinFWI count.
    """
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if complex_as_one and path:
            last = path[-1]
            name = str(getattr(last, "key", getattr(last, "name", "")))
            if name.endswith("_im"):
                continue
        total += int(math.prod(np.shape(leaf)))
    return total


@dataclasses.dataclass(frozen=True, eq=False)
class Parameterization:
    """params -> velocity (m/s) for one representation and one initial model.

    Fields:
      module: a representation (``Grid``, ``Siren``, ...) whose ``apply`` returns a
        dimensionless field ``F`` of ``m0.shape``.
      m0: initial model, array of the module's shape, m/s.
      scale: the denormalisation factor S (m/s per unit of ``F``).
      mode: ``"static"``: ``v = m0 + S F`` (S-Denorm, the CR-FWI default);
        ``"adaptive"``: ``v = m0_theta + S F`` with ``m0_theta`` a trainable leaf
        ``params["m0"]`` initialised to ``m0`` (A-Denorm);
        ``"none"``: ``v = mean(m0) + S F``, no initial model (pair with
        :meth:`pretrain` for the Denorm paper's "pretraining" strategy).
      bounds: optional ``(vmin, vmax)`` in m/s, applied last.
      clip: ``"hard"``: ``jnp.clip`` (zero gradient where a bound is active);
        ``"smooth"``: ``vmin + softplus(b (v - vmin))/b - softplus(b (v - vmax))/b``
        with ``b = 100 / (vmax - vmin)``: inside the bounds (strictly, up to float
        rounding), differentiable, with a nonzero gradient up to a few % of the
        range outside the bounds, and within ~0.7 % of the range of ``v`` when
        ``v`` is inside and away from the bounds.

    Params pytree: ``{"net": <the module's flax 'params' collection>}``, plus
    ``"m0"`` in adaptive mode. Use functionally; the object holds arrays, so close
    over it rather than passing it as a static ``jit`` argument.
    """
    module: nn.Module
    m0: Any
    scale: float = 1000.0
    mode: str = "static"
    bounds: Optional[tuple[float, float]] = None
    clip: str = "hard"

    def __post_init__(self):
        if not isinstance(self.module, nn.Module):
            raise TypeError(f"Parameterization: module must be a flax.linen.Module, got "
                            f"{type(self.module).__name__}")
        if self.mode not in MODES:
            raise ValueError(f"Parameterization: mode={self.mode!r}; expected one of {MODES}")
        if self.clip not in CLIPS:
            raise ValueError(f"Parameterization: clip={self.clip!r}; expected one of {CLIPS}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Parameterization: scale={self.scale!r} must be a positive "
                             "number (m/s per unit of the network output)")
        if self.bounds is not None:
            lo, hi = (float(b) for b in self.bounds)
            if not lo < hi:
                raise ValueError(f"Parameterization: bounds={self.bounds!r} must be (vmin, vmax) "
                                 "with vmin < vmax (m/s)")
            object.__setattr__(self, "bounds", (lo, hi))
        m0 = self.m0
        if not isinstance(m0, jax.core.Tracer):
            arr = np.asarray(m0)
            if np.iscomplexobj(arr):
                raise ValueError(f"Parameterization: m0 (v_init) has complex dtype {arr.dtype}; velocities are "
                                 "real m/s: pass the real part (np.real(v)) if that is what you mean.")
            if arr.size == 0 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(f"Parameterization: m0 (v_init) has shape {arr.shape} and dtype {arr.dtype}; "
                                 "give a non-empty real array of velocities in m/s.")
            if not np.all(np.isfinite(arr)):
                raise ValueError("Parameterization: m0 contains NaN or inf")
            if np.any(arr <= 0):
                raise ValueError(f"Parameterization: m0 must be positive (m/s); min is "
                                 f"{arr.min()}")
        m0 = jnp.asarray(m0, dtype=float_dtype())
        shape = check_shape(getattr(self.module, "shape", None), owner=type(self.module).__name__)
        if tuple(m0.shape) != shape:
            raise ValueError(f"Parameterization: m0 has shape {tuple(m0.shape)} but the "
                             f"{type(self.module).__name__} has shape={shape}; build the "
                             "module with shape=m0.shape")
        object.__setattr__(self, "m0", m0)
        # Trace the module once (no compilation, no FLOPs) so bad settings fail here.
        jax.eval_shape(self.module.init, jax.random.PRNGKey(0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.m0.shape)

    def init(self, key: Array) -> dict:
        """Initial params pytree from a PRNG key (jittable, vmappable over keys)."""
        variables = self.module.init(key)
        params = {"net": variables["params"]}
        if self.mode == "adaptive":
            params["m0"] = self.m0
        return params

    def field(self, params: dict) -> Array:
        """The dimensionless network output ``F`` of ``shape``."""
        return self.module.apply({"params": params["net"]})

    def unbounded_velocity(self, params: dict) -> Array:
        """The velocity (m/s) before ``bounds`` are applied: ``m0 + S F`` (by ``mode``)."""
        f = self.field(params)
        if self.mode == "static":
            return self.m0 + self.scale * f
        if self.mode == "adaptive":
            return params["m0"] + self.scale * f
        return jnp.mean(self.m0) + self.scale * f

    def velocity(self, params: dict) -> Array:
        """Velocity array of ``shape`` in m/s (pure; jit/vmap/jvp/vjp-able)."""
        return self.apply_bounds(self.unbounded_velocity(params))

    def apply_bounds(self, v: Array) -> Array:
        """``bounds`` applied to an unbounded velocity ``v`` (m/s); identity without bounds."""
        if self.bounds is not None:
            lo, hi = self.bounds
            if self.clip == "hard":
                v = jnp.clip(v, lo, hi)
            else:
                b = 100.0 / (hi - lo)
                sp = jax.nn.softplus
                # two algebraically equal forms; each is accurate on its side of the middle
                low = lo + (sp(b * (v - lo)) - sp(b * (v - hi))) / b
                high = hi + (sp(b * (lo - v)) - sp(b * (hi - v))) / b
                v = jnp.where(v < 0.5 * (lo + hi), low, high)
        return v

    def pretrain(self, params: dict, steps: int = 500, lr: float = 1e-3,
                 key: Optional[Array] = None, target: Optional[Any] = None,
                 return_losses: bool = False):
        """Fit the params so that ``velocity(params) ~= m0`` (L1 loss, Adam).

        The Denorm paper's pretraining strategy (normally with ``mode="none"``).
        Runs ``steps`` Adam steps in one jitted ``lax.scan``. The loss is taken on
        :meth:`unbounded_velocity`: with hard ``bounds`` a network whose output starts
        (or overshoots) outside them would otherwise get a zero gradient and stay there.

        Args:
          params: params pytree (e.g. from :meth:`init`).
          steps: number of Adam steps.
          lr: Adam learning rate.
          key: unused (the fit is deterministic); accepted for API symmetry.
          target: model to fit instead of ``m0`` (m/s, same shape).
          return_losses: also return the per-step mean L1 misfit (m/s), array [steps].
        Returns:
          fitted params (and the losses if requested).
        """
        del key
        steps = int(steps)
        if steps < 1:
            raise ValueError(f"pretrain: steps={steps} must be >= 1")
        tgt = self.m0 if target is None else jnp.asarray(target, self.m0.dtype)
        if tgt.shape != self.m0.shape:
            raise ValueError(f"pretrain: target has shape {tgt.shape}, expected {self.m0.shape}")
        opt = optax.adam(lr)

        def loss(p):
            return jnp.mean(jnp.abs(self.unbounded_velocity(p) - tgt))

        @jax.jit
        def run(p):
            def step(carry, _):
                p, s = carry
                val, g = jax.value_and_grad(loss)(p)
                upd, s = opt.update(g, s, p)
                return (optax.apply_updates(p, upd), s), val
            (p, _), losses = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
            return p, losses

        out, losses = run(params)
        return (out, losses) if return_losses else out


# --- the papers' methods -------------------------------------------------------------

_GRID_METHODS = ("adfwi", "adfwi-tv", "weci-fwi", "ms-fwi")

#: method name -> (representation class, fixed module settings)
METHODS: dict[str, tuple[type, dict]] = {
    **{m: (Grid, {}) for m in _GRID_METHODS},
    "ifwi": (Siren, {}),
    "winfwi": (Gabor, {}),
    "lr-fwi": (LowRank, {}),
    "mpe-fwi": (HashGrid, {}),
    "ig-fwi": (Hybrid, {"branch": "siren"}),
    "lrg-fwi": (Hybrid, {"branch": "lowrank"}),
    "fad-fwi": (UNet, {}),
    "gnn-fwi": (Generator, {}),
}

#: method name -> module settings the method uses by default, unlike ``METHODS``' fixed settings
#: overridable. mpe-fwi: a 2**8-row table per level, the table size the published 14.26K
#: parameters imply (16 x 256 x 2 = 8,192 + MLP 6,337 = 14,529; benchmarks/mpe_probe.py --count).
METHOD_MODULE_DEFAULTS: dict[str, dict] = {"mpe-fwi": {"table_size": 2 ** 8}}

_CR_SCALE = 1000.0


def _normalise_method(method: Any) -> str:
    name = str(method).strip().lower().replace("_", "-")
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid names: {', '.join(METHODS)}")
    return name


def default_scale(method: str) -> float:
    """Default denormalisation scale S (m/s) for a method.

    * grid methods: 1 (the parameters are the velocity update in m/s, so the
      papers' Adam lr 5 is "5 m/s per step");
    * CR methods (ifwi, winfwi, lr-fwi, mpe-fwi, ig-fwi, lrg-fwi): 1000 m/s, i.e. the
      network output is in km/s; with Adam lr 1e-4 this moves the model by O(1-10)
      m/s per step, the same order as the grid methods' lr 5;
    * fad-fwi: 1 ("no output scaling": the linear U-Net output is in m/s; lr 0.01);
    * gnn-fwi: 1 (the generator's own ``scale * tanh`` is in m/s).
    """
    name = _normalise_method(method)
    if name in _GRID_METHODS or name in ("fad-fwi", "gnn-fwi"):
        return 1.0
    return _CR_SCALE


def default_learning_rate(method: str) -> float:
    """The papers' Adam learning rate: 5.0 (grid methods, m/s), 1e-4 (CR methods,
    CR-FWI), 0.01 (fad-fwi, FAD-FWI); 1e-3 for gnn-fwi (not stated in the papers:
    our choice, about 1e-3 x 100 m/s per step through the tanh)."""
    name = _normalise_method(method)
    if name in _GRID_METHODS:
        return 5.0
    if name == "fad-fwi":
        return 0.01
    if name == "gnn-fwi":
        return 1e-3
    return 1e-4


_PARAM_FIELDS = ("scale", "mode", "bounds", "clip")

#: default velocity bounds of :func:`build`, as factors of the initial model's (min, max)
DEFAULT_BOUND_FACTORS = (0.5, 1.25)


def default_bounds(v_init: Any) -> tuple[float, float]:
    """The velocity range (m/s) every method of :func:`build` keeps by default:
    ``(0.5 * min(v_init), 1.25 * max(v_init))``.

    The upper end is the ``max_vel`` :func:`jaxfwi.inversion.fit` plans the time step and
    the C-PML for, so no model the inversion produces can make the time stepping
    unstable; the lower end keeps every velocity positive. Pass ``bounds=(vmin, vmax)``
    to :func:`build` for another range (``fit`` then plans for ``vmax``), or ``bounds=None``
    for none (``fit`` then stops with an error if a velocity leaves ``(0, max_vel]``)."""
    arr = np.asarray(v_init, dtype=np.float64)
    lo, hi = DEFAULT_BOUND_FACTORS
    return (float(lo * arr.min()), float(hi * arr.max()))


def build(method: str, v_init: Any, **overrides) -> Parameterization:
    """The Parameterization of a paper method with the papers' default settings.

    Args:
      method: one of ``METHODS`` (case-insensitive, ``_`` accepted for ``-``):
        adfwi, adfwi-tv, weci-fwi, ms-fwi (Grid); ifwi (Siren); winfwi (Gabor);
        lr-fwi (LowRank); mpe-fwi (HashGrid); ig-fwi (Hybrid, siren branch);
        lrg-fwi (Hybrid, lowrank branch); fad-fwi (UNet); gnn-fwi (Generator).
      v_init: initial model m0, [nz, nx] (or [nz] / [nz, ny, nx]), m/s.
      **overrides: Parameterization fields (``scale``, ``mode``, ``bounds``,
        ``clip``) and/or module settings (e.g. ``width=64``, ``table_size=2**8``).
    Returns:
      a :class:`Parameterization` with ``m0 = v_init``, static denormalisation,
      ``scale = default_scale(method)`` and ``bounds = default_bounds(v_init)`` (hard clip to
      ``(0.5 min, 1.25 max)`` of ``v_init``) unless overridden; ``bounds=None`` for none.
    """
    name = _normalise_method(method)
    arr = np.asarray(v_init)
    if arr.ndim not in (1, 2, 3):
        raise ValueError(f"build: v_init has shape {arr.shape}; expected [nz], [nz, nx] or "
                         "[nz, ny, nx] (m/s)")
    if np.iscomplexobj(arr):
        raise ValueError(f"build: v_init has complex dtype {arr.dtype}; velocities are real m/s "
                         "(pass np.real(v_init) if that is what you mean).")
    cls, fixed = METHODS[name]
    valid = {f.name for f in dataclasses.fields(cls)} - {"shape", "parent", "name"}
    mod_kw, par_kw = {**METHOD_MODULE_DEFAULTS.get(name, {}), **fixed}, {"scale": default_scale(name)}
    if arr.size and np.all(np.isfinite(arr)) and np.all(arr > 0):  # else Parameterization explains
        par_kw["bounds"] = default_bounds(arr)
    for k, v in overrides.items():
        if k in _PARAM_FIELDS:
            par_kw[k] = v
        elif k in valid and k not in fixed:
            mod_kw[k] = v
        else:
            raise ValueError(f"build: unknown setting {k}={v!r} for method {name!r} "
                             f"({cls.__name__}); valid: {sorted(set(_PARAM_FIELDS) | (valid - set(fixed)))}")
    module = cls(shape=tuple(int(s) for s in arr.shape), **mod_kw)
    return Parameterization(module, v_init, **par_kw)
