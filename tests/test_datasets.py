"""Tests for jaxfwi.datasets (loaders, synthetic generators, presets)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfwi import datasets as ds
from jaxfwi.datasets import loaders


# --------------------------------------------------------------------------- loaders


def _model():
    return (1500 + 100 * np.arange(6)[:, None] + 10 * np.arange(9)[None, :]).astype(np.float32)


def test_load_npy_roundtrip(tmp_path):
    v = _model()
    np.save(tmp_path / "m.npy", v)
    out = ds.load_npy(tmp_path / "m.npy")
    assert out.dtype == np.float32 and out.shape == (6, 9)
    np.testing.assert_array_equal(out, v)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        ds.load_npy(tmp_path / "nope.npy")


@pytest.mark.parametrize("order", ["F", "C"])
def test_load_binary_roundtrip(tmp_path, order):
    v = _model()
    f = tmp_path / f"m_{order}.bin"
    np.asarray(v, dtype="<f4").ravel(order=order).tofile(f)
    np.testing.assert_array_equal(ds.load_binary(f, v.shape, order=order), v)
    # the wrong order scrambles the model (the test can fail)
    other = "C" if order == "F" else "F"
    assert not np.array_equal(ds.load_binary(f, v.shape, order=other), v)
    with pytest.raises(ValueError, match="needs 55"):
        ds.load_binary(f, (5, 11), order=order)
    big = tmp_path / "big.bin"
    np.asarray(v, dtype=">f8").ravel(order=order).tofile(big)
    np.testing.assert_array_equal(ds.load_binary(big, v.shape, dtype=">f8", order=order), v)


def test_load_segy_missing_file_or_module(tmp_path):
    with pytest.raises(FileNotFoundError):
        ds.load_segy(tmp_path / "none.sgy")
    try:
        import segyio  # noqa: F401
    except ImportError:
        f = tmp_path / "dummy.sgy"
        f.write_bytes(b"\0" * 4000)
        with pytest.raises(ImportError, match="pip install segyio"):
            ds.load_segy(f)


def test_load_segy_roundtrip(tmp_path):
    """A SEG-Y file written by segyio (traces along x, samples along z) loads as [nz, nx] m/s."""
    segyio = pytest.importorskip("segyio")
    v = _model()
    f = tmp_path / "m.sgy"
    segyio.tools.from_array2D(str(f), (v.T / 1000.0).astype(np.float32))  # stored in km/s
    np.testing.assert_allclose(ds.load_segy(f, units="km/s"), v, rtol=1e-6)
    with pytest.warns(UserWarning, match="looks like km/s"):
        np.testing.assert_allclose(ds.load_segy(f), v / 1000.0, rtol=1e-6)


def test_resample_and_crop():
    v = _model()
    r = ds.resample(v, (11, 17))
    assert r.shape == (11, 17)
    np.testing.assert_allclose(r[0, 0], v[0, 0])
    np.testing.assert_allclose(r[-1, -1], v[-1, -1])
    np.testing.assert_allclose(r[5, 8], v[:, :].mean(), rtol=1e-6)  # linear model: centre value is the mean
    assert ds.resample(v, 0.5).shape == (3, 4) or ds.resample(v, 0.5).shape == (3, 5)
    assert ds.resample(v, factor=(2, 1)).shape == (12, 9)
    with pytest.raises(ValueError, match="exactly one"):
        ds.resample(v)
    c = ds.crop(v, z=(1, 4), x=slice(2, None))
    np.testing.assert_array_equal(c, v[1:4, 2:])
    with pytest.raises(ValueError, match="select nothing"):
        ds.crop(v, z=(4, 4))


def test_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path))
    assert ds.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="JAXFWI_DATA"):
        ds.load_benchmark("marmousi")
    (tmp_path / "marmousi").mkdir()
    np.save(tmp_path / "marmousi" / "marmousi.npy", _model())
    v, dx = ds.load_benchmark("marmousi")
    assert dx == 20.0 and v.shape == (6, 9)
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="JAXFWI_DATA"):
        ds.data_dir()


def test_bp2004_not_bundled(tmp_path):
    with pytest.raises(FileNotFoundError, match="not bundled"):
        ds.load_benchmark("bp2004")
    # a raw binary at 6.25 m x 12.5 m is resampled to square 12.5 m cells
    v = np.broadcast_to(np.linspace(1500, 4500, 21)[:, None], (21, 8)).astype(np.float32)
    f = tmp_path / "bp.bin"
    v.ravel(order="F").tofile(f)
    out, dx = ds.load_benchmark("bp2004", path=f, shape=v.shape)
    assert dx == 12.5 and out.shape == (11, 8)
    np.testing.assert_allclose(out[:, 0], v[::2, 0], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown name"):
        ds.load_benchmark("sigsbee")


def _shared_data_or_skip():
    try:
        return ds.data_dir()
    except FileNotFoundError:
        pytest.skip("benchmark data folder not available (set JAXFWI_DATA)")


@pytest.mark.parametrize(
    "name,shape,dx,vrange",
    [
        ("marmousi", (151, 461), 20.0, (1500, 5500)),
        ("marmousi_94x288", (94, 288), 15.0, (1500, 5500)),
        ("overthrust_94x401", (94, 401), 15.0, (2365, 6000)),
        ("salt_75x250", (75, 250), 10.0, (1500, 4482)),
        ("openfwi/flatvel_a", (70, 70), 10.0, (1500, 4500)),
    ],
)
def test_load_benchmark_shared_data(name, shape, dx, vrange):
    root = _shared_data_or_skip()
    rel = loaders.BENCHMARKS[name][0]
    if not (root / rel).is_file():
        pytest.skip(f"{rel} not in {root}")
    v, got_dx = ds.load_benchmark(name)
    assert v.shape == shape and got_dx == dx and v.dtype == np.float32
    assert vrange[0] - 50 <= v.min() and v.max() <= vrange[1] + 50
    assert np.all(v[0] <= v[-1].max())  # depth first: the surface row is not the deep basement


def test_load_benchmark_openfwi_stack():
    root = _shared_data_or_skip()
    if not (root / "openfwi" / "flatvel_a.npy").is_file():
        pytest.skip("OpenFWI sample not available")
    stack, _ = ds.load_benchmark("openfwi/flatvel_a", index=None)
    assert stack.ndim == 3 and stack.shape[1:] == (70, 70)
    v3, _ = ds.load_benchmark("flatvel_a", index=3)
    np.testing.assert_array_equal(v3, stack[3])


# --------------------------------------------------------------------------- synthetic

GENERATORS = {
    "layered": lambda k: ds.layered((30, 40), k, n_layers=4, dip=0.1),
    "faulted": lambda k: ds.faulted((30, 40), k, n_faults=2),
    "folded": lambda k: ds.folded((30, 40), k),
    "salt_body": lambda k: ds.salt_body((30, 40), k),
    "random_smooth": lambda k: ds.random_smooth((30, 40), k),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generators_deterministic_and_keyed(name):
    gen = GENERATORS[name]
    a = np.asarray(gen(jax.random.PRNGKey(0)))
    b = np.asarray(gen(jax.random.PRNGKey(0)))
    c = np.asarray(gen(jax.random.PRNGKey(1)))
    assert a.shape == (30, 40) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.min() >= 1400 and a.max() <= 4600


def test_generator_properties():
    k = jax.random.PRNGKey(2)
    v = np.asarray(ds.layered((30, 40), k, n_layers=5, v_min=1600, v_max=3600))
    np.testing.assert_allclose([v.min(), v.max()], [1600, 3600])
    assert np.all(np.diff(v[:, 0]) >= 0) and len(np.unique(v)) == 5  # flat, increasing, 5 layers
    assert np.all(v == v[:, :1])
    p = np.asarray(ds.layered(30, k, n_layers=3))
    assert p.shape == (30,) and len(np.unique(p)) == 3
    s = np.asarray(ds.salt_body((30, 40), k, v_salt=4482.0))
    assert np.mean(s == 4482.0) > 0.05
    r = np.asarray(ds.random_smooth(30, k, 2000, 3000))
    np.testing.assert_allclose([r.min(), r.max()], [2000, 3000], rtol=1e-5)
    with pytest.raises(ValueError, match="v_min"):
        ds.layered((10, 10), k, v_min=3000, v_max=2000)


def test_default_model():
    v = ds.default_model()
    assert v.shape == (40, 80) and v.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(v), np.asarray(ds.default_model()))
    vals = np.unique(np.asarray(v))
    np.testing.assert_array_equal(vals, [1500, 2000, 2500, 3000, 3500])
    assert np.all(np.asarray(v)[0] == 1500)
    # the fault: left and right of it, the same row crosses different layers
    row = np.asarray(v)[int(0.42 * 40)]
    assert len(np.unique(row)) >= 2
    assert ds.default_model((20, 30)).shape == (20, 30)


@pytest.mark.parametrize("kind", ["breast", "brain"])
def test_phantom(kind):
    v = np.asarray(ds.phantom(kind, (64, 64)))
    assert v.shape == (64, 64)
    assert v[0, 0] == 1500.0 and v[-1, -1] == 1500.0  # water around the object
    assert 1450 <= v.min() and v.max() <= 1600
    assert len(np.unique(v)) >= 5
    a = np.asarray(ds.phantom(kind, (64, 64), key=jax.random.PRNGKey(0)))
    b = np.asarray(ds.phantom(kind, (64, 64), key=jax.random.PRNGKey(0)))
    c = np.asarray(ds.phantom(kind, (64, 64), key=jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if kind == "brain":
        assert np.asarray(ds.phantom("brain", (64, 64), skull=True)).max() == 2800.0


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "name,shape,dx,n_shots,spacing,f_peak,dt,nt,free_surface",
    [
        ("marmousi", (94, 288), 15.0, 13, 300.0, 8.0, 1.9e-3, 1000, True),
        ("salt", (75, 250), 10.0, 24, 100.0, 10.0, 1.5e-3, 2500, True),
        ("overthrust", (94, 401), 15.0, 20, 270.0, 10.0, 4.0e-3, 1200, True),
        ("bp", (188, 500), 10.0, 20, 200.0, 10.0, 4.0e-3, 2000, False),
    ],
)
def test_presets_paper_numbers(name, shape, dx, n_shots, spacing, f_peak, dt, nt, free_surface):
    p = ds.get_preset(name)
    assert (p.shape, p.dx, p.n_shots, p.src_spacing_m, p.f_peak, p.dt, p.nt, p.free_surface) == (
        shape, dx, n_shots, spacing, f_peak, dt, nt, free_surface)
    assert p.n_receivers is None and len(p.rec_x_cells) == shape[1]  # every surface grid point
    xs = p.src_x_cells
    assert len(xs) == n_shots and xs[0] >= 0 and xs[-1] <= shape[1] - 1
    assert np.all(np.diff(xs) == round(spacing / dx))
    r = ds.get_preset(name, reduced=True)
    assert r.shape == tuple(-(-n // 2) for n in shape) and r.dx == 2 * dx
    assert r.f_peak == f_peak / 2 and r.nt == -(-nt // 2)
    np.testing.assert_allclose(r.record_time, p.record_time, rtol=1e-2)
    assert (r.n_shots, r.src_spacing_m, r.free_surface) == (n_shots, spacing, free_surface)
    assert ds.get_preset(name + "_reduced") == r
    assert hash(p) != hash(r)  # frozen, hashable (static arguments)


def test_fadfwi_preset_and_errors():
    p = ds.get_preset("fadfwi_overthrust")
    assert p.n_shots == 20 and p.n_receivers == 256 and p.rec_depth == 85.0
    assert len(p.rec_x_cells) == 256 and len(set(p.rec_x_cells)) == 256
    assert p.rec_depth_cells == round(85.0 / p.dx)
    with pytest.raises(ValueError, match="unknown preset"):
        ds.get_preset("pluto")
    with pytest.raises(Exception):
        p.nt = 5  # frozen


def test_preset_model_reduced():
    root = _shared_data_or_skip()
    if not (root / "marmousi" / "marmousi_94x288.npy").is_file():
        pytest.skip("marmousi_94x288 not available")
    v, dx = ds.preset_model(ds.get_preset("marmousi", reduced=True))
    assert v.shape == (47, 144) and dx == 30.0
