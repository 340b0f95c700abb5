"""Central finite-difference coefficients (orders 2, 4, 6, 8) and stability limits."""
from __future__ import annotations

import math
from fractions import Fraction

ACCURACIES = (2, 4, 6, 8)

# Second derivative: c0 * u_i + sum_k c_k (u_{i+k} + u_{i-k}), divided by dx^2.
_D2 = {
    2: (Fraction(-2), (Fraction(1),)),
    4: (Fraction(-5, 2), (Fraction(4, 3), Fraction(-1, 12))),
    6: (Fraction(-49, 18), (Fraction(3, 2), Fraction(-3, 20), Fraction(1, 90))),
    8: (Fraction(-205, 72), (Fraction(8, 5), Fraction(-1, 5), Fraction(8, 315), Fraction(-1, 560))),
}
# First derivative: sum_k c_k (u_{i+k} - u_{i-k}), divided by dx.
_D1 = {
    2: (Fraction(1, 2),),
    4: (Fraction(2, 3), Fraction(-1, 12)),
    6: (Fraction(3, 4), Fraction(-3, 20), Fraction(1, 60)),
    8: (Fraction(4, 5), Fraction(-1, 5), Fraction(4, 105), Fraction(-1, 280)),
}


def check_accuracy(accuracy) -> int:
    """Validate a spatial accuracy order; returns it as int."""
    if accuracy not in ACCURACIES:
        raise ValueError(
            f"accuracy={accuracy!r} is not a supported spatial order; use one of {ACCURACIES}."
        )
    return int(accuracy)


def d2_coefficients(accuracy: int):
    """``(c0, (c1, ..., cr))`` of the central 2nd-derivative stencil, as floats."""
    c0, ck = _D2[check_accuracy(accuracy)]
    return float(c0), tuple(float(c) for c in ck)


def d1_coefficients(accuracy: int):
    """``(c1, ..., cr)`` of the antisymmetric central 1st-derivative stencil, as floats."""
    return tuple(float(c) for c in _D1[check_accuracy(accuracy)])


def max_courant(accuracy: int, ndim: int) -> float:
    """Largest stable Courant number ``v dt / dx`` of the leapfrog scheme.

    Von Neumann analysis of ``u+ = 2u - u- + C^2 sum_d D2_d u``: stable when
    ``C^2 * ndim * S <= 4`` with ``S = |c0 + 2 sum_k c_k (-1)^k|`` the stencil's
    symbol at the Nyquist wavenumber.
    """
    c0, ck = _D2[check_accuracy(accuracy)]
    s = abs(c0 + 2 * sum(c * (-1) ** (k + 1) for k, c in enumerate(ck)))
    return 2.0 / math.sqrt(ndim * float(s))
