"""Devito (``pip install devito``, its ``examples.seismic`` acoustic solver) on a propagator case of
``benchmarks/propagator.py``: forward of every shot, and the adjoint-state gradient of
``0.5 |d|^2`` (Devito keeps the forward wavefield). Run by ``propagator.py --devito-python PY``
in a separate interpreter (Devito is an optional benchmark peer, never a dependency); prints
one ``ROW {json}`` line. ``--shots i:j`` takes a slice of the shots (for the 2-process layout).

Devito steps at its own critical dt (``model.critical_dt``) over the same record length and
interpolates the receivers onto it; its damping layer is ``nbl`` cells (20 here, like ours).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", nargs=7, type=float, required=True, help="nz nx n_shots nt dt f0 dx")
    p.add_argument("--mode", default="forward", choices=["forward", "grad"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shots", default=None, help="i:j, a slice of the shots")
    a = p.parse_args()
    nz, nx, ns, nt = (int(x) for x in a.case[:4])
    dt, f0, dx = a.case[4:]
    from examples.seismic import AcquisitionGeometry, Model
    from examples.seismic.acoustic import AcousticWaveSolver

    vp = np.broadcast_to(np.linspace(1.5, 4.5, nz, dtype=np.float32)[None, :], (nx, nz)).copy()  # km/s, x first
    t_build = time.perf_counter()
    model = Model(origin=(0.0, 0.0), spacing=(dx, dx), shape=(nx, nz), space_order=8, vp=vp, nbl=20, bcs="damp")
    xs = np.round(np.linspace(0, nx - 1, ns)).astype(int) * dx
    lo, hi = (0, ns) if a.shots is None else (int(a.shots.split(":")[0]), int(a.shots.split(":")[1]))
    rec = np.stack([np.arange(nx) * dx, np.full(nx, dx)], axis=1)
    tn = (nt - 1) * dt * 1e3  # ms
    geoms = [AcquisitionGeometry(model, rec, np.array([[xs[i], dx]]), t0=0.0, tn=tn, f0=f0 * 1e-3, src_type="Ricker")
             for i in range(lo, hi)]
    solver = AcousticWaveSolver(model, geoms[0], space_order=8)
    setup_s = time.perf_counter() - t_build

    def once():
        for g in geoms:
            solver.geometry = g
            if a.mode == "forward":
                solver.forward(src=g.src)
            else:
                d, u, _ = solver.forward(src=g.src, save=True)
                solver.gradient(rec=d, u=u)

    t0 = time.perf_counter()
    once()
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    steps = geoms[0].nt
    print("ROW " + json.dumps(dict(code="devito", mode=a.mode, shots=hi - lo, steps=int(steps),
                                   dt_ms=float(model.critical_dt), compile_s=first - min(times),
                                   setup_s=setup_s, median_s=float(np.median(times)),
                                   peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)), flush=True)


if __name__ == "__main__":
    main()
