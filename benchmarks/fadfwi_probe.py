"""FAD-FWI training probe on the reduced FAD-FWI Overthrust case (one seed).

    python benchmarks/fadfwi_probe.py --norm none --lr 0.01       # the plain U-Net: diverges
    python benchmarks/fadfwi_probe.py --norm instance --lr 0.01   # the default U-Net: trains
    python benchmarks/fadfwi_probe.py --norm instance --lr 0.04   # lr x4, as the reproduction

The scenario is the one of block E of ``benchmarks/reproduce.py`` (Overthrust reduced by 4,
exact smoothed 1-D initial model, noise 0.5 sigma0, data missing below 2.5 Hz of the paper,
10-cell PML): it needs the Overthrust model (``JAXFWI_DATA``). Prints the model MSE
((km/s)^2) and the normalised data loss every 4 epochs.
"""
from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--norm", default="instance", choices=["instance", "none"], help="UNet normalisation")
    ap.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (FAD-FWI: 0.01)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--perturb", type=float, default=0.0, help="initial model scaled by 1 + perturb/100")
    ap.add_argument("--method", default="fad-fwi", help="fad-fwi, or adfwi for the grid reference")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from jaxfwi import metrics
    from jaxfwi.experiments import Scenario, observed_data, prepare
    from jaxfwi.experiments.runner import _invert_kwargs
    from jaxfwi.inversion import invert

    sc = Scenario(model="fadfwi_overthrust", reduce=4, acquisition={"pml_width": 10}, init="profile",
                  perturb=args.perturb, noise=0.5, highpass=2.5, method=args.method, epochs=args.epochs)
    st = prepare(sc)
    d, survey, _ = observed_data(st, [0])
    kw = _invert_kwargs(st, {})
    kw["learning_rate"] = args.lr
    if args.method == "fad-fwi":
        kw["norm"] = args.norm
    t0 = time.time()
    res = invert(d[0], survey, st.dx, st.v_init, method=args.method, epochs=args.epochs, key=jax.random.key(0),
                 v_true=st.v_true, progress=False, **kw)
    h = res.history
    print(f"{args.method} norm={args.norm} lr={args.lr:g} perturb={args.perturb:g}%: {time.time() - t0:.0f} s; "
          f"model MSE {float(metrics.mse(st.v_init, st.v_true)):.4f} -> {float(metrics.mse(res.velocity, st.v_true)):.4f}, "
          f"SSIM {float(metrics.ssim(res.velocity, st.v_true)):.3f}")
    print("MSE every 4 epochs:", np.round(np.asarray(h["mse"])[::4], 4))
    print("loss / first loss: ", np.round(np.asarray(h["loss"])[::4] / h["loss"][0], 3))


if __name__ == "__main__":
    main()
