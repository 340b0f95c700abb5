"""The compiled core of the inversion, optax-style: ``init, step = make_fit_step(config)``.

``config`` is a :class:`StepConfig`: the static, hashable settings of the program (optimizer,
misfit, regulariser, forward options, shot layout, multiscale bands, clipping, devices).
Everything else is a traced argument::

    state = init(params, learning_rate)                     # FitState(params, opt_state)
    state, record = step(param, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true)

``param`` (the :class:`~jaxfwi.models.Parameterization`, a pytree whose leaves are ``m0`` and
the bounds), the state, the epoch numbers, the shot-order key, the data, the survey arrays
and the true model are all traced, so the program is compiled once per ``config`` and array
shapes: other data, another initial model, another key or learning rate reuse it (and so do
resumed runs). ``record`` holds the epoch's scalars: ``loss``, ``misfit``, ``regularizer``,
``grad_norm``, ``v_min``, ``v_max`` (and ``at_lower``, ``at_upper``, ``mse``, ``mae``,
``ssim`` when they apply). Both functions are pure; the host loop
(:func:`jaxfwi.inversion.fit`) adds history, progress, checkpoints, callbacks and the
divergence checks on top.

One epoch: the shots are laid out in ``n_batches`` mini-batches of ``batch`` shots (padded
with zero-weight shots), grouped into ``updates`` optimizer updates; within an update the
gradients of its batches are accumulated (``lax.scan``). The gradient is clipped to
``clip_norm`` (``optax.clip_by_global_norm``) before the optimizer.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfwi import devices as _devices
from jaxfwi import metrics as _metrics
from jaxfwi.inversion import objective as _obj
from jaxfwi.inversion import sharding as _shard
from jaxfwi.inversion.shot_groups import grouped_shot_sum
from jaxfwi.inversion.config import ForwardOptions, batch_layout, resolve_forward, spacing
from jaxfwi.physics import Survey, forward

__all__ = ["StepConfig", "FitState", "make_fit_step", "make_loss", "default_optimizer", "set_learning_rate",
           "gradient_storage", "gradient_summary"]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the compiled epoch (hashable, compared by value: the jit cache key).

    Fields: ``optimizer`` (optax), ``misfit`` / ``regularizer`` (:class:`~jaxfwi.inversion.Misfit`,
    :class:`~jaxfwi.inversion.Regularizer`), ``dx`` (m per axis), ``forward``
    (:class:`~jaxfwi.inversion.config.ForwardOptions`), ``n_shots``, ``batch`` (shots per
    batch incl. padding, a multiple of the device count), ``n_batches``, ``updates``
    (optimizer updates per epoch), ``shuffle`` (random shot order), ``bands`` (multiscale
    low-pass cutoffs, Hz, or None), ``dt`` (s), ``clip_norm``, ``mesh`` (shot mesh or None),
    ``with_metrics`` / ``with_ssim`` (metrics against ``v_true``), ``shot_group`` (None: the gradient
    runs every shot's forward before the adjoints; an int: forward, misfit and adjoint one group of
    this many shots at a time, each storing its wavefields, see
    :mod:`jaxfwi.inversion.shot_groups` and :func:`gradient_storage`)."""
    optimizer: Any
    misfit: _obj.Misfit
    regularizer: Optional[_obj.Regularizer]
    dx: tuple
    forward: ForwardOptions
    n_shots: int
    batch: int
    n_batches: int = 1
    updates: int = 1
    shuffle: bool = False
    bands: Optional[tuple] = None
    dt: float = 1.0
    clip_norm: Optional[float] = None
    mesh: Any = None
    with_metrics: bool = False
    with_ssim: bool = False
    shot_group: Optional[int] = None


class FitState(NamedTuple):
    """The optimisation state: the params pytree and the optimizer's state."""
    params: Any
    opt_state: Any


@functools.lru_cache(maxsize=None)
def default_optimizer(name: str = "adam") -> optax.GradientTransformation:
    """``optax.<name>`` with the learning rate as state (set after ``init``, see
    :func:`set_learning_rate`): one compiled program serves every learning rate."""
    return optax.inject_hyperparams(getattr(optax, name))(learning_rate=1.0)


def set_learning_rate(opt_state, lr):
    """The state of a :func:`default_optimizer` with its learning rate set to ``lr``."""
    hp = opt_state.hyperparams
    hp["learning_rate"] = jnp.full(jnp.shape(hp["learning_rate"]), lr, jnp.result_type(hp["learning_rate"]))
    return opt_state


# --------------------------------------------------------------------------- loss pieces


def _make_shots_loss(cfg: StepConfig) -> Callable:
    """``loss(v, idx, w, d_obs, survey, it, n_it, band) -> sum of weighted shot misfits``,
    shot-parallel over ``cfg.mesh`` (idx and w sharded, the rest replicated)."""
    fk = cfg.forward.kwargs()

    def shots(v, idx, w, rest):
        d_obs, survey, it, n_it, band = rest
        sub = survey.select(idx)
        d_s = forward(v, cfg.dx, sub, **fk)
        d_s = _obj.apply_band(d_s, band, cfg.bands, cfg.dt)
        d_o = _obj.apply_band(d_obs[idx], band, cfg.bands, cfg.dt)
        return _obj.shots_misfit(cfg.misfit, d_s, d_o.astype(d_s.dtype), w.astype(d_s.dtype), it, n_it)

    def local(v, idx, w, d_obs, survey, it, n_it, band):
        rest = (d_obs, survey, it, n_it, band)
        if cfg.shot_group is None:
            return shots(v, idx, w, rest)
        return grouped_shot_sum(shots, cfg.shot_group, v, idx, w, rest)

    return _shard.sharded_sum(local, cfg.mesh, sharded_argnums=(1, 2), n_args=8)


def gradient_storage(cfg: StepConfig, plan, n_seeds=None, dtype=np.float32):
    """``(cfg, plan)`` with the gradient's storage made explicit when ``cfg.forward.checkpoint`` is None.

    * ``"store"`` when the wavefields of one training step (a mini-batch per device, times the vmapped
      seeds) fit :func:`jaxfwi.devices.default_store_wavefield`: one forward and one adjoint pass;
    * else ``"store"`` one shot group at a time (``cfg.shot_group``, :mod:`~jaxfwi.inversion.shot_groups`)
      when a group's wavefields fit: the largest group up to the cache-sized default
      (:func:`jaxfwi.devices.default_shot_batch`, or the ``shot_batch`` forward option) that fits;
    * else ``"sqrt"`` segments (one forward pass more, ~``2 sqrt(nt)`` wavefields a shot).

    The plan is updated to match (``store_wavefield``; ``shot_batch`` = the group)."""
    fo = cfg.forward
    if fo.checkpoint is not None:
        return cfg, plan
    per_dev = cfg.batch // _shard.n_devices(cfg.mesh)
    n_par = 1 if n_seeds is None else int(n_seeds)
    device = None if cfg.mesh is None else cfg.mesh.devices.flat[0]

    def fits(k):
        return _devices.default_store_wavefield(plan.shape, plan.pml, plan.accuracy, plan.nt_internal, k * n_par,
                                                dtype, device)

    group = None
    if fits(per_dev):
        store = True
    else:
        g = fo.shot_batch or _devices.default_shot_batch(plan.shape, plan.pml, plan.accuracy, per_dev, dtype,
                                                         device=device) or per_dev
        g = min(int(g), per_dev - 1)
        while g >= 1 and not fits(g):
            g -= 1
        store = g >= 1
        group = g if store else None
    fo = dataclasses.replace(fo, checkpoint="store" if store else "sqrt")
    seg = None if store else (plan.checkpoint or max(1, math.ceil(math.sqrt(plan.nt_internal))))  # "sqrt"
    plan = dataclasses.replace(plan, store_wavefield=store, checkpoint=seg,
                               shot_batch=group or plan.shot_batch)
    return dataclasses.replace(cfg, forward=fo, shot_group=group), plan


def gradient_summary(cfg: StepConfig, plan) -> dict:
    """The storage :func:`gradient_storage` chose, as a small JSON-able dict (``InversionResult.gradient``)."""
    seg = None if plan.store_wavefield else plan.checkpoint
    storage = "segments" if not plan.store_wavefield else ("store" if cfg.shot_group is None else "store per shot group")
    return {"storage": storage, "checkpoint": None if seg is None else int(seg),
            "shot_group": cfg.shot_group, "dt_internal": float(plan.dt_internal), "nt_internal": int(plan.nt_internal)}


def _batch_loss(cfg, shots_loss, param, params, idx, w, rw, d_obs, survey, epoch, it, n_it, band):
    """Misfit of one batch plus ``rw`` times the regulariser; returns (total, (misfit, reg))."""
    v = param.velocity(params)
    mis = shots_loss(v, idx, w, d_obs, survey, it, n_it, band)
    if cfg.regularizer is None:
        reg = jnp.zeros((), mis.dtype)
    else:
        reg = rw * cfg.regularizer(v, epoch).astype(mis.dtype)
    return mis + reg, (mis, reg)


def _layout(cfg: StepConfig, shot_key_data, epoch):
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


def _clip(cfg: StepConfig, g):
    if cfg.clip_norm is None:
        return g
    clip = optax.clip_by_global_norm(cfg.clip_norm)
    return clip.update(g, clip.init(g))[0]


def _epoch(cfg: StepConfig, param, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true):
    """One epoch: returns ``(new_state, record)``; ``record`` holds scalars."""
    params, opt_state = state
    shots_loss = _make_shots_loss(cfg)
    idx, w = _layout(cfg, shot_key_data, epoch)
    n_upd, k = idx.shape[:2]
    n_it = n_epochs * n_upd
    band = _obj.band_index(epoch, n_epochs, len(cfg.bands)) if cfg.bands else jnp.zeros((), jnp.int32)
    vg = jax.value_and_grad(functools.partial(_batch_loss, cfg, shots_loss, param), has_aux=True)

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
        upd, s = cfg.optimizer.update(_clip(cfg, g), s, p)
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
    bounds = getattr(param, "bounds", None)
    if bounds is not None and hasattr(param, "unbounded_velocity"):
        u = param.unbounded_velocity(params)
        v = param.apply_bounds(u)
        rec["at_lower"] = jnp.sum(u <= bounds[0]).astype(jnp.int32)
        rec["at_upper"] = jnp.sum(u >= bounds[1]).astype(jnp.int32)
    else:
        v = param.velocity(params)
    rec["v_min"] = jnp.min(v)
    rec["v_max"] = jnp.max(v)
    if cfg.with_metrics:
        rec["mse"] = _metrics.mse(v, v_true)
        rec["mae"] = _metrics.mae(v, v_true)
        if cfg.with_ssim:
            rec["ssim"] = _metrics.ssim(v, v_true)
    return FitState(params, opt_state), rec


@functools.partial(_devices.jit, static_argnums=0)
def _step(cfg, param, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true):
    return _epoch(cfg, param, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true)


@functools.partial(_devices.jit, static_argnums=(0, 1))
def _step_seeds(cfg, data_per_seed, param, state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true):
    one = functools.partial(_epoch, cfg, param)
    return jax.vmap(one, in_axes=(0, None, None, 0, 0 if data_per_seed else None, None, None))(
        state, epoch, n_epochs, shot_key_data, d_obs, survey, v_true)


def make_fit_step(config: StepConfig, *, seeds: bool = False, data_per_seed: bool = False):
    """``(init, step)`` of the compiled inversion epoch (see the module docs).

    ``init(params, learning_rate=None) -> FitState``: the optimizer state of ``params`` (with
    the learning rate of a :func:`default_optimizer` set). ``step(param, state, epoch, n_epochs,
    shot_key_data, d_obs, survey, v_true) -> (state, record)``: one epoch, jit-compiled.

    ``seeds=True``: both work on a leading seed axis of ``params`` / the state / the shot-order
    key data (and of ``d_obs`` with ``data_per_seed``), one vmapped program for all seeds.
    """
    opt = config.optimizer

    def init(params, learning_rate=None) -> FitState:
        opt_state = jax.vmap(opt.init)(params) if seeds else opt.init(params)
        if learning_rate is not None:
            opt_state = set_learning_rate(opt_state, learning_rate)
        return FitState(params, opt_state)

    if seeds:
        step = functools.partial(_step_seeds, config, bool(data_per_seed))
    else:
        step = functools.partial(_step, config)
    return init, step


# --------------------------------------------------------------------------- loss for analysis


def make_loss(param, survey: Survey, dx, *, misfit="l2", regularizer=None, multiscale=None, forward_kwargs=None,
              devices=None, max_vel=None) -> Callable:
    """The inversion objective as a pure function ``loss(params, d_obs, epoch=0, n_epochs=1) -> scalar``.

    The same loss ``fit`` minimises for one full batch of shots (misfit summed over shots,
    plus the regulariser; multiscale band and schedules from ``epoch / n_epochs``), jit- and
    grad-able, sharded over ``devices`` like ``fit``. ``forward_kwargs`` as in :func:`fit`
    (``max_vel`` defaults to 1.25 x the initial model's maximum). Its gradient stores the wavefields as
    ``fit``'s does (:func:`gradient_storage`): ``loss.plan`` and ``loss.shot_group`` record the choice.
    With ``loss.shot_group`` set the loss is reverse-differentiable only (no ``jax.jvp``)."""
    fo, plan = resolve_forward(forward_kwargs, param, survey, dx, max_vel=max_vel, strict=False, warn=False)
    mesh = _shard.shot_mesh(devices)
    bsz, _, _ = batch_layout(survey.n_shots, None, 1, _shard.n_devices(mesh))
    dx_t = spacing(dx, len(param.shape))
    cfg = StepConfig(optimizer=None, misfit=_obj.resolve_misfit(misfit),
                     regularizer=_obj.resolve_regularizer(regularizer, spacing=dx_t), dx=dx_t, forward=fo,
                     n_shots=survey.n_shots, batch=bsz, bands=_obj.resolve_bands(multiscale, survey.dt),
                     dt=survey.dt, mesh=mesh)
    cfg, plan = gradient_storage(cfg, plan, None, np.asarray(param.m0).dtype)
    shots_loss = _make_shots_loss(cfg)
    n = survey.n_shots
    idx = jnp.asarray(np.where(np.arange(bsz) < n, np.arange(bsz), 0), jnp.int32)
    w = jnp.asarray(np.arange(bsz) < n, jnp.float32)
    idx, w, surv = _shard.replicate((idx, w, survey), mesh)

    def loss(params, d_obs, epoch=0, n_epochs=1):
        band = _obj.band_index(epoch, n_epochs, len(cfg.bands)) if cfg.bands else 0
        total, _ = _batch_loss(cfg, shots_loss, param, params, idx, w, 1.0, jnp.asarray(d_obs), surv, epoch, epoch,
                               n_epochs, band)
        return total

    loss.plan = plan  # how the gradient gets its wavefields: plan.store_wavefield, plan.shot_batch
    loss.shot_group = cfg.shot_group  # shots per forward-misfit-adjoint group (None: all shots at once)
    loss.gradient = gradient_summary(cfg, plan)
    return loss
