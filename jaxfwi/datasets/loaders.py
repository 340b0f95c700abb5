"""Loading, resampling and cropping velocity models; the benchmark model zoo.

Every loader returns a **numpy** ``float32`` array of velocity in **m/s**,
layout ``[nz, nx]`` (axis 0 = depth, row 0 = surface). Wrap with
``jnp.asarray`` to put it on the device.

The benchmark files are not part of the package. :func:`data_dir` finds them:
the ``data_dir`` argument, else the ``JAXFWI_DATA`` environment variable, else
``../shared/data`` relative to the working directory (or to the package
checkout) when it exists. The folder layout is the one described in that
folder's README (``marmousi/marmousi.npy``, ``seg_eage_salt/...``, ...).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_VAR",
    "BENCHMARKS",
    "load_npy",
    "load_binary",
    "load_segy",
    "resample",
    "crop",
    "data_dir",
    "list_benchmarks",
    "load_benchmark",
]

ENV_VAR = "JAXFWI_DATA"

# name -> (relative file, grid spacing in m, note)
BENCHMARKS: dict[str, tuple[str, float, str]] = {
    "marmousi": ("marmousi/marmousi.npy", 20.0, "original Marmousi, 151 x 461 at 20 m"),
    "marmousi_94x288": ("marmousi/marmousi_94x288.npy", 15.0, "CR-FWI grid, 94 x 288 used at 15 m"),
    "marmousi2": ("marmousi2/marmousi2.npy", 10.0, "Marmousi2 P velocity, 351 x 1701 at 10 m"),
    "overthrust": ("overthrust/overthrust.npy", 25.0, "SEG/EAGE Overthrust 2-D slice, 181 x 801 at 25 m"),
    "overthrust_94x401": ("overthrust/overthrust_94x401.npy", 15.0, "CR-FWI grid, 94 x 401 used at 15 m"),
    "salt": ("seg_eage_salt/seg_eage_salt.npy", 25.0, "SEG/EAGE salt 2-D section, 161 x 601 at 25 m"),
    "salt_75x250": ("seg_eage_salt/seg_eage_salt_75x250.npy", 10.0, "CR-FWI grid (approximation), 75 x 250 at 10 m"),
    "foothills": ("foothills/foothills.npy", 25.0, "SWIT-modified Foothills, 321 x 801 at 25 m"),
    "bp2.5d": ("bp_2.5d_1997/bp_2.5d_1997.npy", 12.5, "BP 2.5D 1997 (not BP 2004), 321 x 2052 at 12.5 m"),
    "openfwi/flatvel_a": ("openfwi/flatvel_a.npy", 10.0, "OpenFWI FlatVel-A, 20 models of 70 x 70 at 10 m"),
    "openfwi/curvevel_a": ("openfwi/curvevel_a.npy", 10.0, "OpenFWI CurveVel-A, 20 models of 70 x 70 at 10 m"),
    "openfwi/flatfault_a": ("openfwi/flatfault_a.npy", 10.0, "OpenFWI FlatFault-A, 20 models of 70 x 70 at 10 m"),
}

_ALIASES = {
    "marmousi1": "marmousi",
    "seg_eage_salt": "salt",
    "salt2d": "salt",
    "bp_2.5d_1997": "bp2.5d",
    "bp2.5d1997": "bp2.5d",
    "flatvel_a": "openfwi/flatvel_a",
    "curvevel_a": "openfwi/curvevel_a",
    "flatfault_a": "openfwi/flatfault_a",
    "bp": "bp2004",
    "bp_2004": "bp2004",
}


def _as_velocity(v, source: str, allow_stack: bool = False) -> np.ndarray:
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{source}: expected a numeric velocity array, got dtype {v.dtype}.")
    ok_ndim = (2, 3) if allow_stack else (2,)
    if v.ndim not in ok_ndim:
        raise ValueError(
            f"{source}: array has shape {v.shape}; expected a 2-D velocity model [nz, nx]"
            + (" or a stack [N, nz, nx]." if allow_stack else ".")
        )
    v = np.ascontiguousarray(v, dtype=np.float32)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{source}: the model contains NaN or infinite values.")
    vmax = float(np.max(v)) if v.size else 0.0
    if 0 < vmax < 100:
        warnings.warn(
            f"{source}: maximum velocity is {vmax:g}; this looks like km/s. jaxfwi works in m/s; "
            "multiply by 1000 (or pass units='km/s' where available).",
            stacklevel=3,
        )
    return v


def load_npy(path) -> np.ndarray:
    """Load a velocity model saved with ``np.save``.

    Args:
      path: ``.npy`` file holding a ``[nz, nx]`` array in m/s.

    Returns:
      ``float32`` numpy array ``[nz, nx]``, m/s.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_npy: no file at path={str(path)!r}.")
    return _as_velocity(np.load(path, allow_pickle=False), f"load_npy({path.name})", allow_stack=True)


def load_binary(path, shape, dtype="float32", order: str = "F") -> np.ndarray:
    """Load a headerless binary velocity file.

    Args:
      path: the file.
      shape: ``(nz, nx)`` of the model (depth first).
      dtype: sample type as stored, e.g. ``"float32"``, ``"<f4"`` (little
        endian) or ``">f4"`` (big endian).
      order: ``"F"`` if the file is stored depth-fastest (Fortran/column-major:
        one trace of ``nz`` samples after another, the common layout of
        seismic binaries), ``"C"`` if row-major.

    Returns:
      ``float32`` numpy array ``[nz, nx]``, m/s.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_binary: no file at path={str(path)!r}.")
    if order not in ("F", "C"):
        raise ValueError(f"load_binary: order={order!r}; use 'F' (depth fastest) or 'C' (row-major).")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2:
        raise ValueError(f"load_binary: shape={shape} must be (nz, nx).")
    raw = np.fromfile(path, dtype=np.dtype(dtype))
    if raw.size != shape[0] * shape[1]:
        raise ValueError(
            f"load_binary: {path.name} holds {raw.size} values of {np.dtype(dtype)} but shape={shape} needs "
            f"{shape[0] * shape[1]}; check shape and dtype."
        )
    return _as_velocity(raw.reshape(shape, order=order), f"load_binary({path.name})")


def load_segy(path, units: str = "m/s") -> np.ndarray:
    """Load a 2-D velocity model from a SEG-Y file (one trace per x position).

    Needs ``segyio`` (``pip install segyio``, or the ``jaxfwi[segy]`` extra).

    Args:
      path: SEG-Y file, traces along x, samples along depth.
      units: unit of the stored values, ``"m/s"``, ``"km/s"`` or ``"ft/s"``
        (converted to m/s).

    Returns:
      ``float32`` numpy array ``[nz, nx]`` (samples x traces), m/s.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_segy: no file at path={str(path)!r}.")
    scale = {"m/s": 1.0, "km/s": 1000.0, "ft/s": 0.3048}
    if units not in scale:
        raise ValueError(f"load_segy: units={units!r}; use 'm/s', 'km/s' or 'ft/s'.")
    try:
        import segyio  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "load_segy needs the 'segyio' package: pip install segyio (or pip install 'jaxfwi[segy]')."
        ) from e
    with segyio.open(str(path), "r", ignore_geometry=True) as f:
        traces = np.stack([np.asarray(t, dtype=np.float64) for t in f.trace])
    return _as_velocity(traces.T * scale[units], f"load_segy({path.name})")


def resample(v, shape=None, factor=None, order: int = 1) -> np.ndarray:
    """Resample a model to a new grid by (bi)linear interpolation (``scipy.ndimage.zoom``).

    Corner cells are kept in place (grid-aligned ``zoom``), so the new spacing is
    ``dx_new = dx * (n_old - 1) / (n_new - 1)`` along each axis; for a physical
    rescale by ``factor`` this is ~``dx / factor``.

    Args:
      v: ``[nz, nx]`` model (any array).
      shape: target ``(nz, nx)``; a single number is taken as ``factor``.
      factor: zoom factor (number, or one per axis), e.g. ``0.5`` halves the grid.
      order: spline order (1 = linear).

    Returns:
      ``float32`` numpy array of the new shape.
    """
    from scipy import ndimage  # noqa: PLC0415

    v = np.asarray(v, dtype=np.float32)
    if shape is not None and np.ndim(shape) == 0:
        shape, factor = None, shape
    if (shape is None) == (factor is None):
        raise ValueError("resample: give exactly one of shape=(nz, nx) or factor=<number>.")
    if shape is not None:
        shape = tuple(int(n) for n in shape)
        if len(shape) != v.ndim or any(n < 1 for n in shape):
            raise ValueError(f"resample: shape={shape} must have {v.ndim} positive entries, like v {v.shape}.")
        zoom = [n / m for n, m in zip(shape, v.shape)]
    else:
        zoom = list(np.broadcast_to(np.asarray(factor, dtype=float), (v.ndim,)))
        if any(z <= 0 for z in zoom):
            raise ValueError(f"resample: factor={factor!r} must be positive.")
        shape = tuple(max(1, int(round(m * z))) for m, z in zip(v.shape, zoom))
    out = ndimage.zoom(v, zoom, order=order, mode="nearest")
    if out.shape != shape:  # guard against rounding in zoom's shape rule
        out = ndimage.zoom(v, [n / m for n, m in zip(shape, v.shape)], output=np.float32, order=order, mode="nearest")
    return np.asarray(out, dtype=np.float32)


def _as_slice(name, s):
    if s is None:
        return slice(None)
    if isinstance(s, slice):
        return s
    if isinstance(s, (tuple, list)) and len(s) == 2:
        return slice(s[0], s[1])
    raise ValueError(f"crop: {name}={s!r}; give a slice or a (start, stop) pair of cell indices.")


def crop(v, z=None, x=None) -> np.ndarray:
    """Crop a ``[nz, nx]`` model: ``v[z, x]`` with ``z``/``x`` slices or ``(start, stop)`` pairs.

    Returns a ``float32`` numpy copy; raises if the crop is empty.
    """
    v = np.asarray(v)
    if v.ndim != 2:
        raise ValueError(f"crop: v has shape {v.shape}; expected [nz, nx].")
    out = v[_as_slice("z", z), _as_slice("x", x)]
    if out.size == 0:
        raise ValueError(f"crop: z={z!r}, x={x!r} select nothing from a model of shape {v.shape}.")
    return np.array(out, dtype=np.float32)


def data_dir(path=None) -> Path:
    """The folder holding the benchmark models.

    Order: ``path`` if given; else ``$JAXFWI_DATA``; else ``../shared/data``
    relative to the working directory; else ``shared/data`` next to the
    repository holding this package. Raises ``FileNotFoundError`` (naming what
    was tried and the environment variable to set) if none exists.
    """
    tried = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            return p
        raise FileNotFoundError(f"data_dir: path={str(p)!r} is not a directory.")
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p
        raise FileNotFoundError(f"data_dir: {ENV_VAR}={env!r} is not a directory; point it at the benchmark data folder.")
    candidates = [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for p in candidates:
        tried.append(str(p))
        if p.is_dir():
            return p.resolve()
    raise FileNotFoundError(
        f"data_dir: no benchmark data folder found (tried {tried}). Set the environment variable "
        f"{ENV_VAR}=/path/to/data or pass data_dir=..."
    )


def list_benchmarks() -> dict[str, str]:
    """Names accepted by :func:`load_benchmark` with a one-line description."""
    out = {k: f"{v[2]} [{v[0]}]" for k, v in BENCHMARKS.items()}
    out["bp2004"] = "2004 BP benchmark: not bundled; pass path= to the official SEG-Y (or binary with shape=)"
    return out


_data_dir = data_dir


def load_benchmark(name: str, data_dir=None, *, index: int | None = 0, path=None, shape=None, dx=None,
                   dz=None, dtype="float32", order="F", units="m/s"):
    """Load a benchmark velocity model by name.

    Args:
      name: one of :func:`list_benchmarks`: ``"marmousi"``, ``"marmousi_94x288"``,
        ``"marmousi2"``, ``"overthrust"``, ``"overthrust_94x401"``, ``"salt"``,
        ``"salt_75x250"``, ``"foothills"``, ``"bp2.5d"``, ``"openfwi/flatvel_a"``,
        ``"openfwi/curvevel_a"``, ``"openfwi/flatfault_a"``, or ``"bp2004"``.
      data_dir: folder with the data (default: see :func:`data_dir`).
      index: for OpenFWI stacks, which of the models to return (``None``: the
        whole ``[N, nz, nx]`` stack).
      path, shape, dx, dz, dtype, order, units: only for ``"bp2004"``, which is
        not bundled. ``path`` is the official file: a SEG-Y (``.sgy``/``.segy``,
        e.g. ``vel_z6.25m_x12.5m_exact.segy``) or a raw binary (then ``shape``
        ``(nz, nx)`` is required, with ``dtype``/``order``). ``dx`` / ``dz`` are
        its lateral / depth sampling in m (default the official 12.5 m / 6.25 m);
        when they differ the model is resampled in depth (linear) to square
        ``dx`` cells.

    Returns:
      ``(v, dx)``: ``float32`` numpy ``[nz, nx]`` velocity in m/s and the grid
      spacing in m (``dz = dx``).
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key == "bp2004":
        return _load_bp2004(path, shape, dx, dz, dtype, order, units)
    if key not in BENCHMARKS:
        raise ValueError(f"load_benchmark: unknown name={name!r}; choose one of {sorted(list_benchmarks())}.")
    rel, spacing, _ = BENCHMARKS[key]
    try:
        root = _data_dir(data_dir)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"load_benchmark({name!r}): {e}") from None
    f = root / rel
    if not f.is_file():
        raise FileNotFoundError(
            f"load_benchmark({name!r}): file {str(f)!r} not found. Set {ENV_VAR} (or data_dir=) to the folder "
            f"that contains '{rel}'."
        )
    v = load_npy(f)
    if v.ndim == 3:
        if index is not None:
            if not -v.shape[0] <= int(index) < v.shape[0]:
                raise IndexError(f"load_benchmark({name!r}): index={index} out of range for {v.shape[0]} models.")
            v = v[int(index)]
    return v, spacing


def _load_bp2004(path, shape, dx, dz, dtype, order, units):
    if path is None:
        raise FileNotFoundError(
            "load_benchmark('bp2004'): the 2004 BP benchmark model is not bundled (no small public copy). "
            "Download the official velocity model (e.g. vel_z6.25m_x12.5m_exact.segy from the SEG wiki / "
            "BP) and pass load_benchmark('bp2004', path=...)."
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_benchmark('bp2004'): no file at path={str(path)!r}.")
    dx = 12.5 if dx is None else float(dx)
    dz = 6.25 if dz is None else float(dz)
    if path.suffix.lower() in (".sgy", ".segy"):
        v = load_segy(path, units=units)
    else:
        if shape is None:
            raise ValueError("load_benchmark('bp2004'): a raw binary file needs shape=(nz, nx) (and dtype/order).")
        if units not in ("m/s", "km/s", "ft/s"):
            raise ValueError(f"load_benchmark('bp2004'): units={units!r}; use 'm/s', 'km/s' or 'ft/s'.")
        with warnings.catch_warnings():
            if units != "m/s":
                warnings.simplefilter("ignore")
            v = load_binary(path, shape, dtype=dtype, order=order)
        v = (v * {"m/s": 1.0, "km/s": 1000.0, "ft/s": 0.3048}[units]).astype(np.float32)
    if not np.isclose(dz, dx):
        v = resample(v, (max(2, int(round((v.shape[0] - 1) * dz / dx)) + 1), v.shape[1]))
    return v, dx
