"""The training loop: ``fit`` (one run) and ``fit_seeds`` (N runs in one vmapped program).

One **epoch** visits every shot once. The shots are laid out in ``n_batches``
mini-batches of ``shot_batch`` shots (padded with zero-weight shots so that all
batches have the same size and, on several devices, a size divisible by the device
count); the batches are grouped into ``updates_per_epoch`` optimizer updates, and
within an update the gradients of its batches are accumulated (``lax.scan``), so
memory is bounded by one batch. The default, ``updates_per_epoch=1``, is one
optimizer update per epoch with the gradient of the misfit over **all** shots — the
same update as ``shot_batch=None`` up to float rounding. ``shot_order="random"``
draws a fresh shot permutation every epoch (from the run's key), ``"cyclic"`` uses
the fixed interleaved batches ``{b, b + n_batches, b + 2 n_batches, ...}``; the
order matters only when ``updates_per_epoch > 1``.

The whole epoch (layout, forward + backward of every batch, optimizer update,
metrics) is one jit-compiled function of traced arrays — params, optimizer state,
epoch number, observed data, survey arrays, true model — compiled once per
configuration and reused across epochs, resumed runs and runs with other data or
learning rates (the default Adam's learning rate lives in the optimizer state).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfwi import metrics as _metrics
from jaxfwi.inversion import checkpoints as _ckpt
from jaxfwi.inversion import memory as _memory
from jaxfwi.inversion import objective as _obj
from jaxfwi.inversion import sharding as _shard
from jaxfwi.physics import Survey, forward, plan_propagation
from jaxfwi.physics.wavelets import peak_frequency

__all__ = ["fit", "fit_seeds", "make_loss", "InversionResult", "DivergenceError", "NonFiniteLossError",
           "FORWARD_OPTIONS", "default_max_vel", "run_identity", "RESUME_MODES", "DIVERGE_FACTOR"]

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

MAX_VEL_MARGIN = 1.25

#: a loss above this factor times the largest loss so far (of the current multiscale band) is a divergence
DIVERGE_FACTOR = 1e3

#: values of ``resume``: True (identical runs only), False (start over), or "new_learning_rate"
RESUME_MODES = (True, False, "new_learning_rate")


class DivergenceError(FloatingPointError):
    """The run diverged: the loss or gradient became NaN/inf, the loss blew up (above
    ``diverge_factor`` times its largest value so far), or a velocity left ``(0, max_vel]``.

    Attributes: ``epoch`` (0-based epoch where it was detected), ``history`` (records of the
    finished epochs), ``checkpoint`` (path of the checkpoint now holding the last good state, or
    None), ``good_epochs`` (epochs done in that state). Continue from it with a smaller step:
    ``fit(..., learning_rate=smaller, resume="new_learning_rate")``."""

    def __init__(self, message, epoch, history, checkpoint, good_epochs=None):
        super().__init__(message)
        self.epoch = epoch
        self.history = history
        self.checkpoint = checkpoint
        self.good_epochs = good_epochs


#: the former name of :class:`DivergenceError`
NonFiniteLossError = DivergenceError


@dataclasses.dataclass
class InversionResult:
    """What :func:`fit` / :func:`fit_seeds` return.

    Attributes:
      params: final params pytree (stacked along a leading seed axis for multi-seed runs).
      velocity: final model, numpy ``[nz, nx]`` m/s (``[n_seeds, nz, nx]`` for multi-seed).
      history: dict of numpy arrays, one entry per epoch (``[epochs]``, or
        ``[n_seeds, epochs]`` for per-seed values): ``epoch``; ``loss`` = ``misfit`` +
        ``regularizer`` (evaluated during the epoch, i.e. at the params *before* its
        update); ``grad_norm`` (global norm of the gradient, before clipping); ``time``
        (wall-clock seconds of the epoch, the first includes compilation); with
        ``v_true``: ``mse``, ``mae`` ((km/s)^2, km/s) and ``ssim`` of the model *after*
        the epoch's update; with multiscale: ``band_hz`` (the low-pass cutoff used).
      metrics: ``jaxfwi.metrics.all_metrics`` of the final model (a list per seed), or None.
      snapshots: list of ``(epochs_done, params)`` taken with ``snapshot_params_every``.
      param: the :class:`~jaxfwi.models.Parameterization`.
      epochs: number of finished epochs.
      checkpoint: path of the last checkpoint written (or None).
    """
    params: Any
    velocity: np.ndarray
    history: dict
    metrics: Any = None
    snapshots: list = dataclasses.field(default_factory=list)
    param: Any = None
    epochs: int = 0
    checkpoint: Optional[str] = None

    @property
    def n_seeds(self) -> Optional[int]:
        return None if self.velocity.ndim == len(self.param.shape) else int(self.velocity.shape[0])

    def records(self) -> list:
        """The history as a list of per-epoch dicts."""
        n = len(self.history["epoch"])
        return [{k: v[..., e] for k, v in self.history.items()} for e in range(n)]


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static settings of the compiled epoch (hashable; Parameterization hashes by identity)."""
    param: Any
    optimizer: Any
    misfit: _obj.Misfit
    regularizer: Optional[_obj.Regularizer]
    dx: tuple
    fwd: tuple  # sorted (name, value) pairs for jaxfwi.forward
    n_shots: int
    batch: int  # shots per batch incl. padding (a multiple of the device count)
    n_batches: int
    updates: int  # optimizer updates per epoch
    shuffle: bool
    bands: Optional[tuple]
    dt: float
    clip_norm: Optional[float]
    mesh: Any
    with_metrics: bool
    with_ssim: bool


@functools.lru_cache(maxsize=None)
def _adam():
    """Adam with the learning rate as state (set after ``init``): one compiled program
    serves every learning rate."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=1.0)


def _set_lr(opt_state, lr):
    hp = opt_state.hyperparams
    hp["learning_rate"] = jnp.full(jnp.shape(hp["learning_rate"]), lr, jnp.result_type(hp["learning_rate"]))
    return opt_state


_MODULE_LR = {"Grid": "adfwi", "Siren": "ifwi", "Gabor": "winfwi", "LowRank": "lr-fwi", "HashGrid": "mpe-fwi",
              "Hybrid": "ig-fwi", "UNet": "fad-fwi", "Generator": "gnn-fwi"}


def _default_lr(param, method):
    from jaxfwi import models
    name = method or _MODULE_LR.get(type(param.module).__name__)
    if name is None:
        raise ValueError(f"fit: no default learning rate for a {type(param.module).__name__} representation; "
                         "pass learning_rate=... or optimizer=...")
    return models.default_learning_rate(name)


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


# --------------------------------------------------------------------------- loss pieces


def _forward_kwargs(cfg):
    return dict(cfg.fwd)


def _make_shots_loss(cfg: _Config):
    """``loss(v, idx, w, d_obs, survey, it, n_it, band) -> sum of weighted shot misfits``,
    shot-parallel over ``cfg.mesh`` (idx and w sharded, the rest replicated)."""
    fk = _forward_kwargs(cfg)

    def local(v, idx, w, d_obs, survey, it, n_it, band):
        sub = survey.select(idx)
        d_o = d_obs[idx]
        d_s = forward(v, cfg.dx, sub, **fk)
        d_s = _obj.apply_band(d_s, band, cfg.bands, cfg.dt)
        d_o = _obj.apply_band(d_o, band, cfg.bands, cfg.dt)
        return _obj.shots_misfit(cfg.misfit, d_s, d_o.astype(d_s.dtype), w.astype(d_s.dtype), it, n_it)

    return _shard.sharded_sum(local, cfg.mesh, sharded_argnums=(1, 2), n_args=8)


def _batch_loss(cfg, shots_loss, params, idx, w, rw, d_obs, survey, epoch, it, n_it, band):
    """Misfit of one batch plus ``rw`` times the regulariser; returns (total, (misfit, reg))."""
    v = cfg.param.velocity(params)
    mis = shots_loss(v, idx, w, d_obs, survey, it, n_it, band)
    if cfg.regularizer is None:
        reg = jnp.zeros((), mis.dtype)
    else:
        reg = rw * cfg.regularizer(v, epoch).astype(mis.dtype)
    return mis + reg, (mis, reg)


def _layout(cfg: _Config, shot_key_data, epoch):
    """Shot indices and weights of one epoch, ``[updates, batches_per_update, batch]``."""
    n, bsz, nb = cfg.n_shots, cfg.batch, cfg.n_batches
    total = nb * bsz
    if cfg.shuffle:
        k = jax.random.fold_in(jax.random.wrap_key_data(shot_key_data), epoch)
        order = jnp.concatenate([jax.random.permutation(k, n), jnp.arange(n, total)])
        slots = order.reshape(nb, bsz)
    else:
        slots = jnp.arange(total).reshape(bsz, nb).T  # batch b: b, b + nb, b + 2 nb, ...
    w = (slots < n).astype(jnp.float32)
    idx = jnp.where(slots < n, slots, 0).astype(jnp.int32)
    k = nb // cfg.updates
    return idx.reshape(cfg.updates, k, bsz), w.reshape(cfg.updates, k, bsz)


def _epoch(cfg: _Config, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true):
    """One epoch: returns ``(new_state, record)``; ``record`` holds scalars."""
    params, opt_state = state
    shots_loss = _make_shots_loss(cfg)
    idx, w = _layout(cfg, shot_key_data, epoch)
    n_upd, k = idx.shape[:2]
    n_it = n_epochs * n_upd
    band = _obj.band_index(epoch, n_epochs, len(cfg.bands)) if cfg.bands else jnp.zeros((), jnp.int32)
    vg = jax.value_and_grad(functools.partial(_batch_loss, cfg, shots_loss), has_aux=True)

    def one_update(carry, xs):
        p, s = carry
        idx_u, w_u, u = xs
        it = epoch * n_upd + u
        if k == 1:
            (_, (mis, reg)), g = vg(p, idx_u[0], w_u[0], 1.0, d_obs, survey, epoch, it, n_it, band)
        else:
            def batch(acc, xb):
                i_b, w_b, rw = xb
                (_, (m_b, r_b)), g_b = vg(p, i_b, w_b, rw, d_obs, survey, epoch, it, n_it, band)
                return jax.tree_util.tree_map(jnp.add, acc, (m_b, r_b, g_b)), None

            zero = (jnp.zeros(()), jnp.zeros(()), jax.tree_util.tree_map(jnp.zeros_like, p))
            rws = jnp.zeros((k,)).at[0].set(1.0)
            (mis, reg, g), _ = jax.lax.scan(batch, zero, (idx_u, w_u, rws))
        gn = optax.tree.norm(g)
        if cfg.clip_norm is not None:
            scale = jnp.where(gn > cfg.clip_norm, cfg.clip_norm / jnp.maximum(gn, 1e-30), 1.0)
            g = jax.tree_util.tree_map(lambda x: x * scale.astype(x.dtype), g)
        upd, s = cfg.optimizer.update(g, s, p)
        p = optax.apply_updates(p, upd)
        return (p, s), (mis, reg, gn)

    us = jnp.arange(n_upd)
    if n_upd == 1:
        (params, opt_state), (mis, reg, gn) = one_update((params, opt_state), (idx[0], w[0], us[0]))
    else:
        (params, opt_state), (mis, reg, gn) = jax.lax.scan(one_update, (params, opt_state), (idx, w, us))
        mis, reg, gn = jnp.sum(mis), jnp.mean(reg), jnp.max(gn)
    rec = {"loss": mis + reg, "misfit": mis, "regularizer": reg, "grad_norm": gn}
    # the model after the update: its range (checked on the host before it is propagated) and
    # the cells the bounds hold (unbounded value at or beyond a bound)
    bounds = getattr(cfg.param, "bounds", None)
    if bounds is not None and hasattr(cfg.param, "unbounded_velocity"):
        u = cfg.param.unbounded_velocity(params)
        v = cfg.param.apply_bounds(u)
        rec["at_lower"] = jnp.sum(u <= bounds[0]).astype(jnp.int32)
        rec["at_upper"] = jnp.sum(u >= bounds[1]).astype(jnp.int32)
    else:
        v = cfg.param.velocity(params)
    rec["v_min"] = jnp.min(v)
    rec["v_max"] = jnp.max(v)
    if cfg.with_metrics:
        rec["mse"] = _metrics.mse(v, v_true)
        rec["mae"] = _metrics.mae(v, v_true)
        if cfg.with_ssim:
            rec["ssim"] = _metrics.ssim(v, v_true)
    return (params, opt_state), rec


_epoch_jit = jax.jit(_epoch, static_argnums=0)


@functools.lru_cache(maxsize=64)
def _epoch_vmapped(cfg: _Config, data_per_seed: bool):
    f = functools.partial(_epoch, cfg)
    return jax.jit(jax.vmap(f, in_axes=(0, None, None, 0, 0 if data_per_seed else None, None, None)))


# --------------------------------------------------------------------------- input handling


def _as_key(key, name="key"):
    if key is None:
        raise ValueError(f"{name} is required: pass e.g. {name}=jax.random.key(0).")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.shape[-1:] != (2,):
        raise ValueError(f"{name} has dtype {key.dtype} and shape {key.shape}; pass a JAX random key "
                         "(jax.random.key(0), or a legacy jax.random.PRNGKey(0)).")
    return jax.random.wrap_key_data(key)


def _split(key):
    """(init key, shot-order key) of a run; the same for fit and each seed of fit_seeds."""
    k_init, k_shots = jax.random.split(key)
    return k_init, k_shots


def _check_data(d_obs, survey, n_seeds):
    d = np.asarray(d_obs) if not isinstance(d_obs, jax.Array) else d_obs
    want = (survey.n_shots, survey.n_receivers, survey.nt)
    per_seed = False
    if n_seeds is not None and d.ndim == 4:
        if d.shape[0] != n_seeds:
            raise ValueError(f"d_obs has shape {tuple(d.shape)}: a leading axis of {d.shape[0]} data sets for "
                             f"{n_seeds} seeds; give one per seed or a single [n_shots, n_receivers, nt] array.")
        per_seed = True
        shape = tuple(d.shape[1:])
    else:
        shape = tuple(d.shape)
    if shape != want:
        extra = " (or [n_seeds, n_shots, n_receivers, nt])" if n_seeds is not None else ""
        raise ValueError(f"d_obs has shape {tuple(d.shape)} but the survey records {want} = [n_shots, n_receivers, "
                         f"nt]{extra}; model the data with the same survey.")
    if jnp.iscomplexobj(d) if isinstance(d, jax.Array) else np.iscomplexobj(d):
        raise ValueError(f"d_obs has complex dtype {d.dtype}; observed pressure data are real: pass np.real(d_obs).")
    if not isinstance(d_obs, jax.core.Tracer):
        dn = np.asarray(d_obs)
        if not np.all(np.isfinite(dn)):
            raise ValueError("d_obs contains NaN or inf; clean the observed data (e.g. np.nan_to_num) first.")
    return per_seed


def _normalise_forward(forward_kwargs):
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
    if isinstance(pw, (list, tuple, np.ndarray)):
        fk["pml_width"] = tuple(int(p) for p in widths)
    else:
        fk["pml_width"] = int(pw)
    return fk


def _batch_layout(n_shots, shot_batch, updates_per_epoch, n_dev):
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


def _digest(*xs) -> str:
    """Content hash of arrays / pytrees of arrays (dtype, shape and bytes of every leaf)."""
    h = hashlib.sha256()
    for x in xs:
        if x is None:
            h.update(b"None")
            continue
        for leaf in jax.tree_util.tree_leaves(x):
            if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            a = np.ascontiguousarray(_ckpt.to_host(leaf))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return "sha256:" + h.hexdigest()[:24]


def _fn_name(f) -> str:
    name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None)
    if name is None and hasattr(f, "fun"):  # jax.custom_jvp / custom_vjp objects
        return _fn_name(f.fun)
    return f"{getattr(f, '__module__', None) or '?'}.{name or type(f).__qualname__}"


def _describe(x, depth=0):
    """A stable, JSON-able description of a setting: numbers and strings as they are, arrays by
    content hash, dataclasses (modules, misfits) by their fields, functions by qualified name and
    the values they close over (so ``optax.adam(1e-3)`` and ``optax.adam(1e-2)`` differ)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else repr(x)
    if isinstance(x, np.generic):
        return _describe(x.item(), depth)
    if isinstance(x, (np.ndarray, jax.Array)):
        return _describe(np.asarray(x).item(), depth) if np.ndim(x) == 0 and not jnp.issubdtype(
            x.dtype, jax.dtypes.prng_key) else _digest(x)
    if depth > 12:
        return type(x).__qualname__
    if isinstance(x, (list, tuple)):
        return [_describe(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): _describe(v, depth + 1) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, functools.partial):
        return {"partial": _describe(x.func, depth + 1), "args": _describe(x.args, depth + 1),
                "keywords": _describe(x.keywords, depth + 1)}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        out = {"type": type(x).__qualname__}
        for f in dataclasses.fields(x):
            if f.name in ("parent", "name"):
                continue
            out[f.name] = _describe(getattr(x, f.name, None), depth + 1)
        return out
    if callable(x):
        name = _fn_name(x)
        code = getattr(x, "__code__", None)
        cells = getattr(x, "__closure__", None) or ()
        closure = {}
        for n, c in zip(getattr(code, "co_freevars", ()), cells):
            try:
                closure[n] = _describe(c.cell_contents, depth + 1)
            except ValueError:  # empty cell
                closure[n] = None
        defaults = getattr(x, "__defaults__", None)
        if defaults:
            closure["__defaults__"] = _describe(defaults, depth + 1)
        return {"fn": name, **closure} if closure else name
    return type(x).__qualname__


def _flat(prefix, d):
    if isinstance(d, dict):
        return {f"{prefix}.{k}": v for k, v in d.items()}
    return {prefix: d}


def _epochs_matter(cfg) -> bool:
    """Whether the schedule depends on the total number of epochs (WECI weight, multiscale bands,
    a misfit of (iteration, n_iterations)): then extending a run is not the same run."""
    return cfg.bands is not None or cfg.misfit.kind in ("weci", "scheduled")


def run_identity(cfg: _Config, *, method, n_seeds, key_data, d_obs, data_per_seed, survey, params0, v_true,
                 shot_order, fk, lr, optimizer, epochs) -> dict:
    """The fingerprint of a run: every input and setting that determines its result, as a flat
    JSON-able dict (arrays by content hash). Two runs with equal fingerprints give the same
    result; the checkpoint stores it and resume compares it field by field."""
    p = cfg.param
    ident = {
        "observed data (d_obs)": f"{list(d_obs.shape)} {d_obs.dtype} {_digest(d_obs)}",
        "one data set per seed": bool(data_per_seed),
        "seeds": n_seeds,
        "initial model (v_init)": f"{list(np.shape(p.m0))} {_digest(p.m0)}",
        "initial params": _digest(params0),
        "survey.sources": f"{list(survey.sources.shape)} {_digest(survey.sources)}",
        "survey.receivers": f"{list(survey.receivers.shape)} {_digest(survey.receivers)}",
        "survey.wavelet": f"{list(survey.wavelet.shape)} {_digest(survey.wavelet)}",
        "survey.dt": survey.dt,
        "dx": list(cfg.dx),
        "method": method,
        "optimizer": "adam (default)" if optimizer is None else _describe(optimizer),
        "learning_rate": lr,
        "clip_norm": cfg.clip_norm,
        "multiscale": None if cfg.bands is None else list(cfg.bands),
        "shot_batch": cfg.batch,
        "updates_per_epoch": cfg.updates,
        "shot_order": shot_order,
        "devices": _shard.n_devices(cfg.mesh),
        "key": np.asarray(key_data).ravel().tolist(),
        "v_true": None if v_true is None else _digest(v_true),
        "dtype": str(jnp.asarray(p.m0).dtype),
    }
    ident.update(_flat("representation", _describe(getattr(p, "module", p))))
    for f in ("scale", "mode", "bounds", "clip"):
        if hasattr(p, f):
            ident[f"parameterisation.{f}"] = _describe(getattr(p, f))
    ident.update(_flat("misfit", _describe(cfg.misfit)))
    ident.update(_flat("regularizer", _describe(cfg.regularizer)))
    for k, v in sorted(fk.items()):
        ident[f"forward.{k}"] = _describe(v)
    if _epochs_matter(cfg):
        ident["epochs (the schedule depends on them)"] = int(epochs)
    return json.loads(json.dumps(ident, sort_keys=True))


# --------------------------------------------------------------------------- public API


def fit(param, d_obs, survey: Survey, dx, *, epochs: int, key, optimizer=None, learning_rate=None,
        misfit="l2", regularizer=None, shot_batch=None, updates_per_epoch: int = 1, shot_order="random",
        multiscale=None, clip_norm=None, v_true=None, checkpoint_dir=None, checkpoint_every: int = 10,
        resume=True, progress: bool = True, forward_kwargs=None, params=None, callback=None,
        snapshot_params_every=None, devices=None, method=None, diverge_factor=DIVERGE_FACTOR,
        memory_check: bool = True) -> InversionResult:
    """Invert ``d_obs`` for the params of a velocity parameterisation.

    Args:
      param: a :class:`jaxfwi.models.Parameterization` (``init(key)``, ``velocity(params)``).
      d_obs: observed data ``[n_shots, n_receivers, nt]`` of ``survey``.
      survey: :class:`jaxfwi.Survey`.
      dx: grid spacing, m.
      epochs: number of epochs (passes over all shots).
      key: JAX random key: split into the init key (``param.init``) and the shot-order key.
      optimizer: an ``optax.GradientTransformation``; default Adam at ``learning_rate``.
      learning_rate: Adam's learning rate (default: the method's, see
        :func:`jaxfwi.models.default_learning_rate`, inferred from the representation or ``method``).
      misfit: name (``"l2"``, ``"l1"``, ``"envelope"``, ``"gc"``, ``"trace_l2"``, ``"weci"``) or
        ``f(d_syn, d_obs)`` (or ``f(d_syn, d_obs, iteration, n_iterations)``), evaluated per shot
        and summed. ``"weci"`` uses the logistic envelope weight over the optimizer iterations.
      regularizer: None, ``"tv"`` (ADFWI-TV schedule), ``"tikhonov"``, or ``f(v)`` / ``f(v, epoch)``.
      shot_batch: shots per mini-batch (None: all); see the module docs.
      updates_per_epoch: optimizer updates per epoch (a divisor of the number of batches; 1 =
        gradient accumulation over all batches).
      shot_order: ``"random"`` (new permutation per epoch) or ``"cyclic"``.
      multiscale: None, True (MS-FWI bands 4..14 Hz, 2 Hz apart) or a list of low-pass cutoffs
        (Hz), applied to observed and synthetic data; the epochs are split evenly over the bands.
      clip_norm: clip the gradient to this global norm before the optimizer.
      v_true: true model ``[nz, nx]`` m/s; adds MSE/MAE/SSIM to the history and ``result.metrics``.
      checkpoint_dir: directory for ``checkpoint.npz`` (params, optimizer state, epoch, history,
        snapshots, and the run's fingerprint, :func:`run_identity`), written atomically every
        ``checkpoint_every`` epochs, at the end, on Ctrl-C and (the last good state) on a divergence.
      resume: ``True``: continue from the checkpoint in ``checkpoint_dir`` if there is one, only
        if it belongs to this very run: the content of ``d_obs``, the initial model and params,
        the survey (locations, wavelets, dt), ``dx``, every forward option, the method,
        representation and parameterisation settings, misfit, regulariser, multiscale,
        optimizer and learning rate, clipping, shot batching and order, devices, key and
        ``v_true`` must all match, else a ``CheckpointError`` (a ``ValueError``) lists every
        field that differs. Only ``epochs`` may grow (unless the schedule depends on it:
        WECI, multiscale): the result then equals an uninterrupted run of that length, bit for
        bit. ``False``: ignore the checkpoint and start over (it is overwritten).
        ``"new_learning_rate"``: the same, except that the learning rate may differ: continue
        from the checkpoint (after a divergence: the last good state) with ``learning_rate``.
      progress: show a tqdm bar with the current loss.
      forward_kwargs: options of :func:`jaxfwi.forward`: ``accuracy`` (8), ``pml_width`` (20),
        ``free_surface`` (False), ``max_vel`` (default :func:`default_max_vel`: the upper bound
        or 1.25 x the initial model's maximum), ``pml_freq`` (the wavelet's peak frequency),
        ``checkpoint``, ``shot_batch`` (inside one mini-batch), ``cfl``, ``substeps``.
      params: initial params (default ``param.init(init_key)``).
      callback: ``callback(epochs_done, params)`` called with the initial params (0) and after
        every epoch; return True to stop early (the result so far is returned).
      snapshot_params_every: keep a host copy of the params every this many epochs (and at 0)
        in ``result.snapshots`` (e.g. for kernel drift along training).
      devices: None (all ``jax.devices()``: shots sharded over them), an int, or a list.
      method: method name, used for the default learning rate (and recorded in the fingerprint).
      diverge_factor: a loss above this factor times its largest value so far (within the current
        multiscale band) is a divergence (default 1e3); None: only NaN/inf.
      memory_check: estimate the memory of one mini-batch gradient before compiling
        (:mod:`jaxfwi.inversion.memory`) and raise ``GradientMemoryError`` if it exceeds the
        device's free memory.

    Returns:
      :class:`InversionResult`. ``history`` also holds ``v_min`` / ``v_max`` (m/s) of the model
      after each update and, with bounds, ``at_lower`` / ``at_upper``: the number of cells the
      bounds hold (unbounded value at or beyond a bound).

    Raises:
      DivergenceError (alias NonFiniteLossError): the loss or gradient became NaN/inf, the loss
        blew up (``diverge_factor``), or an update left ``(0, max_vel]`` (never propagated).
        The message names the epoch; with ``checkpoint_dir`` the checkpoint then holds the last
        good state (before the divergence), to continue with ``resume="new_learning_rate"``.
      ValueError: bad inputs (before anything is compiled) or a checkpoint of another run.
    """
    return _fit(param, d_obs, survey, dx, n_seeds=None, epochs=epochs, key=key, optimizer=optimizer,
                learning_rate=learning_rate, misfit=misfit, regularizer=regularizer, shot_batch=shot_batch,
                updates_per_epoch=updates_per_epoch, shot_order=shot_order, multiscale=multiscale,
                clip_norm=clip_norm, v_true=v_true, checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                forward_kwargs=forward_kwargs, params=params, callback=callback,
                snapshot_params_every=snapshot_params_every, devices=devices, method=method,
                diverge_factor=diverge_factor, memory_check=memory_check)


def fit_seeds(param, d_obs, survey: Survey, dx, *, keys, epochs: int, params=None, **options) -> InversionResult:
    """Train ``len(keys)`` independent runs in one ``jax.vmap``-ed program.

    Each seed ``i`` is exactly the run ``fit(param, d_obs_i, survey, dx, key=keys[i], ...)``
    (its own initialisation and shot order); ``d_obs`` is either shared
    ``[n_shots, n_receivers, nt]`` or one data set per seed ``[n_seeds, n_shots, n_receivers, nt]``
    (e.g. different noise draws: ``jax.vmap(lambda k: jaxfwi.signal.add_noise(d, k, 4.0))(keys)``).
    ``params`` (optional) are stacked initial params. Other options as :func:`fit`.

    Returns:
      :class:`InversionResult` with stacked ``params``, ``velocity [n_seeds, nz, nx]``, history
      arrays ``[n_seeds, epochs]`` and ``metrics`` a list per seed.
    """
    keys = _as_key(keys, "keys")
    if keys.ndim != 1:
        raise ValueError(f"keys has shape {keys.shape}; pass a 1-D array of keys, e.g. jax.random.split(key, n).")
    return _fit(param, d_obs, survey, dx, n_seeds=int(keys.shape[0]), epochs=epochs, key=keys, params=params,
                **options)


def _fit(param, d_obs, survey, dx, *, n_seeds, epochs, key, optimizer=None, learning_rate=None, misfit="l2",
         regularizer=None, shot_batch=None, updates_per_epoch=1, shot_order="random", multiscale=None,
         clip_norm=None, v_true=None, checkpoint_dir=None, checkpoint_every=10, resume=True, progress=True,
         forward_kwargs=None, params=None, callback=None, snapshot_params_every=None, devices=None, method=None,
         diverge_factor=DIVERGE_FACTOR, memory_check=True):
    # ---- validate (outside jit, before anything is compiled) ----
    if not hasattr(param, "velocity") or not hasattr(param, "init"):
        raise TypeError(f"param must be a jaxfwi.models.Parameterization (init/velocity), got {type(param).__name__}; "
                        "build one with jaxfwi.models.build(method, v_init).")
    if not isinstance(survey, Survey):
        raise TypeError(f"survey must be a jaxfwi.Survey, got {type(survey).__name__}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer, float)) or int(epochs) != epochs \
            or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer.")
    epochs = int(epochs)
    if shot_order not in ("random", "cyclic"):
        raise ValueError(f"shot_order={shot_order!r}: use 'random' or 'cyclic'.")
    if not any(resume is m for m in RESUME_MODES) and resume != "new_learning_rate":
        raise ValueError(f"resume={resume!r}: use True (continue an identical run), False (start over) or "
                         "'new_learning_rate' (continue from the checkpoint with the learning_rate given now).")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or int(checkpoint_every) !=
                                         checkpoint_every or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive number of epochs.")
    if snapshot_params_every is not None and (int(snapshot_params_every) != snapshot_params_every
                                              or snapshot_params_every < 1):
        raise ValueError(f"snapshot_params_every={snapshot_params_every!r} must be a positive number of epochs.")
    if clip_norm is not None:
        clip_norm = float(clip_norm)
        if not (clip_norm > 0 and math.isfinite(clip_norm)):
            raise ValueError(f"clip_norm={clip_norm!r} must be a positive, finite gradient norm (or None).")
    if diverge_factor is not None:
        diverge_factor = float(diverge_factor)
        if not diverge_factor > 1:
            raise ValueError(f"diverge_factor={diverge_factor!r} must be > 1 (a loss above this factor times its "
                             "largest value so far counts as a divergence), or None to check only for NaN/inf.")
    data_per_seed = _check_data(d_obs, survey, n_seeds)
    dtype = jnp.asarray(param.m0).dtype
    d_obs = jnp.asarray(d_obs, dtype)
    if v_true is not None:
        vt = np.asarray(v_true)
        if np.iscomplexobj(vt) or not np.all(np.isfinite(vt)):
            raise ValueError("v_true must be a real, finite velocity model in m/s (it has complex, NaN or inf "
                             "values).")
        v_true = jnp.asarray(v_true, dtype)
        if tuple(v_true.shape) != tuple(param.shape):
            raise ValueError(f"v_true has shape {tuple(v_true.shape)} but the model is {tuple(param.shape)}.")
    key = _as_key(key)
    if n_seeds is None:
        k_init, k_shots = _split(key)
    else:
        k_init, k_shots = jax.vmap(_split)(key)
    shot_key_data = jax.random.key_data(k_shots)

    # ---- optimizer ----
    if optimizer is None:
        opt = _adam()
        if learning_rate is None:
            lr = _default_lr(param, method)
        else:
            try:
                lr = float(learning_rate)
            except (TypeError, ValueError):
                raise ValueError(f"learning_rate={learning_rate!r} must be a positive, finite number.") from None
            if isinstance(learning_rate, (bool, complex)) or not (lr > 0 and math.isfinite(lr)):
                raise ValueError(f"learning_rate={learning_rate!r} must be a positive, finite number (Adam's step; "
                                 "e.g. the method's default, jaxfwi.models.default_learning_rate(method)).")
    else:
        if learning_rate is not None:
            raise ValueError("pass either optimizer=... or learning_rate=..., not both (the optimizer has its own).")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer={optimizer!r} must be an optax.GradientTransformation, e.g. optax.adam(1e-3).")
        if resume == "new_learning_rate":
            raise ValueError("resume='new_learning_rate' works with the default Adam (learning_rate=...); with "
                             "optimizer=... the step size lives inside your optimizer, so resume with it unchanged "
                             "or start over (resume=False).")
        opt, lr = optimizer, None

    # ---- initial state ----
    if params is None:
        params = param.init(k_init) if n_seeds is None else jax.vmap(param.init)(k_init)
    elif n_seeds is not None:
        lead = {int(np.shape(x)[0]) if np.ndim(x) else None for x in jax.tree_util.tree_leaves(params)}
        if lead != {n_seeds}:
            raise ValueError(f"params: for {n_seeds} seeds every leaf needs a leading seed axis of {n_seeds} "
                             f"(found {sorted(lead, key=str)}); stack them, e.g. jax.vmap(param.init)(keys).")
    vel = jax.jit(param.velocity) if n_seeds is None else jax.jit(jax.vmap(param.velocity))
    v0 = np.asarray(vel(params))
    if not np.all(np.isfinite(v0)) or np.any(v0 <= 0):
        raise ValueError("the initial params give a non-finite or non-positive velocity; check v_init, the "
                         "scale and the bounds of the parameterisation.")

    # ---- forward options ----
    fk = _normalise_forward(forward_kwargs)
    user_max_vel = fk["max_vel"] is not None
    if fk["max_vel"] is None:
        fk["max_vel"] = default_max_vel(param, v0)
    try:
        fk["max_vel"] = float(fk["max_vel"])
    except (TypeError, ValueError):
        raise ValueError(f"forward_kwargs max_vel={fk['max_vel']!r} must be a velocity in m/s.") from None
    if not (fk["max_vel"] > 0 and math.isfinite(fk["max_vel"])):
        raise ValueError(f"max_vel={fk['max_vel']!r} must be a positive, finite velocity in m/s.")
    bounds = getattr(param, "bounds", None)
    if user_max_vel and bounds is not None and bounds[1] > fk["max_vel"]:
        raise ValueError(f"max_vel={fk['max_vel']:g} m/s is below the upper velocity bound {bounds[1]:g} m/s of the "
                         "parameterisation, so the model could leave the range the time step is planned for: raise "
                         "max_vel to the bound (or leave it unset), or lower the bounds.")
    if float(np.max(v0)) > fk["max_vel"] * (1 + 1e-6):
        raise ValueError(f"the initial model reaches {float(np.max(v0)):g} m/s, above max_vel={fk['max_vel']:g} m/s "
                         "that the time step would be planned for: raise max_vel (or leave it unset).")
    if fk["pml_freq"] is None:
        fk["pml_freq"] = peak_frequency(np.asarray(survey.wavelet), survey.dt)
    fk["pml_freq"] = float(fk["pml_freq"])
    if not (fk["pml_freq"] >= 0 and math.isfinite(fk["pml_freq"])):
        raise ValueError(f"pml_freq={fk['pml_freq']!r} must be a non-negative frequency in Hz (the C-PML's reference); "
                         "leave it unset to use the wavelet's peak frequency.")
    v_check = v0 if n_seeds is None else v0[0]
    plan, _ = plan_propagation(v_check, dx, survey, fk["accuracy"], fk["pml_width"], fk["free_surface"],
                               max_vel=fk["max_vel"], checkpoint=fk["checkpoint"], shot_batch=fk["shot_batch"],
                               cfl=fk["cfl"], substeps=fk["substeps"])
    dx_t = (float(dx),) * len(param.shape) if np.ndim(dx) == 0 else tuple(float(h) for h in dx)

    # ---- static configuration ----
    mesh = _shard.shot_mesh(devices)
    n_dev = _shard.n_devices(mesh)
    bsz, nb, u = _batch_layout(survey.n_shots, shot_batch, updates_per_epoch, n_dev)
    cfg = _Config(
        param=param, optimizer=opt, misfit=_obj.resolve_misfit(misfit),
        regularizer=_obj.resolve_regularizer(regularizer, spacing=dx_t), dx=dx_t,
        fwd=tuple(sorted(fk.items())), n_shots=survey.n_shots, batch=bsz, n_batches=nb, updates=u,
        shuffle=(shot_order == "random"), bands=_obj.resolve_bands(multiscale, survey.dt), dt=survey.dt,
        clip_norm=clip_norm, mesh=mesh, with_metrics=v_true is not None,
        with_ssim=v_true is not None and len(param.shape) >= 2 and all(n >= 11 for n in param.shape),
    )
    if memory_check:
        per_dev = bsz // n_dev
        from jaxfwi.physics.propagate import default_shot_batch
        group = fk["shot_batch"] or default_shot_batch(plan.shape, plan.pml, plan.accuracy, per_dev, dtype)
        mplan = dataclasses.replace(plan, shot_batch=None if group is None else min(int(group), per_dev))
        n_par = 1 if n_seeds is None else n_seeds
        _memory.check_gradient_memory(mplan, per_dev * n_par, survey.n_receivers, dtype,
                                      device=None if mesh is None else mesh.devices.flat[0])

    opt_state = opt.init(params) if n_seeds is None else jax.vmap(opt.init)(params)
    if lr is not None:
        opt_state = _set_lr(opt_state, lr)
    state = (params, opt_state)

    identity = run_identity(cfg, method=method, n_seeds=n_seeds, key_data=jax.random.key_data(key), d_obs=d_obs,
                            data_per_seed=data_per_seed, survey=survey, params0=params, v_true=v_true,
                            shot_order=shot_order, fk=fk, lr=lr, optimizer=optimizer, epochs=epochs)
    meta = {"format": 2, "identity": identity, "epochs": epochs, "lr_changes": [], "diverged": None}
    history: list = []
    snapshots: list = []
    start = 0
    ckpt_path = None
    ckpt_epochs = 0
    if checkpoint_dir is not None and resume is not False:
        loaded = _resume(checkpoint_dir, identity, epochs, resume, jax.device_get(state), jax.device_get(params))
        if loaded is not None:
            state = jax.tree_util.tree_map(jnp.asarray, loaded["state"])
            start = loaded["epochs_done"]
            history = loaded["history"]
            snapshots = loaded["snapshots"]
            ckpt_path = _ckpt.checkpoint_path(checkpoint_dir)
            ckpt_epochs = start
            meta["lr_changes"] = list(loaded["meta"].get("lr_changes", []))
            old_lr = loaded["meta"]["identity"].get("learning_rate")
            if resume == "new_learning_rate" and old_lr != lr:
                state = (state[0], _set_lr(state[1], lr))
                meta["lr_changes"].append([start, old_lr, lr])
    if start == 0 and snapshot_params_every is not None:
        snapshots = [(0, jax.device_get(state[0]))]

    # ---- device placement ----
    state, d_obs, survey, v_true, shot_key_data = _shard.replicate((state, d_obs, survey, v_true, shot_key_data),
                                                                   mesh)
    if n_seeds is None:
        step = functools.partial(_epoch_jit, cfg)
    else:
        step = _epoch_vmapped(cfg, data_per_seed)

    def save(st, done, diverged=None):
        m = dict(meta, epochs_done=int(done), diverged=diverged)
        return _ckpt.save_checkpoint(checkpoint_dir, state=st, epochs_done=done, history=history[:done], meta=m,
                                     snapshots=[s_ for s_ in snapshots if s_[0] <= done])

    if callback is not None and start == 0:
        callback(0, state[0])
    desc = "fwi" if n_seeds is None else f"fwi x{n_seeds}"
    bar = _progress(start, epochs, progress, desc)
    e_arr_total = jnp.asarray(epochs, jnp.int32)
    epochs_done = start
    prev_state = None
    try:
        for e in range(start, epochs):
            t0 = time.perf_counter()
            new_state, rec = step(state, jnp.asarray(e, jnp.int32), e_arr_total, shot_key_data, d_obs, survey,
                                  v_true)
            rec = {k: _ckpt.to_host(v) for k, v in rec.items()}
            elapsed = time.perf_counter() - t0
            band = None if cfg.bands is None else cfg.bands[_obj.band_index(e, epochs, len(cfg.bands))]
            problem = _diagnose(rec, e, history, band, fk["max_vel"], diverge_factor, n_seeds)
            if problem is not None:
                kind, what = problem
                # "state": the loss/gradient of the current params is bad -> the last good params are
                # those before the previous update; "update": this epoch's update leaves (0, max_vel]
                good, good_n = (prev_state, e - 1) if kind == "state" else (state, e)
                if good is not None and good_n < start:
                    good = None
                kept = ""
                ck = None
                if checkpoint_dir is not None and good is not None and good_n >= 0:
                    ck = save(good, good_n, diverged=what)
                    kept = (f" The checkpoint {ck} now holds the last good state ({good_n} epochs, before the "
                            "divergence); continue from it with a smaller step: the same call with "
                            "learning_rate=<smaller> and resume='new_learning_rate'.")
                raise DivergenceError(
                    f"fit: {what}.{kept} Likely causes: too large a learning rate, a velocity beyond max_vel="
                    f"{fk['max_vel']:g} m/s (set bounds on the parameterisation), or bad observed data.",
                    epoch=e, history=_stack_history(history, n_seeds), checkpoint=ck,
                    good_epochs=good_n if ck else None,
                )
            prev_state, state = state, new_state
            rec = {"epoch": np.asarray(e), **rec, "time": np.asarray(elapsed)}
            if band is not None:
                rec["band_hz"] = np.asarray(band)
            history.append(rec)
            epochs_done = e + 1
            if snapshot_params_every is not None and epochs_done % snapshot_params_every == 0:
                snapshots.append((epochs_done, jax.device_get(state[0])))
            if checkpoint_dir is not None and (epochs_done % checkpoint_every == 0 or epochs_done == epochs):
                ckpt_path, ckpt_epochs = save(state, epochs_done), epochs_done
            if bar is not None:
                post = {"loss": f"{float(np.mean(rec['loss'])):.4g}"}
                if "mse" in rec:
                    post["mse"] = f"{float(np.mean(rec['mse'])):.4g}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if callback is not None and callback(epochs_done, state[0]):
                if checkpoint_dir is not None and epochs_done % checkpoint_every and epochs_done != epochs:
                    ckpt_path, ckpt_epochs = save(state, epochs_done), epochs_done
                break
    except KeyboardInterrupt:
        if checkpoint_dir is not None and epochs_done > ckpt_epochs:
            save(state, epochs_done)
            warnings.warn(f"fit interrupted after {epochs_done} epochs; checkpoint saved in {checkpoint_dir}",
                          stacklevel=2)
        raise
    finally:
        if bar is not None:
            bar.close()

    params = state[0]
    v = np.asarray(_ckpt.to_host(vel(params)))
    res_metrics = None
    if v_true is not None:
        vt = np.asarray(_ckpt.to_host(v_true))
        res_metrics = _metrics.all_metrics(v, vt) if n_seeds is None else [_metrics.all_metrics(x, vt) for x in v]
    return InversionResult(params=params, velocity=v, history=_stack_history(history, n_seeds), metrics=res_metrics,
                           snapshots=snapshots, param=param, epochs=epochs_done, checkpoint=ckpt_path)


def _resume(directory, identity, epochs, resume, template_state, template_params):
    """Load the checkpoint of ``directory`` for this run, or None if there is none; refuse (with
    every differing field and the fix) a checkpoint of another run."""
    path = _ckpt.checkpoint_path(directory)
    if not os.path.exists(path):
        return None
    saved = _ckpt._read(path)["meta"]
    start_over = ("Use a fresh checkpoint_dir, delete it, or pass resume=False to start over (CLI: --fresh)")
    if "identity" not in saved:
        raise _ckpt.CheckpointError(
            f"checkpoint {path} was written by an older jaxfwi that did not record the run's inputs (data, "
            f"initial model, survey), so it cannot be checked against this run. {start_over}.")
    ignore = ("learning_rate",) if resume == "new_learning_rate" else ()
    diff = _ckpt.diff_identity(saved["identity"], identity, ignore=ignore)
    if diff:
        raise _ckpt.CheckpointError(
            f"checkpoint {path} belongs to another run; {len(diff)} setting(s) differ (checkpoint -> now):\n  "
            + "\n  ".join(diff) + f"\n{start_over}"
            + ("; after a divergence, resume='new_learning_rate' allows only the learning rate to change"
               if "learning_rate" in " ".join(diff) else "") + ".")
    loaded = _ckpt.load_checkpoint(directory, template_state=template_state, template_params=template_params)
    done = loaded["epochs_done"]
    if done > epochs:
        raise _ckpt.CheckpointError(
            f"checkpoint {path} holds {done} finished epochs, more than epochs={epochs}: pass epochs >= {done} to "
            f"continue (or return) that run. {start_over}.")
    if saved.get("diverged") and resume is True:
        raise _ckpt.CheckpointError(
            f"the run in {path} diverged ({saved['diverged']}); the checkpoint holds its last good state ({done} "
            "epochs). The same settings would diverge again: continue it with learning_rate=<smaller> and "
            f"resume='new_learning_rate', or start over. {start_over}.")
    return loaded


def _fmt(x) -> str:
    a = np.asarray(x, dtype=np.float64)
    return f"{float(a):.6g}" if a.ndim == 0 else np.array2string(a, precision=6)


def _diagnose(rec, e, history, band, max_vel, factor, n_seeds):
    """None, or ``(kind, message)`` if epoch ``e``'s record shows a divergence: ``"state"`` (the loss or
    gradient of the params going into the epoch is non-finite, or the loss blew up) or ``"update"``
    (the params after its update give a velocity outside ``(0, max_vel]``)."""
    seeds = (lambda mask: "" if n_seeds is None else f" (seeds {np.flatnonzero(np.atleast_1d(mask)).tolist()})")
    bad = [k for k in ("loss", "grad_norm") if not np.all(np.isfinite(rec[k]))]
    if bad:
        mask = ~np.isfinite(rec[bad[0]])
        return "state", (f"the {' and the '.join(bad)} became non-finite at epoch {e} (0-based){seeds(mask)}: "
                         f"loss={_fmt(rec['loss'])}, grad_norm={_fmt(rec['grad_norm'])}")
    if factor is not None:
        prev = [np.asarray(r["loss"]) for r in history
                if band is None or float(np.asarray(r.get("band_hz", band))) == float(band)]
        if prev:
            ref = np.max(np.stack(prev), axis=0)
            mask = np.asarray(rec["loss"]) > factor * ref
            if np.any(mask):
                return "state", (f"the loss blew up at epoch {e} (0-based){seeds(mask)}: {_fmt(rec['loss'])} is more "
                                 f"than diverge_factor={factor:g} times its largest value so far ({_fmt(ref)})")
    vmin, vmax = np.asarray(rec["v_min"]), np.asarray(rec["v_max"])
    mask = ~np.isfinite(vmin) | ~np.isfinite(vmax) | (vmin <= 0) | (vmax > max_vel * (1 + 1e-5))
    if np.any(mask):
        return "update", (f"the update of epoch {e} (0-based){seeds(mask)} gives velocities from {_fmt(vmin)} to {_fmt(vmax)} m/s, "
                          f"outside (0, max_vel={max_vel:g}] m/s that the time step is planned for (not propagated)")
    return None


def _stack_history(history, n_seeds):
    if not history:
        return {"epoch": np.zeros((0,), np.int64), "loss": np.zeros((0,) if n_seeds is None else (n_seeds, 0))}
    out = {}
    for k in history[0]:
        a = np.stack([np.asarray(r[k]) for r in history], axis=-1)
        out[k] = a
    return out


def _progress(start, total, enabled, desc):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=start, desc=desc, unit="epoch", dynamic_ncols=True)


# --------------------------------------------------------------------------- loss for analysis


def make_loss(param, survey: Survey, dx, *, misfit="l2", regularizer=None, multiscale=None, forward_kwargs=None,
              devices=None, max_vel=None) -> Callable:
    """The inversion objective as a pure function ``loss(params, d_obs, epoch=0, n_epochs=1) -> scalar``.

    The same loss ``fit`` minimises for one full batch of shots (misfit summed over shots,
    plus the regulariser; multiscale band and schedules from ``epoch / n_epochs``), jit- and
    grad-able, sharded over ``devices`` like ``fit``. ``forward_kwargs`` as in :func:`fit`
    (``max_vel`` defaults to 1.25 x the initial model's maximum)."""
    fk = _normalise_forward(forward_kwargs)
    if max_vel is not None:
        fk["max_vel"] = float(max_vel)
    if fk["max_vel"] is None:
        fk["max_vel"] = default_max_vel(param)
    fk["max_vel"] = float(fk["max_vel"])
    if fk["pml_freq"] is None:
        fk["pml_freq"] = peak_frequency(np.asarray(survey.wavelet), survey.dt)
    fk["pml_freq"] = float(fk["pml_freq"])
    plan_propagation(np.asarray(param.m0), dx, survey, fk["accuracy"], fk["pml_width"], fk["free_surface"],
                     max_vel=fk["max_vel"], checkpoint=fk["checkpoint"], shot_batch=fk["shot_batch"],
                     cfl=fk["cfl"], substeps=fk["substeps"], warn=False)
    mesh = _shard.shot_mesh(devices)
    bsz, _, _ = _batch_layout(survey.n_shots, None, 1, _shard.n_devices(mesh))
    dx_t = (float(dx),) * len(param.shape) if np.ndim(dx) == 0 else tuple(float(h) for h in dx)
    cfg = _Config(param=param, optimizer=None, misfit=_obj.resolve_misfit(misfit),
                  regularizer=_obj.resolve_regularizer(regularizer, spacing=dx_t), dx=dx_t, fwd=tuple(sorted(fk.items())),
                  n_shots=survey.n_shots, batch=bsz, n_batches=1, updates=1, shuffle=False,
                  bands=_obj.resolve_bands(multiscale, survey.dt), dt=survey.dt, clip_norm=None, mesh=mesh,
                  with_metrics=False, with_ssim=False)
    shots_loss = _make_shots_loss(cfg)
    n = survey.n_shots
    idx = jnp.asarray(np.where(np.arange(bsz) < n, np.arange(bsz), 0), jnp.int32)
    w = jnp.asarray(np.arange(bsz) < n, jnp.float32)
    idx, w, surv = _shard.replicate((idx, w, survey), mesh)

    def loss(params, d_obs, epoch=0, n_epochs=1):
        band = _obj.band_index(epoch, n_epochs, len(cfg.bands)) if cfg.bands else 0
        total, _ = _batch_loss(cfg, shots_loss, params, idx, w, 1.0, jnp.asarray(d_obs), surv, epoch, epoch,
                               n_epochs, band)
        return total

    return loss
