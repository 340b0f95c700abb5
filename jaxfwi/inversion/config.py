"""The settings of a run, in two frozen dataclasses.

* :class:`FitConfig`: the keyword options of :func:`~jaxfwi.inversion.fit`, with their
  defaults, in one place (``fit``'s own keywords, ``invert``'s routing of options and the
  checks of every option read it). Built on the host; holds host things too (callback,
  checkpoint folder, initial params, ``v_true``).
* :class:`ForwardOptions`: the options of :func:`jaxfwi.forward` the loop uses, resolved once
  (``max_vel``, ``pml_freq`` filled in) by :func:`resolve_forward`, hashable.

The hashable settings of the compiled step itself are :class:`~jaxfwi.inversion.step.StepConfig`.
Also here: the run's PRNG keys (:func:`as_key`, :func:`run_keys`) and the shot layout
(:func:`batch_layout`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfwi.physics import Survey, plan_propagation
from jaxfwi.physics.wavelets import peak_frequency

__all__ = ["FitConfig", "ForwardOptions", "FORWARD_OPTIONS", "MAX_VEL_MARGIN", "DIVERGE_FACTOR", "RESUME_MODES",
           "default_max_vel", "resolve_forward", "as_key", "run_keys", "batch_layout"]

#: options passed on to :func:`jaxfwi.forward`, with fit's defaults
FORWARD_OPTIONS = {
    "accuracy": 8,
    "pml_width": 20,
    "free_surface": False,
    "max_vel": None,
    "pml_freq": None,
    "checkpoint": None,
    "shot_batch": None,
    "cfl": "subdivide",
    "substeps": None,
}

#: ``max_vel`` defaults to this factor times the largest initial velocity (without bounds)
MAX_VEL_MARGIN = 1.25

#: a loss above this factor times the largest loss so far (of the current multiscale band) is a divergence
DIVERGE_FACTOR = 1e3

#: values of ``resume``: True (identical runs only), False (start over), or "new_learning_rate"
RESUME_MODES = (True, False, "new_learning_rate")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The options of :func:`~jaxfwi.inversion.fit` (see its docstring for each), checked on
    construction. ``fit(param, d_obs, survey, dx, epochs=.., key=.., **options)`` is
    ``FitConfig(epochs=.., **options)`` run for that problem and key."""
    epochs: int
    optimizer: Optional[optax.GradientTransformation] = None
    learning_rate: Optional[float] = None
    misfit: Any = "l2"
    regularizer: Any = None
    shot_batch: Optional[int] = None
    updates_per_epoch: int = 1
    shot_order: str = "random"
    multiscale: Any = None
    clip_norm: Optional[float] = None
    v_true: Any = None
    checkpoint_dir: Any = None
    checkpoint_every: int = 10
    resume: Any = True
    progress: bool = True
    forward_kwargs: Optional[dict] = None
    params: Any = None
    callback: Optional[Callable] = None
    snapshot_params_every: Optional[int] = None
    devices: Any = None
    method: Optional[str] = None
    diverge_factor: Optional[float] = DIVERGE_FACTOR
    memory_check: bool = True
    stop_misfit: Optional[float] = None

    @classmethod
    def names(cls) -> tuple:
        """The option names (``epochs`` first)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def __post_init__(self):
        epochs = self.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer, float)) or int(epochs) != epochs \
                or epochs < 1:
            raise ValueError(f"epochs={epochs!r} must be a positive integer.")
        object.__setattr__(self, "epochs", int(epochs))
        if self.shot_order not in ("random", "cyclic"):
            raise ValueError(f"shot_order={self.shot_order!r}: use 'random' or 'cyclic'.")
        resume = self.resume
        if not any(resume is m for m in RESUME_MODES) and resume != "new_learning_rate":
            raise ValueError(f"resume={resume!r}: use True (continue an identical run), False (start over) or "
                             "'new_learning_rate' (continue from the checkpoint with the learning_rate given now).")
        ce = self.checkpoint_every
        if ce is not None and (isinstance(ce, bool) or int(ce) != ce or ce < 1):
            raise ValueError(f"checkpoint_every={ce!r} must be a positive number of epochs.")
        se = self.snapshot_params_every
        if se is not None and (int(se) != se or se < 1):
            raise ValueError(f"snapshot_params_every={se!r} must be a positive number of epochs.")
        if self.clip_norm is not None:
            c = float(self.clip_norm)
            if not (c > 0 and math.isfinite(c)):
                raise ValueError(f"clip_norm={self.clip_norm!r} must be a positive, finite gradient norm (or None).")
            object.__setattr__(self, "clip_norm", c)
        if self.stop_misfit is not None:
            try:
                sm = float(self.stop_misfit)
            except (TypeError, ValueError):
                sm = float("nan")
            if not (sm > 0 and math.isfinite(sm)):
                raise ValueError(f"stop_misfit={self.stop_misfit!r} must be a positive, finite misfit (the data misfit "
                                 "at which to stop, e.g. the misfit of the noise: 0.5 * n_samples * sigma**2 for the "
                                 "l2 misfit and white noise of std sigma), or None to run every epoch.")
            object.__setattr__(self, "stop_misfit", sm)
        if self.diverge_factor is not None:
            f = float(self.diverge_factor)
            if not f > 1:
                raise ValueError(f"diverge_factor={self.diverge_factor!r} must be > 1 (a loss above this factor times "
                                 "its largest value so far counts as a divergence), or None to check only for NaN/inf.")
            object.__setattr__(self, "diverge_factor", f)
        if self.optimizer is None:
            if self.learning_rate is not None:
                lr = self.learning_rate
                try:
                    value = float(lr)
                except (TypeError, ValueError):
                    raise ValueError(f"learning_rate={lr!r} must be a positive, finite number.") from None
                if isinstance(lr, (bool, complex)) or not (value > 0 and math.isfinite(value)):
                    raise ValueError(f"learning_rate={lr!r} must be a positive, finite number (Adam's step; "
                                     "e.g. the method's default, jaxfwi.models.default_learning_rate(method)).")
                object.__setattr__(self, "learning_rate", value)
        else:
            if self.learning_rate is not None:
                raise ValueError("pass either optimizer=... or learning_rate=..., not both (the optimizer has its "
                                 "own).")
            if not isinstance(self.optimizer, optax.GradientTransformation):
                raise TypeError(f"optimizer={self.optimizer!r} must be an optax.GradientTransformation, e.g. "
                                "optax.adam(1e-3).")
            if self.resume == "new_learning_rate":
                raise ValueError("resume='new_learning_rate' works with the default Adam (learning_rate=...); with "
                                 "optimizer=... the step size lives inside your optimizer, so resume with it "
                                 "unchanged or start over (resume=False).")


@dataclasses.dataclass(frozen=True)
class ForwardOptions:
    """The options of :func:`jaxfwi.forward` of a run, resolved (hashable: a static setting)."""
    accuracy: int = 8
    pml_width: Any = 20
    free_surface: bool = False
    max_vel: Optional[float] = None
    pml_freq: Optional[float] = None
    checkpoint: Any = None
    shot_batch: Optional[int] = None
    cfl: str = "subdivide"
    substeps: Optional[int] = None

    def kwargs(self) -> dict:
        """The keyword arguments of :func:`jaxfwi.forward`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_kwargs(cls, forward_kwargs: Optional[dict]) -> "ForwardOptions":
        """Check the names and the ``pml_width`` of user forward options (defaults for the rest)."""
        fk = dict(FORWARD_OPTIONS)
        for k, v in (forward_kwargs or {}).items():
            if k not in FORWARD_OPTIONS:
                raise ValueError(f"forward_kwargs: unknown option {k}={v!r}; valid: {sorted(FORWARD_OPTIONS)}.")
            fk[k] = v
        pw = fk["pml_width"]
        widths = list(np.ravel(pw)) if isinstance(pw, (list, tuple, np.ndarray)) else [pw]
        if not widths or any(isinstance(w, bool) or not isinstance(w, (int, np.integer, float, np.floating))
                             or not math.isfinite(w) or int(w) != w or w < 0 for w in widths):
            raise ValueError(f"pml_width={pw!r}: every width must be a non-negative whole number of cells (one, or "
                             "2 * ndim: [top, bottom, left, right] in 2-D); e.g. pml_width=20.")
        fk["pml_width"] = tuple(int(p) for p in widths) if isinstance(pw, (list, tuple, np.ndarray)) else int(pw)
        return cls(**fk)


def default_max_vel(param, v0=None, margin: float = MAX_VEL_MARGIN) -> float:
    """The ``max_vel`` (m/s) fit uses by default.

    The upper velocity bound of the parameterisation if it has one, else ``margin`` times
    the largest velocity of the initial model ``param.m0`` — independent of the random
    initialisation, so every seed of a multi-seed run uses the same forward model — raised
    to ``margin`` times the largest initial velocity ``v0`` only if ``v0`` exceeds it. It
    fixes the number of CFL substeps and the PML damping of the compiled forward model; a
    model that later exceeds it may make the time stepping unstable (set ``bounds`` or pass
    ``max_vel``).
    """
    if getattr(param, "bounds", None) is not None:
        return float(param.bounds[1])
    vmax = margin * float(np.max(np.asarray(param.m0)))
    if v0 is not None and float(np.max(np.asarray(v0))) > vmax:
        vmax = margin * float(np.max(np.asarray(v0)))
    return vmax


def resolve_forward(forward_kwargs, param, survey: Survey, dx, v0=None, *, max_vel=None, strict: bool = True,
                    warn: bool = True):
    """``(ForwardOptions, PropagationPlan)`` of a run: user options checked, ``max_vel``
    (:func:`default_max_vel`) and ``pml_freq`` (the wavelet's peak frequency) filled in, and
    the propagation planned (and so validated) before anything is compiled.

    ``v0``: the initial velocity (one model; checked against ``max_vel`` with ``strict``).
    ``max_vel``: overrides the option of the same name (:func:`~jaxfwi.inversion.make_loss`)."""
    fo = ForwardOptions.from_kwargs(forward_kwargs)
    mv = fo.max_vel if max_vel is None else max_vel
    user_max_vel = mv is not None
    if mv is None:
        mv = default_max_vel(param, v0)
    try:
        mv = float(mv)
    except (TypeError, ValueError):
        raise ValueError(f"forward_kwargs max_vel={mv!r} must be a velocity in m/s.") from None
    if not (mv > 0 and math.isfinite(mv)):
        raise ValueError(f"max_vel={mv!r} must be a positive, finite velocity in m/s.")
    bounds = getattr(param, "bounds", None)
    if strict and user_max_vel and bounds is not None and bounds[1] > mv:
        raise ValueError(f"max_vel={mv:g} m/s is below the upper velocity bound {bounds[1]:g} m/s of the "
                         "parameterisation, so the model could leave the range the time step is planned for: raise "
                         "max_vel to the bound (or leave it unset), or lower the bounds.")
    if strict and v0 is not None and float(np.max(v0)) > mv * (1 + 1e-6):
        raise ValueError(f"the initial model reaches {float(np.max(v0)):g} m/s, above max_vel={mv:g} m/s "
                         "that the time step would be planned for: raise max_vel (or leave it unset).")
    pf = fo.pml_freq
    if pf is None:
        pf = peak_frequency(np.asarray(survey.wavelet), survey.dt)
    pf = float(pf)
    if not (pf >= 0 and math.isfinite(pf)):
        raise ValueError(f"pml_freq={pf!r} must be a non-negative frequency in Hz (the C-PML's reference); "
                         "leave it unset to use the wavelet's peak frequency.")
    fo = dataclasses.replace(fo, max_vel=mv, pml_freq=pf)
    v_plan = np.asarray(param.m0) if v0 is None else v0
    plan, _ = plan_propagation(v_plan, dx, survey, fo.accuracy, fo.pml_width, fo.free_surface, max_vel=mv,
                               checkpoint=fo.checkpoint, shot_batch=fo.shot_batch, cfl=fo.cfl,
                               substeps=fo.substeps, warn=warn)
    return fo, plan


def spacing(dx, ndim: int) -> tuple:
    """``dx`` as one float per axis (m)."""
    return (float(dx),) * ndim if np.ndim(dx) == 0 else tuple(float(h) for h in dx)


def as_key(key, name: str = "key"):
    """A typed JAX key array from a typed key or a legacy ``uint32[..., 2]`` key; a ``ValueError``
    naming ``name`` otherwise."""
    if key is None:
        raise ValueError(f"{name} is required: pass e.g. {name}=jax.random.key(0).")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.shape[-1:] != (2,):
        raise ValueError(f"{name} has dtype {key.dtype} and shape {key.shape}; pass a JAX random key "
                         "(jax.random.key(0), or a legacy jax.random.PRNGKey(0)).")
    return jax.random.wrap_key_data(key)


def run_keys(key):
    """``(init key, shot-order key)`` of a run's key: the same for ``fit`` and for each seed
    of ``fit_seeds`` (``jax.vmap(run_keys)(keys)``)."""
    k_init, k_shots = jax.random.split(key)
    return k_init, k_shots


def batch_layout(n_shots: int, shot_batch, updates_per_epoch, n_dev: int):
    """``(shots per batch incl. padding, batches per epoch, updates per epoch)``."""
    if shot_batch is None:
        bsz = n_shots
    else:
        if int(shot_batch) != shot_batch or shot_batch < 1:
            raise ValueError(f"shot_batch={shot_batch!r} must be a positive number of shots (or None for all).")
        bsz = min(int(shot_batch), n_shots)
    bsz = -(-bsz // n_dev) * n_dev
    nb = -(-n_shots // bsz)
    u = int(updates_per_epoch)
    if u < 1 or nb % u:
        raise ValueError(
            f"updates_per_epoch={updates_per_epoch!r} must be a positive divisor of the number of mini-batches "
            f"per epoch ({nb} = ceil({n_shots} shots / {bsz} per batch)); e.g. 1 or {nb}."
        )
    return bsz, nb, u
