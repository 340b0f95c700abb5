"""A sum of shot misfits whose gradient runs one shot group at a time (forward, residual, adjoint).

``jax.grad`` of ``sum_s misfit(forward(v)[s])`` runs the forward loop of *every* shot before the
first adjoint: the records' cotangent is only known once the loss is. So the stored-wavefield
gradient (one forward and one adjoint pass) needs the wavefields of all shots at once, and where
they do not fit, the adjoint recomputes segments from stored states (one forward pass more:
about 4x the forward's time instead of about 2.5-3x).

A misfit that is a sum over shots needs no such wait: the cotangent of shot ``s`` depends on shot
``s`` alone. :func:`grouped_shot_sum` is that sum with a custom VJP whose forward rule walks the
shots in groups of ``group``: forward with every wavefield stored, misfit, the misfit's cotangent,
adjoint, add the group's gradient, and on to the next group (``lax.scan``). Only one group's
wavefields are ever alive, so the stored mode works for any number of shots. Its backward rule
scales the accumulated gradient by the incoming cotangent. Evaluated without differentiation it is
the plain sum (one forward pass over all shots).

It is a reverse-mode device: forward-mode (``jax.jvp``) through it is not defined; use the plain
sum for that. :func:`jaxfwi.inversion.fit` picks it by itself when the wavefields of a mini-batch
do not fit the memory but those of a shot group do (``StepConfig.shot_group``).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["grouped_shot_sum"]


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def grouped_shot_sum(fn: Callable, group: int, v, idx, w, rest):
    """``fn(v, idx, w, rest)``: a scalar that is a sum over the shots ``idx [n]`` (weights ``w [n]``),
    differentiable in ``v`` (only) group by group (see the module docs).

    Args:
      fn: ``fn(v, idx_g, w_g, rest) -> scalar``: the loss of the shots ``idx_g`` (any subset);
        the loss of all shots must equal the sum of the losses of any partition of them.
      group: shots per group (static); the last group takes the remainder.
      v: the model (the only argument with a cotangent).
      idx, w: shot indices ``[n]`` (int) and weights ``[n]``.
      rest: a pytree of further operands (data, survey arrays, schedule numbers), not differentiated.
    """
    return fn(v, idx, w, rest)


def _fwd(fn, group, v, idx, w, rest):
    n = idx.shape[0]
    group = max(1, min(int(group), n))
    n_full, rem = divmod(n, group)

    def body(carry, xs):
        loss, g = jax.value_and_grad(lambda vv: fn(vv, xs[0], xs[1], rest))(v)
        return (carry[0] + loss, carry[1] + g), None

    loss0 = jax.eval_shape(lambda: fn(v, idx[:1], w[:1], rest))
    zero = (jnp.zeros(loss0.shape, loss0.dtype), jnp.zeros_like(v))
    m = n_full * group
    total, grad = zero
    if n_full == 1:
        total, grad = body(zero, (idx[:m], w[:m]))[0]
    elif n_full > 1:
        (total, grad), _ = lax.scan(body, zero, (idx[:m].reshape(n_full, group), w[:m].reshape(n_full, group)))
    if rem:
        total, grad = body((total, grad), (idx[m:], w[m:]))[0]
    return total, grad


def _bwd(fn, group, grad, ct):
    return (ct * grad, None, None, None)


grouped_shot_sum.defvjp(_fwd, _bwd)
