"""The host loop of the inversion: ``fit`` (one run) and ``fit_seeds`` (N runs in one vmapped program).

The compiled epoch is :func:`jaxfwi.inversion.step.make_fit_step` (pure, jit-compiled once per
:class:`~jaxfwi.inversion.step.StepConfig` and shapes); this module checks the inputs (outside
jit, before anything is compiled), resolves the options (:class:`~jaxfwi.inversion.config.FitConfig`)
and runs the epochs with what a long run needs: history, a progress bar, checkpoints and
resume (refused for another run, :func:`~jaxfwi.inversion.fingerprint.run_identity`), callbacks,
snapshots, and the divergence checks (non-finite loss or gradient, a blown-up loss, a model
outside ``(0, max_vel]``).

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

The whole epoch is one jit-compiled function of traced arrays — the parameterisation
(``m0``, bounds), params, optimizer state, epoch number, observed data, survey arrays, true
model — compiled once per configuration and reused across epochs, resumed runs and calls
with other data, initial models of the same velocity range, keys or learning rates (the
default Adam's learning rate lives in the optimizer state).
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi import metrics as _metrics
from jaxfwi.inversion import checkpoints as _ckpt
from jaxfwi.inversion import memory as _memory
from jaxfwi.inversion import objective as _obj
from jaxfwi.inversion import sharding as _shard
from jaxfwi.inversion.config import (DIVERGE_FACTOR, FORWARD_OPTIONS, MAX_VEL_MARGIN, RESUME_MODES,  # noqa: F401
                                     FitConfig, as_key, batch_layout, default_max_vel, resolve_forward, run_keys,
                                     spacing)
from jaxfwi.inversion.fingerprint import run_identity
from jaxfwi.inversion.results import DivergenceError, InversionResult, NonFiniteLossError  # noqa: F401
from jaxfwi.inversion.step import (StepConfig, default_optimizer, gradient_storage, gradient_summary,  # noqa: F401
                                   make_fit_step, make_loss, set_learning_rate)
from jaxfwi.physics import Survey

__all__ = ["fit", "fit_seeds", "make_loss", "InversionResult", "DivergenceError", "NonFiniteLossError",
           "FORWARD_OPTIONS", "default_max_vel", "run_identity", "RESUME_MODES", "DIVERGE_FACTOR"]


# --------------------------------------------------------------------------- public API


def fit(param, d_obs, survey: Survey, dx, *, epochs: int, key, optimizer=None, learning_rate=None,
        misfit="l2", regularizer=None, shot_batch=None, updates_per_epoch: int = 1, shot_order="random",
        multiscale=None, clip_norm=None, v_true=None, checkpoint_dir=None, checkpoint_every: int = 10,
        resume=True, progress: bool = True, forward_kwargs=None, params=None, callback=None,
        snapshot_params_every=None, devices=None, method=None, diverge_factor=DIVERGE_FACTOR,
        memory_check: bool = True, stop_misfit=None) -> InversionResult:
    """Invert ``d_obs`` for the params of a velocity parameterisation.

    Args:
      param: a :class:`jaxfwi.models.Parameterization` (``init(key)``, ``velocity(params)``).
      d_obs: observed data ``[n_shots, n_receivers, nt]`` of ``survey``.
      survey: :class:`jaxfwi.Survey`.
      dx: grid spacing, m.
      epochs: number of epochs (passes over all shots).
      key: JAX random key: split into the init key (``param.init``) and the shot-order key.
      optimizer: an ``optax.GradientTransformation``; default Adam at ``learning_rate``.
      learning_rate: Adam's learning rate (default: the method's, from the registry
        :mod:`jaxfwi.methods`, for ``method`` or else the first method of the representation's class).
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
      method: method name (any spelling :func:`jaxfwi.methods.canonical_name` accepts), used for the
        default optimizer and learning rate (and recorded in the fingerprint).
      diverge_factor: a loss above this factor times its largest value so far (within the current
        multiscale band) is a divergence (default 1e3); None: only NaN/inf.
      memory_check: estimate the memory of one mini-batch gradient before compiling
        (:mod:`jaxfwi.inversion.memory`) and raise ``GradientMemoryError`` if it exceeds the
        device's free memory.
      stop_misfit: stop after the first epoch whose data misfit (``history["misfit"]``, summed over the
        epoch's batches, evaluated before the epoch's update; with several seeds: every seed's) is at most
        this value: Morozov's discrepancy principle, with ``stop_misfit`` = tau x the misfit of the noise
        (for the l2 misfit and white noise of std sigma, ``0.5 * n_samples * sigma**2``; after filtering,
        the misfit of a reference model against the data). ``result.epochs`` says where it stopped;
        a resumed run that had stopped stays stopped. Not part of the run's fingerprint (like ``epochs``).
        ``benchmarks/discrepancy.py`` shows how sensitive the stop is to the noise level.

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
    options = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
    return _run(param, d_obs, survey, dx, key, FitConfig(**options), n_seeds=None)


_OPTION_NAMES = frozenset(FitConfig.names())


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
    keys = as_key(keys, "keys")
    if keys.ndim != 1:
        raise ValueError(f"keys has shape {keys.shape}; pass a 1-D array of keys, e.g. jax.random.split(key, n).")
    bad = sorted(set(options) - _OPTION_NAMES)
    if bad:
        raise TypeError(f"fit_seeds: unknown option(s) {bad}; valid: {sorted(_OPTION_NAMES - {'epochs'})}.")
    cfg = FitConfig(epochs=epochs, params=params, **options)
    return _run(param, d_obs, survey, dx, keys, cfg, n_seeds=int(keys.shape[0]))


# --------------------------------------------------------------------------- set-up


class _Opaque:
    """A parameterisation that is not a pytree (any object with ``init``/``velocity``), carried
    as a static argument (compared by identity)."""

    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, name):
        return getattr(self.obj, name)


jax.tree_util.register_pytree_node(_Opaque, lambda o: ((), o.obj), lambda obj, _: _Opaque(obj))


def _as_pytree(param):
    leaves = jax.tree_util.tree_leaves(param)
    return _Opaque(param) if len(leaves) == 1 and leaves[0] is param else param


@jax.jit
def _velocity(param, params):
    return param.velocity(params)


@jax.jit
def _velocity_seeds(param, params):
    return jax.vmap(param.velocity)(params)


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


def _check_v_true(v_true, param, dtype):
    if v_true is None:
        return None
    vt = np.asarray(v_true)
    if np.iscomplexobj(vt) or not np.all(np.isfinite(vt)):
        raise ValueError("v_true must be a real, finite velocity model in m/s (it has complex, NaN or inf values).")
    v_true = jnp.asarray(v_true, dtype)
    if tuple(v_true.shape) != tuple(param.shape):
        raise ValueError(f"v_true has shape {tuple(v_true.shape)} but the model is {tuple(param.shape)}.")
    return v_true


def _initial_params(param, params, k_init, n_seeds):
    if params is None:
        return param.init(k_init) if n_seeds is None else jax.vmap(param.init)(k_init)
    if n_seeds is not None:
        lead = {int(np.shape(x)[0]) if np.ndim(x) else None for x in jax.tree_util.tree_leaves(params)}
        if lead != {n_seeds}:
            raise ValueError(f"params: for {n_seeds} seeds every leaf needs a leading seed axis of {n_seeds} "
                             f"(found {sorted(lead, key=str)}); stack them, e.g. jax.vmap(param.init)(keys).")
    return params


def _learning_rate(opts: FitConfig, param):
    """``(optimizer, learning rate or None)``; the default optimizer and learning rate come from
    the method registry (``opts.method``, else the method of the representation)."""
    if opts.optimizer is not None:
        return opts.optimizer, None
    from jaxfwi import methods  # noqa: PLC0415

    if opts.method is not None:
        spec = methods.get(opts.method)
    else:
        spec = methods.method_for_module(getattr(param, "module", None))
    if opts.learning_rate is None and spec is None:
        raise ValueError(f"fit: no default learning rate for a {type(getattr(param, 'module', param)).__name__} "
                         "representation; pass learning_rate=... or optimizer=...")
    name = "adam" if spec is None else spec.optimizer
    lr = spec.learning_rate if opts.learning_rate is None else opts.learning_rate
    return default_optimizer(name), lr


def _step_config(opts: FitConfig, param, survey, dx, fo, mesh, optimizer, with_metrics) -> StepConfig:
    bsz, nb, u = batch_layout(survey.n_shots, opts.shot_batch, opts.updates_per_epoch, _shard.n_devices(mesh))
    dx_t = spacing(dx, len(param.shape))
    return StepConfig(
        optimizer=optimizer, misfit=_obj.resolve_misfit(opts.misfit),
        regularizer=_obj.resolve_regularizer(opts.regularizer, spacing=dx_t), dx=dx_t, forward=fo,
        n_shots=survey.n_shots, batch=bsz, n_batches=nb, updates=u, shuffle=(opts.shot_order == "random"),
        bands=_obj.resolve_bands(opts.multiscale, survey.dt), dt=survey.dt, clip_norm=opts.clip_norm, mesh=mesh,
        with_metrics=with_metrics,
        with_ssim=with_metrics and len(param.shape) >= 2 and all(n >= 11 for n in param.shape),
    )


def _check_memory(cfg: StepConfig, plan, n_seeds, n_receivers, dtype):
    from jaxfwi.physics.propagation import default_shot_batch  # noqa: PLC0415

    n_dev = _shard.n_devices(cfg.mesh)
    per_dev = cfg.batch // n_dev
    group = cfg.forward.shot_batch or default_shot_batch(plan.shape, plan.pml, plan.accuracy, per_dev, dtype)
    mplan = dataclasses.replace(plan, shot_batch=None if group is None else min(int(group), per_dev))
    n_par = 1 if n_seeds is None else n_seeds
    alive = per_dev if cfg.shot_group is None else min(cfg.shot_group, per_dev)  # shots whose wavefields coexist
    _memory.check_gradient_memory(mplan, alive * n_par, n_receivers, dtype,
                                  device=None if cfg.mesh is None else cfg.mesh.devices.flat[0])


# --------------------------------------------------------------------------- the run


def _run(param, d_obs, survey, dx, key, opts: FitConfig, *, n_seeds):
    """Check the inputs, build the compiled step and run the host loop."""
    if not hasattr(param, "velocity") or not hasattr(param, "init"):
        raise TypeError(f"param must be a jaxfwi.models.Parameterization (init/velocity), got {type(param).__name__}; "
                        "build one with jaxfwi.models.build(method, v_init).")
    if not isinstance(survey, Survey):
        raise TypeError(f"survey must be a jaxfwi.Survey, got {type(survey).__name__}.")
    epochs = opts.epochs
    data_per_seed = _check_data(d_obs, survey, n_seeds)
    dtype = jnp.asarray(param.m0).dtype
    d_obs = jnp.asarray(d_obs, dtype)
    v_true = _check_v_true(opts.v_true, param, dtype)
    key = as_key(key)
    k_init, k_shots = run_keys(key) if n_seeds is None else jax.vmap(run_keys)(key)
    shot_key_data = jax.random.key_data(k_shots)
    opt, lr = _learning_rate(opts, param)
    traced_param = _as_pytree(param)

    params = _initial_params(param, opts.params, k_init, n_seeds)
    v0 = np.asarray((_velocity if n_seeds is None else _velocity_seeds)(traced_param, params))
    if not np.all(np.isfinite(v0)) or np.any(v0 <= 0):
        raise ValueError("the initial params give a non-finite or non-positive velocity; check v_init, the "
                         "scale and the bounds of the parameterisation.")
    fo, plan = resolve_forward(opts.forward_kwargs, param, survey, dx, v0 if n_seeds is None else v0[0])
    mesh = _shard.shot_mesh(opts.devices)
    cfg = _step_config(opts, param, survey, dx, fo, mesh, opt, v_true is not None)
    cfg_ident = cfg  # the fingerprint keeps the user's checkpoint option: storing or recomputing the
    # wavefield gives the same gradient (to float rounding), so a run resumes on a machine with other memory
    # store every wavefield if those of one step (all seeds) fit, else one shot group's, else segments
    cfg, plan = gradient_storage(cfg, plan, n_seeds, dtype)
    fo = cfg.forward
    if opts.memory_check:
        _check_memory(cfg, plan, n_seeds, survey.n_receivers, dtype)
    init, step = make_fit_step(cfg, seeds=n_seeds is not None, data_per_seed=data_per_seed)
    state = init(params, lr)
    identity = run_identity(cfg_ident, param, method=opts.method, n_seeds=n_seeds, key_data=jax.random.key_data(key),
                            d_obs=d_obs, data_per_seed=data_per_seed, survey=survey, params0=params, v_true=v_true,
                            shot_order=opts.shot_order, lr=lr, optimizer=opts.optimizer, epochs=epochs)
    loop = _Loop(opts, identity, n_seeds, cfg.bands, fo.max_vel)
    state, start = loop.resume(state, lr)
    state, d_obs, survey, v_true, shot_key_data, traced_param = _shard.replicate(
        (state, d_obs, survey, v_true, shot_key_data, traced_param), mesh)
    n_epochs = jnp.asarray(epochs, jnp.int32)

    def one_epoch(st, e):
        return step(traced_param, st, jnp.asarray(e, jnp.int32), n_epochs, shot_key_data, d_obs, survey, v_true)

    state, epochs_done = loop.run(state, start, one_epoch)
    params = state[0]
    v = np.asarray(_ckpt.to_host((_velocity if n_seeds is None else _velocity_seeds)(traced_param, params)))
    res_metrics = None
    if v_true is not None:
        vt = np.asarray(_ckpt.to_host(v_true))
        res_metrics = _metrics.all_metrics(v, vt) if n_seeds is None else [_metrics.all_metrics(x, vt) for x in v]
    return InversionResult(params=params, velocity=v, history=_stack_history(loop.history, n_seeds),
                           metrics=res_metrics, snapshots=loop.snapshots, param=param, epochs=epochs_done,
                           checkpoint=loop.ckpt_path, gradient=gradient_summary(cfg, plan))


class _Loop:
    """The host side of a run: resume, history, snapshots, checkpoints, progress, callbacks and
    the divergence checks around the compiled step."""

    def __init__(self, opts: FitConfig, identity: dict, n_seeds, bands, max_vel: float):
        self.opts, self.identity, self.n_seeds, self.bands, self.max_vel = opts, identity, n_seeds, bands, max_vel
        self.meta = {"format": 2, "identity": identity, "epochs": opts.epochs, "lr_changes": [], "diverged": None}
        self.history: list = []
        self.snapshots: list = []
        self.ckpt_path = None
        self.ckpt_epochs = 0

    def save(self, state, done, diverged=None):
        m = dict(self.meta, epochs_done=int(done), diverged=diverged)
        return _ckpt.save_checkpoint(self.opts.checkpoint_dir, state=state, epochs_done=done,
                                     history=self.history[:done], meta=m,
                                     snapshots=[s for s in self.snapshots if s[0] <= done])

    def resume(self, state, lr):
        """The state to start from and its number of finished epochs."""
        o = self.opts
        start = 0
        if o.checkpoint_dir is not None and o.resume is not False:
            loaded = _resume(o.checkpoint_dir, self.identity, o.epochs, o.resume, jax.device_get(state),
                             jax.device_get(state[0]))
            if loaded is not None:
                state = type(state)(*jax.tree_util.tree_map(jnp.asarray, tuple(loaded["state"])))
                start = loaded["epochs_done"]
                self.history = loaded["history"]
                self.snapshots = loaded["snapshots"]
                self.ckpt_path = _ckpt.checkpoint_path(o.checkpoint_dir)
                self.ckpt_epochs = start
                self.meta["lr_changes"] = list(loaded["meta"].get("lr_changes", []))
                old_lr = loaded["meta"]["identity"].get("learning_rate")
                if o.resume == "new_learning_rate" and old_lr != lr:
                    state = type(state)(state[0], set_learning_rate(state[1], lr))
                    self.meta["lr_changes"].append([start, old_lr, lr])
        if start == 0 and o.snapshot_params_every is not None:
            self.snapshots = [(0, jax.device_get(state[0]))]
        return state, start

    def run(self, state, start, step):
        """Run the epochs from ``start`` on with ``step(state, epoch) -> (state, record)``;
        returns ``(final state, epochs done)``."""
        o, n_seeds = self.opts, self.n_seeds
        epochs, ckdir = o.epochs, o.checkpoint_dir
        if o.callback is not None and start == 0:
            o.callback(0, state[0])
        epochs_done = start
        if self.reached_stop_misfit(self.history[-1] if self.history else None):
            return state, epochs_done  # resumed after the discrepancy stop: stay stopped
        bar = _progress(start, epochs, o.progress, "fwi" if n_seeds is None else f"fwi x{n_seeds}")
        prev_state = None
        try:
            for e in range(start, epochs):
                t0 = time.perf_counter()
                new_state, rec = step(state, e)
                rec = {k: _ckpt.to_host(v) for k, v in rec.items()}
                elapsed = time.perf_counter() - t0
                band = None if self.bands is None else self.bands[_obj.band_index(e, epochs, len(self.bands))]
                problem = _diagnose(rec, e, self.history, band, self.max_vel, o.diverge_factor, n_seeds)
                if problem is not None:
                    self.diverged(problem, e, start, state, prev_state)
                prev_state, state = state, new_state
                rec = {"epoch": np.asarray(e), **rec, "time": np.asarray(elapsed)}
                if band is not None:
                    rec["band_hz"] = np.asarray(band)
                self.history.append(rec)
                epochs_done = e + 1
                if o.snapshot_params_every is not None and epochs_done % o.snapshot_params_every == 0:
                    self.snapshots.append((epochs_done, jax.device_get(state[0])))
                if ckdir is not None and (epochs_done % o.checkpoint_every == 0 or epochs_done == epochs):
                    self.ckpt_path, self.ckpt_epochs = self.save(state, epochs_done), epochs_done
                if bar is not None:
                    post = {"loss": f"{float(np.mean(rec['loss'])):.4g}"}
                    if "mse" in rec:
                        post["mse"] = f"{float(np.mean(rec['mse'])):.4g}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
                stop = self.reached_stop_misfit(rec)
                if (o.callback is not None and o.callback(epochs_done, state[0])) or stop:
                    if ckdir is not None and epochs_done % o.checkpoint_every and epochs_done != epochs:
                        self.ckpt_path, self.ckpt_epochs = self.save(state, epochs_done), epochs_done
                    break
        except KeyboardInterrupt:
            if ckdir is not None and epochs_done > self.ckpt_epochs:
                self.save(state, epochs_done)
                warnings.warn(f"fit interrupted after {epochs_done} epochs; checkpoint saved in {ckdir}",
                              stacklevel=3)
            raise
        finally:
            if bar is not None:
                bar.close()
        return state, epochs_done

    def reached_stop_misfit(self, rec) -> bool:
        """Whether the epoch record ``rec`` (or None) meets ``stop_misfit`` (every seed's misfit)."""
        sm = self.opts.stop_misfit
        return sm is not None and rec is not None and bool(np.all(np.asarray(rec["misfit"]) <= sm))

    def diverged(self, problem, e, start, state, prev_state):
        """Keep the last good state (in the checkpoint) and raise :class:`DivergenceError`."""
        kind, what = problem
        # "state": the loss/gradient of the current params is bad -> the last good params are
        # those before the previous update; "update": this epoch's update leaves (0, max_vel]
        good, good_n = (prev_state, e - 1) if kind == "state" else (state, e)
        if good is not None and good_n < start:
            good = None
        kept = ""
        ck = None
        if self.opts.checkpoint_dir is not None and good is not None and good_n >= 0:
            ck = self.save(good, good_n, diverged=what)
            kept = (f" The checkpoint {ck} now holds the last good state ({good_n} epochs, before the "
                    "divergence); continue from it with a smaller step: the same call with "
                    "learning_rate=<smaller> and resume='new_learning_rate'.")
        raise DivergenceError(
            f"fit: {what}.{kept} Likely causes: too large a learning rate, a velocity beyond max_vel="
            f"{self.max_vel:g} m/s (set bounds on the parameterisation), or bad observed data.",
            epoch=e, history=_stack_history(self.history, self.n_seeds), checkpoint=ck,
            good_epochs=good_n if ck else None,
        )


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
