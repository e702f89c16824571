//! L2-penalised logistic regression fitted by Newton's method (iteratively reweighted least
//! squares), with features standardised on the training rows only.

use crate::sigmoid;

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogisticError {
    /// No rows, or rows of different widths.
    #[error("training data is empty or ragged")]
    BadShape,
    /// Only one class in the labels.
    #[error("training labels contain a single class")]
    OneClass,
    /// The Newton system was singular (add penalty).
    #[error("Newton step is singular")]
    Singular,
}

/// A fitted model: `P(y=1|x) = σ(b0 + Σ w_j (x_j − μ_j)/σ_j)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogisticModel {
    /// Training means of each feature.
    pub mean: Vec<f64>,
    /// Training standard deviations (1 where a feature is constant).
    pub scale: Vec<f64>,
    /// Intercept then one weight per standardised feature.
    pub coef: Vec<f64>,
}

impl LogisticModel {
    /// Fit on rows `x` with labels `y`, penalty `l2 * Σ w_j²/2` on the weights (not the intercept).
    pub fn fit(x: &[Vec<f64>], y: &[bool], l2: f64) -> Result<LogisticModel, LogisticError> {
        let n = x.len();
        if n == 0 || y.len() != n {
            return Err(LogisticError::BadShape);
        }
        let d = x[0].len();
        if x.iter().any(|r| r.len() != d) {
            return Err(LogisticError::BadShape);
        }
        if y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
            return Err(LogisticError::OneClass);
        }
        let mut mean = vec![0.0; d];
        let mut scale = vec![0.0; d];
        for j in 0..d {
            mean[j] = x.iter().map(|r| r[j]).sum::<f64>() / n as f64;
            let var = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
            scale[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                let mut row = Vec::with_capacity(d + 1);
                row.push(1.0);
                row.extend((0..d).map(|j| (r[j] - mean[j]) / scale[j]));
                row
            })
            .collect();
        let p = d + 1;
        let mut w = vec![0.0; p];
        for _ in 0..100 {
            let mut grad = vec![0.0; p];
            let mut hess = vec![vec![0.0; p]; p];
            for (row, &label) in z.iter().zip(y) {
                let eta: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
                let mu = sigmoid(eta);
                let r = mu - if label { 1.0 } else { 0.0 };
                let v = (mu * (1.0 - mu)).max(1e-12);
                for a in 0..p {
                    grad[a] += r * row[a];
                    for b in 0..=a {
                        hess[a][b] += v * row[a] * row[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += l2 * w[a];
                hess[a][a] += l2;
            }
            for a in 0..p {
                for b in (a + 1)..p {
                    hess[a][b] = hess[b][a];
                }
            }
            let step = solve(hess, grad).ok_or(LogisticError::Singular)?;
            let mut largest: f64 = 0.0;
            for a in 0..p {
                w[a] -= step[a];
                largest = largest.max(step[a].abs());
            }
            if largest < 1e-10 {
                break;
            }
        }
        Ok(LogisticModel { mean, scale, coef: w })
    }

    /// Predicted probability of the positive class for one row.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut eta = self.coef[0];
        for j in 0..self.mean.len() {
            eta += self.coef[j + 1] * (row[j] - self.mean[j]) / self.scale[j];
        }
        sigmoid(eta)
    }
}

/// Solve `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-14 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in (col + 1)..n {
            let f = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = ((row + 1)..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic uniform stream (LCG) so the test needs no RNG crate.
    fn uniforms(n: usize, mut s: u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn recovers_generating_coefficients() {
        // y ~ Bernoulli(σ(0.5 + 2 x1 − 1 x2)), x uniform on [-1, 1]; 20,000 rows.
        let n = 20_000;
        let u = uniforms(3 * n, 42);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let (x1, x2) = (2.0 * u[3 * i] - 1.0, 2.0 * u[3 * i + 1] - 1.0);
            y.push(u[3 * i + 2] < sigmoid(0.5 + 2.0 * x1 - x2));
            x.push(vec![x1, x2]);
        }
        let m = LogisticModel::fit(&x, &y, 0.0).unwrap();
        // Back to the raw scale: w_raw = w / σ, b_raw = b0 − Σ w_raw μ.
        let w1 = m.coef[1] / m.scale[0];
        let w2 = m.coef[2] / m.scale[1];
        let b = m.coef[0] - w1 * m.mean[0] - w2 * m.mean[1];
        // Standard errors at this n are about 0.03-0.05; allow 4 SE.
        assert!((w1 - 2.0).abs() < 0.2, "w1 {w1}");
        assert!((w2 + 1.0).abs() < 0.15, "w2 {w2}");
        assert!((b - 0.5).abs() < 0.1, "b {b}");
    }

    #[test]
    fn gradient_is_zero_at_the_penalised_optimum() {
        let u = uniforms(200, 7);
        let x: Vec<Vec<f64>> = (0..100).map(|i| vec![u[2 * i] * 10.0]).collect();
        let y: Vec<bool> = (0..100).map(|i| u[2 * i + 1] < u[2 * i]).collect();
        let l2 = 0.5;
        let m = LogisticModel::fit(&x, &y, l2).unwrap();
        let (mut g0, mut g1) = (0.0, l2 * m.coef[1]);
        for (r, &t) in x.iter().zip(&y) {
            let resid = m.predict(r) - if t { 1.0 } else { 0.0 };
            g0 += resid;
            g1 += resid * (r[0] - m.mean[0]) / m.scale[0];
        }
        assert!(g0.abs() < 1e-8 && g1.abs() < 1e-8, "{g0} {g1}");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(LogisticModel::fit(&[], &[], 0.0).unwrap_err(), LogisticError::BadShape);
        assert_eq!(
            LogisticModel::fit(&[vec![1.0], vec![2.0]], &[true, true], 0.0).unwrap_err(),
            LogisticError::OneClass
        );
        assert_eq!(
            LogisticModel::fit(&[vec![1.0], vec![2.0, 3.0]], &[true, false], 0.0).unwrap_err(),
            LogisticError::BadShape
        );
    }
}
