#!/usr/bin/env python
"""Benchmarks of ``jaxfwi.kernels`` (not a test): prints tables, writes JSON.

Parts (``--parts``, comma separated; default ``width,decay,scale``):

* ``width``  (a) CR-FWI App. B.4, 1-D: Frobenius norm of the wave-based NTK at
  initialisation of the NTK-scaled shallow net (mean / std over seeds, vmapped) for
  growing widths, and the relative kernel change ``||Theta(tau)-Theta(0)||/||Theta(0)||``
  along short gradient-descent runs over several seeds.
* ``decay``  (b) normalised eigenvalue decay ``lam_i / lam_1`` of the wave-based NTK for
  grid (wave kernel), Siren (IFWI), HashGrid (MPE-FWI), Hybrid (IG-FWI) and LowRank
  (LR-FWI) on the 1-D problem and a small 2-D problem, with the papers' ordering check.
* ``decay-train``  (b') the same decay and ordering at the papers' protocol: each method is
  trained (``jaxfwi.invert``, the paper's Adam learning rates: grid 5 m/s, CR methods 1e-4)
  on data of the true trace / crop from the smoothed one, and its wave-based NTK is
  recomputed at the parameters after ``--decay-epochs`` (default 0, 100, 500) epochs.
* ``scale``  (c) the largest wave-based NTK we materialise (and its time), and top-k
  eigenpairs by matrix-free Lanczos on a large 2-D problem (target: Marmousi 94 x 288).

The velocity model is ``--model`` (default ``/work/shared/data/marmousi/marmousi_94x288.npy``,
15 m) if the file exists, else a synthetic layered 94 x 288 model; the 1-D trace is
column ``--column`` (144).  Results are merged into ``--out``
(default ``benchmarks/out/kernels.json``), one key per part and size preset.

Examples::

    python benchmarks/kernels.py --quick                       # everything, small (~ minutes)
    python benchmarks/kernels.py --parts width                 # (a) full size
    python benchmarks/kernels.py --parts decay
    python benchmarks/kernels.py --parts decay-train --out benchmarks/results/kernels_decay_trained.json
    python benchmarks/kernels.py --parts scale --scale-shots 13 --scale-nt 1000 --scale-budget 540
    python benchmarks/kernels.py --parts scale --scale-parts lanczos --scale-shots 13 --scale-nt 1000 \
        --scale-checkpoint store --scale-budget 1140      # issue 15 item 5: the full 13-shot preset
    python benchmarks/kernels.py --parts scale --scale-parts lanczos --scale-method ig-fwi ...  # the same for IG-FWI
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")  # CoarseGrid / Substep warnings of the propagator

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxfwi  # noqa: E402
import jaxfwi.kernels as K  # noqa: E402

DEFAULT_MODEL = "/work/shared/data/marmousi/marmousi_94x288.npy"
DX, DT, FREQ = 15.0, 1.9e-3, 8.0
DECAY_METHODS = (("grid", "adfwi"), ("Siren", "ifwi"), ("HashGrid", "mpe-fwi"),
                 ("Hybrid", "ig-fwi"), ("LowRank", "lr-fwi"))


# ----------------------------------------------------------------------------- utilities
def log(*a):
    print(*a, flush=True)


def table(rows, cols, title=None):
    if title:
        log(f"\n{title}")
    fmt = []
    for c in cols:
        vals = [r.get(c, "") for r in rows]
        strs = [_fmt(v) for v in vals]
        fmt.append(max(len(c), *(len(s) for s in strs)) if strs else len(c))
    log("  ".join(c.rjust(w) for c, w in zip(cols, fmt)))
    for r in rows:
        log("  ".join(_fmt(r.get(c, "")).rjust(w) for c, w in zip(cols, fmt)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if (abs(v) >= 1e-3 or v == 0) else f"{v:.3e}"
    return str(v)


def synthetic_model(nz=94, nx=288, seed=0):
    """A layered, gently folded stand-in for Marmousi (m/s, 1500-5500, water on top)."""
    rng = np.random.default_rng(seed)
    z = np.arange(nz)[:, None].astype(float)
    x = np.arange(nx)[None, :].astype(float)
    v = np.full((nz, nx), 1500.0)
    n_layers = 14
    depths = np.sort(rng.uniform(6, nz - 3, n_layers))
    vels = np.linspace(1650.0, 4700.0, n_layers) + rng.uniform(-300, 300, n_layers)
    for d, vl in zip(depths, vels):
        wl = nx * rng.uniform(0.4, 1.2)
        iface = d + 3.0 * np.sin(2 * np.pi * x / wl + rng.uniform(0, 2 * np.pi)) + 0.04 * (x - nx / 2)
        v = np.where(z >= iface, vl, v)
    v[:6] = 1500.0
    return np.clip(v, 1500.0, 5500.0).astype(np.float32)


def load_model(path):
    if path and os.path.exists(path):
        return np.load(path).astype(np.float32), f"file:{path}"
    return synthetic_model(), "synthetic layered 94x288 (model file not found)"


def smooth(v, sigma):
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(np.asarray(v, np.float64), sigma, mode="nearest").astype(np.float32)


def survey_1d(nt):
    return jaxfwi.Survey([[[1]]], [[[1]]], jaxfwi.ricker(FREQ, nt, DT), DT)


def survey_2d(shape, n_shots, rec_spacing, nt):
    return jaxfwi.Survey.surface_line(shape, n_shots, jaxfwi.ricker(FREQ, nt, DT), DT,
                                      src_first=shape[1] // (2 * n_shots) if n_shots > 1 else shape[1] // 2,
                                      src_spacing=max(1, shape[1] // n_shots) if n_shots > 1 else None,
                                      rec_spacing=rec_spacing)


def merge_json(path, key, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
    data[key] = value
    data.setdefault("_meta", {})
    data["_meta"].update({"jax": jax.__version__, "backend": jax.default_backend(),
                          "devices": str(jax.devices()), "updated": time.strftime("%Y-%m-%d %H:%M:%S")})
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    return str(o)


# ----------------------------------------------------------------------------- (a) width study
def part_width(args, model, source):
    nt = args.nt or (400 if args.quick else 1000)
    trace = model[:, args.column]
    v_true = jnp.asarray(trace)
    v_init = jnp.asarray(smooth(trace, args.smooth))
    survey = survey_1d(nt)
    max_vel = 1.2 * float(trace.max())
    G = K.make_forward(survey, DX, max_vel=max_vel, accuracy=args.accuracy, pml_width=20)
    n_model, n_data = trace.size, nt
    widths = [int(w) for w in args.widths.split(",")] if args.widths else (
        [10, 100, 1000] if args.quick else [10, 100, 1000, 10_000, 100_000])
    n_seeds = args.seeds
    keys = jax.random.split(jax.random.key(args.seed), n_seeds)
    log(f"\n(a) 1-D NTK study: trace col {args.column} of {source}; nz={n_model}, dx={DX} m, "
        f"{FREQ} Hz Ricker, dt={DT * 1e3} ms, nt={nt}; v = smooth(trace) + {args.scale} m/s * f_theta; "
        f"activation {args.activation}; {n_seeds} seeds (vmapped)")

    rows = []
    t_part = time.time()
    for W in widths:
        par = K.ShallowNTKVelocity(v_init, W, scale=args.scale, activation=args.activation)
        # memory: (seeds in a batch) x (products per chunk) x n_model x W activations
        chunk = int(max(1, min(32, 4e7 // (n_model * W))))
        seed_batch = int(max(1, min(n_seeds, 1e8 // (chunk * n_model * W + n_model * n_data))))

        def norms(p, par=par, chunk=chunk):
            m = par.velocity(p)
            Jm = K.wave_jacobian(G, m, mode="fwd", chunk=32)
            Kt = K.representation_ntk(par.velocity, p, chunk=chunk)
            KH = Kt @ (Jm.T @ Jm)
            # ||J K J^T||_F^2 = tr(K H K H), H = J^T J  (no data x data matrix)
            return jnp.sqrt(jnp.sum(KH * KH.T)), K.frobenius_norm(Kt)

        f = jax.jit(lambda ks, norms=norms, par=par, sb=seed_batch:
                    jax.lax.map(lambda k: norms(par.init(k)), ks, batch_size=sb))
        t0 = time.time()
        th, kt = f(keys)
        th, kt = np.asarray(th, np.float64), np.asarray(kt, np.float64)
        dt_w = time.time() - t0
        row = {"width": W, "n_params": 3 * W, "theta_F_mean": th.mean(), "theta_F_std": th.std(),
               "theta_F_rel_std": th.std() / th.mean(), "K_F_mean": kt.mean(),
               "K_F_rel_std": kt.std() / kt.mean(), "seconds": dt_w, "seed_batch": seed_batch,
               "theta_F_values": th.tolist()}
        rows.append(row)
        log(f"  width {W:>7d}: ||Theta||_F = {th.mean():.4e} +- {th.std():.3e} (rel {th.std() / th.mean():.3f}); "
            f"||K_theta||_F rel std {kt.std() / kt.mean():.4f}  [{dt_w:.1f} s]")
        spent = time.time() - t_part
        if W != widths[-1] and spent + dt_w * 12 > args.width_budget:
            log(f"  stopping the width sweep: next width would exceed --width-budget={args.width_budget} s")
            break
    table(rows, ["width", "n_params", "theta_F_mean", "theta_F_std", "theta_F_rel_std", "K_F_rel_std", "seconds"],
          "(a1) ||Theta||_F at initialisation over seeds (NTK-scaled shallow net)")

    # ---- relative kernel change during training (gradient descent) -------------------
    if args.skip_train:
        return {"setup": {"source": source, "column": args.column, "nz": n_model, "nt": nt, "dx": DX, "dt": DT,
                          "freq": FREQ, "scale_m_per_s": args.scale, "activation": args.activation,
                          "smooth_sigma_cells": args.smooth, "accuracy": args.accuracy, "seeds": n_seeds},
                "init_norms": rows}
    train_widths = [int(w) for w in args.train_widths.split(",")] if args.train_widths else (
        [100, 1000] if args.quick else [100, 1000, 10_000])
    steps = args.train_steps or (40 if args.quick else 200)
    n_check = 4
    seg = max(1, steps // n_check)
    n_tr = args.train_seeds or (3 if args.quick else 5)
    d_obs = G(v_true)
    dnorm = float(jnp.sum(d_obs ** 2))
    tkeys = jax.random.split(jax.random.key(args.seed + 1), n_tr)
    trows = []
    for W in train_widths:
        par = K.ShallowNTKVelocity(v_init, W, scale=args.scale, activation=args.activation)
        chunk = int(max(1, min(32, 4e7 // (n_model * W))))

        def theta(p, par=par, chunk=chunk):
            m = par.velocity(p)
            Jm = K.wave_jacobian(G, m, mode="fwd", chunk=32)
            Kt = K.representation_ntk(par.velocity, p, chunk=chunk)
            return Jm @ Kt @ Jm.T

        def loss(p, par=par):
            r = G(par.velocity(p)) - d_obs
            return 0.5 * jnp.sum(r ** 2) / dnorm

        def run(key, par=par, theta=theta, loss=loss):
            p = par.init(key)
            T0 = theta(p)
            lam1 = jnp.linalg.eigvalsh(T0)[-1] / dnorm
            lr = args.eta / lam1  # gradient descent, stable for eta < 2

            def body(p, _):
                g = jax.grad(loss)(p)
                return jax.tree.map(lambda a, b: a - lr * b, p, g), None

            changes, losses = [], [loss(p)]
            for _ in range(n_check):
                p, _ = jax.lax.scan(body, p, None, length=seg)
                changes.append(K.relative_kernel_change(T0, theta(p)))
                losses.append(loss(p))
            return jnp.stack(changes), jnp.stack(losses), lam1

        f = jax.jit(lambda ks, run=run: jax.lax.map(run, ks, batch_size=1 if W >= 10_000 else len(ks)))
        t0 = time.time()
        ch, ls, lam1 = (np.asarray(a, np.float64) for a in f(tkeys))
        dt_w = time.time() - t0
        row = {"width": W, "steps": seg * n_check, "rel_change_final_mean": ch[:, -1].mean(),
               "rel_change_final_std": ch[:, -1].std(), "rel_change_min": ch[:, -1].min(),
               "loss_ratio_mean": (ls[:, -1] / ls[:, 0]).mean(), "seconds": dt_w,
               "rel_change_curve_mean": ch.mean(0).tolist(), "loss_curve_mean": ls.mean(0).tolist(),
               "check_steps": [seg * (i + 1) for i in range(n_check)]}
        trows.append(row)
        log(f"  train width {W:>6d}: rel change {ch[:, -1].mean():.4f} +- {ch[:, -1].std():.4f} after "
            f"{seg * n_check} GD steps (lr = {args.eta}/lam_1), loss ratio {row['loss_ratio_mean']:.3f} [{dt_w:.1f} s]")
    table(trows, ["width", "steps", "rel_change_final_mean", "rel_change_final_std", "rel_change_min",
                  "loss_ratio_mean", "seconds"],
          f"(a2) ||Theta(tau)-Theta(0)||_F/||Theta(0)||_F over {n_tr} seeds")
    return {"setup": {"source": source, "column": args.column, "nz": n_model, "nt": nt, "dx": DX, "dt": DT,
                      "freq": FREQ, "scale_m_per_s": args.scale, "activation": args.activation,
                      "smooth_sigma_cells": args.smooth, "accuracy": args.accuracy, "seeds": n_seeds,
                      "train_seeds": n_tr, "eta": args.eta},
            "init_norms": rows, "training": trows}


# ----------------------------------------------------------------------------- (b) decay
def _decay_row(method, lam, n_par, seconds):
    lam = np.asarray(lam, np.float64)
    r = lam / lam[0]
    row = {"method": method, "n_params": n_par, "lam_1": lam[0], "seconds": seconds,
           "idx<1e-2": K.decay_index(lam, 1e-2), "idx<1e-3": K.decay_index(lam, 1e-3),
           "idx<1e-4": K.decay_index(lam, 1e-4), "eff_rank": float(lam.sum() / lam[0]),
           # the same without the leading mode (lam_i / lam_2): separates a dominant near-constant
           # mode (HashGrid at init) from the decay of the rest
           "tail_idx<1e-3": 1 + K.decay_index(lam[1:], 1e-3)}
    for i in (1, 5, 10, 20, 50, 100):
        if i < r.size:
            row[f"r@{i}"] = float(r[i])
    row["curve"] = r[: min(r.size, 400)].tolist()
    return row


def _decay_rows(problem_name, v_init, survey, fw, subsample, args):
    rows = {}
    for label, method in DECAY_METHODS:
        t0 = time.time()
        try:
            lam = K.eigenvalues(method, v_init, survey, DX, key=jax.random.key(args.seed),
                                subsample=subsample, full=False, **fw)
        except Exception as e:  # report and go on
            log(f"  {label:9s} ({method}): FAILED {type(e).__name__}: {e}")
            rows[label] = {"method": method, "error": f"{type(e).__name__}: {e}"}
            continue
        from jaxfwi import models
        par = models.build(method, v_init)
        n_par = models.count_params(jax.eval_shape(par.init, jax.random.key(0)))
        row = _decay_row(method, lam, n_par, time.time() - t0)
        rows[label] = row
        log(f"  {label:9s} ({method:7s}): idx<1e-3 = {row['idx<1e-3']:4d}, eff. rank {row['eff_rank']:.2f}, "
            f"n_params {n_par} [{row['seconds']:.1f} s]")
    ok = [lbl for lbl in rows if "error" not in rows[lbl]]
    table([dict(name=lbl, **{k: v for k, v in rows[lbl].items() if k != "curve"}) for lbl in ok],
          ["name", "n_params", "lam_1", "r@1", "r@5", "r@10", "r@20", "r@50", "idx<1e-2", "idx<1e-3",
           "idx<1e-4", "tail_idx<1e-3", "eff_rank", "seconds"], f"(b) normalised eigenvalue decay, {problem_name}")
    return rows


def _ordering(rows, key="idx<1e-3"):
    """The papers' ordering (slowest decay first): grid > HashGrid > Hybrid > Siren; LowRank moderate."""
    def idx(n):
        return rows.get(n, {}).get(key)
    checks = {}
    for slow, fast in (("grid", "HashGrid"), ("HashGrid", "Hybrid"), ("Hybrid", "Siren"),
                       ("grid", "Siren"), ("grid", "LowRank")):
        a, b = idx(slow), idx(fast)
        checks[f"{slow} slower than {fast}"] = None if a is None or b is None else bool(a > b)
    got = sorted([n for n in rows if idx(n) is not None], key=lambda n: -idx(n))
    core = [v for c, v in checks.items() if "LowRank" not in c]
    return {"by": key, "observed_slowest_to_fastest": got, "checks": checks,
            "paper_order": ["grid", "HashGrid", "Hybrid", "Siren"],
            "holds": bool(all(core)) if None not in core else None}


def part_decay(args, model, source):
    out = {}
    dims = [d.strip() for d in args.decay_dims.split(",")]
    nt1 = args.nt or (400 if args.quick else 1000)
    trace = model[:, args.column]
    if "1d" in dims:
        _decay_1d(args, out, trace, nt1, source)
    if "2d" in dims:
        _decay_2d(args, out, model, source)
    for name in out:
        for which in ("ordering", "ordering_tail"):
            o = out[name][which]
            log(f"  {which} {name} (by {o['by']}), slowest -> fastest decay: "
                f"{' > '.join(o['observed_slowest_to_fastest'])}; paper: grid > HashGrid > Hybrid > Siren; "
                f"holds: {o['holds']}; checks: {o['checks']}")
    return out


def _decay_1d(args, out, trace, nt1, source):
    v1 = jnp.asarray(smooth(trace, args.smooth))
    fw1 = dict(accuracy=args.accuracy, pml_width=20)
    log(f"\n(b) eigenvalue decay, 1-D: nz={trace.size}, nt={nt1}, 1 shot, 1 receiver (surface), init = smooth trace")
    rows1 = _decay_rows("1-D trace", v1, survey_1d(nt1), fw1, None, args)
    out["1d"] = {"setup": {"nz": int(trace.size), "nt": nt1, "source": source}, "rows": rows1,
                 "ordering": _ordering(rows1), "ordering_tail": _ordering(rows1, "tail_idx<1e-3")}


def _decay_2d(args, out, model, source):
    nz2, nx2 = (int(s) for s in (args.decay2d_shape or ("16x40" if args.quick else "24x64")).split("x"))
    c0 = max(0, min(model.shape[1] - nx2, args.column - nx2 // 2))
    v2 = jnp.asarray(smooth(model[:nz2, c0:c0 + nx2], args.smooth))
    nt2 = args.decay2d_nt or (300 if args.quick else 500)
    ns2 = 2
    survey2 = survey_2d((nz2, nx2), ns2, 2, nt2)
    fw2 = dict(accuracy=args.accuracy, pml_width=20, free_surface=True)
    sub = K.DataSubsample(time_step=2)
    log(f"\n(b) eigenvalue decay, 2-D: {nz2}x{nx2} crop (cols {c0}:{c0 + nx2}) of {source}, smoothed; "
        f"{ns2} shots, {survey2.n_receivers} receivers, nt={nt2} (every 2nd sample kept), free surface")
    rows2 = _decay_rows(f"2-D {nz2}x{nx2}", v2, survey2, fw2, sub, args)
    out["2d"] = {"setup": {"shape": [nz2, nx2], "cols": [c0, c0 + nx2], "shots": ns2,
                           "receivers": survey2.n_receivers, "nt": nt2, "time_step": 2}, "rows": rows2,
                 "ordering": _ordering(rows2), "ordering_tail": _ordering(rows2, "tail_idx<1e-3")}


# ----------------------------------------------------------------------------- (b') decay along training
def _trained_decay_rows(problem_name, v_true, v_init, survey, fw, subsample, epochs_list, args):
    """Train every DECAY_METHODS method for max(epochs_list) epochs on data of ``v_true`` from
    ``v_init`` and return ``{epoch: rows}`` of the decay at the snapshot params of each epoch."""
    from math import gcd
    from functools import reduce
    from jaxfwi import models
    d_obs = jaxfwi.forward(jnp.asarray(v_true), DX, survey, **fw)
    n_ep = max(epochs_list)
    every = reduce(gcd, [e for e in epochs_list if e > 0], 0) or 1
    per_epoch = {e: {} for e in epochs_list}
    for label, method in DECAY_METHODS:
        t0 = time.time()
        try:
            res = jaxfwi.invert(d_obs, survey, DX, jnp.asarray(v_init), method=method, epochs=n_ep,
                                key=jax.random.key(args.seed), snapshot_params_every=every, progress=False,
                                v_true=jnp.asarray(v_true), **fw)
        except Exception as e:  # report and go on
            log(f"  {label:9s} ({method}): training FAILED {type(e).__name__}: {e}")
            for ep in epochs_list:
                per_epoch[ep][label] = {"method": method, "error": f"{type(e).__name__}: {e}"}
            continue
        t_train = time.time() - t0
        snaps = dict(res.snapshots)
        mse = np.asarray(res.history.get("mse", []), np.float64)
        par = res.param  # the parameterisation invert built (no second build)
        n_par = models.count_params(snaps[0])
        for ep in epochs_list:
            t1 = time.time()
            lam = K.eigenvalues(method, jnp.asarray(v_init), survey, DX, params=snaps[ep],
                                subsample=subsample, full=False, **fw)
            row = _decay_row(method, lam, n_par, time.time() - t1)
            row["train_seconds"] = t_train
            v_ep = np.asarray(par.velocity(snaps[ep]))
            row["model_mse_km2s2"] = float(np.mean(((v_ep - np.asarray(v_true)) / 1000.0) ** 2))
            row["moved_rms_m_s"] = float(np.sqrt(np.mean((v_ep - np.asarray(v_init)) ** 2)))
            if ep > 0 and mse.size >= ep:
                row["history_mse"] = float(mse[ep - 1])
            per_epoch[ep][label] = row
            log(f"  {label:9s} ({method:7s}) epoch {ep:4d}: idx<1e-3 = {row['idx<1e-3']:4d}, tail {row['tail_idx<1e-3']:4d}, "
                f"eff. rank {row['eff_rank']:.2f}, model MSE {row['model_mse_km2s2']:.4f}, moved {row['moved_rms_m_s']:.1f} m/s "
                f"[train {t_train:.0f} s, kernel {row['seconds']:.1f} s]")
    out = {}
    for ep in epochs_list:
        rows = per_epoch[ep]
        ok = [lbl for lbl in rows if "error" not in rows[lbl]]
        table([dict(name=lbl, **{k: v for k, v in rows[lbl].items() if k != "curve"}) for lbl in ok],
              ["name", "n_params", "model_mse_km2s2", "moved_rms_m_s", "r@5", "r@20", "r@50", "idx<1e-2",
               "idx<1e-3", "idx<1e-4", "tail_idx<1e-3", "eff_rank"],
              f"(b') normalised eigenvalue decay after {ep} training epochs, {problem_name}")
        out[f"epoch{ep}"] = {"rows": rows, "ordering": _ordering(rows),
                             "ordering_tail": _ordering(rows, "tail_idx<1e-3")}
    return out


def part_decay_train(args, model, source):
    epochs_list = sorted({int(e) for e in args.decay_epochs.split(",")})
    dims = [d.strip() for d in args.decay_dims.split(",")]
    out = {"epochs": epochs_list, "learning_rates": "method defaults (the papers'): grid 5 m/s, CR 1e-4",
           "seed": args.seed}
    if "1d" in dims:
        nt1 = args.nt or (400 if args.quick else 1000)
        trace = model[:, args.column]
        v1 = smooth(trace, args.smooth)
        log(f"\n(b') decay along training, 1-D: nz={trace.size}, nt={nt1}, trained on the true trace's data")
        out["1d"] = {"setup": {"nz": int(trace.size), "nt": nt1, "source": source},
                     **_trained_decay_rows("1-D trace", trace, v1, survey_1d(nt1), dict(accuracy=args.accuracy, pml_width=20),
                                           None, epochs_list, args)}
    if "2d" in dims:
        nz2, nx2 = (int(s) for s in (args.decay2d_shape or ("16x40" if args.quick else "24x64")).split("x"))
        c0 = max(0, min(model.shape[1] - nx2, args.column - nx2 // 2))
        v_true2 = model[:nz2, c0:c0 + nx2]
        v2 = smooth(v_true2, args.smooth)
        nt2 = args.decay2d_nt or (300 if args.quick else 500)
        survey2 = survey_2d((nz2, nx2), 2, 2, nt2)
        log(f"\n(b') decay along training, 2-D: {nz2}x{nx2} crop (cols {c0}:{c0 + nx2}), 2 shots, "
            f"{survey2.n_receivers} receivers, nt={nt2} (every 2nd sample in the kernel), free surface")
        out["2d"] = {"setup": {"shape": [nz2, nx2], "cols": [c0, c0 + nx2], "shots": 2,
                               "receivers": survey2.n_receivers, "nt": nt2, "time_step": 2},
                     **_trained_decay_rows(f"2-D {nz2}x{nx2}", v_true2, v2, survey2,
                                           dict(accuracy=args.accuracy, pml_width=20, free_surface=True),
                                           K.DataSubsample(time_step=2), epochs_list, args)}
    for dim in ("1d", "2d"):
        for ep in epochs_list:
            if dim in out:
                o = out[dim][f"epoch{ep}"]["ordering"]
                log(f"  {dim} epoch {ep}: slowest -> fastest {' > '.join(o['observed_slowest_to_fastest'])}; "
                    f"paper grid > HashGrid > Hybrid > Siren holds: {o['holds']}")
    return out


# ----------------------------------------------------------------------------- (c) scale
def part_scale(args, model, source):
    out = {}
    which = [w.strip() for w in args.scale_parts.split(",")]
    if "mat" in which:
        out["materialised"] = _scale_materialised(args, model, source)
    if "lanczos" in which:
        out["matrix_free"] = _scale_lanczos(args, model, source)
    return out


def _scale_materialised(args, model, source):
    # (c1) largest materialised wave-based NTK (data x data), IFWI (Siren) on a 2-D crop
    nz, nx = (int(s) for s in (args.mat_shape or ("16x40" if args.quick else "24x64")).split("x"))
    c0 = max(0, min(model.shape[1] - nx, args.column - nx // 2))
    v = jnp.asarray(smooth(model[:nz, c0:c0 + nx], args.smooth))
    nt = args.mat_nt or (300 if args.quick else 500)
    survey = survey_2d((nz, nx), 2, 2, nt)
    sub = K.DataSubsample(time_step=args.mat_time_step)
    fw = dict(accuracy=args.accuracy, pml_width=20, free_surface=True)
    G, rep, params, v0 = K.method_problem("ifwi", v, survey, DX, key=jax.random.key(args.seed), **fw)
    log(f"\n(c1) materialised wave-based NTK of IFWI: {nz}x{nx}, 2 shots x {survey.n_receivers} receivers, "
        f"nt={nt}, time_step={args.mat_time_step}")
    t0 = time.time()
    Jm = K.wave_jacobian(G, v0, subsample=sub, chunk=args.chunk)
    Jm.block_until_ready()
    t_jm = time.time() - t0
    t0 = time.time()
    Kt = K.representation_ntk(rep, params, chunk=args.chunk)
    Kt.block_until_ready()
    t_k = time.time() - t0
    t0 = time.time()
    Th = (Jm @ Kt) @ Jm.T
    Th.block_until_ready()
    t_p = time.time() - t0
    n_data, n_model = Jm.shape
    # spectrum through the factor B = J_m K^{1/2} (svd, cheap) ; dense eigh only if small
    t0 = time.time()
    w, U = K.eigh_desc(Kt)
    lam = K.eigenvalues_from_factor(Jm @ (U * jnp.sqrt(jnp.clip(w, 0.0, None))), n_data)
    lam.block_until_ready()
    t_svd = time.time() - t0
    t_e = None
    if n_data <= args.mat_eigh_max:
        t0 = time.time()
        lam_e = K.eigvalsh_desc(Th)
        lam_e.block_until_ready()
        t_e = time.time() - t0
    c1 = {"shape": [nz, nx], "n_model": n_model, "n_data": n_data, "n_params": int(
        ravel_pytree(params)[0].size), "gb": Th.size * Th.dtype.itemsize / 1e9,
        "s_Jm": t_jm, "s_Ktheta": t_k, "s_product": t_p, "s_total": t_jm + t_k + t_p,
        "s_eig_factor_svd": t_svd, "s_eigh_dense": t_e,
        "lam_top5": np.asarray(lam[:5]).tolist(), "idx<1e-3": K.decay_index(np.asarray(lam), 1e-3)}
    del Th
    table([c1], ["shape", "n_model", "n_data", "n_params", "gb", "s_Jm", "s_Ktheta", "s_product", "s_total",
                 "s_eig_factor_svd", "s_eigh_dense"],
          "(c1) largest materialised wave-based NTK (float32)")
    return c1


def _scale_lanczos(args, model, source):

    # (c2) matrix-free top-k of the wave kernel on a large 2-D model, in model space (J^T J)
    nz, nx = model.shape if not args.scale_shape else tuple(int(s) for s in args.scale_shape.split("x"))
    vbig = jnp.asarray(smooth(model[:nz, :nx], args.smooth))
    ns = args.scale_shots or (2 if args.quick else 13)
    ntb = args.scale_nt or (300 if args.quick else 1000)
    k = args.scale_k
    survey = jaxfwi.Survey.surface_line((nz, nx), ns, jaxfwi.ricker(FREQ, ntb, DT), DT)
    fk = dict(accuracy=args.accuracy, pml_width=20, free_surface=True, checkpoint=args.scale_checkpoint)
    method = args.scale_method
    if method in K.GRID_METHODS:
        G = K.make_forward(survey, DX, max_vel=float(vbig.max()), **fk)
        cm = K.ComposedMap(G, None, vbig)
        n, mv, what = cm.n_model, jax.jit(cm.gn), "wave kernel (grid) via J_m^T J_m in model space"
    else:  # the wave-based NTK's nonzero spectrum is that of J_theta^T J_theta (parameter space)
        G, rep, point, _ = K.method_problem(method, vbig, survey, DX, key=jax.random.key(args.seed), **fk)
        cm = K.ComposedMap(G, rep, point)
        n, mv, what = cm.n_theta, jax.jit(cm.pgram), f"wave-based NTK of {method} via J_theta^T J_theta"
    log(f"\n(c2) matrix-free Lanczos, {what}: {nz}x{nx}, {ns} shots x "
        f"{survey.n_receivers} receivers, nt={ntb} (n={n}, n_model={cm.n_model}, n_data={cm.n_data}); k={k}, "
        f"budget {args.scale_budget} s")
    t0 = time.time()
    mv(jnp.ones(n)).block_until_ready()
    t_first = time.time() - t0
    t0 = time.time()
    mv(jnp.ones(n)).block_until_ready()
    t_mv = time.time() - t0
    log(f"  one J^T J product: {t_mv:.2f} s (first call incl. compile {t_first:.1f} s)")
    t0 = time.time()
    res = K.lanczos(mv, n, k, key=jax.random.key(args.seed), max_iter=args.scale_iters,
                    tol=1e-6, residuals="estimate", max_time=args.scale_budget, verbose=True, jit=False)
    t_l = time.time() - t0
    rel = res.residuals / res.values[0]
    c2 = {"method": method, "n": n, "shape": [nz, nx], "shots": ns, "checkpoint": args.scale_checkpoint, "nt": ntb, "n_model": cm.n_model, "n_data": cm.n_data, "k": k,
          "k_returned": int(res.values.size), "matvecs": res.num_matvecs, "s_matvec": t_mv,
          "s_lanczos": t_l, "converged_1e-3": int(np.sum(rel < 1e-3)), "converged_1e-6": int(np.sum(rel < 1e-6)),
          "lam_top5": res.values[:5].tolist(), "ratio@k-1": float(res.values[-1] / res.values[0]),
          "max_rel_residual": float(rel.max()), "values": res.values.tolist(), "rel_residuals": rel.tolist()}
    table([c2], ["method", "n", "shape", "shots", "nt", "n_model", "n_data", "k_returned", "matvecs", "s_matvec", "s_lanczos",
                 "converged_1e-3", "converged_1e-6", "ratio@k-1", "max_rel_residual"],
          "(c2) top-k eigenpairs, matrix-free Lanczos (full reorthogonalisation)")
    return c2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="width,decay,scale")
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="velocity .npy [nz, nx] at 15 m (optional)")
    ap.add_argument("--column", type=int, default=144)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "kernels.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None, help="JSON key suffix (default 'quick' or 'full')")
    ap.add_argument("--accuracy", type=int, default=8)
    ap.add_argument("--smooth", type=float, default=6.0, help="Gaussian smoothing (cells) of the initial model")
    ap.add_argument("--nt", type=int, default=None, help="1-D samples (default 1000, quick 400)")
    ap.add_argument("--chunk", type=int, default=32)
    # (a)
    ap.add_argument("--widths", default=None, help="comma list (default 10,...,100000; quick 10,100,1000)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--scale", type=float, default=1000.0,
                    help="m/s per unit of the shallow net output (CR-FWI denormalisation: 1000)")
    ap.add_argument("--activation", default="tanh", choices=["tanh", "relu"])
    ap.add_argument("--width-budget", type=float, default=300.0, help="seconds for the width sweep")
    ap.add_argument("--train-widths", default=None)
    ap.add_argument("--train-seeds", type=int, default=None)
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--skip-train", action="store_true", help="(a): only the norms at initialisation")
    ap.add_argument("--eta", type=float, default=1.0, help="GD step in units of 1/lam_1 of the normalised NTK")
    # (b)
    ap.add_argument("--decay-dims", default="1d,2d", help="which decay problems: 1d, 2d or both")
    ap.add_argument("--decay2d-shape", default=None, help="e.g. 24x64")
    ap.add_argument("--decay2d-nt", type=int, default=None)
    ap.add_argument("--decay-epochs", default="0,100,500", help="(b'): training epochs at which to recompute the decay")
    # (c)
    ap.add_argument("--scale-parts", default="mat,lanczos", help="(c): mat (materialised), lanczos (matrix-free)")
    ap.add_argument("--mat-shape", default=None)
    ap.add_argument("--mat-nt", type=int, default=None)
    ap.add_argument("--mat-time-step", type=int, default=2)
    ap.add_argument("--mat-eigh-max", type=int, default=3000, help="dense eigh of Theta only up to this n_data")
    ap.add_argument("--scale-shape", default=None, help="crop of the model, e.g. 94x288 (default: whole model)")
    ap.add_argument("--scale-shots", type=int, default=None)
    ap.add_argument("--scale-nt", type=int, default=None)
    ap.add_argument("--scale-k", type=int, default=50)
    ap.add_argument("--scale-method", default="adfwi",
                    help="(c2): a grid method (the wave kernel, model space) or a representation "
                         "(ifwi, ig-fwi, ...: the wave-based NTK through J_theta^T J_theta)")
    ap.add_argument("--scale-checkpoint", default="sqrt",
                    help="(c2) gradient storage of the propagator: sqrt (segments), store (every wavefield)")
    ap.add_argument("--scale-iters", type=int, default=150)
    ap.add_argument("--scale-budget", type=float, default=480.0, help="seconds for the Lanczos iterations")
    args = ap.parse_args(argv)

    model, source = load_model(args.model)
    log(f"jaxfwi.kernels benchmark on {jax.default_backend()} ({jax.devices()}); model: {source}, "
        f"shape {model.shape}, {model.min():.0f}-{model.max():.0f} m/s")
    tag = args.tag or ("quick" if args.quick else "full")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    fns = {"width": part_width, "decay": part_decay, "decay-train": part_decay_train, "scale": part_scale}
    for p in parts:
        if p not in fns:
            ap.error(f"unknown part {p!r}; choose from {sorted(fns)}")
    for p in parts:
        t0 = time.time()
        res = fns[p](args, model, source)
        res["seconds_total"] = time.time() - t0
        res["command"] = " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))
        merge_json(args.out, f"{p}_{tag}", res)
        log(f"[{p}] done in {res['seconds_total']:.1f} s -> {args.out} (key {p}_{tag})")


if __name__ == "__main__":
    main()
