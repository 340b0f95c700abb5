"""What the compiled time loop holds, and where a step's time goes (issue 15, item 3).

For the forward and the gradient of one propagator case it compiles the program, finds every
``while`` loop body in the optimised HLO and counts its operations: fusions, copies, scatters,
and how many of them write a full (batched) grid. With ``--trace`` it also runs the program
once under ``jax.profiler`` and sums the time of every XLA thunk (fusion, copy, ...) per
time step, read straight from the profiler's ``.xplane.pb`` (no TensorBoard needed).

    python benchmarks/loop_body.py                      # Marmousi case, static counts
    python benchmarks/loop_body.py --trace --nt 300     # plus per-thunk time (shorter run)
    python benchmarks/loop_body.py --case quick --trace

Thunk times are thread times summed over the worker threads (a fusion split over two cores
counts both halves), so their sum can exceed the wall time. Writes ``benchmarks/out/loop_body.json``.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from propagator import CASES, _model  # noqa: E402


# --------------------------------------------------------------------------- HLO text


def _computations(hlo: str) -> dict:
    """``{name: text}`` of every computation in an HLO module's text."""
    out = {}
    for block in re.split(r"\n(?=\S)", hlo):
        m = re.match(r"(?:ENTRY\s+)?%?([\w.\-]+)\s", block)
        if m:
            out[m.group(1)] = block
    return out


def loop_bodies(hlo: str, full_shape: str) -> list:
    """Operation counts of every while-loop body: ``[{body, lines, ops: {kind: n}, full: {kind: n}}]``.

    ``full`` counts the operations whose result has the batched full-grid shape ``full_shape``
    (e.g. ``"13,142,336"``; its flat form is matched too)."""
    comps = _computations(hlo)
    dims = [int(x) for x in full_shape.split(",")]
    flat = f"{dims[0]},{math.prod(dims[1:])}" if len(dims) > 1 else full_shape
    rows = []
    for name in re.findall(r"body=%?([\w.\-]+)", hlo):
        text = comps.get(name, "")
        ops, full = collections.Counter(), collections.Counter()
        for line in text.split("\n")[1:]:
            m = re.search(r"=\s*(\S+)\s+([\w\-]+)\(", line)
            if not m or m.group(2) in ("get-tuple-element", "parameter", "constant", "tuple"):
                continue
            ops[m.group(2)] += 1
            if "scatter" in line.split("=")[0]:
                ops["scatter"] += 1
            if f"[{full_shape}]" in m.group(1) or f"[{flat}]" in m.group(1):
                full[m.group(2)] += 1
        rows.append(dict(body=name, lines=len(text.split("\n")), ops=dict(ops), full=dict(full)))
    return rows


# --------------------------------------------------------------------------- profiler trace


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b):
    """``(field number, value)`` of a protobuf message (varints as ints, the rest as bytes)."""
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = _varint(b, i)
        elif t == 2:
            ln, i = _varint(b, i)
            v, i = b[i:i + ln], i + ln
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {t}")
        yield f, v


def thunk_times(xplane_path: str) -> dict:
    """``{event name: (total seconds, count)}`` over the XLA worker threads of a profiler trace.

    Reads the XSpace protobuf by field number (XSpace.planes = 1; XPlane.lines = 3,
    event_metadata = 4; XLine.name = 2, events = 4; XEvent.metadata_id = 1, duration_ps = 3;
    XEventMetadata.name = 2)."""
    tot, cnt = collections.Counter(), collections.Counter()
    for f, plane in _fields(open(xplane_path, "rb").read()):
        if f != 1:
            continue
        meta, lines = {}, []
        for g, v in _fields(plane):
            if g == 3:
                lines.append(v)
            elif g == 4:
                entry = dict(_fields(v))
                name = dict(_fields(entry.get(2, b""))).get(2, b"")
                meta[entry.get(1)] = name.decode(errors="replace")
        for line in lines:
            fl = list(_fields(line))
            lname = next((v.decode(errors="replace") for g, v in fl if g == 2), "")
            if "XLAEigen" not in lname:  # the worker threads that run the thunks
                continue
            for g, ev in fl:
                if g != 4:
                    continue
                e = dict(_fields(ev))
                name = meta.get(e.get(1), "?")
                if name.startswith("ThunkExecutor"):
                    continue
                tot[name] += e.get(3, 0) * 1e-12
                cnt[name] += 1
    return {k: (tot[k], cnt[k]) for k in tot}


# --------------------------------------------------------------------------- driver


def run(case: str, nt: int | None, trace: bool, top: int) -> dict:
    import warnings

    import jax
    import jax.numpy as jnp

    import jaxfwi
    from jaxfwi.physics import _core

    warnings.simplefilter("ignore")
    nz, nx, ns, nt0, dt, f0, dx = CASES[case]
    nt = nt or nt0
    v = jnp.asarray(_model(nz, nx))
    s = jaxfwi.Survey.surface_line((nz, nx), ns, jaxfwi.ricker(f0, nt, dt), dt)
    kw = dict(accuracy=8, pml_width=20, max_vel=4500.0)
    plan, _ = jaxfwi.plan_propagation(v, dx, s, **kw, warn=False)
    full = ",".join(str(n) for n in (ns,) + _core._ext_shape(plan))
    progs = {
        "forward": jaxfwi.devices.jit(lambda vv: jaxfwi.forward(vv, dx, s, **kw)),
        "gradient": jaxfwi.devices.jit(jax.grad(lambda vv: 0.5 * jnp.sum(jaxfwi.forward(vv, dx, s, **kw) ** 2))),
    }
    out = dict(case=case, nt=nt, nt_internal=plan.nt_internal, shots=ns, store_wavefield=plan.store_wavefield,
               full_grid=full, programs={})
    for name, fn in progs.items():
        t0 = time.perf_counter()
        compiled = fn.lower(v).compile()
        compile_s = time.perf_counter() - t0
        hlo = compiled.as_text()
        row = dict(compile_s=compile_s, hlo_lines=hlo.count("\n"), bodies=loop_bodies(hlo, full))
        if trace:
            jax.block_until_ready(compiled(v))
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                with jax.profiler.trace(d):
                    jax.block_until_ready(compiled(v))
                row["wall_s"] = time.perf_counter() - t0
                (pb,) = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)
                times = thunk_times(pb)
            steps = plan.nt_internal
            ranked = sorted(times.items(), key=lambda kv: -kv[1][0])
            row["thunk_ms_per_step"] = {k: round(1e3 * t / steps, 4) for k, (t, c) in ranked[:top]}
            row["thunks_total_ms_per_step"] = round(1e3 * sum(t for t, _ in times.values()) / steps, 4)
        out["programs"][name] = row
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="marmousi", choices=sorted(CASES))
    ap.add_argument("--nt", type=int, default=None, help="time samples (default: the case's)")
    ap.add_argument("--trace", action="store_true", help="also profile one run: thread time per thunk")
    ap.add_argument("--top", type=int, default=12, help="thunks listed per program")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "loop_body.json"))
    args = ap.parse_args(argv)
    res = run(args.case, args.nt, args.trace, args.top)
    print(f"case {res['case']}: {res['shots']} shots, {res['nt_internal']} internal steps, full grid "
          f"[{res['full_grid']}], store_wavefield={res['store_wavefield']}")
    for name, row in res["programs"].items():
        print(f"\n{name}: compile {row['compile_s']:.1f} s, HLO {row['hlo_lines']} lines"
              + (f", run {row['wall_s']:.2f} s" if "wall_s" in row else ""))
        print("| loop body | HLO lines | fusions | copies | scatters | full-grid fusions | full-grid copies |")
        print("|---|---|---|---|---|---|---|")
        for b in row["bodies"]:
            o, f = b["ops"], b["full"]
            print(f"| {b['body'][:40]} | {b['lines']} | {o.get('fusion', 0)} | {o.get('copy', 0)} | "
                  f"{o.get('scatter', 0)} | {f.get('fusion', 0)} | {f.get('copy', 0)} |")
        if "thunk_ms_per_step" in row:
            print(f"thread time per step, all thunks: {row['thunks_total_ms_per_step']:.3f} ms")
            for k, ms in row["thunk_ms_per_step"].items():
                print(f"  {ms:8.4f} ms  {k}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    from jaxfwi.hostmem import reexec_with_hugepages

    reexec_with_hugepages()  # as the jaxfwi command runs (JAXFWI_HUGEPAGES=0: off)
    main()
