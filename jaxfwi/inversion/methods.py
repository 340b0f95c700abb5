"""The papers' FWI methods by name: ``invert`` = the registry entry (:mod:`jaxfwi.methods`:
representation + misfit + regulariser + schedule + optimizer defaults) + :func:`fit`.


The defaults of every method (the papers' settings) are in its registry entry; see the table
in :mod:`jaxfwi.methods` and :func:`method_defaults`.
"""
from __future__ import annotations

import jax

from jaxfwi import methods as _methods
from jaxfwi.inversion.config import FORWARD_OPTIONS, FitConfig, as_key, run_keys
from jaxfwi.inversion.engine import fit, fit_seeds

__all__ = ["METHOD_DEFAULTS", "method_defaults", "invert", "invert_seeds", "FIT_OPTIONS"]

#: options of :func:`invert` passed on to :func:`fit` (the fields of :class:`FitConfig` but ``epochs``)
FIT_OPTIONS = tuple(n for n in FitConfig.names() if n not in ("epochs", "method"))


def _method_defaults_table() -> dict:
    base = {"misfit": "l2", "regularizer": None, "multiscale": None}
    out = {}
    for spec in _methods.specs():
        diff = {k: v for k, v in spec.fit_defaults().items() if k in base and v != base[k]}
        if diff:
            out[spec.name] = diff
    return out


#: method-specific fit options (all others: l2, no regulariser, no multiscale), from :mod:`jaxfwi.methods`
METHOD_DEFAULTS: dict[str, dict] = _method_defaults_table()


def method_defaults(method: str) -> dict:
    """The fit options a method uses by default: ``misfit``, ``regularizer``, ``multiscale``,
    ``learning_rate`` (Adam), from its registry entry (:func:`jaxfwi.methods.get`)."""
    return _methods.get(method).fit_defaults()


def _prepare(method, v_init, options):
    spec = _methods.get(method)
    options = dict(options)
    fit_kw = {k: options.pop(k) for k in FIT_OPTIONS if k in options}
    fwd = dict(fit_kw.pop("forward_kwargs", None) or {})
    for k in FORWARD_OPTIONS:
        if k in options:
            fwd[k] = options.pop(k)
    pretrain = options.pop("pretrain", None)
    pretrain_lr = options.pop("pretrain_lr", 1e-3)
    param = spec.build(v_init, **options)  # the rest: representation / denormalisation settings
    kw = spec.fit_defaults()
    if "optimizer" in fit_kw:
        kw.pop("learning_rate")
    kw.update(fit_kw)
    kw["forward_kwargs"] = fwd
    return spec.name, param, kw, pretrain, pretrain_lr


def invert(d_obs, survey, dx, v_init, method: str = "ig-fwi", epochs: int = 300, key=None, **options):
    """Full-waveform inversion with one of the papers' methods.

    ``result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300,
    key=jax.random.key(0))``; ``result.velocity`` is the final ``[nz, nx]`` model (m/s),
    ``result.history["loss"]`` the per-epoch loss.

    Args:
      d_obs: observed data ``[n_shots, n_receivers, nt]``.
      survey: the :class:`jaxfwi.Survey` that recorded it.
      dx: grid spacing, m.
      v_init: initial model ``[nz, nx]`` m/s (``m0`` of the denormalisation).
      method: ``adfwi``, ``adfwi-tv``, ``weci-fwi``, ``ms-fwi``, ``ifwi``, ``winfwi``, ``lr-fwi``,
        ``mpe-fwi``, ``ig-fwi``, ``lrg-fwi``, ``fad-fwi``, ``gnn-fwi`` (see :data:`METHOD_DEFAULTS`).
      epochs: number of epochs.
      key: JAX random key (default ``jax.random.key(0)``).
      **options:
        - fit options (override the method's defaults): ``learning_rate``, ``optimizer``,
          ``misfit``, ``regularizer``, ``multiscale``, ``shot_batch``, ``updates_per_epoch``,
          ``shot_order``, ``clip_norm``, ``v_true``, ``checkpoint_dir``, ``checkpoint_every``,
          ``resume``, ``progress``, ``params``, ``callback``, ``snapshot_params_every``, ``devices``,
          ``diverge_factor``, ``memory_check``, ``stop_misfit`` (see :func:`~jaxfwi.inversion.fit`);
        - forward options: ``accuracy`` (8), ``pml_width`` (20), ``free_surface`` (False),
          ``max_vel``, ``pml_freq``, ``checkpoint``, ``cfl``, ``substeps`` (or ``forward_kwargs=``);
        - ``pretrain=steps`` (and ``pretrain_lr``): fit the network to ``v_init`` first (L1,
          Adam), the Denorm paper's pretraining strategy (pair with ``mode="none"``);
        - anything else goes to :func:`jaxfwi.models.build` (``scale``, ``mode``, ``bounds``,
          ``clip``, and module settings such as ``width``). Every method keeps the velocity in
          ``bounds``, by default ``(0.5 min(v_init), 1.25 max(v_init))`` m/s (hard clip; the
          upper end is the ``max_vel`` the time step is planned for); ``bounds=None`` for none.

    Returns:
      :class:`~jaxfwi.inversion.InversionResult`.
    """
    name, param, kw, pretrain, pretrain_lr = _prepare(method, v_init, options)
    key = jax.random.key(0) if key is None else key
    if pretrain and kw.get("params") is None:
        k_init, _ = run_keys(as_key(key))
        kw["params"] = param.pretrain(param.init(k_init), steps=int(pretrain), lr=float(pretrain_lr))
    return fit(param, d_obs, survey, dx, epochs=epochs, key=key, method=name, **kw)


def invert_seeds(d_obs, survey, dx, v_init, method: str = "ig-fwi", epochs: int = 300, keys=None,
                 **options):
    """:func:`invert` for several seeds at once (one vmapped program, see
    :func:`~jaxfwi.inversion.fit_seeds`): ``keys = jax.random.split(key, n)``; ``d_obs`` shared
    or ``[n_seeds, n_shots, n_receivers, nt]``. Returns stacked params / velocities / histories."""
    if keys is None:
        raise ValueError("invert_seeds: pass keys=jax.random.split(jax.random.key(0), n_seeds).")
    name, param, kw, pretrain, pretrain_lr = _prepare(method, v_init, options)
    if pretrain and kw.get("params") is None:
        k_init, _ = jax.vmap(run_keys)(as_key(keys, "keys"))
        kw["params"] = jax.vmap(lambda k: param.pretrain(param.init(k), steps=int(pretrain),
                                                         lr=float(pretrain_lr)))(k_init)
    kw.pop("method", None)
    return fit_seeds(param, d_obs, survey, dx, keys=keys, epochs=epochs, method=name, **kw)
