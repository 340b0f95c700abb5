"""Tests of jaxfwi.kernels: exact kernels, side selection, spectra, jvp through the propagator.

All tests run in float64 (``jax.enable_x64`` context, not the global flag) on tiny problems.
"""
import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfwi
import jaxfwi.kernels as K


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- helpers
class TinyMLP(nn.Module):
    width: int = 8
    out: int = 1

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(self.width, param_dtype=jnp.float64)(x))
        return nn.Dense(self.out, param_dtype=jnp.float64)(h)


def flat_jacobian_ref(f, params):
    """Reference Jacobian [n_out, n_params] via jax.jacrev, leaves concatenated in ravel_pytree order."""
    jac = jax.jacrev(f)(params)
    n_out = int(np.prod(jax.eval_shape(f, params).shape))
    leaves = jax.tree.leaves(jac)
    return jnp.concatenate([leaf.reshape(n_out, -1) for leaf in leaves], axis=1)


NZ, DX, NT, DT = 40, 10.0, 200, 1e-3


def problem_1d(checkpoint=None, receivers=((1,), (20,))):
    """1-D model (40 cells), one shot near the top, two receivers, accuracy 4."""
    v = jnp.linspace(1800.0, 2600.0, NZ, dtype=jnp.float64)
    w = jaxfwi.ricker(12.0, NT, DT)
    survey = jaxfwi.Survey([[[2]]], [list(receivers)], w, DT)
    G = K.make_forward(survey, DX, max_vel=3200.0, accuracy=4, pml_width=10, checkpoint=checkpoint)
    return v, G


def mlp_velocity(v_init):
    mlp = TinyMLP(width=12)
    x = jnp.linspace(-1.0, 1.0, v_init.shape[0], dtype=jnp.float64)[:, None]
    params = mlp.init(jax.random.key(3), x)

    def represent(p):
        return v_init + 100.0 * mlp.apply(p, x)[:, 0]

    return represent, params


# --------------------------------------------------------------------------- 1. exact NTKs
def test_ntk_matches_jacrev_on_mlp():
    mlp = TinyMLP(width=10, out=2)
    x = jax.random.normal(jax.random.key(0), (7, 3), jnp.float64)
    params = mlp.init(jax.random.key(1), x)
    f = lambda p: mlp.apply(p, x)  # noqa: E731
    J = flat_jacobian_ref(f, params)
    ref = J @ J.T
    Kx = K.ntk(f, params)
    assert Kx.shape == (14, 14) and Kx.dtype == jnp.float64
    np.testing.assert_allclose(Kx, ref, rtol=1e-12, atol=1e-12 * float(jnp.abs(ref).max()))
    # both sides and small chunks give the same matrix
    for mode in ("fwd", "rev"):
        np.testing.assert_allclose(K.ntk(f, params, mode=mode, chunk=3), ref, rtol=1e-12,
                                   atol=1e-12 * float(jnp.abs(ref).max()))


def test_wave_ntk_equals_factors_and_identity_case():
    v, G = problem_1d()
    represent, params = mlp_velocity(v)
    m0 = represent(params)
    # independently materialised factors: jax.jacfwd for J_m, jax.jacrev for dm/dtheta
    Jm = jax.jacfwd(lambda m: G(m).ravel())(m0)
    Jr = flat_jacobian_ref(represent, params)
    ref = Jm @ (Jr @ Jr.T) @ Jm.T
    scale = float(jnp.abs(ref).max())
    for strategy in ("factored", "direct"):
        Th = K.wave_ntk(G, represent, params, strategy=strategy)
        np.testing.assert_allclose(Th, ref, rtol=1e-9, atol=1e-10 * scale)
    # ComposedMap products agree with the dense kernel (jvp of vjp)
    cm = K.ComposedMap(G, represent, params)
    u = jax.random.normal(jax.random.key(5), (cm.n_data,), jnp.float64)
    np.testing.assert_allclose(cm.ntk(u), ref @ u, rtol=1e-9, atol=1e-10 * scale * float(jnp.abs(u).sum()))
    # model-domain counterparts
    Kth = K.representation_ntk(represent, params)
    np.testing.assert_allclose(Kth, Jr @ Jr.T, rtol=1e-12, atol=1e-12 * float(jnp.abs(Kth).max()))
    H = K.sensitivity_kernel(G, m0)
    np.testing.assert_allclose(H, Jm.T @ Jm, rtol=1e-9, atol=1e-12 * float(jnp.abs(H).max()))
    nsk = K.neural_sensitivity_kernel(G, represent, params)
    np.testing.assert_allclose(nsk, Kth @ H, rtol=1e-9, atol=1e-10 * float(jnp.abs(nsk).max()))
    # eigenvalues of the (non-symmetric) NSK = non-zero eigenvalues of Theta
    lam_nsk = np.sort(np.linalg.eigvals(np.asarray(nsk)).real)[::-1]
    lam_th = np.asarray(K.eigvalsh_desc(ref))
    top = slice(0, int(np.sum(lam_th > 1e-8 * lam_th[0])))  # the rest is round-off
    assert top.stop >= 4
    np.testing.assert_allclose(lam_nsk[top], lam_th[top], rtol=1e-6)
    sf = K.spectral_filtering(G, represent, params, normalize=False)
    np.testing.assert_allclose(sf["nsk"][top], lam_th[top], rtol=1e-6)
    # factor route: eigenvalues from svd, Frobenius norm from the small side
    lam_f = K.eigenvalues_from_factor(K.wave_ntk_factor(G, represent, params))
    assert lam_f.shape == (cm.n_data,)
    np.testing.assert_allclose(lam_f[top], lam_th[top], rtol=1e-7)
    np.testing.assert_allclose(K.wave_ntk_frobenius(G, represent, params), jnp.linalg.norm(ref), rtol=1e-9)

    # identity (grid) representation: Theta equals the wave kernel
    grid = lambda p: v + p  # noqa: E731
    Tw = K.wave_ntk(G, grid, jnp.zeros_like(v))
    Wk = K.wave_kernel(G, v)
    np.testing.assert_allclose(Tw, Wk, rtol=1e-10, atol=1e-12 * float(jnp.abs(Wk).max()))
    Jv = jax.jacfwd(lambda m: G(m).ravel())(v)
    np.testing.assert_allclose(Wk, Jv @ Jv.T, rtol=1e-9, atol=1e-12 * float(jnp.abs(Wk).max()))


# --------------------------------------------------------------------------- 2. spectra
def test_lanczos_and_randomized_match_eigh():
    v, G = problem_1d()
    represent, params = mlp_velocity(v)
    sub = K.DataSubsample(time_step=2)
    Th = K.wave_ntk(G, represent, params, subsample=sub)
    lam, V = K.eigh_desc(Th)
    assert np.all(np.diff(np.asarray(lam)) <= 1e-12 * float(lam[0]))
    cm = K.ComposedMap(G, represent, params, subsample=sub)
    assert cm.n_data == Th.shape[0] == 2 * NT // 2
    k = 6
    res = K.lanczos(cm.ntk, cm.n_data, k, key=jax.random.key(0), max_iter=60, tol=1e-12)
    rel = np.abs(res.values - np.asarray(lam[:k])) / np.asarray(lam[:k])
    assert rel.max() < 1e-4, rel
    assert res.residuals.max() < 1e-5 * float(lam[0]), res.residuals
    # the Ritz vectors are the eigenvectors (up to sign)
    overlap = np.abs(np.sum(res.vectors[:, :3] * np.asarray(V[:, :3]), axis=0))
    assert overlap.min() > 1 - 1e-5
    # the same on a dense PSD matrix with a known spectrum
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((120, 120)))
    true = 10.0 ** -np.linspace(0, 6, 120)
    A = jnp.asarray((Q * true) @ Q.T)
    r2 = K.lanczos(lambda x: A @ x, 120, 8, key=jax.random.key(1))
    np.testing.assert_allclose(r2.values, true[:8], rtol=1e-8)
    r3 = K.randomized_eigh(lambda x: A @ x, 120, 8, key=jax.random.key(2), oversample=20, power_iters=4)
    np.testing.assert_allclose(r3.values[:4], true[:4], rtol=1e-6)
    exact = np.linalg.norm(np.asarray(A) @ r3.vectors - r3.vectors * r3.values, axis=0)
    np.testing.assert_allclose(r3.residuals, exact, rtol=1e-6, atol=1e-14)
    # decay helpers
    d = K.normalized_decay(jnp.asarray(true))
    assert float(d[0]) == 1.0 and K.decay_index(true, 1e-3) == int(np.argmax(true < 1e-3))


# --------------------------------------------------------------------------- 3. side selection
def test_side_selection_rows_equal_columns():
    # generic nonlinear map, wide and tall
    A = jax.random.normal(jax.random.key(0), (9, 5), jnp.float64)
    f = lambda x: jnp.sin(A @ x["a"]) * jnp.sum(x["b"] ** 2)  # noqa: E731
    x = {"a": jnp.linspace(0.1, 1.0, 5), "b": jnp.arange(3.0)}
    Jc = K.jacobian(f, x, mode="fwd", chunk=2)
    Jr = K.jacobian(f, x, mode="rev", chunk=4)
    assert Jc.shape == (9, 8)
    np.testing.assert_allclose(Jc, Jr, rtol=1e-12, atol=1e-13)
    assert K.resolve_mode("auto", 9, 8) == "fwd" and K.resolve_mode("auto", 3, 8) == "rev"
    # through the wave propagator, with a data sub-sample (receiver and time decimation)
    v, G = problem_1d()
    sub = K.DataSubsample(time_step=3, receivers=(1,))
    Jc = K.wave_jacobian(G, v, subsample=sub, mode="fwd", chunk=7)
    Jr = K.wave_jacobian(G, v, subsample=sub, mode="rev")
    assert Jc.shape == (len(range(0, NT, 3)), NZ)
    np.testing.assert_allclose(Jc, Jr, rtol=1e-9, atol=1e-12 * float(jnp.abs(Jc).max()))
    full = K.wave_jacobian(G, v, mode="fwd").reshape(1, 2, NT, NZ)
    np.testing.assert_allclose(Jc, full[0, 1, ::3], rtol=1e-12, atol=1e-14 * float(jnp.abs(Jc).max()))


def test_data_subsample():
    d = jnp.arange(3 * 4 * 10.0).reshape(3, 4, 10)
    s = K.DataSubsample(time_step=2, receivers=[0, 3], shots=(2,))
    assert hash(s) == hash(K.DataSubsample(2, (0, 3), (2,)))
    np.testing.assert_array_equal(s(d), d[2:3][:, [0, 3], ::2])
    assert K.DataSubsample()(d) is d
    with pytest.raises(ValueError, match="time_step"):
        K.DataSubsample(time_step=0)


# --------------------------------------------------------------------------- 4. jvp through the propagator
@pytest.mark.parametrize("checkpoint", [None, 25])
def test_jvp_through_propagator_matches_finite_differences(checkpoint):
    v, G = problem_1d(checkpoint=checkpoint)
    dv = 20.0 * jax.random.normal(jax.random.key(7), (NZ,), jnp.float64)
    jv = jax.jvp(G, (v,), (dv,))[1]
    h = 1e-3
    fd = (G(v + h * dv) - G(v - h * dv)) / (2 * h)
    err = float(jnp.abs(fd - jv).max() / jnp.abs(jv).max())
    assert err < 1e-6, err
    # and the transpose: <J dv, u> == <dv, J^T u> (vjp through the checkpointed scan)
    u = jax.random.normal(jax.random.key(8), jv.shape, jnp.float64)
    _, pull = jax.vjp(G, v)
    lhs, rhs = float(jnp.vdot(jv, u)), float(jnp.vdot(dv, pull(u)[0]))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


# --------------------------------------------------------------------------- dynamics / views / shallow net
def test_shallow_net_dynamics_and_views():
    v, G = problem_1d()
    par = K.ShallowNTKVelocity(v, width=64, scale=50.0)
    p0 = par.init(jax.random.key(0))
    assert set(p0) == {"w", "b", "a"} and p0["a"].dtype == jnp.float64
    assert par.velocity(p0).shape == v.shape
    # NTK scaling: f = a . tanh(w x + b) / sqrt(n)
    x = par.coords
    f_ref = jnp.tanh(x @ p0["w"] + p0["b"]) @ p0["a"] / math.sqrt(64)
    np.testing.assert_allclose(par.field(p0), f_ref, rtol=1e-12)
    # Frobenius statistics vmapped over seeds == per-seed loop
    keys = jax.random.split(jax.random.key(1), 2)
    norm = lambda p: K.wave_ntk_frobenius(G, par.velocity, p)  # noqa: E731
    st = K.init_norm_stats(norm, par.init, keys)
    loop = np.array([float(norm(par.init(k))) for k in keys])
    np.testing.assert_allclose(st["values"], loop, rtol=1e-9)
    assert float(st["std"]) > 0
    # relative kernel change after a parameter perturbation is > 0, and 0 without one
    kfn = lambda p: K.wave_ntk(G, par.velocity, p)  # noqa: E731
    p1 = jax.tree.map(lambda a: a + 0.1, p0)
    assert float(K.kernel_change(kfn, p0, p0)) == 0.0
    assert float(K.kernel_change(kfn, p0, p1)) > 1e-4
    # residual projection onto eigenvectors, gradient wavenumber modulation, frequency bias
    Th = kfn(p0)
    lam, V = K.eigh_desc(Th)
    d_obs = G(v * 1.02)
    r = G(par.velocity(p0)) - d_obs
    c = K.project_residual(r, V)
    np.testing.assert_allclose(jnp.sum(c ** 2), jnp.sum(r ** 2), rtol=1e-9)
    pr = K.predicted_residual(c[:5], lam[:5], jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(pr[0], c[:5])
    gm = K.gradient_wavenumber_modulation(G, par.velocity, p0, d_obs, DX)
    g_ref = jax.grad(lambda m: 0.5 * jnp.sum((G(m) - d_obs) ** 2))(par.velocity(p0))
    np.testing.assert_allclose(gm["gradient"], g_ref, rtol=1e-9, atol=1e-12 * float(jnp.abs(g_ref).max()))
    Kth = K.representation_ntk(par.velocity, p0)
    np.testing.assert_allclose(gm["filtered"], Kth @ g_ref, rtol=1e-8,
                               atol=1e-10 * float(jnp.abs(Kth @ g_ref).max()))
    assert gm["k"].shape == gm["raw"].shape == gm["ratio"].shape
    spec2 = K.wavenumber_spectrum(np.random.default_rng(0).standard_normal((16, 20)), (10.0, 10.0))
    assert spec2["k"].shape == spec2["amplitude"].shape
    bands = K.default_bands(12.0)
    e = K.band_energy(r, DT, bands)
    t = np.arange(NT) * DT
    assert e.shape == (5,)
    low = np.sin(2 * np.pi * 5.0 * t)
    E = K.frequency_bias([low + np.sin(2 * np.pi * 20 * t), 0.1 * low + np.sin(2 * np.pi * 20 * t)],
                         DT, [(0.0, 8.0), (15.0, 25.0)])
    assert E[1, 0] < 0.05 and abs(E[1, 1] - 1) < 0.05


# --------------------------------------------------------------------------- named methods
def test_eigenvalues_of_named_methods():
    from jaxfwi import models

    v, _ = problem_1d()
    survey = jaxfwi.Survey([[[2]]], [[[1], [20]]], jaxfwi.ricker(12.0, NT, DT), DT)
    fw = dict(accuracy=4, pml_width=10)
    key = jax.random.key(4)
    # grid method: the wave kernel J_m J_m^T at v_init
    lam = K.eigenvalues("adfwi", v, survey, DX, key=key, **fw)
    assert lam.shape == (2 * NT,) and lam.dtype == jnp.float64
    assert np.all(np.diff(np.asarray(lam)) <= 0)
    G = K.make_forward(survey, DX, max_vel=float(v.max()), **fw)
    ref = K.eigvalsh_desc(K.wave_kernel(G, v))
    n = int(np.sum(ref > 1e-9 * ref[0]))
    np.testing.assert_allclose(lam[:n], ref[:n], rtol=1e-6)
    # a neural method: J_m K_theta J_m^T of build(method, v_init) initialised with `key`
    over = dict(width=16, depth=2)
    lam_s = K.eigenvalues("ifwi", v, survey, DX, key=key, model_overrides=over, **fw)
    par = models.build("ifwi", v, **over)
    p0 = par.init(key)
    Gs = K.make_forward(survey, DX, max_vel=float(par.velocity(p0).max()), **fw)
    ref_s = K.eigvalsh_desc(K.wave_ntk(Gs, par.velocity, p0))
    n = int(np.sum(ref_s > 1e-9 * ref_s[0]))
    np.testing.assert_allclose(lam_s[:n], ref_s[:n], rtol=1e-6)
    # at given params (a training snapshot): the kernel there, not at init
    p1 = jax.tree_util.tree_map(lambda a: 1.5 * a, p0)
    lam_p = K.eigenvalues("ifwi", v, survey, DX, params=p1, model_overrides=over, **fw)
    ref_p = K.eigvalsh_desc(K.wave_ntk(K.make_forward(survey, DX, max_vel=float(par.velocity(p1).max()), **fw),
                                       par.velocity, p1))
    n = int(np.sum(ref_p > 1e-9 * ref_p[0]))
    np.testing.assert_allclose(lam_p[:n], ref_p[:n], rtol=1e-6)
    assert not np.allclose(lam_p[:n], lam_s[:n], rtol=1e-3)
    # shot / time sub-sampling is explicit
    lam_sub = K.eigenvalues("adfwi", v, survey, DX, key=key, subsample=K.DataSubsample(time_step=2, shots=(0,)), **fw)
    assert lam_sub.shape == (NT,)
