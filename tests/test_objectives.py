"""Tests for jaxfwi.objectives (misfits and regularisers)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxfwi.objectives import (
    analytic_signal,
    combine,
    envelope,
    envelope_of,
    get_misfit,
    global_correlation,
    l1,
    l2,
    tikhonov,
    total_variation,
    trace_normalized_l2,
    tv_weight_schedule,
    weci,
    weci_weight,
)

KEY = jax.random.PRNGKey(0)
D_OBS = jax.random.normal(KEY, (2, 3, 64))
D_SYN = D_OBS + 0.3 * jax.random.normal(jax.random.PRNGKey(1), D_OBS.shape)

MISFITS = {
    "l2": l2,
    "l1": l1,
    "envelope": envelope,
    "gc": global_correlation,
    "trace_l2": trace_normalized_l2,
    "weci": lambda a, b: weci(a, b, 0.4),
}


@pytest.mark.parametrize("name", list(MISFITS))
def test_zero_at_match_positive_otherwise(name):
    f = MISFITS[name]
    assert abs(float(f(D_OBS, D_OBS))) < 1e-5
    assert float(f(D_SYN, D_OBS)) > 1e-3


@pytest.mark.parametrize("name", list(MISFITS))
def test_gradients_finite_including_zero_data(name):
    f = MISFITS[name]
    z = jnp.zeros_like(D_OBS)
    for a, b in ((D_SYN, D_OBS), (z, D_OBS), (z, z), (D_OBS, z), (D_OBS, D_OBS)):
        g = jax.grad(f)(a, b)
        assert g.shape == a.shape
        assert bool(jnp.all(jnp.isfinite(g))), (name, a is z, b is z)
    assert np.isfinite(float(jax.jit(f)(D_SYN, D_OBS)))


def test_l2_value_and_gradient_is_residual():
    r = D_SYN - D_OBS
    np.testing.assert_allclose(float(l2(D_SYN, D_OBS)), 0.5 * float(jnp.sum(r**2)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(l2)(D_SYN, D_OBS)), np.asarray(r), atol=1e-6)
    np.testing.assert_allclose(float(l1(D_SYN, D_OBS)), float(jnp.sum(jnp.abs(r))), rtol=1e-6)


def test_envelope_gradient_zero_where_envelope_zero():
    z = jnp.zeros_like(D_OBS)
    g = jax.grad(envelope)(z, D_OBS)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(envelope(z, D_OBS)) > 0


def test_analytic_signal_matches_scipy_hilbert():
    x = np.asarray(D_OBS)
    for n in (None, 80):
        ref = scipy.signal.hilbert(x, N=n, axis=-1)[..., : x.shape[-1]]
        got = np.asarray(analytic_signal(x, n))
        np.testing.assert_allclose(got, ref, atol=1e-4)
    # envelope of a modulated cosine is the modulation
    t = np.arange(512) / 512.0
    a = np.exp(-((t - 0.5) ** 2) / 0.01)
    e = np.asarray(envelope_of(a * np.cos(2 * np.pi * 60 * t)))
    np.testing.assert_allclose(e[100:400], a[100:400], atol=1e-2)


def test_global_correlation_scale_invariant_and_sign():
    base = float(global_correlation(D_SYN, D_OBS))
    for s in (1e-2, 0.5, 7.0, 1e3):
        np.testing.assert_allclose(float(global_correlation(s * D_SYN, D_OBS)), base, rtol=1e-3)
    # anti-correlated traces give the maximum 2 per trace
    n_traces = D_OBS.shape[0] * D_OBS.shape[1]
    np.testing.assert_allclose(float(global_correlation(-D_OBS, D_OBS)), 2.0 * n_traces, rtol=1e-5)
    # d_obs scaled: still a match
    assert abs(float(global_correlation(D_OBS, 3.0 * D_OBS))) < 1e-5
    # equals trace-normalised L2 for non-zero traces
    np.testing.assert_allclose(float(trace_normalized_l2(D_SYN, D_OBS)), base, rtol=1e-4)


def test_gc_gradient_matches_finite_difference():
    f = lambda a: global_correlation(a, D_OBS)  # noqa: E731
    g = jax.grad(f)(D_SYN)
    dirn = jax.random.normal(jax.random.PRNGKey(3), D_SYN.shape)
    h = 1e-2
    fd = (float(f(D_SYN + h * dirn)) - float(f(D_SYN - h * dirn))) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(g * dirn)), fd, rtol=2e-2)


def test_weci_schedule_and_mixture():
    n = 200
    w = np.asarray(weci_weight(jnp.arange(n + 1), n))
    assert w[0] > 0.999 and w[-1] < 1e-3
    assert np.all(np.diff(w) < 0)
    np.testing.assert_allclose(w[n // 2], 0.5, atol=1e-6)
    # width=1 reproduces a near-step switch at the midpoint
    assert float(weci_weight(95, n, width=1.0)) > 0.99 and float(weci_weight(105, n, width=1.0)) < 0.01
    e = float(envelope(D_SYN, D_OBS))
    gc = float(global_correlation(D_SYN, D_OBS))
    np.testing.assert_allclose(float(weci(D_SYN, D_OBS, 1.0)), e, rtol=1e-5)
    np.testing.assert_allclose(float(weci(D_SYN, D_OBS, 0.0)), gc, rtol=1e-5)
    np.testing.assert_allclose(float(weci(D_SYN, D_OBS, 0.25)), 0.25 * e + 0.75 * gc, rtol=1e-5)
    # traced weight under jit
    f = jax.jit(lambda it, a, b: weci(a, b, weci_weight(it, n)))
    np.testing.assert_allclose(float(f(0, D_SYN, D_OBS)), float(weci(D_SYN, D_OBS, w[0])), rtol=1e-5)
    with pytest.raises(ValueError, match="n_iterations"):
        weci_weight(0, 0)


def test_get_misfit_and_combine_and_errors():
    assert get_misfit("l2") is l2 and get_misfit("gc") is global_correlation
    assert get_misfit("trace_l2") is trace_normalized_l2 and get_misfit("weci") is weci
    assert get_misfit("envelope") is envelope and get_misfit("L1") is l1
    with pytest.raises(ValueError, match="unknown misfit"):
        get_misfit("nope")
    c = combine((2.0, l2), l1)
    np.testing.assert_allclose(float(c(D_SYN, D_OBS)), 2 * float(l2(D_SYN, D_OBS)) + float(l1(D_SYN, D_OBS)), rtol=1e-6)
    with pytest.raises(ValueError, match="d_syn has shape"):
        l2(D_SYN, D_OBS[:1])


def test_total_variation():
    v = jnp.full((6, 7), 2000.0)
    assert float(total_variation(v, 1.0, 1.0, eps=0.0)) == 0.0
    assert bool(jnp.all(jnp.isfinite(jax.grad(total_variation)(v))))
    # a single vertical step of 100 m/s across the model width
    step = v.at[3:].set(2100.0)
    n_cells = 6  # columns of the [nz-1, nx-1] difference grid
    np.testing.assert_allclose(float(total_variation(step, 1.0, 1.0, eps=0.0)), 100.0 * n_cells, rtol=1e-6)
    np.testing.assert_allclose(float(total_variation(step, 4.0, 1.0, eps=0.0)), 200.0 * n_cells, rtol=1e-6)
    assert float(total_variation(step, 0.0, 1.0, eps=0.0)) == 0.0  # the step is vertical: only alpha_z sees it
    aniso = float(total_variation(step, 2.0, 1.0, eps=0.0, isotropic=False))
    np.testing.assert_allclose(aniso, 2.0 * 100.0 * 7, rtol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        total_variation(jnp.ones(5))


def test_tv_schedule_paper_numbers():
    np.testing.assert_allclose(float(tv_weight_schedule(0)), 2e-9, rtol=1e-6)
    np.testing.assert_allclose(float(tv_weight_schedule(19)), 2e-9, rtol=1e-6)
    np.testing.assert_allclose(float(tv_weight_schedule(20)), 1.8e-9, rtol=1e-6)
    np.testing.assert_allclose(float(tv_weight_schedule(45)), 2e-9 * 0.81, rtol=1e-6)
    np.testing.assert_allclose(float(jax.jit(tv_weight_schedule)(40)), 2e-9 * 0.81, rtol=1e-6)


def test_tikhonov():
    z = jnp.arange(5.0)[:, None] * jnp.ones((1, 4))  # linear in depth
    assert float(tikhonov(z, 2, 1.0)) == 0.0  # no curvature
    np.testing.assert_allclose(float(tikhonov(z, 1, 2.0)), 1.0 * 4 * 4, rtol=1e-6)  # 16 unit steps
    np.testing.assert_allclose(float(tikhonov(z, 0, 1.0)), 0.5 * float(jnp.sum(z**2)), rtol=1e-6)
    g = jax.grad(lambda v: tikhonov(v, 1, 1.0))(z + jax.random.normal(KEY, z.shape))
    assert bool(jnp.all(jnp.isfinite(g)))
    with pytest.raises(ValueError, match="order"):
        tikhonov(z, 3)
