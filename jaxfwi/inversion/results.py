"""What :func:`~jaxfwi.inversion.fit` returns and raises: :class:`InversionResult`,
:class:`DivergenceError`."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

__all__ = ["InversionResult", "DivergenceError", "NonFiniteLossError"]


class DivergenceError(FloatingPointError):
    """The run diverged: the loss or gradient became NaN/inf, the loss blew up (above
    ``diverge_factor`` times its largest value so far), or a velocity left ``(0, max_vel]``.

    Attributes: ``epoch`` (0-based epoch where it was detected), ``history`` (records of the
    finished epochs), ``checkpoint`` (path of the checkpoint now holding the last good state, or
    None), ``good_epochs`` (epochs done in that state). Continue from it with a smaller step:
    ``fit(..., learning_rate=smaller, resume="new_learning_rate")``."""

    def __init__(self, message, epoch, history, checkpoint, good_epochs=None):
        super().__init__(message)
        self.epoch = epoch
        self.history = history
        self.checkpoint = checkpoint
        self.good_epochs = good_epochs


#: the former name of :class:`DivergenceError`
NonFiniteLossError = DivergenceError


@dataclasses.dataclass
class InversionResult:
    """What :func:`fit` / :func:`fit_seeds` return.

    Attributes:
      params: final params pytree (stacked along a leading seed axis for multi-seed runs).
      velocity: final model, numpy ``[nz, nx]`` m/s (``[n_seeds, nz, nx]`` for multi-seed).
      history: dict of numpy arrays, one entry per epoch (``[epochs]``, or
        ``[n_seeds, epochs]`` for per-seed values): ``epoch``; ``loss`` = ``misfit`` +
        ``regularizer`` (evaluated during the epoch, i.e. at the params *before* its
        update); ``grad_norm`` (global norm of the gradient, before clipping); ``time``
        (wall-clock seconds of the epoch, the first includes compilation); with
        ``v_true``: ``mse``, ``mae`` ((km/s)^2, km/s) and ``ssim`` of the model *after*
        the epoch's update; with multiscale: ``band_hz`` (the low-pass cutoff used).
      metrics: ``jaxfwi.metrics.all_metrics`` of the final model (a list per seed), or None.
      snapshots: list of ``(epochs_done, params)`` taken with ``snapshot_params_every``.
      param: the :class:`~jaxfwi.models.Parameterization`.
      epochs: number of finished epochs.
      checkpoint: path of the last checkpoint written (or None).
      gradient: how the gradient got its forward wavefields (chosen from the memory, see
        :func:`jaxfwi.inversion.step.gradient_storage`): ``{"storage": "store" | "store per shot group"
        | "segments", "checkpoint": the segment length or None, "shot_group": shots per group or None,
        "dt_internal": s, "nt_internal": steps}``.
    """
    params: Any
    velocity: np.ndarray
    history: dict
    metrics: Any = None
    snapshots: list = dataclasses.field(default_factory=list)
    param: Any = None
    epochs: int = 0
    checkpoint: Optional[str] = None
    gradient: Optional[dict] = None

    @property
    def n_seeds(self) -> Optional[int]:
        return None if self.velocity.ndim == len(self.param.shape) else int(self.velocity.shape[0])

    def records(self) -> list:
        """The history as a list of per-epoch dicts."""
        n = len(self.history["epoch"])
        return [{k: v[..., e] for k, v in self.history.items()} for e in range(n)]
