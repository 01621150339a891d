"""The statistical tests behind ``nasgen check``: one test's result, the verdict, Pearson's chi-square, Holm."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MIN_EXPECTED", "CheckResult", "TestResult", "chi_square", "holm"]

#: Categories expected to hold fewer draws than this are merged.
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class TestResult:
    """One test: name, chi-square statistic (or a count), degrees of freedom, p-value, Holm-adjusted p."""

    __test__ = False  # not a pytest test class


    name: str
    statistic: float
    df: int
    p_value: float
    p_adjusted: float = float("nan")

    def to_dict(self) -> dict:
        return {"name": self.name, "statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                "p_adjusted": self.p_adjusted}


@dataclass(frozen=True)
class CheckResult:
    """The verdict: ``uniform`` at ``level`` iff every Holm-adjusted p-value is above it."""

    uniform: bool
    overall_p: float
    draws: int
    level: float
    tests: tuple = ()
    skipped: tuple = ()
    notes: tuple = field(default=())

    def to_dict(self) -> dict:
        return {"uniform": self.uniform, "overall_p": self.overall_p, "draws": self.draws, "level": self.level,
                "tests": [t.to_dict() for t in self.tests], "skipped": list(self.skipped)}


def chi_square(name: str, observed: np.ndarray, probabilities: np.ndarray, draws: int) -> TestResult | None:
    """Pearson's chi-square with sparse categories merged; None when fewer than two categories remain."""
    from scipy.stats import chi2

    expected = probabilities * draws
    order = np.argsort(expected)
    expected, observed = expected[order], observed[order]
    small = expected < MIN_EXPECTED
    cells_e = list(expected[~small])
    cells_o = list(observed[~small])
    if small.any():
        rest_e, rest_o = float(expected[small].sum()), float(observed[small].sum())
        if rest_e >= MIN_EXPECTED or not cells_e:
            cells_e.append(rest_e)
            cells_o.append(rest_o)
        else:
            cells_e[0] += rest_e
            cells_o[0] += rest_o
    cells_e, cells_o = np.array(cells_e), np.array(cells_o, dtype=np.float64)
    cells_o, cells_e = cells_o[cells_e > 0], cells_e[cells_e > 0]
    if len(cells_e) < 2:
        return None
    statistic = float(((cells_o - cells_e) ** 2 / cells_e).sum())
    df = len(cells_e) - 1
    return TestResult(name, statistic, df, float(chi2.sf(statistic, df)))


def holm(tests: list[TestResult]) -> list[TestResult]:
    """The tests with Holm's step-down adjusted p-values (the family-wise error stays at the level)."""
    m = len(tests)
    order = sorted(range(m), key=lambda i: tests[i].p_value)
    adjusted = [0.0] * m
    running = 0.0
    for rank_, i in enumerate(order):
        running = max(running, min(1.0, (m - rank_) * tests[i].p_value))
        adjusted[i] = running
    return [TestResult(t.name, t.statistic, t.df, t.p_value, a) for t, a in zip(tests, adjusted)]
