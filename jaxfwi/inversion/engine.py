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
import time
import warnings
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfwi import metrics as _metrics
from jaxfwi.inversion import checkpoints as _ckpt
from jaxfwi.inversion import objective as _obj
from jaxfwi.inversion import sharding as _shard
from jaxfwi.physics import Survey, forward, plan_propagation
from jaxfwi.physics.wavelets import peak_frequency

__all__ = ["fit", "fit_seeds", "make_loss", "InversionResult", "NonFiniteLossError",
           "FORWARD_OPTIONS", "default_max_vel"]

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


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf. Attributes: ``epoch`` (0-based), ``history``
    (records of the finished epochs), ``checkpoint`` (path of the last good checkpoint or None)."""

    def __init__(self, message, epoch, history, checkpoint):
        super().__init__(message)
        self.epoch = epoch
        self.history = history
        self.checkpoint = checkpoint


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
    if cfg.with_metrics:
        v = cfg.param.velocity(params)
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
    if isinstance(fk["pml_width"], (list, tuple, np.ndarray)):
        fk["pml_width"] = tuple(int(p) for p in fk["pml_width"])
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


def _meta(cfg: _Config, *, n_seeds, epochs, key_data, d_shape, data_per_seed, shot_order, fk):
    return {
        "n_seeds": n_seeds,
        "epochs": int(epochs),
        "key": np.asarray(key_data).ravel().tolist(),
        "data_shape": list(d_shape),
        "data_per_seed": bool(data_per_seed),
        "model_shape": list(cfg.param.shape),
        "representation": type(cfg.param.module).__name__,
        "misfit": cfg.misfit.name,
        "regularizer": None if cfg.regularizer is None else cfg.regularizer.name,
        "bands": None if cfg.bands is None else list(cfg.bands),
        "shot_batch": cfg.batch,
        "updates_per_epoch": cfg.updates,
        "shot_order": shot_order,
        "clip_norm": cfg.clip_norm,
        "metrics": cfg.with_metrics,
        "forward": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(fk.items())},
    }


# --------------------------------------------------------------------------- public API


def fit(param, d_obs, survey: Survey, dx, *, epochs: int, key, optimizer=None, learning_rate=None,
        misfit="l2", regularizer=None, shot_batch=None, updates_per_epoch: int = 1, shot_order="random",
        multiscale=None, clip_norm=None, v_true=None, checkpoint_dir=None, checkpoint_every: int = 10,
        resume: bool = True, progress: bool = True, forward_kwargs=None, params=None, callback=None,
        snapshot_params_every=None, devices=None, method=None) -> InversionResult:
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
        snapshots), written every ``checkpoint_every`` epochs and at the end.
      resume: continue from the checkpoint in ``checkpoint_dir`` if there is one (its settings
        must match); the result equals that of an uninterrupted run.
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
      method: method name, only used for the default learning rate.

    Returns:
      :class:`InversionResult`.

    Raises:
      NonFiniteLossError: the loss or gradient became NaN/inf (the message names the epoch;
        the last good checkpoint is kept).
    """
    return _fit(param, d_obs, survey, dx, n_seeds=None, epochs=epochs, key=key, optimizer=optimizer,
                learning_rate=learning_rate, misfit=misfit, regularizer=regularizer, shot_batch=shot_batch,
                updates_per_epoch=updates_per_epoch, shot_order=shot_order, multiscale=multiscale,
                clip_norm=clip_norm, v_true=v_true, checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                forward_kwargs=forward_kwargs, params=params, callback=callback,
                snapshot_params_every=snapshot_params_every, devices=devices, method=method)


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
         forward_kwargs=None, params=None, callback=None, snapshot_params_every=None, devices=None, method=None):
    # ---- validate (outside jit) ----
    if not hasattr(param, "velocity") or not hasattr(param, "init"):
        raise TypeError(f"param must be a jaxfwi.models.Parameterization (init/velocity), got {type(param).__name__}; "
                        "build one with jaxfwi.models.build(method, v_init).")
    if not isinstance(survey, Survey):
        raise TypeError(f"survey must be a jaxfwi.Survey, got {type(survey).__name__}.")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer.")
    epochs = int(epochs)
    if shot_order not in ("random", "cyclic"):
        raise ValueError(f"shot_order={shot_order!r}: use 'random' or 'cyclic'.")
    if checkpoint_every is not None and (int(checkpoint_every) != checkpoint_every or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive number of epochs.")
    if snapshot_params_every is not None and (int(snapshot_params_every) != snapshot_params_every
                                              or snapshot_params_every < 1):
        raise ValueError(f"snapshot_params_every={snapshot_params_every!r} must be a positive number of epochs.")
    if clip_norm is not None:
        clip_norm = float(clip_norm)
        if not clip_norm > 0:
            raise ValueError(f"clip_norm={clip_norm!r} must be a positive gradient norm (or None).")
    data_per_seed = _check_data(d_obs, survey, n_seeds)
    dtype = jnp.asarray(param.m0).dtype
    d_obs = jnp.asarray(d_obs, dtype)
    if v_true is not None:
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
        lr = _default_lr(param, method) if learning_rate is None else float(learning_rate)
        if not lr > 0:
            raise ValueError(f"learning_rate={learning_rate!r} must be positive.")
    else:
        if learning_rate is not None:
            raise ValueError("pass either optimizer=... or learning_rate=..., not both (the optimizer has its own).")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer={optimizer!r} must be an optax.GradientTransformation, e.g. optax.adam(1e-3).")
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
    if fk["max_vel"] is None:
        fk["max_vel"] = default_max_vel(param, v0)
    fk["max_vel"] = float(fk["max_vel"])
    if fk["pml_freq"] is None:
        fk["pml_freq"] = peak_frequency(np.asarray(survey.wavelet), survey.dt)
    fk["pml_freq"] = float(fk["pml_freq"])
    v_check = v0 if n_seeds is None else v0[0]
    plan_propagation(v_check, dx, survey, fk["accuracy"], fk["pml_width"], fk["free_surface"],
                     max_vel=fk["max_vel"], checkpoint=fk["checkpoint"], shot_batch=fk["shot_batch"],
                     cfl=fk["cfl"], substeps=fk["substeps"])
    dx_t = (float(dx),) * len(param.shape) if np.ndim(dx) == 0 else tuple(float(h) for h in dx)

    # ---- static configuration ----
    mesh = _shard.shot_mesh(devices)
    bsz, nb, u = _batch_layout(survey.n_shots, shot_batch, updates_per_epoch, _shard.n_devices(mesh))
    cfg = _Config(
        param=param, optimizer=opt, misfit=_obj.resolve_misfit(misfit),
        regularizer=_obj.resolve_regularizer(regularizer, spacing=dx_t), dx=dx_t,
        fwd=tuple(sorted(fk.items())), n_shots=survey.n_shots, batch=bsz, n_batches=nb, updates=u,
        shuffle=(shot_order == "random"), bands=_obj.resolve_bands(multiscale, survey.dt), dt=survey.dt,
        clip_norm=clip_norm, mesh=mesh, with_metrics=v_true is not None,
        with_ssim=v_true is not None and len(param.shape) >= 2 and all(n >= 11 for n in param.shape),
    )

    opt_state = opt.init(params) if n_seeds is None else jax.vmap(opt.init)(params)
    if lr is not None:
        opt_state = _set_lr(opt_state, lr)
    state = (params, opt_state)

    meta = _meta(cfg, n_seeds=n_seeds, epochs=epochs, key_data=jax.random.key_data(key), d_shape=d_obs.shape,
                 data_per_seed=data_per_seed, shot_order=shot_order, fk=fk)
    meta["learning_rate"] = lr  # None for a user optimizer (whose settings cannot be fingerprinted)
    history: list = []
    snapshots: list = []
    start = 0
    ckpt_path = None
    ckpt_epochs = 0
    if checkpoint_dir is not None and resume:
        loaded = _ckpt.load_checkpoint(checkpoint_dir, template_state=jax.device_get(state),
                                       template_params=jax.device_get(params), meta=meta)
        if loaded is not None:
            state = jax.tree_util.tree_map(jnp.asarray, loaded["state"])
            start = loaded["epochs_done"]
            history = loaded["history"]
            snapshots = loaded["snapshots"]
            ckpt_path = _ckpt.checkpoint_path(checkpoint_dir)
            ckpt_epochs = start
    if start == 0 and snapshot_params_every is not None:
        snapshots = [(0, jax.device_get(state[0]))]

    # ---- device placement ----
    state, d_obs, survey, v_true, shot_key_data = _shard.replicate((state, d_obs, survey, v_true, shot_key_data),
                                                                   mesh)
    if n_seeds is None:
        step = functools.partial(_epoch_jit, cfg)
    else:
        step = _epoch_vmapped(cfg, data_per_seed)

    def save(st, done):
        return _ckpt.save_checkpoint(checkpoint_dir, state=st, epochs_done=done, history=history, meta=meta,
                                     snapshots=snapshots)

    if callback is not None and start == 0:
        callback(0, state[0])
    desc = "fwi" if n_seeds is None else f"fwi x{n_seeds}"
    bar = _progress(start, epochs, progress, desc)
    e_arr_total = jnp.asarray(epochs, jnp.int32)
    epochs_done = start
    try:
        for e in range(start, epochs):
            t0 = time.perf_counter()
            new_state, rec = step(state, jnp.asarray(e, jnp.int32), e_arr_total, shot_key_data, d_obs, survey,
                                  v_true)
            rec = {k: _ckpt.to_host(v) for k, v in rec.items()}
            elapsed = time.perf_counter() - t0
            bad = [k for k in ("loss", "grad_norm") if not np.all(np.isfinite(rec[k]))]
            if bad:
                which = "" if n_seeds is None else \
                    f" (seeds {np.flatnonzero(~np.isfinite(rec[bad[0]])).tolist()})"
                raise NonFiniteLossError(
                    f"fit: the {' and the '.join(bad)} became non-finite at epoch {e} (0-based){which}: "
                    f"loss={rec['loss']}, grad_norm={rec['grad_norm']}. "
                    + (f"The last good checkpoint ({ckpt_path}, {ckpt_epochs} epochs) is kept. "
                       if ckpt_path else "")
                    + "Likely causes: too large a learning rate, a velocity beyond max_vel="
                    f"{fk['max_vel']:g} m/s (unstable time stepping; set bounds on the parameterisation or "
                    "raise max_vel), or NaN in the data.",
                    epoch=e, history=_stack_history(history, n_seeds), checkpoint=ckpt_path,
                )
            state = new_state
            rec = {"epoch": np.asarray(e), **rec, "time": np.asarray(elapsed)}
            if cfg.bands is not None:
                rec["band_hz"] = np.asarray(cfg.bands[_obj.band_index(e, epochs, len(cfg.bands))])
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
        if checkpoint_dir is not None and epochs_done > start:
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
