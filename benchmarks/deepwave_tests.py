"""deepwave's own direct-wave test, run with jaxfwi as the propagator (a thin adapter).

deepwave's ``tests/test_scalar.py::test_direct`` propagates two shots of two sources in a
constant 1500 m/s model (5 m cells, 25 Hz, dt 0.1 ms, ``max_vel`` 2000, a 20-cell PML on
every side) and compares the receivers with an analytic direct wave; the test passes when
the norm of the difference is below a threshold per accuracy order. This script imports
that module from a deepwave checkout (its code is not copied here) and runs ``run_direct``
with deepwave and with jaxfwi behind the same adapter, so both codes are judged by
deepwave's own numbers.

    python benchmarks/deepwave_tests.py --deepwave-tests /path/to/deepwave/tests

Needs ``torch`` and ``deepwave`` beside jaxfwi (the ``bench`` extra). Writes
``benchmarks/results/deepwave_direct.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

# deepwave test_direct's thresholds on ||expected - actual||, by number of dimensions and accuracy
THRESHOLDS = {1: {2: 315, 4: 35, 6: 10, 8: 8}, 2: {2: 16, 4: 1.48, 6: 0.22, 8: 0.048},
              3: {2: 1.4, 4: 0.5, 6: 0.2, 8: 0.04}}
SIZES = {1: ((50,), (5,)), 2: ((50, 50), (5, 5)), 3: ((10, 10, 10), (5, 5, 5))}


def jaxfwi_prop(model, dx, dt, source_amplitudes, source_locations, receiver_locations, prop_kwargs=None,
                pml_width=None, **_):
    """deepwave's ``scalarprop`` test signature, answered by :func:`jaxfwi.forward`.

    deepwave adds ``-v^2 dt^2 a`` to the source cell; jaxfwi adds ``v^2 dt^2 f / dV``, so
    ``f = -a dV``. Returns a 1-tuple ``(receivers [shot, receiver, nt],)``.
    """
    import jax.numpy as jnp
    import torch

    import jaxfwi

    kw = dict(prop_kwargs or {})
    accuracy = kw.get("accuracy", 4)
    width = pml_width if pml_width is not None else kw.get("pml_width", 20)
    dv = float(np.prod(dx))
    amp = -source_amplitudes.detach().cpu().numpy().astype(np.float32) * dv  # [shot, source, nt]
    n_shots, n_src, nt = amp.shape
    # a jaxfwi shot has one wavelet for all its sources: propagate each source as its own shot and
    # add the records (the wave equation is linear in the source)
    src = source_locations.cpu().numpy().reshape(n_shots * n_src, 1, -1)
    rec = np.repeat(receiver_locations.cpu().numpy(), n_src, axis=0)
    survey = jaxfwi.Survey(src, rec, amp.reshape(n_shots * n_src, nt), dt)
    d = jaxfwi.forward(jnp.asarray(model.detach().cpu().numpy()), list(dx), survey, accuracy=accuracy,
                       pml_width=width, max_vel=kw.get("max_vel"), pml_freq=kw.get("pml_freq", 25.0), substeps=1)
    d = np.asarray(d).reshape(n_shots, n_src, rec.shape[1], nt).sum(axis=1)
    return (torch.tensor(d),)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deepwave-tests", required=True, help="folder holding deepwave's test_scalar.py and test_utils.py")
    p.add_argument("--ndim", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--accuracy", type=int, nargs="+", default=[2, 4, 6, 8])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "deepwave_direct.json"))
    a = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(a.deepwave_tests))
    import deepwave
    import test_scalar as dw

    rows = []
    print(f"{'ndim':>4} {'acc':>3} {'threshold':>9} {'deepwave':>9} {'jaxfwi':>9}  pass")
    for nd in a.ndim:
        nx, dx = SIZES[nd]
        for acc in a.accuracy:
            out = {"ndim": nd, "accuracy": acc, "threshold": THRESHOLDS[nd][acc]}
            for code, prop in (("deepwave", dw.scalarprop), ("jaxfwi", jaxfwi_prop)):
                t = time.perf_counter()
                kw = {"accuracy": acc} if code == "deepwave" else {"accuracy": acc, "max_vel": 2000.0}
                try:
                    exp, act = dw.run_direct(nx=nx, dx=dx, propagator=prop, prop_kwargs=kw)
                except TypeError as e:  # the test module is from another deepwave release than the one installed
                    if code == "jaxfwi":
                        raise
                    out[code], out[code + "_error"] = float("nan"), str(e)
                    continue
                out[code] = float((exp - act.cpu()).flatten().norm())
                out[code + "_s"] = time.perf_counter() - t
            rows.append(out)
            print(f"{nd:>4} {acc:>3} {out['threshold']:>9.3g} {out['deepwave']:>9.4g} {out['jaxfwi']:>9.4g}  "
                  f"{'yes' if out['jaxfwi'] < out['threshold'] else 'NO'}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"deepwave": getattr(deepwave, "__version__", "?"), "rows": rows}, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
