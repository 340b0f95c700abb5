"""How much the C-PML reflects, against width and accuracy, in 1-D, 2-D and 3-D.

Set-up (the one the physics issue measured deepwave with): a homogeneous model of
``N`` cells per axis at 5 m, 1500 m/s, a 25 Hz Ricker source at the centre, the
absorbing layer on every side; three receivers (one in 1-D). The reference is the
same source and receivers in a domain so large that nothing returns inside the
record. The reflection is ``||d_small - d_big|| / ||d_big||`` over all receivers.

    python benchmarks/pml_reflection.py                    # table + benchmarks/results/pml_reflection.json
    python benchmarks/pml_reflection.py --ndim 2 --widths 5 10
    python benchmarks/pml_reflection.py --code deepwave   # the same set-up with deepwave (torch + deepwave only)
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

VEL, DX, F0 = 1500.0, 5.0, 25.0

# per dimension: (cells per axis of the small model, time steps, dt in s)
SETUPS = {1: (40, 400, 0.0005), 2: (40, 400, 0.0005), 3: (24, 240, 0.0005)}


def _geometry(ndim, n):
    c = n // 2
    src = [c] * ndim
    if ndim == 1:
        recs = [[c + 8]]
    elif ndim == 2:
        recs = [[c, c + 8], [c - 8, c], [c + 6, c - 6]]
    else:
        recs = [[c, c, c + 6], [c - 6, c, c], [c + 4, c - 4, c]]
    return src, recs


def reference_and_small(ndim, accuracy, n=None, nt=None, dt=None):
    """``(run(width) -> data, reference data)`` for one dimension and accuracy."""
    import jax.numpy as jnp

    import jaxfwi

    n0, nt0, dt0 = SETUPS[ndim]
    n, nt, dt = n or n0, nt or nt0, dt or dt0
    src, recs = _geometry(ndim, n)
    wav = jaxfwi.ricker(F0, nt, dt)
    # the big domain: far enough that a wave leaving the small model's box and returning
    # from the big domain's edge arrives after the record ends
    off = int(np.ceil(VEL * nt * dt / DX / 2)) + 2
    big = jnp.full((n + 2 * off,) * ndim, VEL)
    sb = jaxfwi.Survey([[[p + off for p in src]]], [[[p + off for p in r] for r in recs]], wav, dt)
    ref = np.asarray(jaxfwi.forward(big, DX, sb, accuracy=accuracy, pml_width=0, substeps=1))
    small = jnp.full((n,) * ndim, VEL)
    ss = jaxfwi.Survey([[src]], [recs], wav, dt)

    def run(width):
        return np.asarray(jaxfwi.forward(small, DX, ss, accuracy=accuracy, pml_width=width, substeps=1))

    return run, ref


def deepwave_reference_and_small(ndim, accuracy):
    """As :func:`reference_and_small`, propagated by deepwave (needs ``torch`` and ``deepwave``)."""
    import deepwave
    import torch

    n, nt, dt = SETUPS[ndim]
    src, recs = _geometry(ndim, n)
    t = np.arange(nt) * dt - 1.5 / F0  # the same Ricker as jaxfwi.ricker (peak at 1.5 / f0)
    arg = (np.pi * F0 * t) ** 2
    wav = torch.tensor(((1 - 2 * arg) * np.exp(-arg))[None, None], dtype=torch.float32)
    off = int(np.ceil(VEL * nt * dt / DX / 2)) + 2

    def prop(size, shift, width):
        v = torch.full((size,) * ndim, VEL)
        s = torch.tensor([[[p + shift for p in src]]], dtype=torch.long)
        r = torch.tensor([[[p + shift for p in q] for q in recs]], dtype=torch.long)
        out = deepwave.scalar(v, DX, dt, source_amplitudes=wav, source_locations=s, receiver_locations=r,
                              accuracy=accuracy, pml_width=width, pml_freq=F0)
        return out[-1].numpy()

    return (lambda width: prop(n, 0, width)), prop(n + 2 * off, off, 0)


def reflection(run, ref, width):
    d = run(width)
    return float(np.linalg.norm(d - ref) / np.linalg.norm(ref))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ndim", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--accuracy", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--widths", type=int, nargs="+", default=[3, 5, 10, 20])
    p.add_argument("--code", choices=["jaxfwi", "deepwave"], default="jaxfwi")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/pml_reflection[_deepwave].json)")
    a = p.parse_args(argv)
    suffix = "" if a.code == "jaxfwi" else "_" + a.code
    a.out = a.out or os.path.join(os.path.dirname(__file__), "results", f"pml_reflection{suffix}.json")
    setup = reference_and_small if a.code == "jaxfwi" else deepwave_reference_and_small
    rows = []
    for nd in a.ndim:
        for acc in a.accuracy:
            run, ref = setup(nd, acc)
            for w in a.widths:
                t = time.perf_counter()
                r = reflection(run, ref, w)
                rows.append({"ndim": nd, "accuracy": acc, "width": w, "reflection": r})
                print(f"{a.code}  {nd}-D  acc {acc}  width {w:3d}  reflection {r:.2e}  ({time.perf_counter() - t:.1f} s)", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"code": a.code, "setup": {"vel": VEL, "dx": DX, "f0": F0, "setups": SETUPS}, "rows": rows}, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
