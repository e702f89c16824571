//! t-SNE (van der Maaten and Hinton, 2008), exact, to two dimensions: for maps of a few hundred
//! lesions' embeddings, where the O(n²) gradient costs milliseconds.
//!
//! The steps are scikit-learn's `TSNE(method="exact")`, so the two can be compared:
//! - affinities: squared Euclidean distances; per point, a binary search for the Gaussian
//!   precision whose conditional distribution has entropy `ln(perplexity)` (tolerance 1e-5 nats,
//!   at most 100 steps); then `P = (P + Pᵀ) / sum`, floored at machine epsilon;
//! - initialisation: the first two principal components, scaled so the first has standard
//!   deviation 1e-4 (deterministic: each component's largest entry is made positive);
//! - optimisation: Student-t (one degree of freedom) similarities, gradient
//!   `4 Σ_j (p_ij - q_ij)(1 + |y_i - y_j|²)⁻¹ (y_i - y_j)`, early exaggeration 12 for the first
//!   250 iterations with momentum 0.5, then momentum 0.8, per-coordinate gains (+0.2 when the
//!   gradient changes sign against the update, ×0.8 otherwise, at least 0.01), learning rate
//!   `max(n / 12 / 4, 50)`; 1,000 iterations unless the gradient norm falls below 1e-7.

/// Settings (defaults: scikit-learn's).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TsneSettings {
    /// Effective number of neighbours; capped at `(n - 1) / 3` for small sets.
    pub perplexity: f64,
    /// Gradient steps in all.
    pub iterations: usize,
    /// Steps with exaggerated affinities at the start.
    pub exaggeration_iterations: usize,
    /// Factor of the exaggeration.
    pub early_exaggeration: f64,
}

impl Default for TsneSettings {
    fn default() -> Self {
        TsneSettings { perplexity: 30.0, iterations: 1000, exaggeration_iterations: 250, early_exaggeration: 12.0 }
    }
}

/// A map and how well it keeps the affinities.
#[derive(Debug, Clone, PartialEq)]
pub struct TsneMap {
    /// One point per input row.
    pub points: Vec<[f64; 2]>,
    /// Kullback-Leibler divergence of the map's similarities from the affinities, nats.
    pub kl_divergence: f64,
    /// Perplexity used (after the cap).
    pub perplexity: f64,
}

const EPS: f64 = f64::EPSILON;

fn squared_distances(x: &[Vec<f64>]) -> Vec<f64> {
    let n = x.len();
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let v: f64 = x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)).sum();
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    d
}

/// Symmetric joint affinities `P` (n × n, row-major, zero diagonal, summing to 1).
pub fn joint_probabilities(x: &[Vec<f64>], perplexity: f64) -> Vec<f64> {
    let n = x.len();
    let d = squared_distances(x);
    let target = perplexity.ln();
    let mut p = vec![0.0; n * n];
    for i in 0..n {
        let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
        let row = &d[i * n..(i + 1) * n];
        let mut cond = vec![0.0; n];
        for _ in 0..100 {
            let mut sum = 0.0;
            for j in 0..n {
                cond[j] = if j == i { 0.0 } else { (-row[j] * beta).exp() };
                sum += cond[j];
            }
            if sum == 0.0 {
                sum = 1e-8;
            }
            let mut weighted = 0.0;
            for j in 0..n {
                cond[j] /= sum;
                weighted += row[j] * cond[j];
            }
            let entropy = sum.ln() + beta * weighted;
            let diff = entropy - target;
            if diff.abs() <= 1e-5 {
                break;
            }
            if diff > 0.0 {
                lo = beta;
                beta = if hi == f64::INFINITY { beta * 2.0 } else { (beta + hi) / 2.0 };
            } else {
                hi = beta;
                beta = if lo == f64::NEG_INFINITY { beta / 2.0 } else { (beta + lo) / 2.0 };
            }
        }
        p[i * n..(i + 1) * n].copy_from_slice(&cond);
    }
    let mut total = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let s = p[i * n + j] + p[j * n + i];
            p[i * n + j] = s;
            p[j * n + i] = s;
            total += 2.0 * s;
        }
    }
    let total = total.max(EPS);
    for i in 0..n {
        for j in 0..n {
            p[i * n + j] = if i == j { 0.0 } else { (p[i * n + j] / total).max(EPS) };
        }
    }
    p
}

/// First two principal components of the rows, the first scaled to standard deviation 1e-4.
fn pca_start(x: &[Vec<f64>]) -> Vec<[f64; 2]> {
    let (n, d) = (x.len(), x[0].len());
    let mean: Vec<f64> = (0..d).map(|k| x.iter().map(|r| r[k]).sum::<f64>() / n as f64).collect();
    let centred: Vec<Vec<f64>> = x.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect();
    let mut cov = vec![vec![0.0; d]; d];
    for r in &centred {
        for a in 0..d {
            for b in 0..d {
                cov[a][b] += r[a] * r[b];
            }
        }
    }
    let mut components: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        // Power iteration on the covariance with the earlier components removed.
        let mut v: Vec<f64> = (0..d).map(|k| 1.0 + (k + c) as f64 * 0.01).collect();
        for _ in 0..500 {
            let mut w: Vec<f64> = (0..d).map(|a| (0..d).map(|b| cov[a][b] * v[b]).sum()).collect();
            for u in &components {
                let dot: f64 = w.iter().zip(u).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.into_iter().map(|a| a / norm).collect();
        }
        let largest = v.iter().copied().fold(0.0f64, |m, a| if a.abs() > m.abs() { a } else { m });
        if largest < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        components.push(v);
    }
    let mut y: Vec<[f64; 2]> = centred
        .iter()
        .map(|r| std::array::from_fn(|c| r.iter().zip(&components[c]).map(|(a, b)| a * b).sum()))
        .collect();
    let m0 = y.iter().map(|p| p[0]).sum::<f64>() / n as f64;
    let sd = (y.iter().map(|p| (p[0] - m0).powi(2)).sum::<f64>() / n as f64).sqrt();
    let scale = if sd > 0.0 { 1e-4 / sd } else { 1.0 };
    y.iter_mut().for_each(|p| p.iter_mut().for_each(|v| *v *= scale));
    y
}

/// Student-t similarities `Q` of a map and the unnormalised kernel `(1 + d²)⁻¹`.
fn similarities(y: &[[f64; 2]]) -> (Vec<f64>, Vec<f64>) {
    let n = y.len();
    let mut kernel = vec![0.0; n * n];
    let mut sum = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let d = (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
            let k = 1.0 / (1.0 + d);
            kernel[i * n + j] = k;
            kernel[j * n + i] = k;
            sum += 2.0 * k;
        }
    }
    let q = kernel.iter().enumerate().map(|(ij, k)| if ij / n == ij % n { 0.0 } else { (k / sum).max(EPS) }).collect();
    (q, kernel)
}

/// `KL(P || Q)` over the pairs `i != j`.
pub fn kl_divergence(p: &[f64], y: &[[f64; 2]]) -> f64 {
    let n = y.len();
    let (q, _) = similarities(y);
    (0..n * n).filter(|ij| ij / n != ij % n).map(|ij| p[ij] * (p[ij].max(EPS) / q[ij]).ln()).sum()
}

/// Gradient of `KL(factor * P || Q)` with respect to each map point.
pub fn gradient(p: &[f64], y: &[[f64; 2]], factor: f64) -> Vec<[f64; 2]> {
    let n = y.len();
    let (q, kernel) = similarities(y);
    let mut grad = vec![[0.0f64; 2]; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let w = (factor * p[i * n + j] - q[i * n + j]) * kernel[i * n + j];
            grad[i][0] += 4.0 * w * (y[i][0] - y[j][0]);
            grad[i][1] += 4.0 * w * (y[i][1] - y[j][1]);
        }
    }
    grad
}

/// Map the rows (at least 4, all of one width, finite) to the plane.
pub fn tsne(x: &[Vec<f64>], s: &TsneSettings) -> TsneMap {
    let n = x.len();
    assert!(n >= 4, "t-SNE of fewer than 4 points");
    let perplexity = s.perplexity.min((n - 1) as f64 / 3.0);
    let p = joint_probabilities(x, perplexity);
    let mut y = pca_start(x);
    let rate = (n as f64 / s.early_exaggeration / 4.0).max(50.0);
    let mut update = vec![[0.0f64; 2]; n];
    let mut gains = vec![[1.0f64; 2]; n];
    for it in 0..s.iterations {
        let exaggerating = it < s.exaggeration_iterations;
        let (factor, momentum) = if exaggerating { (s.early_exaggeration, 0.5) } else { (1.0, 0.8) };
        let grad = gradient(&p, &y, factor);
        let norm = grad.iter().map(|g| g[0] * g[0] + g[1] * g[1]).sum::<f64>().sqrt();
        for i in 0..n {
            for c in 0..2 {
                let g = &mut gains[i][c];
                *g = if update[i][c] * grad[i][c] < 0.0 { *g + 0.2 } else { *g * 0.8 };
                *g = g.max(0.01);
                update[i][c] = momentum * update[i][c] - rate * *g * grad[i][c];
                y[i][c] += update[i][c];
            }
        }
        if !exaggerating && norm < 1e-7 {
            break;
        }
    }
    TsneMap { kl_divergence: kl_divergence(&p, &y), points: y, perplexity }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on two tight clusters far apart, `n` per cluster, in 5 dimensions.
    fn two_clusters(n: usize) -> Vec<Vec<f64>> {
        (0..2 * n)
            .map(|i| {
                let base = if i < n { 0.0 } else { 10.0 };
                (0..5).map(|k| base + ((i * 7 + k * 3) % 11) as f64 * 0.05).collect()
            })
            .collect()
    }

    #[test]
    fn affinities_are_a_symmetric_distribution_at_the_asked_perplexity() {
        let x = two_clusters(10);
        let n = x.len();
        let p = joint_probabilities(&x, 5.0);
        let total: f64 = p.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        for i in 0..n {
            for j in 0..n {
                assert_eq!(p[i * n + j], p[j * n + i]);
            }
        }
        // Nearly all of each point's affinity stays inside its own cluster.
        let inside: f64 = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|(i, j)| (i < &10) == (j < &10))
            .map(|(i, j)| p[i * n + j])
            .sum();
        assert!(inside > 0.999, "{inside}");
    }

    #[test]
    fn separated_clusters_stay_separated_and_the_fit_improves_on_the_start() {
        let x = two_clusters(15);
        let s = TsneSettings::default();
        let map = tsne(&x, &s);
        assert_eq!(map.perplexity, 29.0 / 3.0);
        let p = joint_probabilities(&x, map.perplexity);
        assert!(map.kl_divergence < kl_divergence(&p, &pca_start(&x)), "{}", map.kl_divergence);
        // Every point is nearer to its cluster's centre than to the other's.
        let centre = |r: std::ops::Range<usize>| -> [f64; 2] {
            let k = r.len() as f64;
            let pts = &map.points[r];
            [pts.iter().map(|p| p[0]).sum::<f64>() / k, pts.iter().map(|p| p[1]).sum::<f64>() / k]
        };
        let (a, b) = (centre(0..15), centre(15..30));
        let d = |p: &[f64; 2], c: &[f64; 2]| (p[0] - c[0]).hypot(p[1] - c[1]);
        for (i, pt) in map.points.iter().enumerate() {
            let (own, other) = if i < 15 { (&a, &b) } else { (&b, &a) };
            assert!(d(pt, own) < d(pt, other), "point {i}");
        }
        assert_eq!(tsne(&x, &s), map, "deterministic");
    }
}
