"""Shot-parallel execution over devices: a 1-D mesh over the shot axis.

Every device holds the (replicated) model, observed data and survey and runs the
shots of its slice of each mini-batch; the batch misfit is ``psum``-reduced over
the mesh inside :func:`jax.shard_map`, and differentiating through it gives the
all-reduced sum of the per-device gradients. The same program runs on one CPU,
several GPUs, or several hosts after ``jax.distributed.initialize()`` (then
``jax.devices()`` lists the devices of all processes).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["SHOT_AXIS", "shot_mesh", "replicate", "n_devices"]

SHOT_AXIS = "shots"


def shot_mesh(devices: Any = None) -> Optional[Mesh]:
    """A 1-D :class:`jax.sharding.Mesh` named ``"shots"``, or None for one device.

    Args:
      devices: None (all of ``jax.devices()``), an int ``k`` (the first ``k``), or a
        sequence of devices.
    """
    if devices is None:
        devs = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        all_devs = jax.devices()
        if not 1 <= int(devices) <= len(all_devs):
            raise ValueError(f"devices={devices}: choose between 1 and {len(all_devs)} (len(jax.devices())).")
        devs = all_devs[: int(devices)]
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("devices=[]: give at least one device (or None for all).")
    if len(devs) == 1:
        return None
    return Mesh(np.array(devs), (SHOT_AXIS,))


def n_devices(mesh: Optional[Mesh]) -> int:
    return 1 if mesh is None else int(mesh.devices.size)


def replicate(tree, mesh: Optional[Mesh]):
    """Place every array leaf of ``tree`` replicated on ``mesh`` (works across hosts when
    every process passes the same values); identity for ``mesh=None``."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        a = np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) and not x.is_fully_addressable \
            else np.asarray(x)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree_util.tree_map(put, tree)


def sharded_sum(local_fn, mesh: Optional[Mesh], sharded_argnums: Sequence[int], n_args: int):
    """Wrap ``local_fn(*args) -> scalar`` so that the args at ``sharded_argnums`` are split
    along their leading (shot) axis over ``mesh`` and the per-device results are summed.
    Identity for ``mesh=None``."""
    if mesh is None:
        return local_fn
    in_specs = tuple(P(SHOT_AXIS) if i in sharded_argnums else P() for i in range(n_args))

    def body(*args):
        return jax.lax.psum(local_fn(*args), SHOT_AXIS)

    # check_vma=False: the propagator's lax.scan starts from unvarying zeros and would need
    # pcast annotations for the varying-manual-axes checker; the psum makes the output
    # replicated and the gradient w.r.t. the replicated inputs is the all-reduced sum
    # (tested against one device).
    return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=P(), check_vma=False)
