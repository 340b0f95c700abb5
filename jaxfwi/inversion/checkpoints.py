"""Training checkpoints: one ``.npz`` file per run directory, written atomically.

A checkpoint holds everything needed to continue a run to exactly the result an
uninterrupted run gives: the leaves of the training state (params + optimizer
state, flattened in ``jax.tree_util`` order), the number of finished epochs, the
per-epoch history, parameter snapshots, and a JSON ``meta`` record (data shapes,
key, misfit, batching...) that is compared on resume so that a checkpoint is never
silently continued with different settings. The tree structure itself is not
stored: it is rebuilt from the freshly initialised state of the resuming run,
and every leaf's shape and dtype are checked against it.

The file is written to a temporary name and renamed (``os.replace``), so a run
killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np

__all__ = ["CHECKPOINT_NAME", "checkpoint_path", "save_checkpoint", "load_checkpoint", "to_host"]

CHECKPOINT_NAME = "checkpoint.npz"


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
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _diff_meta(saved: dict, current: dict) -> list[str]:
    out = []
    for k in sorted(set(saved) | set(current)):
        if saved.get(k) != current.get(k):
            out.append(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}")
    return out


def load_checkpoint(directory, *, template_state, template_params, meta: dict) -> Optional[dict]:
    """Read the checkpoint of ``directory`` (None if there is none).

    ``template_state`` / ``template_params`` give the tree structures, shapes and dtypes;
    ``meta`` must equal the stored one. Returns ``{"state", "epochs_done", "history",
    "snapshots"}`` with numpy leaves.
    """
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    saved_meta = json.loads(str(data["meta"]))
    diff = _diff_meta(saved_meta, json.loads(json.dumps(meta, sort_keys=True)))
    if diff:
        raise ValueError(
            f"checkpoint {path} was written by a run with other settings ({'; '.join(diff)}). "
            "Use another checkpoint_dir, delete the file, or pass resume=False to start over."
        )

    def rebuild(template, prefix):
        leaves, treedef = jax.tree_util.tree_flatten(template)
        out = []
        for i, t in enumerate(leaves):
            name = f"{prefix}{i}"
            if name not in data:
                raise ValueError(f"checkpoint {path} lacks {name}: it does not match this model/optimizer; "
                                 "use another checkpoint_dir or resume=False.")
            a = data[name]
            if tuple(a.shape) != tuple(np.shape(t)) or a.dtype != np.asarray(t).dtype:
                raise ValueError(
                    f"checkpoint {path}: leaf {i} has shape {a.shape} dtype {a.dtype}, expected "
                    f"{tuple(np.shape(t))} {np.asarray(t).dtype}; it does not match this model/optimizer "
                    "(use another checkpoint_dir or resume=False)."
                )
            out.append(a)
        return jax.tree_util.tree_unflatten(treedef, out)

    state = rebuild(template_state, "state_")
    epochs_done = int(data["epochs_done"])
    keys = json.loads(str(data["history_keys"]))
    history = []
    for e in range(epochs_done):
        history.append({k: data[f"history__{k}"][e] for k in keys})
    snapshots = []
    for j, e in enumerate(data["snapshot_epochs"].tolist()):
        snapshots.append((int(e), rebuild(template_params, f"snap_{j}_")))
    return {"state": state, "epochs_done": epochs_done, "history": history, "snapshots": snapshots}
