//! Count matrices over (grey level, second index) and the IBSI aggregation of texture
//! features over slices and directions.

/// A count matrix: `rows` grey levels (row 0 is level 1) by `cols` values of the second index
/// (a level, a run length, a zone size or distance, a dependence count; column 0 is value 1),
/// with the number of voxels it was counted over (for the "percentage" features).
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Rows (grey levels).
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major counts.
    pub data: Vec<f64>,
    /// Voxels counted over; merging matrices adds these.
    pub voxels: f64,
}

impl Mat {
    /// All zeros.
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols], voxels: 0.0 }
    }

    /// Add one count at (level, value), both from 1.
    pub fn count(&mut self, level: u32, value: usize) {
        self.data[(level as usize - 1) * self.cols + (value - 1)] += 1.0;
    }

    /// Total count.
    pub fn total(&self) -> f64 {
        self.data.iter().sum()
    }

    /// Merge another matrix with as many rows into this one (widened to the wider of the two).
    pub fn add(&mut self, other: &Mat) {
        assert_eq!(self.rows, other.rows, "merged matrices differ in grey levels");
        if other.cols > self.cols {
            let mut wide = Mat::zeros(self.rows, other.cols);
            for r in 0..self.rows {
                wide.data[r * other.cols..r * other.cols + self.cols]
                    .copy_from_slice(&self.data[r * self.cols..(r + 1) * self.cols]);
            }
            wide.voxels = self.voxels;
            *self = wide;
        }
        if other.cols == self.cols {
            self.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += b);
        } else {
            for (mine, theirs) in self.data.chunks_exact_mut(self.cols).zip(other.data.chunks_exact(other.cols)) {
                mine[..other.cols].iter_mut().zip(theirs).for_each(|(a, b)| *a += b);
            }
        }
        self.voxels += other.voxels;
    }

    /// Merge of several matrices.
    pub fn sum<'a>(mats: impl IntoIterator<Item = &'a Mat>) -> Option<Mat> {
        let mats: Vec<&Mat> = mats.into_iter().collect();
        let first = mats.first()?;
        let mut acc = Mat::zeros(first.rows, mats.iter().map(|m| m.cols).max().expect("not empty"));
        for m in mats {
            acc.add(m);
        }
        Some(acc)
    }
}

/// `log2 c` of a whole count `c >= 1`, from a table for counts below 4096.
pub fn log2_count(c: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..4096).map(|c| f64::from(c).log2()).collect());
    if c < 4096.0 {
        table[c as usize]
    } else {
        c.log2()
    }
}

/// One non-zero cell of a count matrix: grey level i, second index j (both from 1), count.
pub type Cell = (u32, u32, f64);

/// [`cell_features`] of a dense matrix.
pub fn size_features(m: &Mat) -> Option<[f64; 17]> {
    let mut cells = Vec::new();
    for c in 0..m.cols {
        for r in 0..m.rows {
            let s = m.data[r * m.cols + c];
            if s != 0.0 {
                cells.push(((r + 1) as u32, (c + 1) as u32, s));
            }
        }
    }
    cell_features(m.rows, &cells, m.voxels)
}

/// Cells of `(i, j)` pairs, each packed as `j << 32 | i` with `1 <= i <= rows`, in [`Cell`]
/// order (by j, then i). Counted in a dense table when it is small next to the pairs, else by
/// sorting them.
pub fn counted(pairs: &mut [u64], rows: u32) -> Vec<Cell> {
    let cols = pairs.iter().map(|p| p >> 32).max().unwrap_or(0) as usize;
    let rows = rows as usize;
    if rows * cols <= 4 * pairs.len() + 4096 {
        // Column-major, so the cells come out by j, then i.
        let mut table = vec![0u32; rows * cols];
        for &p in pairs.iter() {
            table[((p >> 32) as usize - 1) * rows + (p as u32 as usize - 1)] += 1;
        }
        let mut cells = Vec::new();
        for (k, &c) in table.iter().enumerate() {
            if c > 0 {
                cells.push(((k % rows + 1) as u32, (k / rows + 1) as u32, f64::from(c)));
            }
        }
        return cells;
    }
    pairs.sort_unstable();
    pairs.chunk_by(|a, b| a == b).map(|run| (run[0] as u32, (run[0] >> 32) as u32, run.len() as f64)).collect()
}

/// Features of a matrix over (grey level i, second index j) with counts `s_ij`, `N_s = Σ s_ij`,
/// `p_ij = s_ij / N_s`: small/large-j emphasis `Σ s/j²`, `Σ s j²`; low/high grey level emphasis
/// `Σ s/i²`, `Σ s i²`; the four joint emphases `Σ s/(i² j²)`, `Σ s i²/j²`, `Σ s j²/i²`,
/// `Σ s i² j²` (each divided by `N_s`); grey level non-uniformity `Σ_i (Σ_j s)² / N_s` and its
/// normalised form (`/ N_s²`); the same over j; percentage `N_s / N_v`; grey level variance and
/// j variance of p; entropy `-Σ p log2 p`; energy `Σ p²`. `None` for an empty matrix.
///
/// `cells` are the non-zero cells sorted by j (then i), levels at most `rows`; `voxels` is
/// `N_v`. The run-length, size-zone, distance-zone and dependence matrices all share these
/// formulas (IBSI 3.7-3.11) and differ in what j counts.
pub fn cell_features(rows: usize, cells: &[Cell], voxels: f64) -> Option<[f64; 17]> {
    let ns: f64 = cells.iter().map(|c| c.2).sum();
    if ns == 0.0 {
        return None;
    }
    let mut f = [0.0f64; 17];
    let log2_ns = ns.log2();
    let mut row_sum = vec![0.0; rows];
    let (mut mu_i, mut mu_j) = (0.0, 0.0);
    let (mut col_sq, mut col, mut col_j) = (0.0, 0.0, 0u32);
    for &(i, j, s) in cells {
        if j != col_j {
            col_sq += col * col;
            (col, col_j) = (0.0, j);
        }
        col += s;
        let (i, j) = (f64::from(i), f64::from(j));
        let (i2, j2) = (i * i, j * j);
        f[0] += s / j2;
        f[1] += s * j2;
        f[2] += s / i2;
        f[3] += s * i2;
        f[4] += s / (i2 * j2);
        f[5] += s * i2 / j2;
        f[6] += s * j2 / i2;
        f[7] += s * i2 * j2;
        row_sum[i as usize - 1] += s;
        let p = s / ns;
        mu_i += i * p;
        mu_j += j * p;
        f[15] -= p * (log2_count(s) - log2_ns);
        f[16] += p * p;
    }
    col_sq += col * col;
    for v in f.iter_mut().take(8) {
        *v /= ns;
    }
    f[8] = row_sum.iter().map(|v| v * v).sum::<f64>() / ns;
    f[9] = f[8] / ns;
    f[10] = col_sq / ns;
    f[11] = f[10] / ns;
    f[12] = ns / voxels;
    for &(i, j, s) in cells {
        let p = s / ns;
        f[13] += (f64::from(i) - mu_i).powi(2) * p;
        f[14] += (f64::from(j) - mu_j).powi(2) * p;
    }
    Some(f)
}

/// Mean of feature vectors (element-wise); `None` when there are none.
pub fn mean_of(rows: &[Vec<f64>]) -> Option<Vec<f64>> {
    let first = rows.first()?;
    let mut acc = vec![0.0; first.len()];
    for r in rows {
        acc.iter_mut().zip(r).for_each(|(a, v)| *a += v);
    }
    Some(acc.into_iter().map(|v| v / rows.len() as f64).collect())
}

/// The six IBSI aggregations of a directional family (GLCM, GLRLM): `per_slice[z][d]` are 2D
/// matrices of slice z in in-plane direction d, `volume[d]` 3D matrices per direction, the
/// first `per_slice[z].len()` of them the in-plane directions (each the sum of the slices'
/// matrices in that direction); `features` maps a matrix to its feature vector (`None` when
/// empty). Returns the vectors for the suffixes `2D_avg` (mean over every slice and
/// direction), `2D_comb` (directions merged per slice, mean over slices), `2_5D_avg` (slices
/// merged per direction, mean over directions), `2_5D_comb` (all merged), `3D_avg` (mean
/// over directions) and `3D_comb` (merged).
pub fn directional(
    per_slice: &[Vec<Mat>],
    volume: &[Mat],
    features: impl Fn(&Mat) -> Option<Vec<f64>>,
) -> Vec<(&'static str, Vec<f64>)> {
    let mut out = Vec::new();
    let all: Vec<Vec<f64>> = per_slice.iter().flatten().filter_map(&features).collect();
    let slice_merged: Vec<Vec<f64>> = per_slice.iter().filter_map(|s| Mat::sum(s).and_then(|m| features(&m))).collect();
    let planar = per_slice.first().map_or(0, Vec::len);
    let per_direction: Vec<Option<Vec<f64>>> = volume.iter().map(&features).collect();
    let direction_merged: Vec<Vec<f64>> = per_direction[..planar].iter().flatten().cloned().collect();
    let merged = Mat::sum(&volume[..planar]).and_then(|m| features(&m));
    let volume_avg: Vec<Vec<f64>> = per_direction.into_iter().flatten().collect();
    let volume_merged = Mat::sum(volume).and_then(|m| features(&m));
    for (suffix, v) in [
        ("2D_avg", mean_of(&all)),
        ("2D_comb", mean_of(&slice_merged)),
        ("2_5D_avg", mean_of(&direction_merged)),
        ("2_5D_comb", merged),
        ("3D_avg", mean_of(&volume_avg)),
        ("3D_comb", volume_merged),
    ] {
        if let Some(v) = v {
            out.push((suffix, v));
        }
    }
    out
}

/// The three IBSI aggregations of a non-directional family (GLSZM, GLDZM, NGTDM, NGLDM):
/// `2D` (features per slice, mean over slices), `2_5D` (slices merged), `3D` (one 3D matrix).
pub fn planar<M>(
    per_slice: &[M],
    merge: impl Fn(&[M]) -> Option<M>,
    volume: &M,
    features: impl Fn(&M) -> Option<Vec<f64>>,
) -> Vec<(&'static str, Vec<f64>)> {
    let slices: Vec<Vec<f64>> = per_slice.iter().filter_map(&features).collect();
    let mut out = Vec::new();
    for (suffix, v) in
        [("2D", mean_of(&slices)), ("2_5D", merge(per_slice).and_then(|m| features(&m))), ("3D", features(volume))]
    {
        if let Some(v) = v {
            out.push((suffix, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_cells_match_a_map_in_both_the_table_and_the_sorting_path() {
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        for (largest, n) in [(20u64, 500usize), (1_000_000, 300)] {
            let mut pairs: Vec<u64> = (0..n)
                .map(|_| {
                    let state = next();
                    let j = 1 + state % largest.min(1 + state % 37 * largest / 30);
                    j << 32 | (1 + (state >> 40) % 8)
                })
                .collect();
            let mut want = std::collections::BTreeMap::new();
            for &p in &pairs {
                *want.entry((p >> 32, p as u32)).or_insert(0.0) += 1.0;
            }
            let want: Vec<Cell> = want.into_iter().map(|((j, i), c)| (i, j as u32, c)).collect();
            assert_eq!(counted(&mut pairs, 8), want, "largest second index {largest}");
        }
    }

    #[test]
    fn size_features_match_a_hand_computed_matrix() {
        // Level 1: two runs of length 1; level 2: one run of length 2. Over 4 voxels.
        let mut m = Mat::zeros(2, 2);
        m.count(1, 1);
        m.count(1, 1);
        m.count(2, 2);
        m.voxels = 4.0;
        let f = size_features(&m).unwrap();
        let ns = 3.0;
        assert!((f[0] - (2.0 + 0.25) / ns).abs() < 1e-15, "short emphasis");
        assert!((f[1] - (2.0 + 4.0) / ns).abs() < 1e-15, "long emphasis");
        assert!((f[3] - (2.0 + 4.0) / ns).abs() < 1e-15, "high grey level emphasis");
        assert!((f[7] - (2.0 + 16.0) / ns).abs() < 1e-15, "long high-grey emphasis");
        assert!((f[8] - (4.0 + 1.0) / ns).abs() < 1e-15, "grey level non-uniformity");
        assert!((f[12] - 0.75).abs() < 1e-15, "percentage");
        // p = (2/3, 1/3): entropy and energy.
        let h = -(2.0 / 3.0 * (2.0f64 / 3.0).log2() + 1.0 / 3.0 * (1.0f64 / 3.0).log2());
        assert!((f[15] - h).abs() < 1e-15 && (f[16] - 5.0 / 9.0).abs() < 1e-15);
        assert!((f[13] - 2.0 / 9.0).abs() < 1e-15, "variance of i: mean 4/3");
        assert_eq!(size_features(&Mat::zeros(2, 2)), None);
    }
}
