"""Tests of jaxfwi.inversion: recovery, checkpoints/resume, multi-seed vmap, sharding, NaN, invert().

One tiny problem is shared by all tests (16 x 32 cells at 20 m, 3 shots on the free
surface, receivers at the surface and near the bottom, 8 Hz, 200 samples, accuracy 4,
PML 6). The epoch function is compiled once per (parameterisation, settings): the
resume, NaN and multi-seed loop runs reuse the compilations of the recovery tests
(the learning rate lives in the optimizer state, the epoch count is traced).
The multi-device test (4 forced CPU devices) and the exact ``jaxfwi.invert(...)`` call
(invert's defaults: accuracy 8, PML 20) run in subprocesses started at module setup, so
that they overlap the in-process tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfwi
from jaxfwi import models
from jaxfwi.inversion import NonFiniteLossError, fit, fit_seeds
from jaxfwi.inversion.checkpoints import checkpoint_epochs
from jaxfwi.metrics import mse

NZ, NX, DX = 16, 32, 20.0
NT, DT, F0, NSHOTS = 200, 0.002, 8.0, 3
FK = dict(accuracy=4, pml_width=6, free_surface=True)
EPOCHS = 60
#: learning rate per method, and the measured final/initial model-MSE ratio after EPOCHS
#: epochs (asserted with margin): adfwi 0.25, ifwi 0.29, ig-fwi 0.16
RECOVERY = {"adfwi": (20.0, 0.45), "ifwi": (1e-4, 0.5), "ig-fwi": (3e-4, 0.35)}


def _survey(nshots=NSHOTS, nt=NT):
    w = jaxfwi.ricker(F0, nt, DT)
    xs = np.round(np.linspace(2, NX - 3, nshots)).astype(int)
    src = [[[1, x]] for x in xs]
    rec = [[1, x] for x in range(NX)] + [[NZ - 2, x] for x in range(NX)]
    return jaxfwi.Survey(src, [rec] * nshots, w, DT)


@pytest.fixture(scope="module")
def problem():
    v_true = np.full((NZ, NX), 2000.0, np.float32)
    v_true[5:] = 2300.0
    v_true[10:] = 2700.0
    v_init = np.broadcast_to(np.linspace(2000.0, 2700.0, NZ, dtype=np.float32)[:, None], (NZ, NX)).copy()
    survey = _survey()
    d_obs = jaxfwi.forward(v_true, DX, survey, **FK)
    return dict(v_true=v_true, v_init=v_init, survey=survey, d_obs=d_obs)


@pytest.fixture(scope="module")
def params_of(problem):
    """One Parameterization object per method, shared so compiled steps are reused."""
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = models.build(method, problem["v_init"])
        return cache[method]

    return get


def _fit(problem, param, **kw):
    kw.setdefault("epochs", 10)
    kw.setdefault("key", jax.random.key(0))
    kw.setdefault("progress", False)
    return fit(param, problem["d_obs"], problem["survey"], DX, v_true=problem["v_true"], forward_kwargs=FK, **kw)


# --------------------------------------------------------------------------- multi-device (subprocess)

_SHARDED_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    import jaxfwi
    from jaxfwi import models
    from jaxfwi.inversion import fit, fit_seeds, make_loss
    assert len(jax.devices()) == 4, jax.devices()
    nz, nx, dx, nt, dt = 12, 24, 20.0, 120, 0.002
    w = jaxfwi.ricker(8.0, nt, dt)
    survey = jaxfwi.Survey.surface_line((nz, nx), 3, w, dt)  # 3 shots: padded to 4 on 4 devices
    v_true = np.full((nz, nx), 2000.0, np.float32); v_true[6:] = 2400.0
    v_init = np.full((nz, nx), 2100.0, np.float32)
    fk = dict(accuracy=2, pml_width=3, free_surface=True)
    d_obs = jaxfwi.forward(v_true, dx, survey, **fk)
    param = models.build("adfwi", v_init)
    p0 = param.init(jax.random.key(0))
    p0 = jax.tree_util.tree_map(lambda x: x + 30.0 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), p0)
    out = {}
    for n in (1, 4):
        loss = make_loss(param, survey, dx, forward_kwargs=fk, devices=n)
        l, g = jax.jit(jax.value_and_grad(loss))(p0, d_obs)
        r = fit(param, d_obs, survey, dx, epochs=3, key=jax.random.key(1), learning_rate=10.0, forward_kwargs=fk,
                progress=False, devices=n)
        out[n] = (float(l), np.asarray(g["net"]["field"]), r.history["loss"], r.velocity)
    # gradient accumulation over 3 one-shot batches, one update per epoch, on one device
    acc = fit(param, d_obs, survey, dx, epochs=3, key=jax.random.key(1), learning_rate=10.0, forward_kwargs=fk,
              progress=False, devices=1, shot_batch=1, shot_order="cyclic")
    l1, g1, h1, v1 = out[1]
    l4, g4, h4, v4 = out[4]
    gs = np.abs(g1).max()
    res = dict(loss_rel=abs(l4 - l1) / abs(l1), grad_rel=float(np.abs(g4 - g1).max() / gs),
               hist_rel=float(np.max(np.abs(h4 - h1) / np.abs(h1))), vel_abs=float(np.abs(v4 - v1).max()),
               grad_nonzero=bool(gs > 0), acc_hist_rel=float(np.max(np.abs(acc.history["loss"] - h1) / np.abs(h1))),
               acc_vel_abs=float(np.abs(acc.velocity - v1).max()))
    # two seeds vmapped over the 4-device mesh = the single-device seed runs
    keys = jax.random.split(jax.random.key(2), 2)
    d2 = jnp.stack([d_obs, 1.01 * d_obs])  # one data set per seed
    many = fit_seeds(param, d2, survey, dx, keys=keys, epochs=2, learning_rate=10.0, forward_kwargs=fk,
                     progress=False, devices=4)
    one = fit(param, d2[1], survey, dx, key=keys[1], epochs=2, learning_rate=10.0, forward_kwargs=fk,
              progress=False, devices=1)
    res["seeds_mesh_rel"] = float(np.max(np.abs(many.history["loss"][1] - one.history["loss"])
                                         / np.abs(one.history["loss"])))
    # the method schedules inside the compiled epoch: WECI weight, TV decay, multiscale bands
    sch = fit(param, d_obs, survey, dx, epochs=4, key=jax.random.key(1), learning_rate=10.0, forward_kwargs=fk,
              progress=False, devices=1, misfit="weci", regularizer="tv", multiscale=[4.0, 8.0])
    res["sched_finite"] = bool(np.all(np.isfinite(sch.history["loss"])))
    res["sched_bands"] = sch.history["band_hz"].tolist()
    res["sched_reg_positive"] = bool(np.all(sch.history["regularizer"] > 0))
    print("RESULT " + json.dumps(res))
    """
)


_INVERT_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    import jaxfwi
    if not hasattr(jaxfwi, "invert"):  # until jaxfwi/__init__.py re-exports it
        import jaxfwi.inversion
        jaxfwi.invert = jaxfwi.inversion.invert
    nz, nx, dx = 12, 24, 20.0
    v_true = np.full((nz, nx), 2000.0, np.float32); v_true[6:] = 2400.0
    v_init = np.full((nz, nx), 2200.0, np.float32)
    w = jaxfwi.ricker(8.0, 40, 0.002, delay=0.06)
    survey = jaxfwi.Survey.surface_line((nz, nx), 1, w, 0.002, src_first=nx // 2)
    d_obs = jaxfwi.forward(v_true, dx, survey)  # the defaults invert uses: accuracy 8, PML 20
    result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300, key=jax.random.key(0))
    h = result.history
    print("RESULT " + json.dumps(dict(shape=list(result.velocity.shape), finite=bool(np.all(np.isfinite(
        result.velocity))), n=len(h["loss"]), first=float(h["loss"][0]), last=float(h["loss"][-1]))))
    """
)


def _spawn(script, **env_extra):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _collect(proc, timeout=400):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    import json
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module", autouse=True)
def subprocesses(request):
    """Start the 4-device run and the fresh-interpreter invert() call at module setup (only those
    whose tests are selected), so that they overlap the in-process tests; the tests at the end
    of the module collect them."""
    names = {item.name for item in request.session.items}
    procs = {}
    if any(n.startswith("test_sharded") for n in names):
        procs["sharded"] = _spawn(_SHARDED_SCRIPT)
    if "test_invert_exact_call" in names:
        procs["invert"] = _spawn(_INVERT_SCRIPT)
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.communicate()


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("method", list(RECOVERY))
def test_recovers_layered_model(problem, params_of, method):
    lr, factor = RECOVERY[method]
    r = _fit(problem, params_of(method), epochs=EPOCHS, learning_rate=lr)
    m0 = float(mse(problem["v_init"], problem["v_true"]))
    h = r.history
    assert h["loss"].shape == (EPOCHS,) and h["mse"].shape == (EPOCHS,) and h["ssim"].shape == (EPOCHS,)
    assert np.all(np.isfinite(h["loss"]))
    assert h["loss"][-1] < 0.05 * h["loss"][0]
    assert r.velocity.shape == (NZ, NX)
    ratio = r.metrics["mse"] / m0
    assert ratio < factor, f"{method}: model MSE ratio {ratio:.3f} (expected < {factor})"
    assert r.metrics["mse"] == pytest.approx(float(h["mse"][-1]), rel=1e-4)
    assert h["ssim"][-1] > h["ssim"][0]


# --------------------------------------------------------------------------- checkpoints


class _Kill(Exception):
    pass


def test_resume_equals_uninterrupted(problem, params_of, tmp_path):
    param = params_of("adfwi")
    kw = dict(epochs=8, learning_rate=20.0, key=jax.random.key(3))
    full = _fit(problem, param, **kw)

    def kill_at_5(done, params):
        if done == 5:
            raise _Kill()

    d = tmp_path / "ckpt"
    with pytest.raises(_Kill):
        _fit(problem, param, checkpoint_dir=d, checkpoint_every=3, callback=kill_at_5, **kw)
    with np.load(d / "checkpoint.npz") as z:
        assert int(z["epochs_done"]) == 3
    resumed = _fit(problem, param, checkpoint_dir=d, checkpoint_every=3, **kw)
    assert resumed.epochs == 8
    np.testing.assert_array_equal(resumed.velocity, full.velocity)
    for k in ("loss", "misfit", "grad_norm", "mse"):
        np.testing.assert_array_equal(resumed.history[k], full.history[k])
    # a resumed run with other settings is refused, naming the field
    with pytest.raises(ValueError, match=r"another run(.|\n)*learning_rate: 20.0 -> 10.0"):
        _fit(problem, param, checkpoint_dir=d, **dict(kw, learning_rate=10.0))


def test_snapshots_and_callback(problem, params_of):
    seen = []
    r = _fit(problem, params_of("adfwi"), epochs=4, learning_rate=20.0, snapshot_params_every=2,
             callback=lambda e, p: seen.append(e))
    assert seen == [0, 1, 2, 3, 4]
    assert [e for e, _ in r.snapshots] == [0, 2, 4]
    np.testing.assert_array_equal(r.snapshots[-1][1]["net"]["field"], np.asarray(r.params["net"]["field"]))
    # returning True stops early
    r2 = _fit(problem, params_of("adfwi"), epochs=4, learning_rate=20.0, callback=lambda e, p: e == 2)
    assert r2.epochs == 2 and r2.history["loss"].shape == (2,)
    np.testing.assert_array_equal(r2.history["loss"], r.history["loss"][:2])


# --------------------------------------------------------------------------- NaN


def test_nonfinite_loss_raises_and_keeps_checkpoint(problem, params_of, tmp_path):
    # a misfit that turns NaN from epoch 3 on: the params after 3 updates are the first bad ones
    def nan_from_3(d_syn, d_obs, it, n_it):
        return jnp.sum((d_syn - d_obs) ** 2) * jnp.where(it >= 3, jnp.nan, 1.0)

    param = params_of("adfwi")
    d = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"non-finite at epoch 3") as info:
        _fit(problem, param, epochs=6, learning_rate=20.0, misfit=nan_from_3, checkpoint_dir=d, checkpoint_every=1)
    assert info.value.epoch == 3
    assert len(info.value.history["loss"]) == 3
    assert np.all(np.isfinite(info.value.history["loss"]))
    assert str(d) in str(info.value) and "resume='new_learning_rate'" in str(info.value)
    # the checkpoint holds the last good state: 2 epochs (the params after 3 updates gave the NaN)
    assert info.value.good_epochs == 2
    with np.load(d / "checkpoint.npz") as z:
        assert int(z["epochs_done"]) == 2
        assert all(np.all(np.isfinite(z[k])) for k in z.files if k.startswith("state_"))

# --------------------------------------------------------------------------- run identity (issue 11)


def test_resume_refuses_another_run(problem, params_of, tmp_path):
    """Everything that determines the result is in the checkpoint's fingerprint: a call that differs
    in any of it is refused (before anything is compiled), naming the field, and the file is kept."""
    param = params_of("adfwi")
    kw = dict(epochs=8, learning_rate=20.0, key=jax.random.key(3))
    d = tmp_path / "ckpt"
    _fit(problem, param, checkpoint_dir=d, callback=lambda done, p: done == 2, checkpoint_every=100, **kw)
    before = (d / "checkpoint.npz").read_bytes()
    survey, d_obs = problem["survey"], problem["d_obs"]
    moved = jaxfwi.Survey(np.asarray(survey.sources) + np.array([0, 1]), survey.receivers, survey.wavelet, survey.dt)
    v_other = problem["v_init"][::-1].copy()  # another initial model with the same maximum
    cases = {
        "observed data": dict(d_obs=d_obs + 1e-3 * np.abs(np.asarray(d_obs)).max()),
        "observed data (d_obs)": dict(d_obs=jnp.zeros_like(d_obs)),
        "dx": dict(dx=21.0),
        "initial model (v_init)": dict(param=models.build("adfwi", v_other)),
        "survey.sources": dict(survey=moved),
        "survey.wavelet": dict(survey=survey.with_wavelet(-survey.wavelet)),
        "parameterisation.scale": dict(param=models.build("adfwi", problem["v_init"], scale=10.0)),
        "key": dict(key=jax.random.key(4)),
        "shot_order": dict(shot_order="cyclic"),
        "forward.pml_width": dict(forward_kwargs=dict(FK, pml_width=7)),
    }
    for field, change in cases.items():
        args = dict(param=param, d_obs=d_obs, survey=survey, dx=DX, forward_kwargs=FK, **kw)
        args.update(change)
        with pytest.raises(ValueError, match="belongs to another run") as info:
            fit(args.pop("param"), args.pop("d_obs"), args.pop("survey"), args.pop("dx"), checkpoint_dir=d,
                v_true=problem["v_true"], progress=False, **args)
        msg = str(info.value)
        assert field in msg and "resume=False" in msg and "--fresh" in msg, msg
    assert (d / "checkpoint.npz").read_bytes() == before
    # more epochs than a checkpoint holds is fine; fewer is refused
    with pytest.raises(ValueError, match="holds 2 finished epochs, more than epochs=1"):
        _fit(problem, param, checkpoint_dir=d, **dict(kw, epochs=1))


def test_extending_a_finished_run_equals_the_longer_run(problem, params_of, tmp_path):
    param = params_of("adfwi")
    kw = dict(learning_rate=20.0, key=jax.random.key(3))
    d = tmp_path / "ext"
    assert checkpoint_epochs(d) is None
    short = _fit(problem, param, epochs=3, checkpoint_dir=d, **kw)
    assert short.epochs == 3 and checkpoint_epochs(d) == 3 == checkpoint_epochs(d / "checkpoint.npz")
    longer = _fit(problem, param, epochs=5, checkpoint_dir=d, **kw)
    full = _fit(problem, param, epochs=5, **kw)
    assert longer.epochs == 5
    np.testing.assert_array_equal(longer.velocity, full.velocity)
    for k in ("loss", "grad_norm", "mse", "v_max"):
        np.testing.assert_array_equal(longer.history[k], full.history[k])
    # resume=False starts over in the same folder (here: another learning rate, overwritten)
    other = _fit(problem, param, epochs=2, checkpoint_dir=d, resume=False, **dict(kw, learning_rate=10.0))
    assert other.epochs == 2 and not np.array_equal(other.history["loss"], full.history["loss"][:2])


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "random bytes", "empty"])
def test_damaged_checkpoint_names_the_file(problem, params_of, tmp_path, damage):
    param = params_of("adfwi")
    d = tmp_path / "dmg"
    kw = dict(epochs=1, learning_rate=20.0, key=jax.random.key(3))
    _fit(problem, param, checkpoint_dir=d, **kw)
    f = d / "checkpoint.npz"
    raw = bytearray(f.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "flipped byte":
        i = raw.find(b"state_0") + 200  # inside the first state array
        raw[i] ^= 0x01
    elif damage == "random bytes":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        raw = bytearray()
    f.write_bytes(bytes(raw))
    if damage != "flipped byte":  # a flipped byte inside the state still reads epochs_done
        assert checkpoint_epochs(d) is None
    with pytest.raises(ValueError, match="damaged") as info:
        _fit(problem, param, checkpoint_dir=d, **kw)
    msg = str(info.value)
    assert str(f) in msg and "resume=False" in msg and "allow_pickle" not in msg, msg
    # starting over replaces it
    assert _fit(problem, param, checkpoint_dir=d, resume=False, **kw).epochs == 1
    assert _fit(problem, param, checkpoint_dir=d, **kw).epochs == 1


def test_divergence_keeps_last_good_state_and_continues_with_new_learning_rate(problem, tmp_path):
    """Without bounds, a too large step takes the model above the max_vel the time step is planned
    for at epoch 2's update: the run stops before propagating it, the checkpoint holds the 2 good
    epochs, the same call is refused, and resume="new_learning_rate" continues from them."""
    param = models.build("adfwi", problem["v_init"], bounds=None)
    d = tmp_path / "div"
    kw = dict(epochs=5, key=jax.random.key(3), checkpoint_dir=d)
    with pytest.raises(NonFiniteLossError, match=r"update of epoch 2 .*outside \(0, max_vel=3375\]") as info:
        _fit(problem, param, learning_rate=450.0, **kw)
    assert info.value.good_epochs == 2 and info.value.checkpoint == str(d / "checkpoint.npz")
    first = info.value.history["loss"]
    with pytest.raises(ValueError, match="diverged"):
        _fit(problem, param, learning_rate=450.0, **kw)
    with pytest.raises(ValueError, match="learning_rate: 450.0 -> 20.0"):
        _fit(problem, param, learning_rate=20.0, **kw)
    r = _fit(problem, param, learning_rate=20.0, resume="new_learning_rate", **kw)
    assert r.epochs == 5
    np.testing.assert_array_equal(r.history["loss"][:2], first[:2])
    assert np.all(r.history["v_max"] <= 3375.0) and np.all(r.history["v_min"] > 0)
    # the continued run now resumes as itself
    assert _fit(problem, param, learning_rate=20.0, **dict(kw, epochs=5)).epochs == 5


def test_default_bounds_keep_every_model_physical(problem, params_of):
    """adfwi with learning_rate=600 (issue 11: -3808..5940 m/s before): every velocity stays in the
    default bounds (0.5 min, 1.25 max of v_init) = the max_vel the time step is planned for, and the
    history counts the cells held at the bounds."""
    param = params_of("adfwi")
    assert param.bounds == (1000.0, 3375.0)
    r = _fit(problem, param, epochs=4, learning_rate=600.0)
    assert float(r.velocity.min()) >= 1000.0 and float(r.velocity.max()) <= 3375.0
    h = r.history
    assert np.all(h["v_min"] >= 1000.0) and np.all(h["v_max"] <= 3375.0)
    assert h["at_lower"][-1] > 0 and h["at_upper"][-1] > 0
    for method in models.METHODS:
        b = models.build(method, problem["v_init"]).bounds
        assert b == models.default_bounds(problem["v_init"]), method
    assert models.build("adfwi", problem["v_init"], bounds=None).bounds is None


def test_gradient_memory_checked_before_compiling(problem, params_of, monkeypatch):
    from jaxfwi.inversion import GradientMemoryError, memory
    from jaxfwi.physics.propagation import plan_propagation

    plan, _ = plan_propagation(problem["v_init"], DX, problem["survey"], **FK)
    full = memory.gradient_bytes(plan, 3, 64)
    assert memory.gradient_bytes(plan, 1, 64) < full
    assert memory.gradient_bytes(plan, 3, 64, checkpoint=5) != full
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1000)
    with pytest.raises(GradientMemoryError, match=r"GiB(.|\n)*shot_batch(.|\n)*checkpoint") as info:
        _fit(problem, params_of("adfwi"), epochs=1, learning_rate=20.0)
    assert "Nothing was compiled" in str(info.value)


# --------------------------------------------------------------------------- multi-seed


def test_multiseed_vmap_equals_loop(problem, params_of):
    param = params_of("ifwi")
    keys = jax.random.split(jax.random.key(7), 2)
    kw = dict(epochs=4, learning_rate=1e-4)
    many = fit_seeds(param, problem["d_obs"], problem["survey"], DX, keys=keys, v_true=problem["v_true"],
                     forward_kwargs=FK, progress=False, **kw)
    assert many.velocity.shape == (2, NZ, NX)
    assert many.history["loss"].shape == (2, 4)
    assert not np.allclose(many.velocity[0], many.velocity[1])
    for i in range(2):
        one = _fit(problem, param, key=keys[i], **kw)
        # equal up to float32 rounding (batched vs unbatched matmuls in the SIREN; 1e-2 m/s was
        # exceeded by 1e-5 m/s in one cell with 512-bit vectors): 1e-5 of the ~2000 m/s values
        np.testing.assert_allclose(many.velocity[i], one.velocity, rtol=0, atol=2e-2)
        np.testing.assert_allclose(many.history["loss"][i], one.history["loss"], rtol=2e-5)
        np.testing.assert_allclose(many.history["mse"][i], one.history["mse"], rtol=2e-5)
        assert many.metrics[i]["mse"] == pytest.approx(one.metrics["mse"], rel=2e-5)


# --------------------------------------------------------------------------- invert()


def test_invert_exact_call(subprocesses):
    # in a fresh interpreter (see _INVERT_SCRIPT): one shot, 12 x 24 cells, invert's defaults
    # (accuracy 8, PML 20), data modelled with the same defaults:
    #     result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300,
    #                            key=jax.random.key(0))
    res = _collect(subprocesses["invert"])
    assert res["shape"] == [12, 24] and res["finite"] and res["n"] == 300
    assert res["last"] < 0.2 * res["first"], res


def test_invert_method_defaults():
    from jaxfwi.inversion import method_defaults
    assert method_defaults("adfwi")["learning_rate"] == 5.0
    assert method_defaults("ADFWI-TV")["regularizer"] == "tv"
    assert method_defaults("weci_fwi")["misfit"] == "weci"
    assert method_defaults("ms-fwi")["multiscale"] is True
    assert method_defaults("ig-fwi")["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="unknown method"):
        method_defaults("nope")


def test_method_objectives_and_options():
    from jaxfwi import objectives, signal
    from jaxfwi.inversion import methods, objective

    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=(4, 100)), jnp.float32) for _ in range(2))
    m = objective.resolve_misfit("weci")
    for it in (0, 50, 99):
        want = objectives.weci(a, b, objectives.weci_weight(it, 100))
        np.testing.assert_allclose(m(a, b, it, 100), want, rtol=1e-6)
    np.testing.assert_allclose(objective.resolve_misfit("l2")(a, b, 0, 1), objectives.l2(a, b), rtol=1e-6)
    v = jnp.asarray(2000.0 + 100.0 * rng.normal(size=(12, 20)), jnp.float32)
    tv = objective.resolve_regularizer("tv", spacing=(10.0, 20.0))  # ADFWI: |D v| / h_km, anisotropic
    for ep in (0, 19, 20, 45):
        w = 2e-9 * 0.9 ** (ep // 20)
        want = w * (np.abs(np.diff(v, axis=0)).sum() / 0.01 + np.abs(np.diff(v, axis=1)).sum() / 0.02)
        np.testing.assert_allclose(tv(v, ep), want, rtol=1e-4)
    assert [objective.band_index(e, 12, 6) for e in range(12)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert objective.resolve_bands(True, 0.002) == (4.0, 6.0, 8.0, 10.0, 12.0, 14.0)
    np.testing.assert_allclose(objective.apply_band(a, 2, (4.0, 6.0, 8.0), 0.002), signal.lowpass(a, 8.0, 0.002),
                               rtol=1e-5, atol=1e-6)
    v_init = np.full((12, 20), 2000.0, np.float32)
    name, param, kw, _, _ = methods._prepare("MS_FWI", v_init, dict(accuracy=4, v_true=v_init))
    assert name == "ms-fwi" and kw["multiscale"] is True and kw["learning_rate"] == 5.0
    assert kw["forward_kwargs"] == {"accuracy": 4} and "v_true" in kw
    _, param, kw, _, _ = methods._prepare("ifwi", v_init, dict(width=8, optimizer=None))
    assert param.module.width == 8 and "learning_rate" not in kw


def test_bad_input_messages(problem, params_of):
    param = params_of("adfwi")
    with pytest.raises(ValueError, match="d_obs has shape"):
        fit(param, problem["d_obs"][:2], problem["survey"], DX, epochs=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="updates_per_epoch"):
        fit(param, problem["d_obs"], problem["survey"], DX, epochs=1, key=jax.random.key(0), shot_batch=1,
            updates_per_epoch=2, forward_kwargs=FK)
    with pytest.raises(ValueError, match="key is required"):
        fit(param, problem["d_obs"], problem["survey"], DX, epochs=1, key=None)
    with pytest.raises(ValueError, match="unknown option"):
        fit(param, problem["d_obs"], problem["survey"], DX, epochs=1, key=jax.random.key(0),
            forward_kwargs={"acuracy": 4})


# --------------------------------------------------------------------------- sharding


def test_sharded_equals_single_device_and_schedules(subprocesses):
    res = _collect(subprocesses["sharded"])
    assert res["grad_nonzero"]
    assert res["loss_rel"] < 1e-5, res
    assert res["grad_rel"] < 1e-5, res
    assert res["hist_rel"] < 1e-5, res
    assert res["vel_abs"] < 1e-2, res
    # one-shot mini-batches with gradient accumulation = the full-batch update
    assert res["acc_hist_rel"] < 1e-5, res
    assert res["acc_vel_abs"] < 1e-2, res
    # vmapped seeds on the mesh = one seed on one device
    assert res["seeds_mesh_rel"] < 1e-5, res
    # WECI + TV + multiscale compiled together: finite, bands split evenly over the epochs
    assert res["sched_finite"] and res["sched_reg_positive"], res
    assert res["sched_bands"] == [4.0, 4.0, 8.0, 8.0], res


# --------------------------------------------------------------------------- shot-group gradient


def _store_fits_at_most(monkeypatch, n_max):
    """Make the memory rule store the wavefields of at most ``n_max`` shots (the tiny problem fits all)."""
    from jaxfwi import devices

    real = devices.default_store_wavefield
    monkeypatch.setattr(devices, "default_store_wavefield",
                        lambda shape, pml, acc, nt, n, *a, **k: n <= n_max and real(shape, pml, acc, nt, n, *a, **k))


def test_shot_group_gradient_equals_the_stored_gradient(problem, params_of, monkeypatch):
    """When the wavefields of all 3 shots do not fit but those of 2 do, make_loss's gradient runs a group of
    2 shots and then the remaining shot (forward, misfit, adjoint each); value and gradient equal the
    all-shots stored gradient, and the choice is recorded."""
    from jaxfwi.inversion import make_loss

    param = params_of("adfwi")
    p0 = param.init(jax.random.key(0))
    p0 = jax.tree_util.tree_map(lambda x: x + 40.0 * jnp.sin(jnp.arange(x.size).reshape(x.shape) / 3.0), p0)
    plain = make_loss(param, problem["survey"], DX, forward_kwargs=FK)
    assert plain.shot_group is None and plain.gradient["storage"] == "store"
    _store_fits_at_most(monkeypatch, 2)
    grouped = make_loss(param, problem["survey"], DX, forward_kwargs=FK)
    assert grouped.shot_group == 2 and grouped.plan.store_wavefield and grouped.plan.shot_batch == 2
    assert grouped.gradient["storage"] == "store per shot group"
    _store_fits_at_most(monkeypatch, 0)
    seg = make_loss(param, problem["survey"], DX, forward_kwargs=FK)
    assert seg.shot_group is None and not seg.plan.store_wavefield and seg.gradient["storage"] == "segments"
    assert seg.gradient["checkpoint"] == int(np.ceil(np.sqrt(seg.plan.nt_internal)))
    lp, gp = jax.jit(jax.value_and_grad(plain))(p0, problem["d_obs"])
    lg, gg = jax.jit(jax.value_and_grad(grouped))(p0, problem["d_obs"])
    assert float(lg) == pytest.approx(float(lp), rel=1e-5)
    assert float(grouped(p0, problem["d_obs"])) == pytest.approx(float(lp), rel=1e-5)  # undifferentiated: plain sum
    a, b = np.asarray(gp["net"]["field"]), np.asarray(gg["net"]["field"])
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * np.abs(a).max())


def test_fit_picks_shot_groups_when_a_batch_does_not_fit(problem, params_of, monkeypatch):
    """fit and fit_seeds under a memory that holds 2 of the 3 shots' wavefields: one group of 2 + 1, the
    same run as the all-shots stored gradient, and the choice in ``result.gradient``."""
    param = params_of("adfwi")
    kw = dict(epochs=3, learning_rate=20.0)
    ref = _fit(problem, param, **kw)
    assert ref.gradient["storage"] == "store" and ref.gradient["shot_group"] is None
    _store_fits_at_most(monkeypatch, 2)
    got = _fit(problem, param, **kw)
    assert got.gradient == dict(ref.gradient, storage="store per shot group", shot_group=2)
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(got.velocity, ref.velocity, rtol=0, atol=1e-2)
    # two vmapped seeds need the wavefields of 2 x 3 shots: groups of 1 shot x 2 seeds fit
    keys = jax.random.split(jax.random.key(0), 2)
    many = fit_seeds(param, problem["d_obs"], problem["survey"], DX, keys=keys, v_true=problem["v_true"],
                     forward_kwargs=FK, progress=False, **kw)
    assert many.gradient["shot_group"] == 1
    np.testing.assert_allclose(many.history["loss"][0], ref.history["loss"], rtol=1e-5)


# --------------------------------------------------------------------------- discrepancy stop


def test_stop_misfit_stops_at_the_first_epoch_that_reaches_it_and_stays_stopped(problem, params_of, tmp_path):
    param = params_of("adfwi")
    ref = _fit(problem, param, epochs=6, learning_rate=20.0)
    mis = ref.history["misfit"]
    stop = float(mis[3])
    want = int(np.nonzero(mis <= stop)[0][0]) + 1  # epochs done when the first such epoch has run
    assert want < 6
    got = _fit(problem, param, epochs=6, learning_rate=20.0, stop_misfit=stop, checkpoint_dir=tmp_path)
    assert got.epochs == want and len(got.history["misfit"]) == want
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"][:want], rtol=1e-6)
    again = _fit(problem, param, epochs=6, learning_rate=20.0, stop_misfit=stop, checkpoint_dir=tmp_path)
    assert again.epochs == want
    np.testing.assert_array_equal(again.velocity, got.velocity)
    more = _fit(problem, param, epochs=6, learning_rate=20.0, checkpoint_dir=tmp_path)  # no stop: runs on
    assert more.epochs == 6
    np.testing.assert_allclose(more.velocity, ref.velocity, rtol=0, atol=1e-2)
    with pytest.raises(ValueError, match="stop_misfit=-1.0"):
        _fit(problem, param, epochs=6, stop_misfit=-1.0)
