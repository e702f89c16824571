//! The study's meta-classifier: bagging of decision trees over the base models' outputs.
//!
//! Each tree is a CART classification tree grown to purity with the Gini criterion, as
//! scikit-learn's `DecisionTreeClassifier()` with its defaults: at every node the split that
//! most lowers the weighted Gini impurity of the children, thresholds at midpoints between
//! consecutive distinct values, left = `x <= threshold`, leaves predicting the malignant share of
//! their training rows. The ensemble draws `trees` bootstrap samples (n rows with replacement,
//! seeded) and averages the trees' probabilities, as `BaggingClassifier(DecisionTreeClassifier())`
//! does.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A node of a fitted tree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Node {
    /// Predict this probability of malignancy.
    Leaf { probability: f64, rows: usize },
    /// Go to `left` when `x[feature] <= threshold`, else `right` (indices into the node list).
    Split { feature: usize, threshold: f64, left: usize, right: usize },
}

/// A fitted classification tree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    /// Nodes; the root is node 0.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Grow a tree on rows `x` (equal widths) with labels `y`.
    pub fn fit(x: &[Vec<f64>], y: &[bool]) -> Tree {
        assert_eq!(x.len(), y.len(), "one label per row");
        assert!(!x.is_empty(), "rows to fit");
        let mut tree = Tree { nodes: Vec::new() };
        tree.grow(x, y, (0..x.len()).collect());
        tree
    }

    fn grow(&mut self, x: &[Vec<f64>], y: &[bool], rows: Vec<usize>) -> usize {
        let id = self.nodes.len();
        let positives = rows.iter().filter(|&&r| y[r]).count();
        let leaf = Node::Leaf { probability: positives as f64 / rows.len() as f64, rows: rows.len() };
        self.nodes.push(leaf);
        if positives == 0 || positives == rows.len() {
            return id;
        }
        let Some((feature, threshold)) = best_split(x, y, &rows) else { return id };
        let (left, right): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&r| x[r][feature] <= threshold);
        let l = self.grow(x, y, left);
        let r = self.grow(x, y, right);
        self.nodes[id] = Node::Split { feature, threshold, left: l, right: r };
        id
    }

    /// Probability of malignancy for one row.
    pub fn probability(&self, row: &[f64]) -> f64 {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Leaf { probability, .. } => return *probability,
                Node::Split { feature, threshold, left, right } => {
                    at = if row[*feature] <= *threshold { *left } else { *right };
                }
            }
        }
    }
}

/// The split of `rows` with the lowest weighted Gini impurity of the children; `None` when every
/// feature is constant on them. Ties keep the first found (feature order, then threshold order).
fn best_split(x: &[Vec<f64>], y: &[bool], rows: &[usize]) -> Option<(usize, f64)> {
    let n = rows.len() as f64;
    let total_pos = rows.iter().filter(|&&r| y[r]).count() as f64;
    let mut best: Option<(f64, usize, f64)> = None; // (children impurity * n, feature, threshold)
    let mut order = rows.to_vec();
    for feature in 0..x[rows[0]].len() {
        order.sort_by(|&a, &b| x[a][feature].total_cmp(&x[b][feature]));
        let mut left_pos = 0.0;
        for i in 0..order.len() - 1 {
            left_pos += f64::from(u8::from(y[order[i]]));
            let (v, next) = (x[order[i]][feature], x[order[i + 1]][feature]);
            if v == next {
                continue;
            }
            let nl = (i + 1) as f64;
            let nr = n - nl;
            let right_pos = total_pos - left_pos;
            // n_l * gini_l + n_r * gini_r, with gini = 1 - p^2 - (1 - p)^2 = 2 p (1 - p).
            let cost = 2.0 * left_pos * (nl - left_pos) / nl + 2.0 * right_pos * (nr - right_pos) / nr;
            if best.is_none_or(|(c, _, _)| cost < c) {
                let mut threshold = (v + next) / 2.0;
                if threshold == next {
                    threshold = v; // midpoint rounded up to the next value: keep the split
                }
                best = Some((cost, feature, threshold));
            }
        }
    }
    best.map(|(_, f, t)| (f, t))
}

/// Bagging settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaggingSettings {
    /// Trees (scikit-learn's default: 10).
    pub trees: usize,
    /// Seed of the bootstrap draws.
    pub seed: u64,
}

impl Default for BaggingSettings {
    fn default() -> Self {
        BaggingSettings { trees: 10, seed: 1 }
    }
}

/// A fitted bagging ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bagging {
    /// The trees.
    pub trees: Vec<Tree>,
}

impl Bagging {
    /// The bootstrap draws `fit` uses: per tree, `n` row indices drawn with replacement.
    pub fn draws(n: usize, s: &BaggingSettings) -> Vec<Vec<usize>> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(s.seed);
        (0..s.trees).map(|_| (0..n).map(|_| rng.random_range(0..n)).collect()).collect()
    }

    /// Fit on rows `x` and labels `y`.
    pub fn fit(x: &[Vec<f64>], y: &[bool], s: &BaggingSettings) -> Bagging {
        let trees = Bagging::draws(x.len(), s)
            .iter()
            .map(|draw| {
                let bx: Vec<Vec<f64>> = draw.iter().map(|&i| x[i].clone()).collect();
                let by: Vec<bool> = draw.iter().map(|&i| y[i]).collect();
                Tree::fit(&bx, &by)
            })
            .collect();
        Bagging { trees }
    }

    /// Mean of the trees' probabilities.
    pub fn probability(&self, row: &[f64]) -> f64 {
        self.trees.iter().map(|t| t.probability(row)).sum::<f64>() / self.trees.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_separates_what_one_threshold_separates() {
        let x = vec![vec![0.1, 5.0], vec![0.2, 1.0], vec![0.8, 4.0], vec![0.9, 2.0]];
        let y = [false, false, true, true];
        let t = Tree::fit(&x, &y);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[0], Node::Split { feature: 0, threshold: 0.5, left: 1, right: 2 });
        assert_eq!(t.probability(&[0.3, 9.0]), 0.0);
        assert_eq!(t.probability(&[0.6, 9.0]), 1.0);
        // Identical rows with different labels cannot be split: one leaf at the share.
        let t = Tree::fit(&[vec![1.0], vec![1.0], vec![1.0]], &[true, false, true]);
        assert_eq!(t.nodes, vec![Node::Leaf { probability: 2.0 / 3.0, rows: 3 }]);
    }

    #[test]
    fn bagging_is_seeded_and_averages_its_trees() {
        let x: Vec<Vec<f64>> = (0..50).map(|i| vec![f64::from(i) / 50.0, f64::from((i * 7) % 11)]).collect();
        let y: Vec<bool> = (0..50).map(|i| i > 20 || i % 7 == 0).collect();
        let s = BaggingSettings { trees: 5, seed: 3 };
        let b = Bagging::fit(&x, &y, &s);
        assert_eq!(b, Bagging::fit(&x, &y, &s));
        let row = [0.5, 3.0];
        let mean = b.trees.iter().map(|t| t.probability(&row)).sum::<f64>() / 5.0;
        assert_eq!(b.probability(&row), mean);
        assert_ne!(b, Bagging::fit(&x, &y, &BaggingSettings { trees: 5, seed: 4 }));
    }

    /// Rows reaching each node, by walking the fitted tree.
    fn rows_at(t: &Tree, x: &[Vec<f64>], node: usize, rows: Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out[node] = rows.clone();
        if let Node::Split { feature, threshold, left, right } = t.nodes[node] {
            let (l, r): (Vec<usize>, Vec<usize>) = rows.into_iter().partition(|&i| x[i][feature] <= threshold);
            rows_at(t, x, left, l, out);
            rows_at(t, x, right, r, out);
        }
    }

    #[test]
    fn every_split_is_the_best_by_brute_force_gini() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let x: Vec<Vec<f64>> =
            (0..120).map(|_| (0..3).map(|_| (rng.random::<f64>() * 20.0).round()).collect()).collect();
        let y: Vec<bool> = x.iter().map(|r| r[0] + r[1] > 18.0 + 6.0 * rng.random::<f64>() - r[2] / 4.0).collect();
        let t = Tree::fit(&x, &y);
        let mut at = vec![Vec::new(); t.nodes.len()];
        rows_at(&t, &x, 0, (0..x.len()).collect(), &mut at);
        let gini = |rows: &[usize]| {
            let p = rows.iter().filter(|&&i| y[i]).count() as f64 / rows.len() as f64;
            rows.len() as f64 * (1.0 - p * p - (1.0 - p) * (1.0 - p))
        };
        for (node, rows) in at.iter().enumerate() {
            match t.nodes[node] {
                Node::Split { feature, threshold, .. } => {
                    let cost = |f: usize, v: f64| {
                        let (l, r): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| x[i][f] <= v);
                        if l.is_empty() || r.is_empty() {
                            f64::INFINITY
                        } else {
                            gini(&l) + gini(&r)
                        }
                    };
                    let chosen = cost(feature, threshold);
                    for f in 0..3 {
                        for &i in rows {
                            assert!(chosen <= cost(f, x[i][f]) + 1e-9, "node {node}: a better split exists");
                        }
                    }
                }
                Node::Leaf { probability, rows: n } => {
                    assert_eq!(n, rows.len());
                    let share = rows.iter().filter(|&&i| y[i]).count() as f64 / n as f64;
                    assert_eq!(probability, share);
                }
            }
        }
        // Grown to purity: every training row without a twin of the other label is predicted as labelled.
        let clean: Vec<usize> = (0..x.len()).filter(|&i| !(0..x.len()).any(|j| x[i] == x[j] && y[i] != y[j])).collect();
        assert!(clean.len() >= 100, "{} rows without conflicting twins", clean.len());
        assert!(clean.iter().all(|&i| t.probability(&x[i]) == f64::from(u8::from(y[i]))));
    }
}
