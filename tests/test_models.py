"""Tests for the representation layer jaxfwi.models (CPU-sized: small shapes)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxfwi.models import (
    METHODS,
    Gabor,
    Generator,
    Grid,
    HashEncoding,
    HashGrid,
    Hybrid,
    LowRank,
    Parameterization,
    Siren,
    UNet,
    build,
    count_params,
    default_learning_rate,
    default_scale,
    initial,
    matern_grf,
)

SHAPE = (16, 24)
KEY = jax.random.PRNGKey(0)

# XLA's CPU backend spends most of a small test compiling; optimisation level 0
# compiles ~8x faster and these tests check values, not speed.
fjit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# small-ish settings keep compilation fast; architecture is the papers' otherwise
REPS = {
    "grid": lambda s: Grid(s),
    "siren": lambda s: Siren(s, width=32),
    "gabor": lambda s: Gabor(s, width=32),
    "gabor_real": lambda s: Gabor(s, width=32, complex=False),
    "lowrank": lambda s: LowRank(s, width=32),
    "hashgrid": lambda s: HashGrid(s, levels=4, base_resolution=4, scale=1.5, table_size=2 ** 8),
    "hybrid": lambda s: Hybrid(s, levels=4, base_resolution=4, table_size=2 ** 8, siren_width=32),
    "hybrid_lr": lambda s: Hybrid(s, branch="lowrank", levels=4, base_resolution=4,
                                  table_size=2 ** 8, lr_rank=4, lr_width=16),
    "unet": lambda s: UNet(s, features=(4, 8)),
    "generator": lambda s: Generator(s, channels=(8, 4)),
}


def _tree_norm(t):
    return float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree_util.tree_leaves(t)))


@pytest.mark.parametrize("name", list(REPS))
def test_representation_contract(name):
    """Shape/dtype, finite output, nonzero gradients (one compiled program);
    batching over seeds (traced for every representation, run for a few)."""
    mod = REPS[name](SHAPE)
    w = jax.random.normal(jax.random.PRNGKey(1), SHAPE)

    @fjit
    def run(key):
        params = mod.init(key)
        return mod.apply(params), jax.grad(lambda p: jnp.sum(w * mod.apply(p)))(params)

    out, g = run(KEY)
    assert out.shape == SHAPE and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    assert _tree_norm(g) > 0 and all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
    multi = lambda ks: jax.vmap(lambda k: mod.apply(mod.init(k)))(ks)  # noqa: E731
    assert jax.eval_shape(multi, jax.random.split(KEY, 3)).shape == (3,) + SHAPE


@pytest.mark.parametrize("name", ["hashgrid"])
def test_jvp_matches_finite_difference(name):
    with jax.enable_x64(True):
        mod = REPS[name](SHAPE).clone(dtype=jnp.float64)
        p = fjit(mod.init)(KEY)
        if name == "hashgrid":  # move away from the ReLU kinks (features start at 1e-4)
            p = jax.tree_util.tree_map(lambda x: x + 0.5 * jax.random.normal(KEY, x.shape, x.dtype), p)
        t = jax.tree_util.tree_map(lambda x: jax.random.normal(jax.random.PRNGKey(3), x.shape, x.dtype), p)
        eps = 1e-6

        @fjit
        def run(p, t):
            _, jv = jax.jvp(mod.apply, (p,), (t,))
            plus = mod.apply(jax.tree_util.tree_map(lambda a, b: a + eps * b, p, t))
            minus = mod.apply(jax.tree_util.tree_map(lambda a, b: a - eps * b, p, t))
            return jv, (plus - minus) / (2 * eps)

        jv, fd = run(p, t)
        assert jv.dtype == jnp.float64 and float(jnp.max(jnp.abs(jv))) > 0
        np.testing.assert_allclose(np.asarray(jv), np.asarray(fd), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["siren", "gabor", "lowrank", "hashgrid", "hybrid", "unet", "generator", "grid"])
def test_other_dimensions(name):
    """1-D and 3-D grids (traced only: the 2-D tests run the same code)."""
    for shape in [(20,), (4, 6, 8)]:
        mod = REPS[name](shape)
        out = jax.eval_shape(lambda k: mod.apply(mod.init(k)), KEY)
        assert out.shape == shape and out.dtype == jnp.float32


def test_hybrid_lowrank_needs_2d():
    with pytest.raises(ValueError, match="2-D"):
        build("lrg-fwi", jnp.full((20,), 2000.0))


def test_lrg_fwi_lowrank_features_reach_the_output():
    """LRG-FWI's preset RMS-normalises its low-rank features: without it they are ~1e-3 at init and
    the fusion MLP's output (hence the velocity update the branch can make) is ~1e-5 of IG-FWI's."""
    kw = dict(branch="lowrank", levels=4, base_resolution=4, table_size=2 ** 8, lr_rank=8, lr_width=16)
    rms = {}
    for norm in (False, True):
        mod = Hybrid(SHAPE, lr_normalize=norm, **kw)
        out = fjit(lambda k, m=mod: m.apply(m.init(k)))(KEY)
        rms[norm] = float(jnp.sqrt(jnp.mean(out ** 2)))
    assert rms[True] > 1e-3 and rms[True] > 30 * rms[False], rms
    assert build("lrg-fwi", jnp.full(SHAPE, 2000.0)).module.lr_normalize
    assert not build("lrg-fwi", jnp.full(SHAPE, 2000.0), lr_normalize=False).module.lr_normalize


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        Siren((0, 4)).init(KEY)
    with pytest.raises(ValueError, match="dimensions"):
        HashGrid((2, 2, 2, 2)).init(KEY)
    with pytest.raises(ValueError, match="shape"):
        Parameterization(Siren((8, 8)), jnp.full((8, 9), 2000.0))
    with pytest.raises(ValueError, match="v_init"):
        build("ifwi", jnp.full((2, 2, 2, 2), 2000.0))
    with pytest.raises(ValueError, match="positive"):
        build("ifwi", jnp.zeros(SHAPE))
    with pytest.raises(ValueError, match="NaN"):
        build("adfwi", jnp.full(SHAPE, jnp.nan))


# ---- parameter counts at the BP size (188 x 500), CR-FWI Table 1 -----------------

BP = (188, 500)


def _count(method, **kw):
    p = build(method, jnp.full(BP, 2500.0), **kw)
    return count_params(jax.eval_shape(p.init, KEY)), jax.eval_shape(p.init, KEY)


def test_param_counts_match_papers():
    n, _ = _count("adfwi")
    assert n == 188 * 500                                   # 94.00K
    n, _ = _count("ifwi")
    assert abs(n - 50_050) / 50_050 < 0.001                 # 50,049 vs 50.05K
    _, shapes = _count("winfwi")
    n_c = count_params(shapes, complex_as_one=True)          # PyTorch numel of a cfloat net
    assert abs(n_c - 60_630) / 60_630 < 0.001               # 60,631 vs 60.63K
    n, shapes = _count("lr-fwi")
    core = shapes["net"]["core"]
    assert core.shape == (94, 250)                          # rank = half of each dimension
    assert abs((n - core.size) - 77_910) / 77_910 < 0.001   # factor nets 77,912 vs 77.91K
    # hash grid: the mpe-fwi preset has the paper's ~8K-entry table (2**8 rows x 16 levels x 2 features)
    n, _ = _count("mpe-fwi")
    assert n == 16 * 2 ** 8 * 2 + (32 * 64 + 64) + (64 * 64 + 64) + 65 == 14_529   # vs 14.26K
    assert abs(n - 14_260) / 14_260 < 0.025
    n, _ = _count("ig-fwi", table_size=2 ** 8)
    assert abs(n - 39_340) / 39_340 < 0.01                  # 39,617 vs 39.34K
    # table 2**14 (HashGrid's module default): every 2-D level is dense, no padding rows
    n, _ = _count("mpe-fwi", table_size=2 ** 14)
    res = [math.floor(50 * 1.05 ** l) for l in range(16)]
    assert n == 2 * sum((r + 1) ** 2 for r in res) + (32 * 64 + 64) + (64 * 64 + 64) + 65


# ---- hash encoding indexing -------------------------------------------------------

def test_hash_encoding_dense_indexing_and_interpolation():
    enc = HashEncoding(levels=1, base_resolution=8, scale=1.0, table_size=2 ** 10, features=1)
    rows = 9 * 9
    table = jnp.arange(rows, dtype=jnp.float32)[:, None]
    params = {"params": {"table": table}}
    c = np.array([[0, 0], [3, 5], [8, 8], [2, 7]])
    x = jnp.asarray(-1.0 + 2.0 * c / 8.0, jnp.float32)
    f = fjit(enc.apply)
    out = f(params, x)[:, 0]
    np.testing.assert_allclose(np.asarray(out), c[:, 0] + 9 * c[:, 1], atol=1e-4)
    # midway between vertices (3,5) and (4,5): linear interpolation
    mid = f(params, jnp.asarray([[-1 + 2 * 3.5 / 8, -1 + 2 * 5 / 8]], jnp.float32))[0, 0]
    assert abs(float(mid) - (3.5 + 45)) < 1e-4


def test_hash_encoding_hashed_level_uses_xor_primes():
    T = 16
    enc = HashEncoding(levels=1, base_resolution=8, scale=1.0, table_size=T, features=1)
    params = {"params": {"table": jnp.arange(T, dtype=jnp.float32)[:, None]}}
    c = np.array([[1, 2], [5, 7], [8, 3]], dtype=np.uint64)
    x = jnp.asarray(-1.0 + 2.0 * c.astype(np.float64) / 8.0, jnp.float32)
    out = fjit(enc.apply)(params, x)[:, 0]
    expect = ((c[:, 0] * 1) ^ ((c[:, 1] * 2654435761) % 2 ** 32)) % T
    np.testing.assert_allclose(np.asarray(out), expect.astype(np.float64), atol=1e-4)


def test_lowrank_output_has_requested_rank():
    mod = LowRank(SHAPE, rank=3, width=32)
    out = np.asarray(fjit(lambda k: mod.apply(mod.init(k)))(KEY), np.float64)
    s = np.linalg.svd(out, compute_uv=False)
    assert s[3] < 1e-5 * s[0] and s[2] > 1e-3 * s[0]
    shapes = jax.eval_shape(LowRank(SHAPE).init, KEY)
    assert shapes["params"]["core"].shape == (8, 12)        # default: half of each dimension


def test_unet_latent_is_fixed_and_not_a_parameter():
    shape = (17, 23)                                         # odd: padded, then cropped
    mod = UNet(shape, features=(4, 8))
    p = fjit(mod.init)(KEY)
    other = UNet(shape, features=(4, 8), latent_seed=1)
    out, out_other = fjit(lambda p: (mod.apply(p), other.apply(p)))(p)
    assert out.shape == shape
    assert all(x.shape != shape for x in jax.tree_util.tree_leaves(p))
    assert float(jnp.max(jnp.abs(out_other - out))) > 0   # same weights, new latent


def test_generator_bounded_by_scale():
    mod = Generator(SHAPE, scale=100.0, channels=(8, 4))
    p = fjit(mod.init)(KEY)
    big = jax.tree_util.tree_map(lambda x: 1e3 * x, p)
    out = fjit(mod.apply)(big)
    assert float(jnp.max(jnp.abs(out))) <= 100.0 + 1e-3
    assert float(jnp.max(jnp.abs(out))) > 50.0             # saturates towards the scale


# ---- Parameterization -------------------------------------------------------------

M0 = initial.linear(SHAPE, 1500.0, 3000.0)


def test_grid_denorm_is_exact_and_uses_lr5():
    p = build("adfwi", M0)
    params = fjit(p.init)(KEY)
    vel = fjit(p.velocity)
    np.testing.assert_array_equal(np.asarray(vel(params)), np.asarray(M0))
    assert p.scale == 1.0 and default_learning_rate("ADFWI") == 5.0
    upd = jax.tree_util.tree_map(lambda x: x + 5.0, params)
    np.testing.assert_allclose(np.asarray(vel(upd)), np.asarray(M0) + 5.0)


def test_static_denorm_for_networks():
    p = build("ifwi", M0, width=32)
    params = fjit(p.init)(KEY)
    v, f = fjit(lambda q: (p.velocity(q), p.field(q)))(params)
    assert p.scale == default_scale("ifwi") == 1000.0
    np.testing.assert_allclose(np.asarray(v - M0), 1000.0 * np.asarray(f), atol=1e-2)
    assert float(jnp.std(v - M0)) < 100.0                    # starts near the initial model


def test_adaptive_mode_exposes_m0():
    p = build("ifwi", M0, width=32, mode="adaptive")
    params = fjit(p.init)(KEY)
    np.testing.assert_array_equal(np.asarray(params["m0"]), np.asarray(M0))
    g = fjit(jax.grad(lambda q: jnp.sum(p.velocity(q) ** 2)))(params)
    assert float(jnp.sum(jnp.abs(g["m0"]))) > 0
    moved = dict(params, m0=params["m0"] + 10.0)
    vel = fjit(p.velocity)
    np.testing.assert_allclose(np.asarray(vel(moved) - vel(params)), 10.0, atol=1e-3)
    static = build("ifwi", M0, width=32)
    assert "m0" not in jax.eval_shape(static.init, KEY)


@pytest.mark.parametrize("clip", ["hard", "smooth"])
def test_bounds_respected(clip):
    lo, hi = 1600.0, 2800.0
    p = build("adfwi", M0, bounds=(lo, hi), clip=clip)
    params = p.init(KEY)
    wild = jax.tree_util.tree_map(lambda x: 3000.0 * jax.random.normal(KEY, x.shape), params)
    just_above = {"net": {"field": hi + 10.0 - M0}}          # v = vmax + 10 m/s everywhere
    run = fjit(lambda q: (p.velocity(q), jax.grad(lambda r: jnp.sum(p.velocity(r)))(q)["net"]["field"]))
    v, g = run(wild)
    assert float(v.min()) >= lo and float(v.max()) <= hi
    assert float(v.min()) < lo + 50 and float(v.max()) > hi - 50   # the bounds are active
    v, g = run(just_above)
    assert float(v.max()) <= hi
    if clip == "smooth":
        assert float(v.min()) > hi - 10.0 and bool(jnp.all(g > 0))   # still differentiable
    else:
        np.testing.assert_array_equal(np.asarray(v), hi)
        assert bool(jnp.all(g == 0))


def test_pretraining_reduces_l1_to_m0():
    p = build("ifwi", M0, width=32, mode="none")
    params = fjit(p.init)(KEY)
    l1 = fjit(lambda q: jnp.mean(jnp.abs(p.velocity(q) - M0)))
    before = float(l1(params))
    fitted, losses = p.pretrain(params, steps=150, lr=1e-3, return_losses=True)
    after = float(l1(fitted))
    assert losses.shape == (150,)
    assert after < 0.3 * before
    assert abs(float(losses[0]) - before) < 1e-2 * before


def test_pretraining_escapes_an_active_hard_bound():
    """mode="none" starts at mean(m0) + S F ~ 2250 m/s; with bounds (2600, 3000) every cell starts
    clipped (zero gradient through a hard clip), yet pretraining must still move towards m0."""
    lo, hi = 2600.0, 3000.0
    p = build("ifwi", M0, width=32, mode="none", bounds=(lo, hi))
    params = fjit(p.init)(KEY)
    assert float(p.velocity(params).max()) == lo                     # all clipped at the start
    target = jnp.clip(M0, lo, hi)
    l1 = fjit(lambda q: jnp.mean(jnp.abs(p.velocity(q) - target)))
    before = float(l1(params))
    after = float(l1(p.pretrain(params, steps=150, lr=1e-3)))
    assert after < 0.3 * before


def test_unet_instance_norm_makes_output_independent_of_inner_weight_scale():
    """Scaling one inner convolution's kernel by 10 leaves the normalised U-Net's output unchanged
    (up to the norm's epsilon) and changes the plain one's."""
    def change(norm):
        mod = UNet((16, 24), features=(4, 8), norm=norm)
        params = mod.init(KEY)["params"]
        conv = params["enc_0"]["conv_1"]
        scaled = {**params, "enc_0": {**params["enc_0"], "conv_1": jax.tree_util.tree_map(lambda x: 10.0 * x, conv)}}
        a, b = (mod.apply({"params": q}) for q in (params, scaled))
        return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))

    assert change("instance") < 1e-3
    assert change("none") > 0.5
    with pytest.raises(ValueError, match="norm"):
        UNet((16, 24), features=(4, 8), norm="batch").init(KEY)


def test_init_and_velocity_vmap_over_seeds():
    # U-Net: a fixed latent constant and convolutions under vmap, run for real
    p = build("fad-fwi", M0, features=(4, 8))
    keys = jnp.concatenate([KEY[None], jax.random.split(jax.random.PRNGKey(7), 3)])
    vs, v0 = fjit(lambda ks: (jax.vmap(p.velocity)(jax.vmap(p.init)(ks)), p.velocity(p.init(ks[0]))))(keys)
    assert vs.shape == (4,) + SHAPE
    assert float(jnp.max(jnp.abs(vs[1] - vs[3]))) > 0
    np.testing.assert_allclose(np.asarray(vs[0]), np.asarray(v0), rtol=1e-5)


def test_x64_follows_dtype():
    with jax.enable_x64(True):
        p = build("ifwi", np.asarray(M0, np.float64), width=16)
        v = fjit(lambda k: p.velocity(p.init(k)))(KEY)
        assert v.dtype == jnp.float64 and p.m0.dtype == jnp.float64


def test_build_method_names_and_errors():
    assert set(METHODS) == {"adfwi", "adfwi-tv", "weci-fwi", "ms-fwi", "ifwi", "winfwi", "lr-fwi",
                            "mpe-fwi", "ig-fwi", "lrg-fwi", "fad-fwi", "gnn-fwi"}
    expected = {"adfwi": Grid, "ms-fwi": Grid, "ifwi": Siren, "winfwi": Gabor, "lr-fwi": LowRank,
                "mpe-fwi": HashGrid, "ig-fwi": Hybrid, "fad-fwi": UNet, "gnn-fwi": Generator}
    for m, cls in expected.items():
        assert METHODS[m][0] is cls
    assert build("IG_FWI", M0, table_size=2 ** 8).module.branch == "siren"
    assert build("lrg-fwi", M0, table_size=2 ** 8).module.branch == "lowrank"
    assert default_learning_rate("ifwi") == 1e-4 and default_learning_rate("fad-fwi") == 0.01
    with pytest.raises(ValueError, match="unknown method 'fwi-x'.*adfwi.*ig-fwi"):
        build("fwi-x", M0)
    with pytest.raises(ValueError, match="unknown setting"):
        build("ifwi", M0, widht=3)
    with pytest.raises(ValueError, match="mode"):
        build("ifwi", M0, mode="dynamic")
    with pytest.raises(ValueError, match="bounds"):
        build("adfwi", M0, bounds=(3000.0, 1000.0))


# ---- measured comparison: sharp edge, HashGrid vs Siren -------------------------------

def _fit_edge(mod, lr, steps):
    n = 32
    zz, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    target = jnp.asarray((xx + 0.3 * zz > 0.1).astype(np.float32))
    opt = optax.adam(lr)

    def loss(p):
        return jnp.mean((mod.apply(p) - target) ** 2)

    @fjit
    def run(p):
        def step(c, _):
            p, s = c
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
        return loss(p)

    return float(run(fjit(mod.init)(KEY)))


def test_hashgrid_fits_sharp_edge_faster_than_siren():
    """Measured, not assumed. Each representation at the Adam learning rate it is
    customarily trained with (Instant-NGP: 1e-2; SIREN paper: 1e-4), paper-default
    architectures, 32 x 32 step edge, 100 steps. (At one shared lr the ordering is
    not robust: see the module report; at CR-FWI's shared lr 1e-4 the hash grid is
    far slower because its table starts at 1e-4.)"""
    shape = (32, 32)
    err_hash = _fit_edge(HashGrid(shape), 1e-2, 100)
    err_siren = _fit_edge(Siren(shape), 1e-4, 100)
    assert err_hash < 0.5 * err_siren, (err_hash, err_siren)


# ---- GRF and initial models -------------------------------------------------------

def test_matern_grf_statistics_and_smoothness():
    @fjit
    def run(keys):
        f = jax.vmap(lambda k: matern_grf(k, (64, 64), 3.0, 3.0))(keys)
        return f, matern_grf(keys[0], (64, 64), 0.5, 6.0), matern_grf(keys[0], (64, 64), 3.0, 6.0)

    f, rough, smooth = (np.asarray(a) for a in run(jax.random.split(KEY, 8)))
    assert f.shape == (8, 64, 64)
    assert abs(float(np.mean(f))) < 0.15
    assert 0.8 < float(np.mean(np.var(f, axis=(1, 2)))) < 1.2
    tv = lambda a: float(np.mean(np.abs(np.diff(a, axis=0))) / np.std(a))  # noqa: E731
    assert tv(smooth) < 0.6 * tv(rough)
    again = np.asarray(run(jax.random.split(KEY, 8))[0])
    np.testing.assert_array_equal(again, f)                  # deterministic given the key


def test_initial_models():
    rng = np.random.default_rng(0)
    v = 2000.0 + 300.0 * rng.standard_normal(SHAPE)
    s = initial.smooth(v, 2.0)
    assert s.shape == SHAPE and s.dtype == jnp.float32
    assert float(jnp.std(jnp.diff(s, axis=1))) < 0.3 * float(np.std(np.diff(v, axis=1)))
    np.testing.assert_allclose(np.asarray(initial.smooth(v, 0.0)), v, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(initial.smooth(np.full(SHAPE, 1800.0), 3.0)), 1800.0, rtol=1e-6)
    lin = initial.linear(SHAPE, 1500.0, 3000.0)
    np.testing.assert_allclose(np.asarray(lin[0]), 1500.0)
    np.testing.assert_allclose(np.asarray(lin[-1]), 3000.0)
    assert bool(jnp.all(jnp.diff(lin, axis=0) > 0))
    np.testing.assert_array_equal(np.asarray(initial.constant(SHAPE, 2000.0)), 2000.0)
    prof = initial.smoothed_profile(v, 1.0)
    assert prof.shape == SHAPE and float(jnp.max(jnp.abs(prof - prof[:, :1]))) == 0.0
    np.testing.assert_allclose(np.asarray(initial.smoothed_profile(v, 0.0)[:, 0]), v.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(initial.perturb(lin, -30.0)), 0.7 * np.asarray(lin), rtol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        initial.smooth(v, -1.0)
    with pytest.raises(ValueError, match="v_top"):
        initial.linear(SHAPE, -1.0, 2000.0)
