//! The one piece of linear algebra the model needs: a Cholesky factor of a 3×3 correlation
//! matrix that is allowed to be only positive *semi*-definite (perfectly correlated assets are
//! legitimate input). Three rows do not justify a linear-algebra dependency.

/// Pivots within this distance of zero count as zero (a semi-definite direction).
const PIVOT_TOLERANCE: f64 = 1e-12;

/// Lower-triangular `L` with `L·Lᵀ = m`, or `None` when `m` is not positive semi-definite.
pub fn cholesky_psd(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let mut l = [[0.0; 3]; 3];
    for j in 0..3 {
        let d = m[j][j] - (0..j).map(|k| l[j][k] * l[j][k]).sum::<f64>();
        if d < -PIVOT_TOLERANCE {
            return None;
        }
        if d <= PIVOT_TOLERANCE {
            // A zero pivot: the rest of this column must vanish too, else `m` has a negative
            // eigenvalue hiding behind the zero.
            for i in (j + 1)..3 {
                let r = m[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
                if r.abs() > 1e-9 {
                    return None;
                }
            }
            continue;
        }
        let pivot = d.sqrt();
        l[j][j] = pivot;
        for i in (j + 1)..3 {
            l[i][j] = (m[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>()) / pivot;
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(l: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = (0..3).map(|k| l[i][k] * l[j][k]).sum();
            }
        }
        m
    }

    #[test]
    fn factors_a_definite_matrix() {
        let m = [[1.0, 0.1, 0.0], [0.1, 1.0, 0.2], [0.0, 0.2, 1.0]];
        let l = cholesky_psd(&m).unwrap();
        let back = product(&l);
        for i in 0..3 {
            for j in 0..3 {
                assert!((back[i][j] - m[i][j]).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn accepts_perfect_correlation_and_rejects_an_indefinite_matrix() {
        let perfect = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let l = cholesky_psd(&perfect).unwrap();
        assert_eq!(product(&l), perfect);
        // Pairwise plausible, jointly impossible: eigenvalue 1 − 2·0.9 < 0 … and more.
        let bad = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]];
        assert!(cholesky_psd(&bad).is_none());
    }
}
