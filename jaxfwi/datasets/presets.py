"""Acquisition presets: the papers' survey numbers, as frozen dataclasses.

Only numbers live here; the physics module builds a ``Survey`` from them.
Units: grid spacing, spacings and depths in **metres**, ``f_peak`` in Hz,
``dt`` in s (the *recording* interval; the propagator may sub-step internally
for stability), ``pml_width`` in cells. The ``*_cells`` properties convert to
grid indices.

CR-FWI (App. B.2, METHODS.md section 5)::

    model      grid      dx    shots  spacing  f_peak  dt      nt    boundary
    marmousi   94 x 288  15 m  13     300 m    8 Hz    1.9 ms  1000  free surface + PML 3 sides
    salt       75 x 250  10 m  24     100 m    10 Hz   1.5 ms  2500  free surface + PML 3 sides
    overthrust 94 x 401  15 m  20     270 m    10 Hz   4.0 ms  1200  free surface + PML 3 sides
    bp         188 x 500 10 m  20     200 m    10 Hz   4.0 ms  2000  PML 4 sides

Receivers at every surface grid point. The papers do not state the PML width,
the source/receiver depth or the first shot position: we use a 20-cell PML,
sources and receivers one cell below the surface, and shots centred on the
model (``src_x0_m=None``).

FAD-FWI's Overthrust: 20 shots, 256 receivers at 85 m depth. The grid,
wavelet and time axis are not in METHODS.md; the CR-FWI Overthrust grid and
time axis are reused (an assumption, see ``notes``).

Every preset has a :meth:`AcquisitionPreset.reduced` CPU variant: grid coarsened
by 2 (dx doubled, same physical extent), peak frequency halved (so the same
number of cells per wavelength), dt doubled and nt halved (same record length),
same shots, spacings (m), depths and boundaries.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["AcquisitionPreset", "PRESETS", "get_preset", "list_presets", "preset_model"]


@dataclass(frozen=True)
class AcquisitionPreset:
    """Survey numbers of one benchmark setting (hashable, usable as a static argument).

    Attributes:
      name: preset name.
      shape: model grid ``(nz, nx)``.
      dx: grid spacing (dz = dx), m.
      n_shots: number of shots.
      src_spacing_m: distance between neighbouring shots, m.
      f_peak: Ricker peak frequency, Hz.
      dt: recording sample interval, s.
      nt: number of time samples.
      free_surface: True for a free-surface top (PML on the other three sides),
        False for PML on all four sides.
      pml_width: absorbing layer width, cells.
      src_depth: source depth below the top of the model, m.
      rec_depth: receiver depth, m.
      data_name: the :func:`jaxfwi.datasets.load_benchmark` name of the true model.
      n_receivers: receivers per shot, spread evenly over the width; ``None`` =
        one at every surface grid point (CR-FWI).
      src_x0_m: x of the first shot, m; ``None`` centres the shot line.
      notes: where numbers are assumptions rather than the paper's.
    """

    name: str
    shape: tuple[int, int]
    dx: float
    n_shots: int
    src_spacing_m: float
    f_peak: float
    dt: float
    nt: int
    free_surface: bool
    pml_width: int
    src_depth: float
    rec_depth: float
    data_name: str
    n_receivers: int | None = None
    src_x0_m: float | None = None
    notes: str = ""

    def __post_init__(self):
        if len(self.shape) != 2 or any(int(n) < 2 for n in self.shape):
            raise ValueError(f"AcquisitionPreset({self.name}): shape={self.shape} must be (nz, nx) with both >= 2.")
        for field in ("dx", "src_spacing_m", "f_peak", "dt"):
            if not getattr(self, field) > 0:
                raise ValueError(f"AcquisitionPreset({self.name}): {field}={getattr(self, field)!r} must be positive.")
        if self.n_shots < 1 or self.nt < 1 or self.pml_width < 0:
            raise ValueError(
                f"AcquisitionPreset({self.name}): need n_shots >= 1, nt >= 1, pml_width >= 0; got "
                f"{self.n_shots}, {self.nt}, {self.pml_width}."
            )
        if (self.n_shots - 1) * self.src_spacing_m > self.width_m + 1e-6:
            raise ValueError(
                f"AcquisitionPreset({self.name}): {self.n_shots} shots {self.src_spacing_m} m apart do not fit a "
                f"{self.width_m} m wide model."
            )

    # -- derived numbers ------------------------------------------------------
    @property
    def nz(self) -> int:
        return int(self.shape[0])

    @property
    def nx(self) -> int:
        return int(self.shape[1])

    @property
    def width_m(self) -> float:
        """Distance from the first to the last grid column, m."""
        return (self.nx - 1) * self.dx

    @property
    def record_time(self) -> float:
        """Record length ``nt * dt``, s."""
        return self.nt * self.dt

    @property
    def src_spacing_cells(self) -> int:
        return max(1, int(round(self.src_spacing_m / self.dx)))

    @property
    def src_x_cells(self) -> list[int]:
        """x grid index of every shot."""
        span = (self.n_shots - 1) * self.src_spacing_cells
        if self.src_x0_m is None:
            first = (self.nx - 1 - span) // 2
        else:
            first = int(round(self.src_x0_m / self.dx))
        first = min(max(first, 0), self.nx - 1 - span)
        return [first + i * self.src_spacing_cells for i in range(self.n_shots)]

    @property
    def src_depth_cells(self) -> int:
        """Source depth as a grid index (at least 1 with a free surface, where row 0 is pressure-free)."""
        return max(1 if self.free_surface else 0, int(round(self.src_depth / self.dx)))

    @property
    def rec_depth_cells(self) -> int:
        """Receiver depth as a grid index (at least 1 with a free surface)."""
        return max(1 if self.free_surface else 0, int(round(self.rec_depth / self.dx)))

    @property
    def rec_x_cells(self) -> list[int]:
        """x grid index of every receiver (every column, or ``n_receivers`` spread evenly)."""
        if self.n_receivers is None or self.n_receivers >= self.nx:
            return list(range(self.nx))
        if self.n_receivers == 1:
            return [(self.nx - 1) // 2]
        step = (self.nx - 1) / (self.n_receivers - 1)
        return [int(round(i * step)) for i in range(self.n_receivers)]

    # -- variants -------------------------------------------------------------
    def reduced(self, factor: int = 2) -> "AcquisitionPreset":
        """A CPU-sized variant with the same structure.

        The grid is coarsened by ``factor`` (``ceil(n / factor)`` cells, dx times
        ``factor``: the same physical extent), the peak frequency divided by
        ``factor`` (same cells per wavelength), ``dt`` multiplied and ``nt``
        divided by ``factor`` (same record length). Shots, spacings and depths in
        metres, boundaries and the PML width (cells) are kept; ``n_receivers``
        is capped at the new ``nx``.
        """
        factor = int(factor)
        if factor < 1:
            raise ValueError(f"reduced: factor={factor} must be a positive integer.")
        if factor == 1:
            return self
        nz, nx = (-(-n // factor) for n in self.shape)
        n_rec = None if self.n_receivers is None else min(self.n_receivers, nx)
        return dataclasses.replace(
            self,
            name=f"{self.name}_reduced" if factor == 2 else f"{self.name}_reduced{factor}",
            shape=(nz, nx),
            dx=self.dx * factor,
            f_peak=self.f_peak / factor,
            dt=self.dt * factor,
            nt=max(1, -(-self.nt // factor)),
            n_receivers=n_rec,
            notes=(self.notes + " " if self.notes else "") + f"Reduced by {factor} for CPU runs.",
        )


_CR = "CR-FWI App. B.2. PML width, source/receiver depth (1 cell) and centred shot line are our choices."

PRESETS: dict[str, AcquisitionPreset] = {
    "marmousi": AcquisitionPreset(
        name="marmousi", shape=(94, 288), dx=15.0, n_shots=13, src_spacing_m=300.0, f_peak=8.0,
        dt=1.9e-3, nt=1000, free_surface=True, pml_width=20, src_depth=15.0, rec_depth=15.0,
        data_name="marmousi_94x288", notes=_CR),
    "salt": AcquisitionPreset(
        name="salt", shape=(75, 250), dx=10.0, n_shots=24, src_spacing_m=100.0, f_peak=10.0,
        dt=1.5e-3, nt=2500, free_surface=True, pml_width=20, src_depth=10.0, rec_depth=10.0,
        data_name="salt_75x250", notes=_CR),
    "overthrust": AcquisitionPreset(
        name="overthrust", shape=(94, 401), dx=15.0, n_shots=20, src_spacing_m=270.0, f_peak=10.0,
        dt=4.0e-3, nt=1200, free_surface=True, pml_width=20, src_depth=15.0, rec_depth=15.0,
        data_name="overthrust_94x401", notes=_CR),
    "bp": AcquisitionPreset(
        name="bp", shape=(188, 500), dx=10.0, n_shots=20, src_spacing_m=200.0, f_peak=10.0,
        dt=4.0e-3, nt=2000, free_surface=False, pml_width=20, src_depth=10.0, rec_depth=10.0,
        data_name="bp2004",
        notes=_CR + " The 2004 BP model is not bundled: load it with load_benchmark('bp2004', path=...)."),
    "fadfwi_overthrust": AcquisitionPreset(
        name="fadfwi_overthrust", shape=(94, 401), dx=15.0, n_shots=20, src_spacing_m=270.0, f_peak=10.0,
        dt=4.0e-3, nt=1200, free_surface=True, pml_width=20, src_depth=15.0, rec_depth=85.0,
        data_name="overthrust_94x401", n_receivers=256,
        notes="FAD-FWI: 20 shots, 256 receivers at 85 m depth (paper). Grid, dx, wavelet, dt, nt, shot spacing "
              "and boundaries are assumptions (CR-FWI Overthrust values); not stated in METHODS.md."),
}

_PRESET_ALIASES = {"bp2004": "bp", "seg_eage_salt": "salt", "fad_fwi": "fadfwi_overthrust",
                   "fadfwi": "fadfwi_overthrust", "fad-fwi": "fadfwi_overthrust"}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(PRESETS)


def get_preset(name: str, reduced: bool = False) -> AcquisitionPreset:
    """The acquisition preset ``name`` (``"marmousi"``, ``"salt"``, ``"overthrust"``, ``"bp"``,
    ``"fadfwi_overthrust"``); ``reduced=True`` gives its CPU variant (see
    :meth:`AcquisitionPreset.reduced`). A name ending in ``"_reduced"`` also works.
    """
    key = str(name).lower()
    if key.endswith("_reduced"):
        key, reduced = key[: -len("_reduced")], True
    key = _PRESET_ALIASES.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"get_preset: unknown preset name={name!r}; choose one of {list_presets()}.")
    p = PRESETS[key]
    return p.reduced() if reduced else p


def preset_model(preset: AcquisitionPreset | str, data_dir=None):
    """The true model of a preset on the preset's grid: ``(v, dx)``.

    Loads ``preset.data_name`` with :func:`jaxfwi.datasets.load_benchmark` and,
    if its shape differs (reduced presets), resamples it linearly to
    ``preset.shape``. Returns a ``float32`` numpy ``[nz, nx]`` array in m/s and
    the preset's ``dx`` (m).
    """
    from jaxfwi.datasets.loaders import load_benchmark, resample  # noqa: PLC0415

    if isinstance(preset, str):
        preset = get_preset(preset)
    v, _ = load_benchmark(preset.data_name, data_dir)
    if v.shape != tuple(preset.shape):
        v = resample(v, preset.shape)
    return v, preset.dx
