"""Synthetic velocity models, deterministic from a ``jax.random`` key.

All generators return a ``float32`` ``jax.Array`` of velocity in **m/s**,
layout ``[nz, nx]`` (axis 0 = depth, row 0 = surface). Where a 1-D profile
makes sense (:func:`layered`, :func:`random_smooth`), an integer ``shape`` ``nz``
gives a ``[nz]`` depth profile. The same key always gives the same model;
``shape`` and the counts are static Python values.

:func:`default_model` needs no key: it is a fixed analytic layered + fault
model used by the examples and tests. :func:`phantom` gives ultrasound
(medical) test objects in water.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["layered", "faulted", "folded", "salt_body", "random_smooth", "default_model", "phantom"]


# --------------------------------------------------------------------------- helpers


def _shape(fn, shape, allow_1d=True):
    if isinstance(shape, (int, np.integer)):
        if not allow_1d:
            raise ValueError(f"{fn}: shape={shape!r}; this generator needs a 2-D shape (nz, nx).")
        shape = (int(shape),)
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError as e:
        raise ValueError(f"{fn}: shape={shape!r} must be (nz, nx) (or nz for a 1-D profile).") from e
    if len(shape) not in ((1, 2) if allow_1d else (2,)) or any(n < 2 for n in shape):
        raise ValueError(f"{fn}: shape={shape!r} must be (nz, nx) with nz, nx >= 2" + (" (or an int nz)." if allow_1d else "."))
    return shape


def _check_range(fn, v_min, v_max):
    if not (0 < float(v_min) <= float(v_max)):
        raise ValueError(f"{fn}: need 0 < v_min <= v_max (m/s); got v_min={v_min}, v_max={v_max}.")


def _check_layers(fn, n_layers):
    if int(n_layers) < 1:
        raise ValueError(f"{fn}: n_layers={n_layers} must be >= 1.")
    return int(n_layers)


def _interface_depths(key, n_layers, top=0.08, bottom=0.95):
    """``n_layers - 1`` increasing interface depths (fractions of the depth), no thin layers."""
    if n_layers < 2:
        return jnp.zeros((0,))
    t = jax.random.uniform(key, (n_layers,), minval=0.6, maxval=1.4)
    c = jnp.cumsum(t)[:-1] / jnp.sum(t)
    return top + (bottom - top) * c


def _layer_velocities(key, n_layers, v_min, v_max, monotonic=True):
    if n_layers == 1:
        return jnp.asarray([0.5 * (v_min + v_max)], jnp.float32)
    u = jax.random.uniform(key, (n_layers,))
    if monotonic:
        u = jnp.sort(u)
    u = (u - jnp.min(u)) / jnp.maximum(jnp.max(u) - jnp.min(u), 1e-6)
    return (v_min + (v_max - v_min) * u).astype(jnp.float32)


def _coords(nz, nx):
    z = jnp.arange(nz, dtype=jnp.float32)[:, None] / (nz - 1)  # depth fraction, [nz, 1]
    x = jnp.arange(nx, dtype=jnp.float32)[None, :] / (nx - 1)  # width fraction, [1, nx]
    return z, x


def _fill(z_eff, interfaces, velocities):
    """Velocity of the layer containing depth ``z_eff``; ``interfaces`` is ``[n_if, ..., nx]``."""
    if interfaces.shape[0] == 0:
        return jnp.broadcast_to(velocities[0], z_eff.shape).astype(jnp.float32)
    idx = jnp.sum((z_eff[None] >= interfaces).astype(jnp.int32), axis=0)
    return velocities[idx].astype(jnp.float32)


# --------------------------------------------------------------------------- generators


def layered(shape, key, n_layers: int = 5, v_min: float = 1500.0, v_max: float = 4500.0,
            dip: float = 0.0, monotonic: bool = True):
    """Plane layers, velocity increasing with depth (unless ``monotonic=False``).

    Args:
      shape: ``(nz, nx)``, or an int ``nz`` for a 1-D ``[nz]`` profile.
      key: ``jax.random`` key.
      n_layers: number of layers (>= 1). Interfaces are random, no layer is
        thinner than ~half the mean thickness; the top layer has ``v_min`` and
        the bottom one ``v_max``.
      v_min, v_max: velocity range, m/s.
      dip: maximum interface slope (depth change over the model width, as a
        fraction of the depth); a random slope in ``[-dip, dip]`` is shared by
        all interfaces. 0 gives flat layers.
      monotonic: sorted velocities (no low-velocity layers) if True.

    Returns:
      ``[nz, nx]`` (or ``[nz]``) float32 velocity, m/s.
    """
    shape = _shape("layered", shape)
    _check_range("layered", v_min, v_max)
    n_layers = _check_layers("layered", n_layers)
    return _layered(key, shape, n_layers, float(v_min), float(v_max), float(dip), bool(monotonic))


@functools.partial(jax.jit, static_argnums=(1, 2, 6))
def _layered(key, shape, n_layers, v_min, v_max, dip, monotonic):
    k1, k2, k3 = jax.random.split(key, 3)
    depths = _interface_depths(k1, n_layers)
    vel = _layer_velocities(k2, n_layers, v_min, v_max, monotonic)
    if len(shape) == 1:
        z = jnp.arange(shape[0], dtype=jnp.float32) / (shape[0] - 1)
        return _fill(z, depths[:, None], vel)
    z, x = _coords(*shape)
    slope = dip * jax.random.uniform(k3, (), minval=-1.0, maxval=1.0)
    interfaces = depths[:, None, None] + slope * (x[None] - 0.5)
    return _fill(jnp.broadcast_to(z, shape), interfaces, vel)


def faulted(shape, key, n_layers: int = 6, v_min: float = 1500.0, v_max: float = 4500.0, n_faults: int = 1,
            max_throw: float = 0.15, dip: float = 0.1, fault_angle=(50.0, 75.0)):
    """Dipping layers cut by planar normal/reverse faults.

    Each fault is a straight line through a random point of the middle half of
    the model, at a random angle (degrees from horizontal) in ``fault_angle``,
    leaning left or right; the layers on its right side are shifted in depth by
    a random throw of up to ``max_throw`` (fraction of the depth, up or down).

    Args:
      shape: ``(nz, nx)``.
      key: ``jax.random`` key.
      n_layers: number of layers (>= 1).
      v_min, v_max: velocity range, m/s (increasing with depth).
      n_faults: number of faults (>= 0).
      max_throw: maximum fault throw, fraction of the model depth.
      dip: maximum layer slope (see :func:`layered`).
      fault_angle: ``(min, max)`` fault dip angle, degrees.

    Returns:
      ``[nz, nx]`` float32 velocity, m/s.
    """
    nz, nx = _shape("faulted", shape, allow_1d=False)
    _check_range("faulted", v_min, v_max)
    n_layers = _check_layers("faulted", n_layers)
    if int(n_faults) < 0:
        raise ValueError(f"faulted: n_faults={n_faults} must be >= 0.")
    fa = tuple(float(a) for a in fault_angle)
    if len(fa) != 2 or not 0 < fa[0] <= fa[1] <= 90:
        raise ValueError(f"faulted: fault_angle={fault_angle!r} must be (min, max) degrees in (0, 90].")
    return _faulted(key, nz, nx, n_layers, float(v_min), float(v_max), int(n_faults), float(max_throw),
                    float(dip), fa)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 6))
def _faulted(key, nz, nx, n_layers, v_min, v_max, n_faults, max_throw, dip, fault_angle):
    keys = jax.random.split(key, 4 + int(n_faults))
    depths = _interface_depths(keys[0], n_layers, top=0.1)
    vel = _layer_velocities(keys[1], n_layers, v_min, v_max)
    slope = dip * jax.random.uniform(keys[2], (), minval=-1.0, maxval=1.0)
    zc = jnp.arange(nz, dtype=jnp.float32)[:, None]  # cells
    xc = jnp.arange(nx, dtype=jnp.float32)[None, :]
    z_eff = jnp.broadcast_to(zc / (nz - 1), (nz, nx))
    for i in range(int(n_faults)):
        kx, ka, ks, kt = jax.random.split(keys[4 + i], 4)
        x0 = jax.random.uniform(kx, (), minval=0.25, maxval=0.75) * (nx - 1)
        ang = jnp.deg2rad(jax.random.uniform(ka, (), minval=fault_angle[0], maxval=fault_angle[1]))
        lean = jnp.where(jax.random.bernoulli(ks), 1.0, -1.0)
        throw = max_throw * jax.random.uniform(kt, (), minval=-1.0, maxval=1.0)
        x_fault = x0 + lean * (zc - 0.5 * (nz - 1)) / jnp.tan(ang)
        z_eff = z_eff - jnp.where(xc > x_fault, throw, 0.0)
    _, x = _coords(nz, nx)
    interfaces = depths[:, None, None] + slope * (x[None] - 0.5)
    return _fill(z_eff, interfaces, vel)


def folded(shape, key, n_layers: int = 6, v_min: float = 1500.0, v_max: float = 4500.0,
           amplitude: float = 0.08, wavelengths=(0.5, 2.0)):
    """Layers folded into anticlines and synclines.

    Interfaces follow ``depth_i + a(z) * (sin(2 pi k x + p) + 0.3 sin(4 pi k x + q))``
    with a random number of cycles ``k`` across the width in ``wavelengths``
    and an amplitude growing from ``0.3 * amplitude`` at the top to
    ``amplitude`` at the bottom (fractions of the depth).

    Args:
      shape: ``(nz, nx)``.
      key: ``jax.random`` key.
      n_layers: number of layers (>= 1).
      v_min, v_max: velocity range, m/s (increasing with depth).
      amplitude: fold amplitude, fraction of the depth.
      wavelengths: ``(min, max)`` number of fold cycles across the model width.

    Returns:
      ``[nz, nx]`` float32 velocity, m/s.
    """
    nz, nx = _shape("folded", shape, allow_1d=False)
    _check_range("folded", v_min, v_max)
    n_layers = _check_layers("folded", n_layers)
    wl = tuple(float(w) for w in wavelengths)
    if len(wl) != 2 or not 0 < wl[0] <= wl[1]:
        raise ValueError(f"folded: wavelengths={wavelengths!r} must be (min, max) cycles, 0 < min <= max.")
    return _folded(key, nz, nx, n_layers, float(v_min), float(v_max), float(amplitude), wl)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _folded(key, nz, nx, n_layers, v_min, v_max, amplitude, wavelengths):
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    depths = _interface_depths(k1, n_layers, top=0.12, bottom=0.9)
    vel = _layer_velocities(k2, n_layers, v_min, v_max)
    cycles = jax.random.uniform(k3, (), minval=wavelengths[0], maxval=wavelengths[1])
    p, q = jax.random.uniform(k4, (2,), maxval=2 * math.pi)
    a_scale = jax.random.uniform(k5, (), minval=0.7, maxval=1.0)
    z, x = _coords(nz, nx)
    shape_x = jnp.sin(2 * math.pi * cycles * x + p) + 0.3 * jnp.sin(4 * math.pi * cycles * x + q)
    amp = amplitude * a_scale * (0.3 + 0.7 * depths)[:, None, None]
    interfaces = depths[:, None, None] + amp * shape_x[None]
    return _fill(jnp.broadcast_to(z, (nz, nx)), interfaces, vel)


def salt_body(shape, key, v_salt: float = 4500.0, n_layers: int = 5, v_min: float = 1500.0,
              v_max: float = 3500.0, size: float = 0.25, background: str = "folded"):
    """A salt body (high-velocity irregular blob) in a sedimentary background.

    The body's outline is ``r(theta) = r0 (1 + sum_k a_k cos(k theta + p_k))``
    (k = 2..4, random ``a_k`` up to 0.15), stretched 1.4x vertically, centred at
    a random point in the middle of the model; ``r0 = size * min(nz, nx)`` cells.

    Args:
      shape: ``(nz, nx)``.
      key: ``jax.random`` key.
      v_salt: salt velocity, m/s (4482 m/s in SEG/EAGE Salt).
      n_layers, v_min, v_max: the sedimentary background (m/s).
      size: body radius as a fraction of the smaller dimension.
      background: ``"folded"`` or ``"layered"``.

    Returns:
      ``[nz, nx]`` float32 velocity, m/s.
    """
    nz, nx = _shape("salt_body", shape, allow_1d=False)
    _check_range("salt_body", v_min, v_max)
    if not float(v_salt) > 0:
        raise ValueError(f"salt_body: v_salt={v_salt} must be a positive velocity in m/s.")
    if background not in ("folded", "layered"):
        raise ValueError(f"salt_body: background={background!r}; use 'folded' or 'layered'.")
    n_layers = _check_layers("salt_body", n_layers)
    return _salt_body(key, nz, nx, float(v_salt), n_layers, float(v_min), float(v_max), float(size), background)


@functools.partial(jax.jit, static_argnums=(1, 2, 4, 8))
def _salt_body(key, nz, nx, v_salt, n_layers, v_min, v_max, size, background):
    kb, kc, ka, kp = jax.random.split(key, 4)
    if background == "folded":
        v = _folded(kb, nz, nx, n_layers, v_min, v_max, 0.05, (0.5, 2.0))
    else:
        v = _layered(kb, (nz, nx), n_layers, v_min, v_max, 0.05, True)
    cz = jax.random.uniform(kc, (2,), minval=jnp.array([0.4, 0.3]), maxval=jnp.array([0.6, 0.7]))
    z0, x0 = cz[0] * (nz - 1), cz[1] * (nx - 1)
    r0 = size * min(nz, nx)
    a = jax.random.uniform(ka, (3,), minval=-0.15, maxval=0.15)
    p = jax.random.uniform(kp, (3,), maxval=2 * math.pi)
    zc = jnp.arange(nz, dtype=jnp.float32)[:, None]
    xc = jnp.arange(nx, dtype=jnp.float32)[None, :]
    dz = (zc - z0) / 1.4
    dx = xc - x0
    theta = jnp.arctan2(dz, dx)
    rad = r0 * (1.0 + sum(a[i] * jnp.cos((i + 2) * theta + p[i]) for i in range(3)))
    inside = jnp.sqrt(dz**2 + dx**2) <= rad
    return jnp.where(inside, jnp.asarray(v_salt, jnp.float32), v).astype(jnp.float32)


def random_smooth(shape, key, v_min: float = 1500.0, v_max: float = 4500.0, corr_length: float = 0.1,
                  depth_trend: float = 0.6):
    """A smooth random model: Gaussian random field plus a linear depth trend.

    White noise is smoothed with a Gaussian kernel of standard deviation
    ``corr_length`` (fraction of each dimension) by FFT (periodic), normalised,
    mixed with a linear increase in depth (weight ``depth_trend`` in ``[0, 1]``),
    and scaled to exactly ``[v_min, v_max]``.

    Args:
      shape: ``(nz, nx)``, or an int ``nz`` for a ``[nz]`` profile.
      key: ``jax.random`` key.
      v_min, v_max: velocity range, m/s.
      corr_length: correlation length, fraction of the model size (> 0).
      depth_trend: 0 = pure random field, 1 = pure linear gradient.

    Returns:
      float32 velocity, m/s, of ``shape``.
    """
    shape = _shape("random_smooth", shape)
    _check_range("random_smooth", v_min, v_max)
    if not corr_length > 0:
        raise ValueError(f"random_smooth: corr_length={corr_length} must be > 0 (fraction of the model size).")
    if not 0.0 <= depth_trend <= 1.0:
        raise ValueError(f"random_smooth: depth_trend={depth_trend} must be in [0, 1].")
    return _random_smooth(key, shape, float(v_min), float(v_max), float(corr_length), float(depth_trend))


@functools.partial(jax.jit, static_argnums=(1,))
def _random_smooth(key, shape, v_min, v_max, corr_length, depth_trend):
    noise = jax.random.normal(key, shape, jnp.float32)
    spec = jnp.fft.fftn(noise)
    filt = 1.0
    for ax, n in enumerate(shape):
        k = jnp.fft.fftfreq(n)  # cycles per cell
        sig = corr_length * n  # cells
        g = jnp.exp(-2.0 * (math.pi * k * sig) ** 2)
        filt = filt * g.reshape([-1 if i == ax else 1 for i in range(len(shape))])
    field = jnp.real(jnp.fft.ifftn(spec * filt))
    field = (field - jnp.mean(field)) / jnp.maximum(jnp.std(field), 1e-12)
    depth = jnp.arange(shape[0], dtype=jnp.float32) / (shape[0] - 1)
    depth = depth.reshape((-1,) + (1,) * (len(shape) - 1))
    m = depth_trend * (depth - 0.5) * math.sqrt(12.0) + (1.0 - depth_trend) * field
    m = (m - jnp.min(m)) / jnp.maximum(jnp.max(m) - jnp.min(m), 1e-12)
    return (v_min + (v_max - v_min) * m).astype(jnp.float32)


def default_model(shape=(40, 80)):
    """The built-in default model: five layers and one normal fault, 1500-3500 m/s.

    Fixed and analytic (no random key, identical on every machine and JAX
    version): interfaces at 20, 40, 60 and 80 % of the depth rising gently to
    the right (5 % of the depth over the width), layer velocities 1500, 2000,
    2500, 3000, 3500 m/s, and a fault through ``(z, x) = (50 %, 55 %)`` of the
    model dipping ~63 degrees to the right whose right block is shifted down by
    10 % of the depth. The top layer (1500 m/s) is water-like.

    Args:
      shape: ``(nz, nx)``, each >= 2; the geometry scales with the grid.

    Returns:
      ``[nz, nx]`` float32 ``jax.Array``, m/s.
    """
    nz, nx = _shape("default_model", shape, allow_1d=False)
    z = np.arange(nz, dtype=np.float64)[:, None] / (nz - 1)
    x = np.arange(nx, dtype=np.float64)[None, :] / (nx - 1)
    # fault in cell units: x_f = 0.55 (nx-1) + 0.5 (z_cells - 0.5 (nz-1))  (dip atan(2) ~ 63 deg)
    zc = z * (nz - 1)
    xc = x * (nx - 1)
    x_fault = 0.55 * (nx - 1) + 0.5 * (zc - 0.5 * (nz - 1))
    z_eff = z - np.where(xc > x_fault, 0.10, 0.0)
    depths = np.array([0.2, 0.4, 0.6, 0.8])[:, None, None] - 0.05 * x[None]
    idx = np.sum(z_eff[None] >= depths - 1e-9, axis=0)
    vel = np.array([1500.0, 2000.0, 2500.0, 3000.0, 3500.0])
    return jnp.asarray(vel[idx], dtype=jnp.float32)


# --------------------------------------------------------------------------- medical phantoms


def _ellipse(zn, xn, cz, cx, rz, rx, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)
    dz, dx = zn - cz, xn - cx
    u = c * dx + s * dz
    w = -s * dx + c * dz
    return (u / rx) ** 2 + (w / rz) ** 2 <= 1.0


def phantom(kind: str = "breast", shape=(128, 128), key=None, skull: bool = False, v_skull: float = 2800.0):
    """Ultrasound computed-tomography test object in water (NeurFWI's medical case).

    Coordinates are normalised to ``[-1, 1]`` on both axes; the object is
    centred, so a ring of transducers (``Survey.ring``) fits around it.
    Sound speeds (m/s), all within 1450-1600 m/s except an optional skull:

    - ``"breast"``: water 1500; fatty tissue 1470; skin 1590 (thin rim);
      fibroglandular tissue 1540 (irregular central region); a tumour 1575 and
      a smaller lesion 1560; a cyst 1525.
    - ``"brain"``: water 1500; scalp 1590 (rim); CSF 1505 (layer around the
      brain and two ventricles); grey matter 1560; white matter 1550 (inner
      region); a lesion 1590. With ``skull=True`` a bone ring of ``v_skull``
      (default 2800 m/s) replaces the outer CSF layer.

    Args:
      kind: ``"breast"`` or ``"brain"``.
      shape: ``(nz, nx)``.
      key: optional ``jax.random`` key; if given, the inclusions are moved by a
        random offset (up to 0.08) and the object rotated slightly. ``None``
        gives the fixed layout.
      skull, v_skull: see above (brain only).

    Returns:
      ``[nz, nx]`` float32 ``jax.Array``, m/s.
    """
    nz, nx = _shape("phantom", shape, allow_1d=False)
    if kind not in ("breast", "brain"):
        raise ValueError(f"phantom: kind={kind!r}; use 'breast' or 'brain'.")
    if key is None:
        jitter = np.zeros((6, 2))
        rot = 0.0
    else:
        k1, k2 = jax.random.split(key)
        jitter = np.asarray(jax.random.uniform(k1, (6, 2), minval=-0.08, maxval=0.08))
        rot = float(jax.random.uniform(k2, (), minval=-0.3, maxval=0.3))
    zn = np.linspace(-1.0, 1.0, nz)[:, None] * np.ones((1, nx))
    xn = np.ones((nz, 1)) * np.linspace(-1.0, 1.0, nx)[None, :]
    v = np.full((nz, nx), 1500.0)
    if kind == "breast":
        outer = _ellipse(zn, xn, 0, 0, 0.80, 0.72, rot)
        inner = _ellipse(zn, xn, 0, 0, 0.77, 0.69, rot)
        v[outer] = 1590.0
        v[inner] = 1470.0
        gland = (_ellipse(zn, xn, 0.05, 0.0, 0.45, 0.35, rot)
                 | _ellipse(zn, xn, -0.25 + jitter[0, 0], 0.2 + jitter[0, 1], 0.22, 0.18, rot + 0.5)
                 | _ellipse(zn, xn, 0.3 + jitter[1, 0], -0.22 + jitter[1, 1], 0.2, 0.16, rot - 0.4))
        v[gland & inner] = 1540.0
        v[_ellipse(zn, xn, 0.1 + jitter[2, 0], 0.15 + jitter[2, 1], 0.09, 0.09)] = 1575.0
        v[_ellipse(zn, xn, -0.35 + jitter[3, 0], -0.3 + jitter[3, 1], 0.05, 0.05)] = 1560.0
        v[_ellipse(zn, xn, 0.4 + jitter[4, 0], 0.3 + jitter[4, 1], 0.07, 0.06)] = 1525.0
    else:
        head = _ellipse(zn, xn, 0, 0, 0.85, 0.70, rot)
        under_scalp = _ellipse(zn, xn, 0, 0, 0.81, 0.66, rot)
        brain = _ellipse(zn, xn, 0, 0, 0.76, 0.61, rot)
        v[head] = 1590.0
        v[under_scalp] = float(v_skull) if skull else 1505.0
        v[brain] = 1560.0
        v[_ellipse(zn, xn, 0.0, 0.0, 0.58, 0.45, rot)] = 1550.0
        for sgn, j in ((-1.0, 0), (1.0, 1)):
            v[_ellipse(zn, xn, -0.1 + jitter[j, 0], sgn * 0.12 + jitter[j, 1], 0.22, 0.06, rot + sgn * 0.25)] = 1505.0
        v[_ellipse(zn, xn, 0.35 + jitter[2, 0], 0.25 + jitter[2, 1], 0.08, 0.08)] = 1590.0
    return jnp.asarray(v, dtype=jnp.float32)
