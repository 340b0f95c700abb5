"""Training checkpoints: one ``.npz`` file per run directory, written atomically.

A checkpoint holds everything needed to continue a run to exactly the result an
uninterrupted run gives: the leaves of the training state (params + optimizer
state, flattened in ``jax.tree_util`` order), the number of finished epochs, the
per-epoch history, parameter snapshots, and a JSON ``meta`` record. ``meta["identity"]``
is the run's fingerprint (content hashes of the observed data, the initial model
and params, the survey; every setting that changes the result; see
:func:`jaxfwi.inversion.fit`), compared field by field on resume so that a
checkpoint is never continued by another run. The tree structure itself is not
stored: it is rebuilt from the freshly initialised state of the resuming run,
and every leaf's shape and dtype are checked against it.

The file is written to a temporary name in the same folder, flushed to disk and
renamed over the old one (``os.replace``), so a run killed while saving leaves the
previous checkpoint intact. A file that cannot be read back (truncated, a flipped
byte, not a checkpoint at all) raises :class:`CheckpointError` naming the file and
how to start over; nothing is silently skipped.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Optional

import jax
import numpy as np

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "checkpoint_epochs", "to_host"]

CHECKPOINT_NAME = "checkpoint.npz"

_START_OVER = ("delete the file (or the folder), use another checkpoint_dir, or pass resume=False to start over "
               "(CLI: --fresh)")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, unreadable, or from another run."""


def checkpoint_path(directory) -> str:
    return os.path.join(os.fspath(directory), CHECKPOINT_NAME)


def to_host(x):
    """A numpy copy of ``x`` (for a replicated array spanning several hosts: the local copy)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def save_checkpoint(directory, *, state, epochs_done: int, history: list, meta: dict,
                    snapshots: Optional[list] = None) -> str:
    """Write ``state`` (a pytree), ``history`` (list of per-epoch dicts of scalars/arrays),
    ``snapshots`` (list of ``(epoch, params)``) and ``meta`` to ``directory``.

    Only process 0 writes (multi-host runs hold replicated state). Returns the path.
    """
    path = checkpoint_path(directory)
    if jax.process_index() != 0:
        return path
    os.makedirs(os.fspath(directory), exist_ok=True)
    arrays = {}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        arrays[f"state_{i}"] = to_host(leaf)
    arrays["epochs_done"] = np.asarray(int(epochs_done))
    keys = sorted(history[0]) if history else []
    arrays["history_keys"] = np.asarray(json.dumps(keys))
    for k in keys:
        arrays[f"history__{k}"] = np.stack([np.asarray(r[k]) for r in history])
    snapshots = snapshots or []
    arrays["snapshot_epochs"] = np.asarray([int(e) for e, _ in snapshots], dtype=np.int64)
    for j, (_, p) in enumerate(snapshots):
        for i, leaf in enumerate(jax.tree_util.tree_leaves(p)):
            arrays[f"snap_{j}_{i}"] = to_host(leaf)
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable
        fd = os.open(os.fspath(directory), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def diff_identity(saved: dict, current: dict, ignore=()) -> list[str]:
    """``["field: old -> new", ...]`` for every field of two run fingerprints that differs."""
    out = []
    for k in sorted(set(saved) | set(current)):
        if k in ignore:
            continue
        if saved.get(k, "<absent>") != current.get(k, "<absent>"):
            out.append(f"{k}: {_short(saved.get(k, '<absent>'))} -> {_short(current.get(k, '<absent>'))}")
    return out


def _short(x, n=120):
    r = json.dumps(x, sort_keys=True) if not isinstance(x, str) else x
    if len(r) <= n:
        return r
    import hashlib
    return f"{r[: n - 40]}... (sha256:{hashlib.sha256(r.encode()).hexdigest()[:12]})"


def checkpoint_epochs(path) -> Optional[int]:
    """The number of epochs a checkpoint file (or a folder holding ``checkpoint.npz``) has done, read
    without loading its state; None when there is no file or it is not a readable jaxfwi checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["epochs_done"])
    except Exception:  # noqa: BLE001 - missing or damaged file: no progress to report
        return None


def _read(path) -> dict:
    """All arrays of the checkpoint file, or :class:`CheckpointError` naming the file."""
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError(f"not a .npz (zip) archive: {os.path.getsize(path)} bytes")
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        for k in ("meta", "epochs_done", "history_keys", "snapshot_epochs"):
            if k not in data:
                raise KeyError(f"no entry {k!r}")
        meta = json.loads(str(data["meta"]))
        json.loads(str(data["history_keys"]))
        int(data["epochs_done"])
        if not isinstance(meta, dict):
            raise ValueError("meta is not a record")
    except Exception as e:  # noqa: BLE001 - zipfile/numpy/json raise many kinds for a damaged file
        if "pickle" in str(e):  # numpy's advice for a non-array entry does not apply
            e = ValueError("an entry is not a plain array")
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a jaxfwi checkpoint ({type(e).__name__}: {e}); it cannot be "
            f"resumed: {_START_OVER}.") from None
    data["meta"] = meta
    return data


def load_checkpoint(directory, *, template_state, template_params, meta: Optional[dict] = None) -> Optional[dict]:
    """Read the checkpoint of ``directory`` (None if there is none).

    ``template_state`` / ``template_params`` give the tree structures, shapes and dtypes.
    With ``meta``, its ``"identity"`` must equal the stored one (else :class:`CheckpointError`
    listing the differing fields). Returns ``{"state", "epochs_done", "history",
    "snapshots", "meta"}`` with numpy leaves. A damaged file raises :class:`CheckpointError`.
    """
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        return None
    data = _read(path)
    saved_meta = data["meta"]
    if meta is not None:
        diff = diff_identity(saved_meta.get("identity", {}), json.loads(json.dumps(meta.get("identity", meta))))
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was written by another run; these settings differ (checkpoint -> now): "
                + "; ".join(diff) + f". {_START_OVER[0].upper()}{_START_OVER[1:]}.")

    def rebuild(template, prefix):
        leaves, treedef = jax.tree_util.tree_flatten(template)
        out = []
        for i, t in enumerate(leaves):
            name = f"{prefix}{i}"
            if name not in data:
                raise CheckpointError(f"checkpoint {path} lacks {name}: it does not match this model/optimizer; "
                                      f"{_START_OVER}.")
            a = data[name]
            if tuple(a.shape) != tuple(np.shape(t)) or a.dtype != np.asarray(t).dtype:
                raise CheckpointError(
                    f"checkpoint {path}: leaf {i} has shape {a.shape} dtype {a.dtype}, expected "
                    f"{tuple(np.shape(t))} {np.asarray(t).dtype}; it does not match this model/optimizer: "
                    f"{_START_OVER}."
                )
            out.append(a)
        return jax.tree_util.tree_unflatten(treedef, out)

    try:
        state = rebuild(template_state, "state_")
        epochs_done = int(data["epochs_done"])
        keys = json.loads(str(data["history_keys"]))
        history = []
        for e in range(epochs_done):
            history.append({k: data[f"history__{k}"][e] for k in keys})
        snapshots = []
        for j, e in enumerate(data["snapshot_epochs"].tolist()):
            snapshots.append((int(e), rebuild(template_params, f"snap_{j}_")))
    except CheckpointError:
        raise
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); {_START_OVER}.") from None
    return {"state": state, "epochs_done": epochs_done, "history": history, "snapshots": snapshots,
            "meta": saved_meta}
