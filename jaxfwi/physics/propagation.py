"""Finite-difference acoustic propagation: ``v + Survey -> receiver data``.

The constant-density acoustic wave equation

    (1 / v^2) d2u/dt2 - lap(u) = s(x, t),      s = f(t) delta(x - x_s)

is stepped with the leapfrog scheme (2nd order in time) and a central
Laplacian of order 2, 4, 6 or 8 in space:

    u[n+1] = 2 u[n] - u[n-1] + dt^2 v^2 (lap_pml u[n] + f[n] / dV)

where ``dV = prod(dx)`` turns the point source into a cell average and
``lap_pml`` carries the C-PML memory terms (:mod:`jaxfwi.physics.pml`), which
are evaluated only inside the absorbing strips.

**Amplitude convention.** Each source injects ``f[n]`` with the units of the
right-hand side ``s`` integrated over a cell (a point source of strength
``f(t)``). A receiver records ``u`` at its cell at ``t = n dt``: with this
convention, in a homogeneous medium the record is the wavelet convolved with
the causal Green's function ``G`` of ``(1/v^2) u_tt - lap u = delta`` — 1-D
``G = v/2 H(t - r/v)``, 2-D ``G = H(t - r/v) / (2 pi sqrt(t^2 - r^2/v^2))``,
3-D ``G = delta(t - r/v) / (4 pi r)`` — which the tests check.

**Boundaries.** Absorbing C-PML layers of ``pml_width`` cells are added
outside the model on the chosen sides (the model is extended into them by
edge replication). With ``free_surface=True`` the top (low end of axis 0)
has no PML and a pressure-free surface lies exactly on row 0 (``u = 0``
there, enforced by odd mirroring): sources and receivers should sit at depth
index >= 1 (row 0 records zeros).

**Time stepping and stability.** When ``dt`` exceeds the stability limit of
the scheme the default is to step at (within one step of) the largest stable
internal interval, ``CFL_SAFETY`` of the von Neumann limit: ``nt_internal``
steps of ``nt dt / nt_internal`` over the same record length, which need not
be an integer multiple of ``nt`` (Devito's choice; deepwave divides ``dt`` by an
integer, which for a Courant number just above the limit doubles the work).
Wavelets go onto the internal axis and records back onto the recording axis
by band-limited (Fourier) resampling (:func:`jaxfwi.physics.wavelets.resample`),
and the adjoint source back by its transpose. ``substeps=k`` forces ``k``
internal steps per sample (also chosen for snapshots, which sit on recorded
samples); ``cfl="error"`` raises instead. The plan, including ``nt_internal``,
is returned by :func:`plan_propagation` and by ``forward(..., return_plan=True)``.

**Gradients.** ``jax.grad``/``jax.vjp`` run a hand-written discrete adjoint
(the transpose of the linearised time loop, :mod:`jaxfwi.physics._core`): the
forward loop stores the state at the start of every segment of
``checkpoint`` steps (default ``sqrt(nt)``), and the adjoint recomputes each
segment before stepping the adjoint wave equation back through it, so memory
is bounded by ``~2 sqrt(nt)`` wavefields per shot. ``jax.jvp`` uses ordinary
forward-mode autodiff of the loop. For the plain loop (e.g. snapshots),
``checkpoint=k`` wraps segments of k steps in ``jax.checkpoint``;
Shots are vmapped together: XLA spreads the larger loops over the cores.
On CPU the default batch keeps one wavefield of the batch within about
2 MiB (all shots when they fit in 4 MiB), because past the caches every pass
over the grid streams from main memory: on the 2-core test machine the
BP-size case (20 shots of 228 x 540 cells) ran 1.9x faster in groups of 4
than with all 20 vmapped, while the Marmousi case (13 shots of 142 x 336)
is fastest all together. Other backends vmap all shots. ``shot_batch=B``
sets the group size, which also bounds the memory of every path.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxfwi.physics import stencils
from jaxfwi.physics._core import simulate_jit, simulate_jit_top
from jaxfwi.physics.survey import Survey
from jaxfwi.physics.wavelets import peak_frequency

CFL_SAFETY = 0.98  # fraction of the von Neumann limit used when subdividing


class SubstepWarning(UserWarning):
    """Emitted when ``dt`` is split into several internal steps for stability."""


class CoarseGridWarning(UserWarning):
    """Emitted when the grid has fewer than ~5 cells per minimum wavelength."""


@dataclass(frozen=True)
class PropagationPlan:
    """Static (hashable) configuration of one propagation; the jit cache key.

    Attributes:
      shape: model shape (without absorbing layers).
      spacing: cell size per axis, m.
      dt: recorded sample interval, s.
      nt: recorded samples.
      nt_internal: internal time steps over the record (``nt`` when ``dt`` is stable; need not be a
        multiple of ``nt``); ``substeps`` is the ratio ``nt_internal / nt``.
      accuracy: spatial order (2, 4, 6, 8).
      pml: ``((low, high), ...)`` absorbing-layer widths per axis, cells.
      free_surface: pressure-free top (row 0).
      checkpoint: internal steps per checkpointed segment (None: no checkpointing).
      shot_batch: shots propagated together (vmapped); None means all.
      snapshot_every: record the wavefield every this many samples (None: never).
      store_wavefield: the gradient keeps every internal wavefield of the forward pass (one forward
        and one adjoint pass) instead of recomputing ``checkpoint``-step segments from stored states
        (about one forward pass more, memory ~``2 sqrt(nt)`` wavefields a shot instead of ``nt``).
    """

    shape: tuple
    spacing: tuple
    dt: float
    nt: int
    nt_internal: int | None = None
    accuracy: int = 8
    pml: tuple = ()
    free_surface: bool = False
    checkpoint: int | None = None
    shot_batch: int | None = None
    snapshot_every: int | None = None
    store_wavefield: bool = False

    def __post_init__(self):
        if self.nt_internal is None:
            object.__setattr__(self, "nt_internal", int(self.nt))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dt_internal(self) -> float:
        """Internal time step, s: the record length ``nt dt`` over ``nt_internal`` steps."""
        return self.dt * self.nt / self.nt_internal

    @property
    def substeps(self):
        """Internal steps per recorded sample: an int when ``nt_internal`` is a multiple of ``nt``, else a float."""
        q, r = divmod(self.nt_internal, self.nt)
        return q if r == 0 else self.nt_internal / self.nt

    @property
    def padded_shape(self) -> tuple:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.shape, self.pml))

    def stable_dt(self, max_vel: float) -> float:
        """Largest stable time step (s) for velocities up to ``max_vel`` m/s."""
        return stable_dt(self.accuracy, self.spacing, max_vel)

    def courant(self, max_vel: float) -> float:
        """Courant number ``max_vel * dt / min(dx)`` of the recorded dt."""
        return max_vel * self.dt / min(self.spacing)


def stable_dt(accuracy: int, spacing, max_vel: float) -> float:
    """Von Neumann stability limit of the leapfrog scheme, s."""
    c0, ck = stencils.d2_coefficients(accuracy)
    s = abs(c0 + 2 * sum(c * (-1) ** (k + 1) for k, c in enumerate(ck)))
    return 2.0 / (max_vel * math.sqrt(s * sum(1.0 / h**2 for h in spacing)))


# ----------------------------------------------------------------------------
# validation (outside jit)
# ----------------------------------------------------------------------------

def _concrete(x):
    """A numpy copy of ``x`` if its value is known (also under grad/jvp), else None."""
    if not isinstance(x, jax.core.Tracer):
        return np.asarray(x)
    try:
        return np.asarray(lax.stop_gradient(x))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _normalise_spacing(dx, ndim):
    if np.ndim(dx) == 0:
        dx = (dx,) * ndim
    try:
        dx = tuple(float(h) for h in dx)
    except TypeError as e:
        raise TypeError(f"dx={dx!r}: the grid spacing must be concrete numbers in m (it is static).") from e
    if len(dx) != ndim or not all(h > 0 and math.isfinite(h) for h in dx):
        raise ValueError(f"dx={dx!r} must be a positive spacing in m (one number, or one per axis of the {ndim}-D model).")
    return dx


def _whole(w) -> bool:
    return (not isinstance(w, bool) and isinstance(w, (int, np.integer, float, np.floating))
            and math.isfinite(w) and int(w) == w)


def _normalise_pml(pml_width, ndim, free_surface):
    raw = [pml_width] * (2 * ndim) if np.ndim(pml_width) == 0 else list(np.ravel(np.asarray(pml_width, dtype=object)))
    if len(raw) != 2 * ndim or not all(_whole(w) and w >= 0 for w in raw):
        raise ValueError(
            f"pml_width={pml_width!r}: give one non-negative whole number of cells, or {2 * ndim} "
            "(low, high per axis: e.g. [top, bottom, left, right] in 2-D)."
        )
    widths = [int(w) for w in raw]
    if free_surface:
        widths[0] = 0
    return tuple((widths[2 * d], widths[2 * d + 1]) for d in range(ndim))


from jaxfwi import devices as _devices  # noqa: E402
from jaxfwi.devices import CPU_ALL_SHOTS_BYTES, CPU_BATCH_BYTES  # noqa: E402,F401  (re-exported)


def default_shot_batch(shape, pml, accuracy, n_shots, dtype=np.float32, backend=None, **kw):
    """Shots propagated together by default (``None``: all); see :func:`jaxfwi.devices.default_shot_batch`,
    the one place for device-specific defaults (CPU: cache-sized groups; accelerators: all shots that fit)."""
    return _devices.default_shot_batch(shape, pml, accuracy, n_shots, dtype, backend, **kw)


def _normalise_checkpoint(checkpoint, nt_internal):
    if checkpoint is None or checkpoint is False or checkpoint == 0 or checkpoint == "store":
        return None
    if checkpoint == "sqrt":
        return max(1, int(math.ceil(math.sqrt(nt_internal))))
    if isinstance(checkpoint, (int, np.integer)) and checkpoint > 0:
        return int(min(checkpoint, nt_internal))
    raise ValueError(
        f"checkpoint={checkpoint!r}: use None (the default: store every wavefield if it fits, else "
        "segments of sqrt(nt) steps), 'store', a positive number of internal steps per segment, or "
        "'sqrt' (segments of sqrt(nt) steps)."
    )


def _check_locations(name, locs, shape):
    arr = _concrete(locs)
    if arr is None or arr.size == 0:
        return
    hi = np.asarray(shape)
    bad = np.any((arr < 0) | (arr >= hi), axis=-1)
    if bad.any():
        shot, k = np.argwhere(bad)[0]
        raise ValueError(
            f"survey.{name}[{shot}, {k}] = {arr[shot, k].tolist()} lies outside the model of shape "
            f"{tuple(shape)}; grid indices must satisfy 0 <= index < shape along each axis."
        )


def plan_propagation(
    v,
    dx,
    survey: Survey,
    accuracy: int = 8,
    pml_width=20,
    free_surface: bool = False,
    *,
    max_vel: float | None = None,
    checkpoint=None,
    shot_batch: int | None = None,
    snapshot_every: int | None = None,
    cfl: str = "subdivide",
    substeps: int | None = None,
    warn: bool = True,
):
    """Validate the inputs of :func:`forward` and return ``(plan, max_vel)``.

    Raises ``ValueError`` (before any compilation) naming the bad argument, its
    value and the fix. See :func:`forward` for the arguments.
    """
    if not isinstance(survey, Survey):
        raise TypeError(f"survey must be a jaxfwi.Survey, got {type(survey).__name__}.")
    v_dtype = getattr(v, "dtype", None)
    v_dtype = np.asarray(v).dtype if v_dtype is None else v_dtype
    if jnp.issubdtype(v_dtype, jnp.complexfloating) or not (jnp.issubdtype(v_dtype, jnp.floating)
                                                          or jnp.issubdtype(v_dtype, jnp.integer)):
        raise ValueError(f"v has dtype {v_dtype}; velocities are real m/s (pass np.real(v) if that is what you mean).")
    shape = tuple(int(n) for n in jnp.shape(v))
    ndim = len(shape)
    if ndim and min(shape) == 0:
        raise ValueError(f"v has shape {shape}: an empty model; give at least one cell per axis.")
    if ndim not in (1, 2, 3):
        raise ValueError(f"v has shape {shape}; expected a 1-D [nz], 2-D [nz, nx] or 3-D [nz, ny, nx] model.")
    if survey.ndim != ndim:
        raise ValueError(
            f"survey locations have {survey.ndim} coordinates but v is {ndim}-D (shape {shape}); "
            "give locations as (z,), (z, x) or (z, y, x) to match the model."
        )
    accuracy = stencils.check_accuracy(accuracy)
    spacing = _normalise_spacing(dx, ndim)
    pml = _normalise_pml(pml_width, ndim, free_surface)
    if cfl not in ("subdivide", "error"):
        raise ValueError(f"cfl={cfl!r}: use 'subdivide' (internal time steps) or 'error'.")
    _check_locations("sources", survey.sources, shape)
    _check_locations("receivers", survey.receivers, shape)
    if survey.nt < 1:
        raise ValueError(f"survey.wavelet has shape {tuple(survey.wavelet.shape)}: zero time samples; give nt >= 1.")
    w_chk = _concrete(survey.wavelet)
    if w_chk is not None and not np.all(np.isfinite(w_chk)):
        bad = np.argwhere(~np.isfinite(w_chk))[0].tolist()
        raise ValueError(f"survey.wavelet has a non-finite sample ({w_chk[tuple(bad)]}) at index {bad}; every sample "
                         "must be finite (clean it, e.g. np.nan_to_num).")

    v_np = _concrete(v)
    if v_np is not None:
        if not np.all(np.isfinite(v_np)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(v_np))[0])
            raise ValueError(f"v contains a non-finite velocity ({v_np[idx]}) at index {idx}; velocities must be finite m/s.")
        if np.any(v_np <= 0):
            idx = tuple(int(i) for i in np.argwhere(v_np <= 0)[0])
            raise ValueError(f"v contains a non-positive velocity ({v_np[idx]}) at index {idx}; velocities must be > 0 m/s.")
    if max_vel is None:
        if v_np is None:
            raise ValueError(
                "v is traced (inside jit/vmap), so the stability limit cannot be read from it: pass "
                "max_vel=<largest velocity in m/s> to forward()."
            )
        max_vel = float(v_np.max())
    else:
        max_vel = float(max_vel)
        if not max_vel > 0:
            raise ValueError(f"max_vel={max_vel!r} must be a positive velocity in m/s.")
        if v_np is not None and max_vel < float(v_np.max()):
            max_vel = float(v_np.max())

    dt = survey.dt
    nt = survey.nt
    dt_max = stable_dt(accuracy, spacing, max_vel)
    needs_more = dt > CFL_SAFETY * dt_max
    if needs_more and cfl == "error" and substeps is None:
        raise ValueError(
            f"dt={dt:g} s is above the stability limit: Courant number {max_vel * dt / min(spacing):.3f} "
            f"(max_vel {max_vel:g} m/s, dx {min(spacing):g} m), stable up to dt={dt_max:.4g} s for accuracy "
            f"{accuracy} in {ndim}-D. Use dt <= {CFL_SAFETY * dt_max:.4g} s or cfl='subdivide'."
        )
    if substeps is not None:
        if not _whole(substeps) or substeps < 1:
            raise ValueError(f"substeps={substeps!r} must be a positive whole number of internal steps per sample "
                             "(or None to choose the largest stable internal step).")
        nt_internal = nt * int(substeps)
        if dt / int(substeps) > dt_max:
            raise ValueError(
                f"substeps={substeps} leaves dt/substeps={dt / substeps:.4g} s above the stable {dt_max:.4g} s; "
                f"use substeps >= {int(math.ceil(dt / dt_max))} or leave it None."
            )
    elif not needs_more:
        nt_internal = nt
    elif snapshot_every is not None:  # snapshots sit on recorded samples: a whole number of steps per sample
        nt_internal = nt * int(math.ceil(dt / (CFL_SAFETY * dt_max)))
    else:  # the largest stable step over the same record length
        nt_internal = int(math.ceil(nt * dt / (CFL_SAFETY * dt_max)))
    if warn and needs_more and substeps is None:
        warnings.warn(
            f"jaxfwi.forward: dt={dt:g} s exceeds the stability limit {dt_max:.4g} s (Courant number "
            f"{max_vel * dt / min(spacing):.3f}); running {nt_internal} internal steps of {dt * nt / nt_internal:.4g} s "
            f"for the {nt} samples, with band-limited resampling (pass cfl='error' to refuse).",
            SubstepWarning,
            stacklevel=3,
        )
    if warn and v_np is not None:
        w_np = _concrete(survey.wavelet)
        if w_np is not None and np.any(w_np):
            fpk = peak_frequency(w_np, dt)
            fmax = 2.2 * fpk  # Ricker spectrum falls to ~10 % of its peak here
            ppw = float(v_np.min()) / (fmax * max(spacing)) if fmax > 0 else np.inf
            if ppw < 5:
                warnings.warn(
                    f"jaxfwi.forward: only {ppw:.1f} cells per minimum wavelength (v_min {v_np.min():g} m/s, "
                    f"f_max ~{fmax:.3g} Hz, dx {max(spacing):g} m); expect numerical dispersion. Use a smaller dx "
                    "or a lower frequency for >= 5 (>= 6 for accuracy-critical work).",
                    CoarseGridWarning,
                    stacklevel=3,
                )
    seg = _normalise_checkpoint(checkpoint, nt_internal)
    if shot_batch is not None:
        if int(shot_batch) != shot_batch or shot_batch < 1:
            raise ValueError(f"shot_batch={shot_batch!r} must be a positive integer number of shots (or None).")
        shot_batch = int(min(shot_batch, survey.n_shots))
    else:
        shot_batch = default_shot_batch(shape, pml, accuracy, survey.n_shots, np.dtype(getattr(v, "dtype", "float32")),
                                        nt_internal=nt_internal, checkpoint=seg)
    if snapshot_every is not None:
        if int(snapshot_every) != snapshot_every or snapshot_every < 1:
            raise ValueError(f"snapshot_every={snapshot_every!r} must be a positive number of samples.")
        snapshot_every = int(snapshot_every)
    if snapshot_every is not None or seg is not None:
        store = False  # snapshots run the plain loop; segments were asked for
    elif isinstance(checkpoint, str) and checkpoint == "store":
        store = True
    else:
        store = _devices.default_store_wavefield(shape, pml, accuracy, nt_internal, survey.n_shots,
                                                 np.dtype(getattr(v, "dtype", "float32")))
    plan = PropagationPlan(
        shape=shape,
        spacing=spacing,
        dt=dt,
        nt=survey.nt,
        nt_internal=nt_internal,
        accuracy=accuracy,
        pml=pml,
        free_surface=bool(free_surface),
        checkpoint=seg,
        shot_batch=shot_batch,
        snapshot_every=snapshot_every,
        store_wavefield=store,
    )
    return plan, max_vel




class Propagation(NamedTuple):
    """What :func:`propagate` returns.

    Attributes:
      data: receiver data ``[n_shots, n_receivers, nt]`` (pressure samples at ``t = n dt``).
      snapshots: ``[n_shots, n_snap, *v.shape]`` wavefields, snapshot ``j`` at
        ``t = ((j + 1) * snapshot_every - 1) * dt``; None without ``snapshot_every``.
      plan: the :class:`PropagationPlan` that ran (internal steps, storage, shot groups).
    """
    data: jax.Array
    snapshots: Optional[jax.Array]
    plan: PropagationPlan


def _run(v, dx, survey, accuracy, pml_width, free_surface, pml_freq, max_vel, checkpoint, shot_batch,
         snapshot_every, cfl, substeps) -> Propagation:
    plan, max_vel = plan_propagation(
        v, dx, survey, accuracy, pml_width, free_surface, max_vel=max_vel, checkpoint=checkpoint,
        shot_batch=shot_batch, snapshot_every=snapshot_every, cfl=cfl, substeps=substeps,
    )
    if pml_freq is None:
        w_np = _concrete(survey.wavelet)
        if w_np is None:
            raise ValueError("survey.wavelet is traced, so its peak frequency is unknown: pass pml_freq=<Hz>.")
        pml_freq = peak_frequency(w_np, survey.dt)
    dtype = jnp.result_type(v)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    v = jnp.asarray(v, dtype)
    args = (v, survey.sources, survey.receivers, survey.wavelets(), jnp.asarray(max_vel, dtype),
            jnp.asarray(pml_freq, dtype))
    top = not any(isinstance(a, jax.core.Tracer) for a in args)
    recs, snaps = (simulate_jit_top if top else simulate_jit)(plan, *args)
    return Propagation(recs, snaps, plan)


def propagate(
    v,
    dx,
    survey: Survey,
    accuracy: int = 8,
    pml_width=20,
    free_surface: bool = False,
    *,
    pml_freq: float | None = None,
    max_vel: float | None = None,
    checkpoint=None,
    shot_batch: int | None = None,
    snapshot_every: int | None = None,
    cfl: str = "subdivide",
    substeps: int | None = None,
) -> Propagation:
    """:func:`forward` that also returns the wavefield snapshots and the plan: a :class:`Propagation`
    ``(data, snapshots, plan)``. Arguments as :func:`forward`, plus ``snapshot_every``: also record
    the wavefield every this many samples (the loop then runs without the hand-written adjoint:
    gradients go through plain autodiff).

    Example:
      >>> import jax.numpy as jnp, jaxfwi
      >>> v = jnp.full((40, 60), 2000.0)
      >>> s = jaxfwi.Survey.surface_line(v.shape, 2, jaxfwi.ricker(10.0, 200, 0.002), 0.002)
      >>> out = jaxfwi.propagate(v, 10.0, s, accuracy=4, pml_width=10, snapshot_every=50)
      >>> out.data.shape, out.snapshots.shape, out.plan.nt_internal
      ((2, 60, 200), (2, 4, 40, 60), 200)
    """
    return _run(v, dx, survey, accuracy, pml_width, free_surface, pml_freq, max_vel, checkpoint, shot_batch,
                snapshot_every, cfl, substeps)


def forward(
    v,
    dx,
    survey: Survey,
    accuracy: int = 8,
    pml_width=20,
    free_surface: bool = False,
    *,
    pml_freq: float | None = None,
    max_vel: float | None = None,
    checkpoint=None,
    shot_batch: int | None = None,
    snapshot_every: int | None = None,
    cfl: str = "subdivide",
    substeps: int | None = None,
    return_plan: bool = False,
):
    """Model receiver data for every shot of a survey: ``d [n_shots, n_receivers, nt]``.

    Args:
      v: velocity, m/s: ``[nz]``, ``[nz, nx]`` or ``[nz, ny, nx]`` (float32, or float64 with x64).
      dx: cell size, m (one number, or one per axis).
      survey: :class:`jaxfwi.Survey` (grid-index locations, wavelets, ``dt``).
      accuracy: spatial order of the Laplacian: 2, 4, 6 or 8.
      pml_width: C-PML width in cells: one int, or ``2 * ndim`` ints
        ``[axis0 low, axis0 high, axis1 low, ...]`` (2-D: top, bottom, left, right).
      free_surface: pressure-free top (row 0) instead of a PML there.
      pml_freq: reference frequency of the C-PML, Hz (default: the wavelet's peak frequency).
      max_vel: largest velocity, m/s; required when ``v`` is traced (under ``jit``/``vmap``) since
        the number of internal steps is static. Also sets the PML damping profile, which is a
        constant for differentiation: no gradient flows through ``max(v)``. Pass a fixed
        ``max_vel`` when comparing gradients with finite differences of ``v``.
      checkpoint: how the gradient gets the forward wavefields back. ``None`` (default): keep
        every one (``"store"``: one forward and one adjoint pass) when they fit in
        :data:`jaxfwi.devices.STORE_MEMORY_FRACTION` of the memory, else ``"sqrt"``; an int ``k``:
        keep the state every k-th internal step and recompute each segment (one forward pass
        more, memory ~``nt / k + k`` wavefields a shot); ``"sqrt"``: ``k = sqrt(nt)``. The choice is
        ``plan.store_wavefield`` / ``plan.checkpoint``; both give the same gradient to float rounding.
      shot_batch: propagate this many shots together (vmapped); groups run one after another.
        Default (None): all shots, except on CPU for large grids, where groups are sized to
        the caches (:func:`default_shot_batch`); the plan records the choice.
      cfl: ``"subdivide"`` (default: internal steps when dt is unstable) or ``"error"``.
      substeps: force this whole number of internal steps per sample (default: the largest stable
        internal step, see the module docstring).
      snapshot_every, return_plan: deprecated (they changed the return type); use
        :func:`propagate`, which returns ``(data, snapshots, plan)``. Still honoured for one
        release with a ``DeprecationWarning``: ``(d, snapshots)``, ``(d, plan)`` or ``(d, snapshots, plan)``.

    Returns:
      ``d [n_shots, n_receivers, nt]`` (pressure samples at ``t = n dt``).

    Example:
      >>> import jax.numpy as jnp, jaxfwi
      >>> v = jnp.full((40, 60), 2000.0)
      >>> s = jaxfwi.Survey.surface_line(v.shape, 2, jaxfwi.ricker(10.0, 200, 0.002), 0.002)
      >>> jaxfwi.forward(v, 10.0, s, accuracy=4, pml_width=10).shape
      (2, 60, 200)
    """
    if snapshot_every is not None or return_plan:
        warnings.warn("jaxfwi.forward: snapshot_every= and return_plan= are deprecated (they change what "
                      "forward returns); use jaxfwi.propagate(...), which returns (data, snapshots, plan).",
                      DeprecationWarning, stacklevel=2)
    out = _run(v, dx, survey, accuracy, pml_width, free_surface, pml_freq, max_vel, checkpoint, shot_batch,
               snapshot_every, cfl, substeps)
    if snapshot_every is None and not return_plan:
        return out.data
    res = (out.data,) + ((out.snapshots,) if snapshot_every is not None else ())
    return res + (out.plan,) if return_plan else res
