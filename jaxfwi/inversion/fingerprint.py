"""The fingerprint of a run (:func:`run_identity`): what a checkpoint must match to be resumed."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.inversion import checkpoints as _ckpt
from jaxfwi.inversion import sharding as _shard

__all__ = ["run_identity", "digest", "describe", "epochs_matter"]


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


def epochs_matter(cfg) -> bool:
    """Whether the schedule depends on the total number of epochs (WECI weight, multiscale bands,
    a misfit of (iteration, n_iterations)): then extending a run is not the same run."""
    return cfg.bands is not None or cfg.misfit.kind in ("weci", "scheduled")


def run_identity(cfg, param, *, method, n_seeds, key_data, d_obs, data_per_seed, survey, params0, v_true,
                 shot_order, lr, optimizer, epochs) -> dict:
    """The fingerprint of a run: every input and setting that determines its result, as a flat
    JSON-able dict (arrays by content hash). Two runs with equal fingerprints give the same
    result; the checkpoint stores it and resume compares it field by field.

    ``cfg`` is the run's :class:`~jaxfwi.inversion.step.StepConfig`, ``param`` its
    parameterisation."""
    p = param
    fk = cfg.forward.kwargs()
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
    if epochs_matter(cfg):
        ident["epochs (the schedule depends on them)"] = int(epochs)
    return json.loads(json.dumps(ident, sort_keys=True))


digest = _digest
describe = _describe
