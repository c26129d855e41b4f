"""Winograd's minimal filtering F(m, 3): the transform matrices, built exactly.

A 1-D correlation of ``m`` outputs with a 3-tap filter reads ``α = m + 2`` inputs and is
``y = Aᵀ[(G g) ⊙ (Bᵀ d)]``: α multiplies instead of 3·m. Nested (rows, then columns) it
computes an m×m output tile of a 3×3 convolution from an α×α input tile with α²
multiplies instead of 9·m² (2.25× fewer for m = 2, 4× for m = 4, 5.06× for m = 6).

The matrices come from the Cook-Toom construction (Lavin & Gray, 2016) over interpolation
points 0, ±1, ±2, ±1/2 and the point at infinity, in exact rational arithmetic:

- ``A[j, i] = a_jⁱ`` evaluates an m-term polynomial at the points (infinity: its leading
  coefficient), ``G[j, k] = a_jᵏ`` the filter's;
- the product's α coefficients are the inverse ``V⁻¹`` of the α×α evaluation matrix applied
  to the pointwise products, and correlation is the transpose of that linear convolution
  in the data: ``Bᵀ = (V⁻¹)ᵀ``;
- each row j of ``Bᵀ`` is scaled to coprime integers and ``G``'s row j divided by the same
  factor (the data transform then needs no rounding, the filter's is done in float64).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

#: The output tile sizes offered and the interpolation points each uses (α − 1 finite ones).
POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}
FILTER_TAPS = 3


@dataclass(frozen=True)
class Transform:
    """F(m, 3)'s matrices as nested tuples of Fractions: ``data`` is Bᵀ (α×α), ``filter``
    G (α×3), ``output`` Aᵀ (m×α)."""

    m: int
    data: tuple
    filter: tuple
    output: tuple

    @property
    def alpha(self) -> int:
        """The input tile's side, m + 2."""
        return self.m + FILTER_TAPS - 1

    def floats(self, name: str) -> list[list[float]]:
        """One matrix (``data``, ``filter`` or ``output``) as floats."""
        return [[float(value) for value in row] for row in getattr(self, name)]


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan elimination in exact arithmetic (the matrices are at most 8×8)."""
    size = len(matrix)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(size)]
            for i, row in enumerate(matrix)]
    for column in range(size):
        pivot = next(r for r in range(column, size) if rows[r][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        lead = rows[column][column]
        rows[column] = [value / lead for value in rows[column]]
        for r in range(size):
            if r != column and rows[r][column] != 0:
                factor = rows[r][column]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[column])]
    return [row[size:] for row in rows]


def _evaluation(points: tuple, terms: int) -> list[list[Fraction]]:
    """Rows: a polynomial of ``terms`` coefficients evaluated at each point, then its
    leading coefficient (the point at infinity)."""
    rows = [[Fraction(point) ** power for power in range(terms)] for point in points]
    return rows + [[Fraction(int(power == terms - 1)) for power in range(terms)]]


@functools.lru_cache(maxsize=None)
def transform(m: int) -> Transform:
    """F(m, 3) for an ``m`` of :data:`POINTS`."""
    if m not in POINTS:
        raise ValueError(f"output_tile must be one of {tuple(POINTS)}, got {m!r}")
    points = POINTS[m]
    alpha = m + FILTER_TAPS - 1
    inverse = _inverse(_evaluation(points, alpha))
    data = [[inverse[i][j] for i in range(alpha)] for j in range(alpha)]  # (V⁻¹)ᵀ
    filter_ = _evaluation(points, FILTER_TAPS)
    for j, row in enumerate(data):
        denominators = math.lcm(*(value.denominator for value in row))
        numerators = math.gcd(*(int(value * denominators) for value in row))
        scale = Fraction(denominators, numerators)
        data[j] = [value * scale for value in row]
        filter_[j] = [value / scale for value in filter_[j]]
    output = [list(column) for column in zip(*_evaluation(points, m))]
    return Transform(m, tuple(map(tuple, data)), tuple(map(tuple, filter_)),
                     tuple(map(tuple, output)))
