"""Propagator benchmark: the CR-FWI Marmousi-size and BP-size cases.

For each case and mode (forward; forward + gradient by default, which stores every wavefield when
it fits and else recomputes sqrt(nt)-step segments; each of the two forced) it reports
compile time, median run time, grid-point updates per second (internal steps x padded cells x
shots / time) and the peak RSS of a fresh process. When ``deepwave`` (and torch) are
importable, the same cases run with deepwave and the ratio is printed.

    python benchmarks/propagator.py                 # Marmousi case, all modes
    python benchmarks/propagator.py --case bp --deepwave-modes forward   # BP-size case (deepwave's
                                                    # gradient needs > 21 GiB there: OOM on 24 GiB)
    python benchmarks/propagator.py --quick         # small smoke run

With ``--procs 2`` (the default) jaxfwi also runs in Devito's best CPU layout: one single-thread
process per core (pinned), joined by ``jax.distributed`` with the shots sharded over them and the
gradient all-reduced (``run_jax_process``).

Each measurement runs in its own subprocess so peak memory is per configuration. The driver restarts
itself with transparent huge pages for ``malloc`` (``jaxfwi.hostmem``; ``JAXFWI_HUGEPAGES=0``: off) before
anything starts, and every code's subprocesses (jaxfwi, deepwave, Devito) inherit that environment, so
they are compared under the same allocator. The summary gives each code's gradient / forward time
ratio per layout. Writes ``benchmarks/out/propagator.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    # name: (nz, nx, n_shots, nt, dt, f0, dx)
    "marmousi": (94, 288, 13, 1000, 0.0019, 8.0, 15.0),
    "bp": (188, 500, 20, 2000, 0.0019, 8.0, 15.0),
    "quick": (40, 80, 3, 300, 0.0019, 8.0, 15.0),
}


def _model(nz, nx):
    import numpy as np

    return np.broadcast_to(np.linspace(1500.0, 4500.0, nz, dtype=np.float32)[:, None], (nz, nx)).copy()


def run_jax(case, mode, repeats, checkpoint, shot_batch, pml_width=20):
    import warnings

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxfwi
    from jaxfwi.devices import jit  # jax.jit with jaxfwi's XLA options, as fit() and forward() compile

    warnings.simplefilter("ignore")
    nz, nx, ns, nt, dt, f0, dx = CASES[case]
    v = jnp.asarray(_model(nz, nx))
    w = jaxfwi.ricker(f0, nt, dt)
    s = jaxfwi.Survey.surface_line((nz, nx), ns, w, dt)
    kw = dict(accuracy=8, pml_width=pml_width, checkpoint=checkpoint, shot_batch=shot_batch, max_vel=4500.0)
    plan, _ = jaxfwi.plan_propagation(v, dx, s, **kw, warn=False)
    loss = None
    if mode == "forward":
        fn = jit(lambda vv: jaxfwi.forward(vv, dx, s, **kw))
    elif mode == "grad-vmap":  # jax.grad through jax.vmap over two models (the batched adjoint)
        d_obs = np.zeros((ns, s.n_receivers, nt), np.float32)
        v = jnp.stack([v, 1.01 * v])
        fn = jit(jax.value_and_grad(lambda vv: 0.5 * jnp.sum((jax.vmap(
            lambda x: jaxfwi.forward(x, dx, s, **kw))(vv) - d_obs) ** 2)))
    elif mode == "grad-fit":  # the gradient fit() takes: make_loss of the grid parameterisation, l2 misfit
        from jaxfwi.inversion import make_loss
        from jaxfwi.models import build

        d_obs = np.zeros((ns, s.n_receivers, nt), np.float32)
        param = build("adfwi", np.asarray(v))
        loss = make_loss(param, s, dx, forward_kwargs={k: x for k, x in kw.items() if x is not None})
        plan = loss.plan  # fit's storage choice (every wavefield, one shot group's, or segments)
        v = param.init(jax.random.key(0))
        fn = jit(jax.value_and_grad(lambda p: loss(p, d_obs)))
    else:
        d_obs = np.zeros((ns, s.n_receivers, nt), np.float32)
        fn = jit(jax.value_and_grad(lambda vv: 0.5 * jnp.sum((jaxfwi.forward(vv, dx, s, **kw) - d_obs) ** 2)))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(v))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(v))
        times.append(time.perf_counter() - t0)
    cells = (nz + 2 * pml_width) * (nx + 2 * pml_width)
    return dict(code="jaxfwi", case=case, mode=mode, pml_width=pml_width, checkpoint=str(checkpoint), shot_batch=plan.shot_batch,
                shot_group=getattr(loss, "shot_group", None),
                substeps=plan.substeps, steps=plan.nt_internal,
                store_wavefield=bool(plan.store_wavefield and mode != "forward"), compile_s=compile_s - float(np.median(times)), median_s=float(np.median(times)),
                gpts_per_s=plan.nt_internal * cells * ns / float(np.median(times)),
                device=str(jax.devices()[0].platform))


def run_jax_process(case, mode, repeats, rank, nproc):
    """One of ``nproc`` jaxfwi processes joined by ``jax.distributed`` (gloo collectives over
    loopback; ``jaxfwi.launch.init_worker``), pinned to its share of the cores so that XLA runs it on
    one thread per core: Devito's best CPU layout
    (one single-thread process per core) with jaxfwi's one multi-host code path. The shots are
    sharded over the processes' devices with ``jax.shard_map`` (padded with zero-weight shots to a
    multiple of ``nproc``); the gradient is the ``psum`` over all of them, i.e. the whole gradient,
    not independent halves."""
    import warnings

    from jaxfwi import launch

    launch.init_worker()  # pinned to its share of the cores, joined by jax.distributed (env set by the parent)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import jaxfwi
    from jaxfwi.devices import jit

    warnings.simplefilter("ignore")
    nz, nx, ns, nt, dt, f0, dx = CASES[case]
    s = jaxfwi.Survey.surface_line((nz, nx), ns, jaxfwi.ricker(f0, nt, dt), dt)
    kw = dict(accuracy=8, pml_width=20, max_vel=4500.0)
    nsp = -(-ns // nproc) * nproc
    pad = lambda a: np.concatenate([np.asarray(a)] + [np.asarray(a)[-1:]] * (nsp - ns))  # noqa: E731
    mesh = Mesh(np.array(jax.devices()), ("shots",))
    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("shots"))
    put = lambda x, sh: jax.make_array_from_callback(x.shape, sh, lambda i: x[i])  # noqa: E731
    args = (put(pad(s.sources), shard), put(pad(s.receivers), shard),
            put(np.array([1.0] * ns + [0.0] * (nsp - ns), np.float32), shard))
    v = put(_model(nz, nx), rep)
    plan, _ = jaxfwi.plan_propagation(_model(nz, nx), dx, s.select(np.arange(nsp // nproc)), **kw, warn=False)

    def local(vv, src, rec, wts):
        out = jaxfwi.forward(vv, dx, jaxfwi.Survey(src, rec, s.wavelet, dt), **kw)
        if mode == "forward":
            return out
        return jax.lax.psum(0.5 * jnp.sum(wts[:, None, None] * out**2), "shots")

    specs = (P(), P("shots"), P("shots"), P("shots"))
    f = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("shots") if mode == "forward" else P(),
                      check_vma=False)
    fn = jit(f if mode == "forward" else jax.value_and_grad(f))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(v, *args))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(v, *args))
        times.append(time.perf_counter() - t0)
    cells = (nz + 40) * (nx + 40)
    med = float(np.median(times))
    row = dict(code="jaxfwi", case=case, mode=mode, pml_width=20, checkpoint=f"{nproc} procs x 1 thread",
               shot_batch=None, substeps=plan.substeps, steps=plan.nt_internal,
               store_wavefield=bool(plan.store_wavefield and mode != "forward"), compile_s=compile_s - med,
               median_s=med, gpts_per_s=plan.nt_internal * cells * ns / med, device="cpu", rank=rank)
    jax.distributed.shutdown()
    return row


def run_jax_layouts(args):
    """jaxfwi as ``--procs`` single-thread processes (``run_jax_process``), one per core; the time of a
    layout is the slower process's median, its memory the processes' summed peak RSS."""
    from jaxfwi import launch

    rows = []
    n = args.procs
    for mode in [m if m == "forward" else "grad" for m in args.modes if m in ("forward", "grad")]:
        coord = f"127.0.0.1:{launch.free_port()}"
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "--code", "jaxfwi-procs", "--mode", mode,
                                   "--case", args.case, "--repeats", str(args.repeats), "--rank", str(r),
                                   "--nproc", str(n)],
                                  env={**os.environ, launch.ENV_RANK: str(r), launch.ENV_NUM: str(n),
                                       launch.ENV_COORDINATOR: coord},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(n)]
        try:
            outs = [pr.communicate(timeout=1200) for pr in procs]
        except subprocess.TimeoutExpired:
            for pr in procs:
                pr.kill()
            outs = [("", "timed out")] * n
        got = [json.loads(ln[4:]) for o, _ in outs for ln in o.splitlines() if ln.startswith("ROW ")]
        if len(got) != n:
            print(f"jaxfwi {mode} {n} procs failed:\n{outs[0][1][-1500:]}")
            rows.append(dict(code="jaxfwi", case=args.case, mode=mode, checkpoint=f"{n} procs x 1 thread",
                             failed="see log"))
            continue
        r = dict(got[0], median_s=max(g["median_s"] for g in got), compile_s=max(g["compile_s"] for g in got),
                 peak_rss_gib=sum(g["peak_rss_gib"] for g in got),
                 medians_s=[g["median_s"] for g in got])
        r["gpts_per_s"] = min(g["gpts_per_s"] for g in got)
        r.pop("rank", None)
        rows.append(r)
        print(f"jaxfwi    {mode:8s} {r['checkpoint']:18s} compile {r['compile_s']:6.2f} s  run {r['median_s']:7.3f} s  "
              f"steps {r['steps']}  peak {r['peak_rss_gib']:.2f} GiB", flush=True)
    return rows


def run_deepwave(case, mode, repeats):
    import numpy as np
    import torch
    import deepwave

    torch.set_num_threads(2)
    nz, nx, ns, nt, dt, f0, dx = CASES[case]
    v = torch.tensor(_model(nz, nx), requires_grad=(mode != "forward"))
    w = deepwave.wavelets.ricker(f0, nt, dt, 1.5 / f0).reshape(1, 1, -1).repeat(ns, 1, 1)
    xs = np.round(np.linspace(0, nx - 1, ns)).astype(int)
    src = torch.zeros(ns, 1, 2, dtype=torch.long)
    src[:, 0, 0] = 1
    src[:, 0, 1] = torch.tensor(xs)
    rec = torch.zeros(ns, nx, 2, dtype=torch.long)
    rec[:, :, 0] = 1
    rec[:, :, 1] = torch.arange(nx)

    def once():
        out = deepwave.scalar(v, dx, dt, source_amplitudes=w, source_locations=src, receiver_locations=rec,
                              accuracy=8, pml_width=20, pml_freq=f0)[-1]
        if mode != "forward":
            (0.5 * (out**2).sum()).backward()

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    # steps: deepwave divides dt into a whole number of internal steps; that count is not read back here
    return dict(code="deepwave", case=case, mode=mode, checkpoint="-", shot_batch=None, substeps=None, steps=None,
                compile_s=0.0, median_s=float(np.median(times)), gpts_per_s=None, device="cpu")


def run_devito_layouts(args):
    """Devito (``benchmarks/devito_case.py`` in the interpreter ``--devito-python``) in its two CPU
    layouts: one process with 2 OpenMP threads (``OMP_WAIT_POLICY=passive``: its default spin-wait
    collapses on a shared machine), and 2 single-thread processes side by side, each with half of
    the shots (the time is the slower of the two)."""
    nz, nx, ns, nt, dt, f0, dx = CASES[args.case]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devito_case.py")
    base = [args.devito_python, script, "--case", *map(str, (nz, nx, ns, nt, dt, f0, dx)),
            "--repeats", str(args.repeats)]
    env = {**os.environ, "DEVITO_LANGUAGE": "openmp", "DEVITO_LOGGING": "WARNING", "OMP_WAIT_POLICY": "passive"}
    rows = []
    for mode in args.devito_modes:
        def launch(threads, shots=None):
            cmd = base + ["--mode", mode] + (["--shots", shots] if shots else [])
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env={**env, "OMP_NUM_THREADS": str(threads)})

        for layout, procs in (("2 threads", [launch(2)]),
                              ("2 procs x 1 thread", [launch(1, f"0:{(ns + 1) // 2}"), launch(1, f"{(ns + 1) // 2}:{ns}")])):
            outs = [pr.communicate() for pr in procs]
            got = [json.loads(ln[4:]) for o, _ in outs for ln in o.splitlines() if ln.startswith("ROW ")]
            if len(got) != len(procs):
                print(f"devito {mode} {layout} failed:\n{outs[0][1][-1500:]}")
                rows.append(dict(code="devito", case=args.case, mode=mode, checkpoint=layout, failed="see log"))
                continue
            r = dict(got[0], case=args.case, checkpoint=layout, shot_batch=None, substeps=None,
                     median_s=max(g["median_s"] for g in got), compile_s=max(g["compile_s"] for g in got),
                     peak_rss_gib=sum(g["peak_rss_gib"] for g in got), gpts_per_s=None,
                     store_wavefield=(mode == "grad"))
            rows.append(r)
            print(f"devito    {mode:8s} {layout:18s} compile {r['compile_s']:6.2f} s  run {r['median_s']:7.3f} s  "
                  f"steps {r['steps']}  peak {r['peak_rss_gib']:.2f} GiB", flush=True)
    return rows


def _layout(row):
    """The layout a row ran in: ``"2 procs x 1 thread"``, ``"2 threads"``, or ``"1 process"``."""
    ck = str(row.get("checkpoint", ""))
    return ck if ("procs" in ck or "threads" in ck) else "1 process"


def gradient_over_forward(rows):
    """``[{code, layout, forward_s, gradient_s, ratio}]``: each code's default gradient (``mode == "grad"``
    with the forward's ``checkpoint`` field: the same layout, and jaxfwi's default checkpoint, not a forced
    one) over its forward; failed rows are left out."""
    ok = [r for r in rows if "failed" not in r]
    out = []
    for f in (r for r in ok if r["mode"] == "forward"):
        for mode in ("grad", "grad-fit"):
            for g in ok:
                if g["mode"] == mode and g["code"] == f["code"] and g.get("checkpoint") == f.get("checkpoint"):
                    out.append(dict(code=f["code"] + (" (fit's loss)" if mode == "grad-fit" else ""),
                                    layout=_layout(f), forward_s=f["median_s"], gradient_s=g["median_s"],
                                    ratio=g["median_s"] / f["median_s"]))
                    break
    return out


def _child(args):
    if args.code == "jaxfwi-procs":
        row = run_jax_process(args.case, args.mode, args.repeats, args.rank, args.nproc)
    elif args.code == "jaxfwi":
        cp = None if args.checkpoint == "None" else (args.checkpoint if args.checkpoint in ("sqrt", "store")
                                                     else int(args.checkpoint))
        row = run_jax(args.case, args.mode, args.repeats, cp, args.shot_batch, args.pml_width)
    else:
        row = run_deepwave(args.case, args.mode, args.repeats)
    row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("ROW " + json.dumps(row), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", default="marmousi", choices=sorted(CASES))
    p.add_argument("--quick", action="store_true", help="the small 'quick' case, 1 repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shot-batch", type=int, default=None)
    p.add_argument("--pml-width", type=int, default=20, help="jaxfwi's C-PML width in cells (default 20)")
    p.add_argument("--modes", nargs="+", default=["forward", "grad"],
                   help="forward, grad (the default: every wavefield stored if it fits, else sqrt(nt) segments), "
                        "grad-ckpt (checkpoint='sqrt'), grad-store (checkpoint='store'), grad-vmap (jax.grad through "
                        "jax.vmap over 2 models), grad-fit (the gradient fit takes: make_loss of the grid, which "
                        "stores one shot group's wavefields at a time where all shots' do not fit)")
    p.add_argument("--no-deepwave", action="store_true")
    p.add_argument("--deepwave-modes", nargs="+", default=["forward", "grad"],
                   help="deepwave runs (its gradient keeps every wavefield: the BP case needs > 21 GiB)")
    p.add_argument("--devito-python", default=None,
                   help="interpreter with devito installed (pip install devito pytest): adds Devito's two CPU layouts")
    p.add_argument("--devito-modes", nargs="+", default=["forward", "grad"])
    p.add_argument("--procs", type=int, default=2,
                   help="also run jaxfwi as this many single-thread processes joined by jax.distributed, one per "
                        "core (Devito's best CPU layout; 0 or 1: skip)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out", "propagator.json"))
    # child-process arguments
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code", default="jaxfwi", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="forward", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", default="None", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--nproc", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    if args.quick:
        args.case, args.repeats = "quick", 1
    jobs = []
    for m in args.modes:
        mode = m if m in ("forward", "grad-vmap", "grad-fit") else "grad"
        jobs.append(("jaxfwi", mode, {"grad-ckpt": "sqrt", "grad-store": "store"}.get(m, "None")))
    try:
        import deepwave  # noqa: F401
        have_dw = not args.no_deepwave
    except ImportError:
        have_dw = False
        print("deepwave not importable: jaxfwi only (pip install torch deepwave for the comparison)")
    if have_dw:
        jobs += [("deepwave", m, "-") for m in args.deepwave_modes]
    rows = []
    if args.devito_python:
        rows += run_devito_layouts(args)
    if args.procs > 1:
        rows += run_jax_layouts(args)
    for code, mode, cp in jobs:
        cmd = [sys.executable, __file__, "--child", "--code", code, "--mode", mode, "--checkpoint", cp,
               "--case", args.case, "--repeats", str(args.repeats)]
        if args.shot_batch:
            cmd += ["--shot-batch", str(args.shot_batch)]
        cmd += ["--pml-width", str(args.pml_width)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
        if not line:
            why = "killed (SIGKILL: out of memory?)" if out.returncode == -9 else f"exit code {out.returncode}"
            print(f"{code} {mode} failed: {why}\n{out.stderr[-2000:]}")
            rows.append(dict(code=code, case=args.case, mode=mode, checkpoint=cp, failed=why))
            continue
        rows.append(json.loads(line[0][4:]))
        r = rows[-1]
        print(f"{r['code']:9s} {r['mode']:8s} ckpt={r['checkpoint']:5s} compile {r['compile_s']:6.2f} s  "
              f"run {r['median_s']:7.3f} s  peak {r['peak_rss_gib']:.2f} GiB", flush=True)
    dw = {r["mode"]: r for r in rows if r["code"] == "deepwave"}
    print(f"\n| code | mode | checkpoint | steps | compile (s) | median run (s) | Mgpts/s | peak RSS (GiB) | vs deepwave |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['code']} | {r['mode']} | {r['checkpoint']} | - | - | failed: {r['failed']} | - | - | - |")
            continue
        ok = r["mode"] in dw and "failed" not in dw[r["mode"]]
        ratio = f"{r['median_s'] / dw[r['mode']]['median_s']:.2f}x" if ok else "-"
        gp = f"{r['gpts_per_s'] / 1e6:.0f}" if r["gpts_per_s"] else "-"
        ck = r["checkpoint"]
        if r["code"] == "jaxfwi" and r.get("store_wavefield"):
            ck = f"{ck}, store" if "procs" in ck else "store"
        print(f"| {r['code']} | {r['mode']} | {ck} | {r.get('steps') or '-'} | {r['compile_s']:.2f} | "
              f"{r['median_s']:.3f} | {gp} | {r['peak_rss_gib']:.2f} | {ratio} |")
    ratios = gradient_over_forward(rows)
    if ratios:
        print("\n| code | layout | gradient / forward |\n|---|---|---|")
        for r in ratios:
            print(f"| {r['code']} | {r['layout']} | {r['ratio']:.2f} |")
    huge = "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"case": args.case, "hugepages": huge, "rows": rows, "gradient_over_forward": ratios}, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    from jaxfwi.hostmem import reexec_with_hugepages

    reexec_with_hugepages()  # before anything starts; the subprocesses inherit it (JAXFWI_HUGEPAGES=0: off)
    main()
