//! A correlation matrix that passed every rule, with the Cholesky factor that proved it
//! positive semi-definite. The engine's shock loadings are built from that factor, so the
//! matrix is factored once, when it is checked, and a checked matrix always has one.

use serde::{Serialize, Serializer};

use super::rules::{self, MATRIX_TOLERANCE};
use crate::linalg::cholesky_psd;

/// The 3×3 correlation of stocks, bonds and cash: entries within [-1, 1], unit diagonal,
/// symmetric, positive semi-definite. Serialises as the plain matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Correlation {
    matrix: [[f64; 3]; 3],
    /// Lower-triangular `L` with `L·Lᵀ = matrix`.
    factor: [[f64; 3]; 3],
}

/// The first rule a matrix breaks, in the order they are checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Broken {
    /// Cell `[i][j]` is not a number within [-1, 1].
    Cell(usize, usize),
    /// `[i][i]` is not 1.
    Diagonal(usize),
    /// `[i][j]` differs from `[j][i]`.
    Asymmetric(usize, usize),
    NotPositiveSemiDefinite,
}

impl Correlation {
    /// Its Cholesky factor.
    pub(crate) fn factor(&self) -> &[[f64; 3]; 3] {
        &self.factor
    }
}

impl TryFrom<[[f64; 3]; 3]> for Correlation {
    type Error = Broken;

    fn try_from(matrix: [[f64; 3]; 3]) -> Result<Self, Broken> {
        for (i, row) in matrix.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                // A diagonal within the tolerance of 1 passes (1.0000000000000002 is what a
                // computed matrix often holds); any other is the diagonal rule's, or this one's.
                let unit = i == j && (x - 1.0).abs() <= MATRIX_TOLERANCE;
                if !unit && rules::CORRELATION_CELL.check(x).is_err() {
                    return Err(Broken::Cell(i, j));
                }
            }
        }
        for (i, row) in matrix.iter().enumerate() {
            if (row[i] - 1.0).abs() > MATRIX_TOLERANCE {
                return Err(Broken::Diagonal(i));
            }
        }
        for (i, row) in matrix.iter().enumerate() {
            for (j, &x) in row.iter().enumerate().skip(i + 1) {
                if (x - matrix[j][i]).abs() > MATRIX_TOLERANCE {
                    return Err(Broken::Asymmetric(i, j));
                }
            }
        }
        let factor = cholesky_psd(&matrix).ok_or(Broken::NotPositiveSemiDefinite)?;
        Ok(Self { matrix, factor })
    }
}

impl std::ops::Deref for Correlation {
    type Target = [[f64; 3]; 3];

    fn deref(&self) -> &[[f64; 3]; 3] {
        &self.matrix
    }
}

impl Serialize for Correlation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.matrix.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_matrix_keeps_the_factor_that_reproduces_it_and_serialises_plain() {
        let m = [[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.0]];
        let c = Correlation::try_from(m).unwrap();
        assert_eq!(c.factor(), &cholesky_psd(&m).unwrap());
        for (i, row) in m.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                let back: f64 = (0..3).map(|k| c.factor()[i][k] * c.factor()[j][k]).sum();
                assert!((back - x).abs() < 1e-15);
            }
        }
        assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(m));
    }

    #[test]
    fn a_diagonal_within_the_tolerance_of_1_passes_on_either_side() {
        for d in [1.0 - 5e-10, 1.0 - f64::EPSILON / 2.0, 1.0 + f64::EPSILON, 1.0 + 5e-10] {
            let m = [[d, 0.1, 0.0], [0.1, 1.0, 0.2], [0.0, 0.2, d]];
            assert!(Correlation::try_from(m).is_ok(), "diagonal {d:e}");
        }
    }

    #[test]
    fn each_broken_rule_is_named_in_the_order_they_are_checked() {
        let cases = [
            ([[1.0, 1.5, 0.0], [1.5, 1.0, 0.0], [0.0, 0.0, 1.0]], Broken::Cell(0, 1)),
            ([[1.0, 0.0, 0.0], [0.0, f64::NAN, 0.0], [0.0, 0.0, 1.0]], Broken::Cell(1, 1)),
            ([[1.0, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 1.0]], Broken::Diagonal(1)),
            ([[1.0, 0.0, 0.0], [0.0, 1.0 + 2e-9, 0.0], [0.0, 0.0, 1.0]], Broken::Cell(1, 1)),
            ([[1.0, 0.5, 0.0], [0.4, 1.0, 0.0], [0.0, 0.0, 1.0]], Broken::Asymmetric(0, 1)),
            (
                [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]],
                Broken::NotPositiveSemiDefinite,
            ),
        ];
        for (m, broken) in cases {
            assert_eq!(Correlation::try_from(m), Err(broken), "{m:?}");
        }
    }
}
