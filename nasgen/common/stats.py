"""Small statistics every tier reports with."""

from __future__ import annotations

import math

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default).

    The set of proportions p whose score test does not reject ``successes`` of
    ``trials``: the roots of ``(phat - p)^2 = z^2 p (1 - p) / trials``. With no
    trial at all, nothing is known: ``(0.0, 1.0)``.

    Args:
        successes: e.g. correctly classified test images, or draws a constraint accepted.
        trials: e.g. the test-set size, or the draws made; 0 or more.
        z: the normal quantile; 1.96 for 95%.

    Returns:
        ``(low, high)`` within [0, 1].

    Raises:
        ValueError: ``successes`` outside ``0..trials``.

    References:
        Wilson. Probable inference, the law of succession, and statistical
        inference. JASA 22(158), 1927.

    >>> [round(v, 4) for v in wilson_interval(0, 10)]
    [0.0, 0.2775]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    phat = successes / trials
    z2 = z * z
    centre = (phat + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(phat * (1 - phat) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
