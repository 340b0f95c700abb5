"""CPU reference arrays for the device run's correctness check (``benchmarks/device_run.py``).

Two small problems, one 2-D and one 3-D, each: observed data from a "true" model, the
forward data of a smooth model and the gradient of ``0.5 || d(v) - d_obs ||^2`` at it. The
models are rebuilt here from formulas (checked by a checksum stored in the npz), so only
the outputs are committed::

    python benchmarks/device_reference.py            # writes benchmarks/reference/device_reference.npz

Re-run it whenever the physics changes (e.g. the C-PML); ``tests/test_device_run.py`` fails
with that advice when the committed arrays no longer match this CPU's float32 results.
The npz also holds, for each case, the float32-vs-float64 discrepancy of the CPU (the
rounding level of float32 itself), printed by the device run next to its tolerances.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "reference", "device_reference.npz")

# Tolerances of the device check, float32 (relative to the largest reference value):
#   data:     max |d_dev - d_ref| / max |d_ref|  <= DATA_RTOL
#   gradient: max |g_dev - g_ref| / max |g_ref|  <= GRAD_RTOL  and  cosine(g_dev, g_ref) >= GRAD_MIN_COSINE
# Why these: the CPU's own float32 results differ from float64 by the 'f32_vs_f64' numbers in the
# npz (5e-7 for the data, 7e-5 for the gradient here); a GPU reorders sums, fuses multiply-adds
# and accumulates the adjoint over every time step in another order, which changes float32
# rounding by a similar amount per step. Two decades above the float32 level leave room for
# that, while any real error (a wrong boundary, a missed source, a race) is O(1e-2) or more.
DATA_RTOL = 1e-4
GRAD_RTOL = 1e-3
GRAD_MIN_COSINE = 0.99999


def cases():
    """The two problems: ``{name: dict(shape, dx, nt, dt, f0, shots, accuracy, pml_width, free_surface)}``."""
    return {
        "2d": dict(shape=(32, 48), dx=20.0, nt=200, dt=0.002, f0=8.0, accuracy=8, pml_width=10, free_surface=True),
        "3d": dict(shape=(20, 24, 24), dx=20.0, nt=150, dt=0.002, f0=8.0, accuracy=8, pml_width=8,
                   free_surface=True),
    }


def models(case):
    """``(v_true, v_smooth)`` float64 numpy arrays of a case (m/s), from formulas."""
    shape = case["shape"]
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    z = grids[0]
    v_smooth = 1800.0 + 1200.0 * z
    blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, [0.55] + [0.45] * (len(shape) - 1))) / 0.02)
    v_true = v_smooth + 250.0 * (z > 0.35) - 300.0 * blob
    return v_true, v_smooth


def survey(case, dtype=np.float32):
    """2-D: two shots at the surface, receivers at every surface cell. 3-D: one shot, a line of receivers."""
    import jaxfwi

    shape = case["shape"]
    w = np.asarray(jaxfwi.ricker(case["f0"], case["nt"], case["dt"]), dtype)
    if len(shape) == 2:
        src = np.array([[[1, shape[1] // 4]], [[1, 3 * shape[1] // 4]]])
        rec = np.array([[[1, x] for x in range(shape[1])]] * 2)
    else:
        src = np.array([[[1, shape[1] // 2, shape[2] // 3]]])
        rec = np.array([[[1, shape[1] // 2, x] for x in range(shape[2])]])
    return jaxfwi.Survey(src, rec, w, case["dt"])


def checksum(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes()).hexdigest()[:16]


def make_forward(dx, survey, kw):
    """``jit(v -> data)``: the forward map the device run times (shared so compiled programs are reused)."""
    import jax

    import jaxfwi

    return jax.jit(lambda v: jaxfwi.forward(v, dx, survey, **kw))


def make_gradient(dx, survey, kw):
    """``jit((v, d_obs) -> ((0.5 ||d(v) - d_obs||^2, d(v)), gradient))``: the exact gradient the device run
    times (the data come along, so one compiled program serves the whole check)."""
    import jax
    import jax.numpy as jnp

    import jaxfwi

    def loss(v, d_obs):
        d = jaxfwi.forward(v, dx, survey, **kw)
        return 0.5 * jnp.sum((d - d_obs) ** 2), d

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def problem(name, dtype=np.float32):
    """``(v_true, v_smooth, dx, survey, forward kwargs)`` of case ``name``."""
    case = cases()[name]
    v_true, v_smooth = models(case)
    kw = dict(accuracy=case["accuracy"], pml_width=case["pml_width"], free_surface=case["free_surface"],
              max_vel=3500.0, pml_freq=case["f0"])
    return v_true.astype(dtype), v_smooth.astype(dtype), case["dx"], survey(case, dtype), kw


def compute(name, dtype=np.float32, timed=False):
    """``dict(data, grad, loss)`` of case ``name`` in ``dtype`` on the default device (numpy arrays),
    plus ``v_checksum``. float64 needs ``jax_enable_x64``. ``timed``: also ``first_s`` (compile + run of
    the gradient) and ``run_s`` (a second, compiled run)."""
    import time

    import jax
    import jax.numpy as jnp

    v_true, v_smooth, dx, s, kw = problem(name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad = make_gradient(dx, s, kw)
        zeros = jnp.zeros((s.n_shots, s.n_receivers, s.nt), dtype)
        t0 = time.perf_counter()
        (_, d_obs), _ = jax.block_until_ready(grad(jnp.asarray(v_true), zeros))  # the "observed" data
        first = time.perf_counter() - t0
        v0 = jnp.asarray(v_smooth)
        (l, d), g = jax.block_until_ready(grad(v0, d_obs))
        out = dict(data=np.asarray(d), grad=np.asarray(g), loss=float(l), v_checksum=checksum(v_smooth))
        if timed:
            t0 = time.perf_counter()
            jax.block_until_ready(grad(v0, d_obs))
            out.update(first_s=first, run_s=time.perf_counter() - t0)
    return out


def compare(out, ref):
    """Relative errors of a device result against the reference arrays, and whether they pass."""
    d, dr = np.asarray(out["data"], np.float64), np.asarray(ref["data"], np.float64)
    g, gr = np.asarray(out["grad"], np.float64), np.asarray(ref["grad"], np.float64)
    data_rel = float(np.abs(d - dr).max() / np.abs(dr).max())
    grad_rel = float(np.abs(g - gr).max() / np.abs(gr).max())
    cos = float(np.sum(g * gr) / (np.linalg.norm(g) * np.linalg.norm(gr)))
    ok = data_rel <= DATA_RTOL and grad_rel <= GRAD_RTOL and cos >= GRAD_MIN_COSINE
    return dict(data_rel=data_rel, grad_rel=grad_rel, grad_cosine=cos, data_rtol=DATA_RTOL, grad_rtol=GRAD_RTOL,
                grad_min_cosine=GRAD_MIN_COSINE, passed=bool(ok))


def load(path=DEFAULT_OUT):
    """``{case: dict(data, grad, loss, v_checksum, f32_vs_f64_data, f32_vs_f64_grad)}`` from the npz."""
    z = np.load(path)
    out = {}
    for name in cases():
        out[name] = dict(data=z[f"{name}_data"], grad=z[f"{name}_grad"], loss=float(z[f"{name}_loss"]),
                         v_checksum=str(z[f"{name}_v_checksum"]),
                         f32_vs_f64_data=float(z[f"{name}_f32_vs_f64_data"]),
                         f32_vs_f64_grad=float(z[f"{name}_f32_vs_f64_grad"]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    import jax

    if jax.default_backend() != "cpu":
        print(f"warning: the reference should be computed on CPU; the default backend is {jax.default_backend()}",
              file=sys.stderr)
    arrays = {}
    f32 = {name: compute(name, np.float32) for name in cases()}
    jax.config.update("jax_enable_x64", True)
    for name in cases():
        r64 = compute(name, np.float64)
        c = compare(f32[name], r64)
        arrays[f"{name}_data"] = f32[name]["data"].astype(np.float32)
        arrays[f"{name}_grad"] = f32[name]["grad"].astype(np.float32)
        arrays[f"{name}_loss"] = np.asarray(f32[name]["loss"])
        arrays[f"{name}_v_checksum"] = np.asarray(f32[name]["v_checksum"])
        arrays[f"{name}_f32_vs_f64_data"] = np.asarray(c["data_rel"])
        arrays[f"{name}_f32_vs_f64_grad"] = np.asarray(c["grad_rel"])
        print(f"{name}: data {f32[name]['data'].shape}, grad {f32[name]['grad'].shape}, loss {f32[name]['loss']:.6g}; "
              f"float32 vs float64 on CPU: data {c['data_rel']:.2e}, gradient {c['grad_rel']:.2e} "
              f"(cosine {c['grad_cosine']:.8f})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
