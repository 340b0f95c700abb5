"""Jacobian-vector machinery for the composed map theta -> m_theta -> G[m_theta].

Notation (METHODS.md section 3):

* ``G``: the forward map, velocity ``m`` (any shape) -> receiver data ``d``
  (``[n_shots, n_receivers, nt]``, or any array);
* ``J_m = dG/dm`` (data x model);
* ``represent``: the representation, ``params`` pytree -> ``m`` (same shape as G's input);
* ``J_rep = dm/dtheta`` (model x params), ``K_theta = J_rep J_rep^T`` (model x model);
* ``J_theta = J_m J_rep`` (data x params).

Everything here works on *flat* vectors: model and data tangents are raveled
arrays (C order), parameter tangents are the ``jax.flatten_util.ravel_pytree``
vector of the params pytree.  Products with J (forward mode) use ``jax.jvp``
and products with J^T (reverse mode) use ``jax.vjp``, so they differentiate
straight through the propagator's ``lax.scan`` and its ``jax.checkpoint``.

:class:`DataSubsample` is the explicit data sub-sampling (shots, receivers,
time decimation) applied to G's output before anything is measured.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "DataSubsample",
    "flatten_function",
    "ComposedMap",
]


def _as_index_tuple(x, name):
    if x is None:
        return None
    if isinstance(x, slice):
        raise TypeError(f"DataSubsample.{name}: give a sequence of ints, got a slice {x!r}; "
                        f"use e.g. tuple(range(start, stop, step)).")
    try:
        t = tuple(int(i) for i in x)
    except TypeError as e:  # pragma: no cover - error path
        raise TypeError(f"DataSubsample.{name} must be None or a sequence of ints, got {x!r}") from e
    if len(t) == 0:
        raise ValueError(f"DataSubsample.{name} is empty ({x!r}); pass None to keep all.")
    return t


@dataclasses.dataclass(frozen=True)
class DataSubsample:
    """Explicit sub-sampling of receiver data ``[n_shots, n_receivers, nt]``.

    Attributes:
      time_step: keep every ``time_step``-th time sample (decimation, no filtering).
      receivers: indices of the receivers to keep (same for every shot), or None for all.
      shots: indices of the shots to keep, or None for all.

    Frozen and hashable (indices are stored as tuples) so it can be a static argument.
    Applied to the *output* of G: ``DataSubsample(...)(d)``.  For an array with fewer
    than three axes only the time decimation (last axis) applies, and ``receivers`` /
    ``shots`` must be None.
    """

    time_step: int = 1
    receivers: Optional[Tuple[int, ...]] = None
    shots: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        if int(self.time_step) < 1:
            raise ValueError(f"DataSubsample.time_step must be >= 1, got {self.time_step}.")
        object.__setattr__(self, "time_step", int(self.time_step))
        object.__setattr__(self, "receivers", _as_index_tuple(self.receivers, "receivers"))
        object.__setattr__(self, "shots", _as_index_tuple(self.shots, "shots"))

    @property
    def is_identity(self) -> bool:
        return self.time_step == 1 and self.receivers is None and self.shots is None

    def __call__(self, d: jax.Array) -> jax.Array:
        if self.is_identity:
            return d
        if d.ndim < 3 and (self.receivers is not None or self.shots is not None):
            raise ValueError(
                f"DataSubsample: receivers/shots selection needs data [n_shots, n_receivers, nt], "
                f"got shape {d.shape}.")
        if self.shots is not None:
            d = jnp.take(d, jnp.asarray(self.shots), axis=d.ndim - 3)
        if self.receivers is not None:
            d = jnp.take(d, jnp.asarray(self.receivers), axis=d.ndim - 2)
        if self.time_step > 1:
            d = d[..., :: self.time_step]
        return d


def subsampled(G: Callable, subsample: Optional[DataSubsample]) -> Callable:
    """``m -> subsample(G(m))`` (``G`` itself without a sub-sample)."""
    if subsample is None or subsample.is_identity:
        return G
    return lambda m: subsample(G(m))


def flatten_function(f: Callable, x: Any) -> Tuple[Callable, jax.Array, Callable, Tuple[int, ...]]:
    """Turn ``f: pytree -> array`` into ``f_flat: vector -> vector`` around ``x``.

    Returns ``(f_flat, x_flat, unravel, out_shape)``.
    """
    x_flat, unravel = ravel_pytree(x)
    out = jax.eval_shape(lambda z: f(unravel(z)), x_flat)
    out_shape = tuple(out.shape)

    def f_flat(z):
        return jnp.ravel(f(unravel(z)))

    return f_flat, x_flat, unravel, out_shape


def jvp_flat(f_flat: Callable, x: jax.Array, t: jax.Array) -> jax.Array:
    """J t with J = d f_flat / dx at x (forward mode)."""
    return jax.jvp(f_flat, (x,), (t.astype(x.dtype),))[1]


def vjp_flat(f_flat: Callable, x: jax.Array, u: jax.Array) -> jax.Array:
    """J^T u with J = d f_flat / dx at x (reverse mode)."""
    y, pull = jax.vjp(f_flat, x)
    return pull(u.astype(y.dtype))[0]


class ComposedMap:
    """The composed map theta -> m_theta -> G[m_theta] and its Jacobian products.

    Args:
      G: forward map, velocity ``m`` (array of ``m_shape``) -> data array.
      represent: ``params -> m`` (a ``Parameterization.velocity`` or any function);
        None means the identity representation (the grid itself: theta = m).
      params: the point theta to linearise at (pytree); for ``represent=None`` the
        velocity array ``m`` itself.
      subsample: optional :class:`DataSubsample` applied to G's output.
      jit: compile each elementary product (with the linearisation point as an argument,
        not a baked-in constant).  Default False: products run eagerly, which reuses the
        propagator's compiled jvp / vjp across calls and ``ComposedMap`` instances; wrap a
        composite yourself (``jax.jit(cm.ntk)``) when calling it many times.

    All product methods take and return flat 1-D arrays:

    ============  ==========================  =========================
    method        operator                    shapes
    ============  ==========================  =========================
    ``jm``        J_m                         model -> data
    ``jmT``       J_m^T                       data -> model
    ``jrep``      J_rep = dm/dtheta           params -> model
    ``jrepT``     J_rep^T                     model -> params
    ``jtheta``    J_theta = J_m J_rep         params -> data
    ``jthetaT``   J_theta^T                   data -> params
    ``k_theta``   K_theta = J_rep J_rep^T     model -> model
    ``wave``      J_m J_m^T (wave kernel)     data -> data
    ``ntk``       J_theta J_theta^T           data -> data
    ``gn``        J_m^T J_m                   model -> model
    ``nsk``       K_theta J_m^T J_m           model -> model
    ``pgram``     J_theta^T J_theta           params -> params
    ============  ==========================  =========================
    """

    def __init__(self, G: Callable, represent: Optional[Callable], params: Any,
                 subsample: Optional[DataSubsample] = None, jit: bool = False):
        self.subsample = subsample
        Gs = subsampled(G, subsample)
        if represent is None:
            m = jnp.asarray(params)
            self.identity = True
            self.theta, self.unravel = m.ravel(), lambda z: z.reshape(m.shape)
            self.rep_flat = lambda z: z
        else:
            self.identity = False
            self.rep_flat, self.theta, self.unravel, _ = flatten_function(represent, params)
        self.params = params
        m0 = represent(params) if not self.identity else jnp.asarray(params)
        self.m_shape = tuple(m0.shape)
        self.m = jnp.ravel(m0)
        m_shape = self.m_shape
        self.G_flat = lambda z: jnp.ravel(Gs(z.reshape(m_shape)))
        self.d_shape = tuple(jax.eval_shape(lambda z: Gs(z.reshape(m_shape)), self.m).shape)
        self.n_theta = int(self.theta.size)
        self.n_model = int(self.m.size)
        self.n_data = math.prod(self.d_shape)

        Gf, rf = self.G_flat, self.rep_flat
        wrap = jax.jit if jit else (lambda f: f)
        self._jm = wrap(lambda m, t: jvp_flat(Gf, m, t))
        self._jmT = wrap(lambda m, u: vjp_flat(Gf, m, u))
        if self.identity:
            self._jrep = wrap(lambda th, t: t.astype(th.dtype))
            self._jrepT = wrap(lambda th, u: u.astype(th.dtype))
        else:
            self._jrep = wrap(lambda th, t: jvp_flat(rf, th, t))
            self._jrepT = wrap(lambda th, u: vjp_flat(rf, th, u))

    # --- elementary products -------------------------------------------------
    def jm(self, t):
        return self._jm(self.m, jnp.ravel(t))

    def jmT(self, u):
        return self._jmT(self.m, jnp.ravel(u))

    def jrep(self, t):
        return self._jrep(self.theta, jnp.ravel(t))

    def jrepT(self, u):
        return self._jrepT(self.theta, jnp.ravel(u))

    # --- composites -------------------------------------------------------------
    def jtheta(self, t):
        return self.jm(self.jrep(t))

    def jthetaT(self, u):
        return self.jrepT(self.jmT(u))

    def k_theta(self, u):
        return self.jrep(self.jrepT(u))

    def wave(self, u):
        return self.jm(self.jmT(u))

    def ntk(self, u):
        return self.jm(self.k_theta(self.jmT(u)))

    def gn(self, t):
        return self.jmT(self.jm(t))

    def nsk(self, t):
        return self.k_theta(self.gn(t))

    def pgram(self, t):
        return self.jthetaT(self.jtheta(t))

    # pure (traceable) versions, for jit/vmap/lax.map by the caller -------------
    def pure(self) -> dict:
        """Pure functions ``(point, vector) -> vector`` for each elementary product
        plus the points themselves: keys ``jm, jmT, jrep, jrepT, m, theta``."""
        Gf, rf = self.G_flat, self.rep_flat
        ident = self.identity
        return dict(
            jm=lambda m, t: jvp_flat(Gf, m, t),
            jmT=lambda m, u: vjp_flat(Gf, m, u),
            jrep=(lambda th, t: t) if ident else (lambda th, t: jvp_flat(rf, th, t)),
            jrepT=(lambda th, u: u) if ident else (lambda th, u: vjp_flat(rf, th, u)),
            m=self.m, theta=self.theta)
