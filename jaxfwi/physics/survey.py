"""Acquisition geometry: sources, receivers, time axis and wavelets.

Locations are integer grid indices into the velocity model: ``(z, x)`` in 2-D,
``(z, y, x)`` in 3-D, ``(z,)`` in 1-D, counted from the model's first cell
(the absorbing layers are added outside the model by :func:`jaxfwi.forward`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _as_index_array(name, a):
    arr = np.asarray(a) if not isinstance(a, jax.core.Tracer) else a
    if isinstance(arr, np.ndarray):
        if arr.ndim == 2:  # one location per shot
            arr = arr[:, None, :]
        if arr.ndim != 3:
            raise ValueError(
                f"Survey: {name} has shape {arr.shape}; expected [n_shots, n_{name}, ndim] "
                "integer grid indices (ndim = 1, 2 or 3)."
            )
        if arr.size and not np.all(np.asarray(arr) == np.round(arr)):
            raise ValueError(f"Survey: {name} must be integer grid indices; got non-integer values.")
        return jnp.asarray(arr.astype(np.int32))
    return arr


@jax.tree_util.register_pytree_node_class
class Survey:
    """Sources, receivers and wavelets of a set of shots.

    Args:
      sources: ``[n_shots, n_src, ndim]`` integer grid indices (a ``[n_shots, ndim]``
        array means one source per shot).
      receivers: ``[n_shots, n_rec, ndim]`` integer grid indices.
      wavelet: source time function, ``[nt]`` (shared by all shots) or
        ``[n_shots, nt]``; every source of a shot fires this wavelet. Amplitude
        convention: see :func:`jaxfwi.forward`.
      dt: time sample interval of the wavelet and of the recorded data, s.

    The arrays are pytree leaves (so surveys can be batched, sharded and
    indexed under ``jit``); ``dt`` is static.

    Example:
      >>> import jaxfwi
      >>> w = jaxfwi.ricker(10.0, 400, 0.002)
      >>> s = jaxfwi.Survey([[[1, 10]]], [[[1, 5], [1, 20]]], w, 0.002)
      >>> s.n_shots, s.n_receivers, s.nt, s.ndim
      (1, 2, 400, 2)
    """

    def __init__(self, sources, receivers, wavelet, dt):
        sources = _as_index_array("sources", sources)
        receivers = _as_index_array("receivers", receivers)
        if not isinstance(wavelet, jax.core.Tracer):
            w_np = np.asarray(wavelet)
            if np.iscomplexobj(w_np) or not (np.issubdtype(w_np.dtype, np.floating)
                                              or np.issubdtype(w_np.dtype, np.integer)):
                raise ValueError(f"Survey: wavelet has dtype {w_np.dtype}; give a real source time function "
                                 "(e.g. jaxfwi.ricker(freq, nt, dt); np.real(w) for a complex one).")
            if w_np.ndim >= 1 and w_np.shape[-1] == 0:
                raise ValueError(f"Survey: wavelet has shape {w_np.shape}: zero time samples; give nt >= 1 samples, "
                                 "e.g. jaxfwi.ricker(8.0, 400, dt).")
            if not np.all(np.isfinite(w_np)):
                bad = np.argwhere(~np.isfinite(w_np))[0].tolist()
                raise ValueError(f"Survey: wavelet has a non-finite sample ({w_np[tuple(bad)]}) at index {bad}; every "
                                 "sample must be a finite number (clean it, e.g. np.nan_to_num(w)).")
        wavelet = jnp.asarray(wavelet)
        try:
            dt = float(dt)
        except TypeError as e:  # a tracer
            raise TypeError("Survey: dt must be a Python float (it is static), not a traced value.") from e
        if not dt > 0 or not math.isfinite(dt):
            raise ValueError(f"Survey: dt={dt!r} must be a positive time step in seconds.")
        if sources.shape[0] != receivers.shape[0]:
            raise ValueError(
                f"Survey: sources describe {sources.shape[0]} shots but receivers {receivers.shape[0]}; "
                "give both as [n_shots, n, ndim]."
            )
        if sources.shape[-1] != receivers.shape[-1]:
            raise ValueError(
                f"Survey: sources have ndim={sources.shape[-1]} coordinates but receivers "
                f"{receivers.shape[-1]}; use the same (z, x) / (z, y, x) order for both."
            )
        if sources.shape[0] == 0:
            raise ValueError("Survey: zero shots (sources has shape "
                             f"{tuple(sources.shape)}); give at least one shot: sources [n_shots >= 1, n_src, ndim].")
        if sources.shape[1] == 0:
            raise ValueError(f"Survey: zero sources per shot (sources has shape {tuple(sources.shape)}); every shot "
                             "needs at least one source location: [n_shots, n_src >= 1, ndim].")
        if receivers.shape[1] == 0:
            raise ValueError(f"Survey: zero receivers per shot (receivers has shape {tuple(receivers.shape)}); give "
                             "at least one receiver location per shot: [n_shots, n_rec >= 1, ndim].")
        if sources.shape[-1] not in (1, 2, 3):
            raise ValueError(f"Survey: locations have {sources.shape[-1]} coordinates; expected 1, 2 or 3.")
        if wavelet.ndim not in (1, 2) or (wavelet.ndim == 2 and wavelet.shape[0] != sources.shape[0]):
            raise ValueError(
                f"Survey: wavelet has shape {wavelet.shape}; expected [nt] or [n_shots={sources.shape[0]}, nt]."
            )
        self.sources = sources
        self.receivers = receivers
        self.wavelet = wavelet
        self.dt = dt

    # -- pytree -------------------------------------------------------------
    def tree_flatten(self):
        return (self.sources, self.receivers, self.wavelet), self.dt

    @classmethod
    def tree_unflatten(cls, dt, leaves):
        obj = object.__new__(cls)
        obj.sources, obj.receivers, obj.wavelet = leaves
        obj.dt = dt
        return obj

    # -- properties -----------------------------------------------------------
    @property
    def n_shots(self) -> int:
        return self.sources.shape[0]

    @property
    def n_sources(self) -> int:
        return self.sources.shape[1]

    @property
    def n_receivers(self) -> int:
        return self.receivers.shape[1]

    @property
    def nt(self) -> int:
        return self.wavelet.shape[-1]

    @property
    def ndim(self) -> int:
        return self.sources.shape[-1]

    @property
    def times(self):
        """``[nt]`` sample times in s."""
        return jnp.arange(self.nt) * self.dt

    def wavelets(self):
        """Wavelets broadcast to ``[n_shots, nt]``."""
        return jnp.broadcast_to(self.wavelet, (self.n_shots, self.nt))

    def select(self, shots):
        """A survey with only the given shots (int array or slice; may be traced)."""
        w = self.wavelet if self.wavelet.ndim == 1 else self.wavelet[shots]
        return Survey.tree_unflatten(self.dt, (self.sources[shots], self.receivers[shots], w))

    def with_wavelet(self, wavelet):
        """The same geometry with another wavelet (``[nt]`` or ``[n_shots, nt]``)."""
        return Survey.tree_unflatten(self.dt, (self.sources, self.receivers, jnp.asarray(wavelet)))

    def __repr__(self):
        return (
            f"Survey(n_shots={self.n_shots}, n_sources={self.n_sources}, n_receivers={self.n_receivers}, "
            f"ndim={self.ndim}, nt={self.nt}, dt={self.dt})"
        )

    # -- constructors ---------------------------------------------------------
    @classmethod
    def surface_line(
        cls,
        shape,
        n_shots: int,
        wavelet,
        dt: float,
        *,
        src_first: int | None = None,
        src_spacing: int | None = None,
        src_depth: int = 1,
        rec_first: int = 0,
        rec_spacing: int = 1,
        n_receivers: int | None = None,
        rec_depth: int = 1,
    ):
        """Shots along a horizontal line with a fixed receiver spread (2-D, or 1-D / 3-D).

        Args:
          shape: model shape ``(nz, nx)`` (``(nz,)`` in 1-D: one source and one receiver at
            ``src_depth`` / ``rec_depth``; ``(nz, ny, nx)`` in 3-D: the line runs along x at the
            middle y).
          n_shots: number of shots.
          wavelet: ``[nt]`` or ``[n_shots, nt]``.
          dt: sample interval, s.
          src_first, src_spacing: x index of the first shot and the spacing in cells; by default
            shots are spread evenly over the model width.
          src_depth, rec_depth: z index of sources and receivers (default 1, one cell below the
            top, so a free surface at row 0 does not zero them).
          rec_first, rec_spacing, n_receivers: receiver x indices
            ``rec_first + k * rec_spacing``; by default every cell from ``rec_first``.

        Example:
          >>> import jaxfwi
          >>> s = jaxfwi.Survey.surface_line((30, 60), 3, jaxfwi.ricker(10., 300, .002), .002)
          >>> s.sources[:, 0].tolist()
          [[1, 0], [1, 29], [1, 59]]
        """
        if isinstance(n_shots, bool) or int(n_shots) != n_shots or n_shots < 1:
            raise ValueError(f"Survey.surface_line: n_shots={n_shots!r} must be a positive whole number of shots.")
        n_shots = int(n_shots)
        shape = tuple(int(n) for n in shape)
        ndim = len(shape)
        if ndim == 1:
            src = np.full((n_shots, 1, 1), src_depth)
            rec = np.full((n_shots, 1, 1), rec_depth)
            return cls(src, rec, wavelet, dt)
        nx = shape[-1]
        if src_first is None:
            src_first = 0
        if src_spacing is None:
            xs = np.round(np.linspace(src_first, nx - 1, n_shots)).astype(int) if n_shots > 1 else np.array([src_first])
        else:
            xs = src_first + src_spacing * np.arange(n_shots)
        if n_receivers is None:
            n_receivers = (nx - 1 - rec_first) // rec_spacing + 1
        xr = rec_first + rec_spacing * np.arange(n_receivers)
        if ndim == 2:
            src = np.stack([np.full(n_shots, src_depth), xs], -1)[:, None, :]
            rec = np.stack([np.full(n_receivers, rec_depth), xr], -1)
        else:
            ymid = shape[1] // 2
            src = np.stack([np.full(n_shots, src_depth), np.full(n_shots, ymid), xs], -1)[:, None, :]
            rec = np.stack([np.full(n_receivers, rec_depth), np.full(n_receivers, ymid), xr], -1)
        rec = np.broadcast_to(rec, (n_shots,) + rec.shape)
        return cls(src, rec, wavelet, dt)

    @classmethod
    def ring(cls, shape, n_transducers: int, wavelet, dt: float, *, radius: float | None = None,
             center=None, sources_every: int = 1):
        """A ring of transducers around the model centre (ultrasound tomography, 2-D).

        Every ``sources_every``-th transducer fires in turn (one shot each); all transducers
        record every shot. Positions are rounded to grid indices.

        Args:
          shape: ``(nz, nx)``.
          n_transducers: transducers on the ring.
          radius: ring radius in cells (default: 45 % of the smaller dimension).
          center: ``(z, x)`` centre in cells (default: the model centre).
        """
        nz, nx = (int(n) for n in shape)
        if center is None:
            center = ((nz - 1) / 2, (nx - 1) / 2)
        if radius is None:
            radius = 0.45 * min(nz, nx)
        ang = 2 * np.pi * np.arange(n_transducers) / n_transducers
        pos = np.stack([center[0] + radius * np.sin(ang), center[1] + radius * np.cos(ang)], -1)
        pos = np.clip(np.round(pos), 0, [nz - 1, nx - 1]).astype(int)
        shots = np.arange(0, n_transducers, sources_every)
        src = pos[shots][:, None, :]
        rec = np.broadcast_to(pos, (len(shots),) + pos.shape)
        return cls(src, rec, wavelet, dt)
