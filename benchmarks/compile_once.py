"""XLA compilations of a first and a second ``jaxfwi.invert`` call (issue 14, "compile once").

The second call has the same shapes and settings but other observed data, another initial
model (with the same velocity range, so the same ``max_vel``) and another key. Counted with
``jax.monitoring``: backend compiles (number and seconds) and jaxpr -> MLIR lowerings.

    python benchmarks/compile_once.py                       # adfwi and ig-fwi, 30 x 60, 4 shots, 3 epochs
    python benchmarks/compile_once.py --methods adfwi --epochs 3

Run it without a persistent compilation cache (``JAX_COMPILATION_CACHE_DIR`` unset), else
cache hits hide backend compiles.
"""
from __future__ import annotations

import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=["adfwi", "ig-fwi"])
    ap.add_argument("--shape", type=int, nargs=2, default=(30, 60))
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    import jax
    import jax.monitoring
    import numpy as np

    import jaxfwi

    events = []
    jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: events.append((name, secs)))

    def counts(since):
        ev = events[since:]
        comp = [s for n, s in ev if n == "/jax/core/compile/backend_compile_duration"]
        low = [s for n, s in ev if n == "/jax/core/compile/jaxpr_to_mlir_module_duration"]
        return {"backend_compiles": len(comp), "backend_compile_s": round(sum(comp), 2), "lowerings": len(low)}

    nz, nx = args.shape
    dx, dt, nt = 20.0, 2e-3, 300
    z = np.linspace(0.0, 1.0, nz, dtype=np.float32)[:, None] * np.ones((1, nx), np.float32)
    v_true = (2000.0 + 1000.0 * z).astype(np.float32)
    v_true[nz // 2: nz // 2 + 4, nx // 3: 2 * nx // 3] += 300.0
    w = jaxfwi.ricker(10.0, nt, dt)
    survey = jaxfwi.Survey.surface_line((nz, nx), args.shots, w, dt)
    fwd = dict(accuracy=4, pml_width=10)
    d1 = np.asarray(jaxfwi.forward(v_true, dx, survey, **fwd))
    d2 = d1 + 1e-3 * np.std(d1) * np.random.default_rng(0).standard_normal(d1.shape).astype(np.float32)
    v1 = (2000.0 + 1000.0 * z).astype(np.float32)
    v2 = v1.copy()
    v2[1:-1, 1:-1] = 0.5 * (v1[1:-1, 1:-1] + v_true[1:-1, 1:-1])  # another model, the same min and max
    out = {}
    for m in args.methods:
        row = {}
        for label, d, v0, key in (("first", d1, v1, 0), ("second", d2, v2, 1)):
            n0 = len(events)
            t0 = time.perf_counter()
            res = jaxfwi.invert(d, survey, dx, v0, method=m, epochs=args.epochs, key=jax.random.key(key),
                                progress=False, **fwd)
            row[label] = {**counts(n0), "wall_s": round(time.perf_counter() - t0, 2),
                          "final_loss": float(res.history["loss"][-1])}
        out[m] = row
        print(m, json.dumps(row), flush=True)
    return out


if __name__ == "__main__":
    main()
