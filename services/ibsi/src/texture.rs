//! Directional texture families: grey level co-occurrence (`cm_*`, IBSI 3.6) and run length
//! (`rlm_*`, IBSI 3.7) matrices, at Chebyshev distance 1, in the 13 unique 3D directions and the
//! 4 in-plane ones, aggregated the six IBSI ways ([`crate::matrix::directional`]).

use crate::matrix::{directional, log2_count, size_features, Mat};
use crate::roi::Roi;
use crate::Features;

/// The 13 unique directions of a 3D neighbourhood (the other 13 are their opposites).
pub const DIRECTIONS_3D: [[i64; 3]; 13] = [
    [1, 0, 0],
    [0, 1, 0],
    [1, 1, 0],
    [1, -1, 0],
    [0, 0, 1],
    [1, 0, 1],
    [1, 0, -1],
    [0, 1, 1],
    [0, 1, -1],
    [1, 1, 1],
    [1, 1, -1],
    [1, -1, 1],
    [1, -1, -1],
];

/// The 4 unique in-plane directions.
pub const DIRECTIONS_2D: [[i64; 3]; 4] = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, -1, 0]];

/// Co-occurrence counts of ROI voxels one step apart along `d` (with `slice`, the first voxel
/// in that slice), counted one way over the ROI's segments: a matrix over levels 0..=Ng where
/// row i, column j counts voxels of level i whose neighbour along `d` has level j, level 0
/// standing for a neighbour outside the ROI (so counting needs no branch). The symmetric GLCM
/// over levels 1..=Ng is this matrix plus its transpose, without row and column 0
/// ([`glcm_features`] reads it so). Matrices of one ROI add like the symmetric ones.
pub fn cooccurrence(roi: &Roi, d: [i64; 3], slice: Option<usize>) -> Mat {
    let w = roi.ng as usize + 1;
    let mut m = Mat::zeros(w, w);
    let off = roi.offset(d);
    let mut voxels = 0;
    for segment in roi.segments_in(slice) {
        let n = segment.len();
        let ahead = segment.start.wrapping_add_signed(off);
        for (&a, &b) in roi.padded[segment.clone()].iter().zip(&roi.padded[ahead..ahead + n]) {
            m.data[a as usize * w + b as usize] += 1.0;
        }
        voxels += n;
    }
    m.voxels = voxels as f64;
    m
}

/// Feature names of [`glcm_features`], in order.
pub const GLCM_NAMES: [&str; 25] = [
    "joint_max",
    "joint_avg",
    "joint_var",
    "joint_entr",
    "diff_avg",
    "diff_var",
    "diff_entr",
    "sum_avg",
    "sum_var",
    "sum_entr",
    "energy",
    "contrast",
    "dissimilarity",
    "inv_diff",
    "inv_diff_norm",
    "inv_diff_mom",
    "inv_diff_mom_norm",
    "inv_var",
    "corr",
    "auto_corr",
    "clust_tend",
    "clust_shade",
    "clust_prom",
    "info_corr1",
    "info_corr2",
];

/// The 25 GLCM features of one co-occurrence matrix ([`cooccurrence`]), with `p_ij` the
/// normalised symmetric matrix over levels 1..=Ng, `p_i` its marginal (symmetric, so both marginals agree), `p_{x-y}(k)` and
/// `p_{x+y}(k)` the diagonal and anti-diagonal sums:
/// joint maximum `max p`; joint average `μ = Σ i p`; joint variance `Σ (i-μ)² p`; joint entropy
/// `-Σ p log2 p`; difference average `μ_d = Σ k p_{x-y}`, variance `Σ (k-μ_d)² p_{x-y}`,
/// entropy; sum average `μ_s = Σ k p_{x+y}`, variance, entropy; angular second moment `Σ p²`;
/// contrast `Σ (i-j)² p`; dissimilarity `Σ |i-j| p`; inverse difference `Σ p/(1+|i-j|)` and
/// its normalised form `Σ p/(1+|i-j|/Ng)`; inverse difference moment `Σ p/(1+(i-j)²)` and
/// `Σ p/(1+(i-j)²/Ng²)`; inverse variance `Σ_{i≠j} p/(i-j)²`; correlation
/// `(Σ i j p - μ_i μ_j)/(σ_i σ_j)`; autocorrelation `Σ i j p`; cluster tendency, shade and
/// prominence `Σ (i+j-μ_i-μ_j)^{2,3,4} p`; information correlation 1 `(HXY-HXY1)/HX` and 2
/// `sqrt(1-exp(-2(HXY2-HXY)))`. `None` for an empty matrix.
pub fn glcm_features(m: &Mat) -> Option<Vec<f64>> {
    // `m` holds one-way counts over levels 0..=Ng ([`cooccurrence`]); the symmetric matrix's
    // cell (i, j) is m[i][j] + m[j][i].
    let w = m.rows;
    let ng = w - 1;
    let total: f64 = 2.0 * m.data.chunks_exact(w).skip(1).map(|row| row[1..].iter().sum::<f64>()).sum::<f64>();
    if total == 0.0 {
        return None;
    }
    let lv = |i: usize| (i + 1) as f64;
    // The non-zero cells on and above the diagonal as (i, j, p_ij), i and j from 0 for level
    // 1: the matrix is symmetric, so each cell off the diagonal stands for two. Per-slice
    // matrices are mostly empty.
    // Written unconditionally and kept by advancing past non-zero ones: sparse matrices would
    // mispredict a branch on every other cell.
    let mut cells: Vec<(u32, u32, f64)> = vec![(0, 0, 0.0); ng * (ng + 1) / 2];
    let mut kept = 0;
    for i in 1..=ng {
        for j in i..=ng {
            let c = m.data[i * w + j] + m.data[j * w + i];
            cells[kept] = (i as u32 - 1, j as u32 - 1, c);
            kept += usize::from(c != 0.0);
        }
    }
    cells.truncate(kept);
    // The marginal, diagonal and anti-diagonal sums as counts first: they are whole numbers,
    // so their entropies take log2 from the count table.
    let mut marg = vec![0.0; ng];
    let mut diff = vec![0.0; ng];
    let mut sum = vec![0.0; 2 * ng + 1];
    for &(i, j, c) in &cells {
        let (i, j) = (i as usize, j as usize);
        let twice = if i == j { c } else { 2.0 * c };
        marg[i] += c;
        marg[j] += twice - c;
        diff[j - i] += twice;
        sum[i + j + 2] += twice;
    }
    let log2_total = total.log2();
    let entropy = |counts: &[f64]| {
        -counts.iter().filter(|&&c| c > 0.0).map(|&c| c / total * (log2_count(c) - log2_total)).sum::<f64>()
    };
    let (hx, h_diff, h_sum) = (entropy(&marg), entropy(&diff), entropy(&sum));
    for v in marg.iter_mut().chain(diff.iter_mut()).chain(sum.iter_mut()) {
        *v /= total;
    }
    let mu: f64 = (0..ng).map(|i| lv(i) * marg[i]).sum();
    let var_i: f64 = (0..ng).map(|i| (lv(i) - mu).powi(2) * marg[i]).sum();
    let mu_d: f64 = diff.iter().enumerate().map(|(k, v)| k as f64 * v).sum();
    let mu_s: f64 = sum.iter().enumerate().map(|(k, v)| k as f64 * v).sum();
    // Terms that depend on |i - j| only come from p_{x-y}, those on i + j from p_{x+y}, and the
    // joint variance is the marginal's; the rest are summed over the cells.
    let g = ng as f64;
    let (mut contrast, mut dissim, mut id, mut idn, mut idm, mut idmn, mut inv_var) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (k, &v) in diff.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        let d = k as f64;
        contrast += d * d * v;
        dissim += d * v;
        id += v / (1.0 + d);
        idn += v / (1.0 + d / g);
        idm += v / (1.0 + d * d);
        idmn += v / (1.0 + d * d / (g * g));
        if k > 0 {
            inv_var += v / (d * d);
        }
    }
    let (mut tend, mut shade, mut prom) = (0.0, 0.0, 0.0);
    for (k, &v) in sum.iter().enumerate() {
        let c = k as f64 - 2.0 * mu;
        let c2 = c * c;
        tend += c2 * v;
        shade += c2 * c * v;
        prom += c2 * c2 * v;
    }
    let joint_var = var_i;
    let (mut joint_max, mut energy, mut auto, mut hxy) = (0.0f64, 0.0, 0.0, 0.0);
    for &(i, j, c) in &cells {
        // p_ij and log2 p_ij; cells off the diagonal stand for (i, j) and (j, i).
        let (i, j, v, log2_v) = (i as usize, j as usize, c / total, log2_count(c) - log2_total);
        let wv = if i == j { v } else { 2.0 * v };
        hxy -= wv * log2_v;
        joint_max = joint_max.max(v);
        energy += wv * v;
        auto += lv(i) * lv(j) * wv;
    }
    // HXY1 = -Σ p_ij log2(p_i p_j) and HXY2 = -Σ p_i p_j log2(p_i p_j) both reduce to HX + HY
    // (split the logarithm and sum out one index), which is 2 HX for a symmetric matrix.
    let (hxy1, hxy2) = (2.0 * hx, 2.0 * hx);
    let corr = if var_i > 0.0 { (auto - mu * mu) / var_i } else { 0.0 };
    let info1 = if hx > 0.0 { (hxy - hxy1) / hx } else { 0.0 };
    let info2 = (1.0 - (-2.0 * (hxy2 - hxy)).exp()).max(0.0).sqrt();
    Some(vec![
        joint_max,
        mu,
        joint_var,
        hxy,
        mu_d,
        diff.iter().enumerate().map(|(k, v)| (k as f64 - mu_d).powi(2) * v).sum(),
        h_diff,
        mu_s,
        sum.iter().enumerate().map(|(k, v)| (k as f64 - mu_s).powi(2) * v).sum(),
        h_sum,
        energy,
        contrast,
        dissim,
        id,
        idn,
        idm,
        idmn,
        inv_var,
        corr,
        auto,
        tend,
        shade,
        prom,
        info1,
        info2,
    ])
}

/// Run length counts along `d` (runs of one grey level through ROI voxels; with `slice`, runs
/// within that slice), over the voxels counted; as many columns as the longest run.
///
/// The voxels are visited in memory order with the step taken forwards (a run read backwards
/// has the same length), so the voxel behind each one has been visited: a voxel's position
/// in its run is one more than the position of the voxel behind when their levels match, and
/// 1 when not. A run of length at least h has exactly one voxel at position h, so with
/// `E(i, h)` the number of voxels of level i at position h, the runs of level i and length h
/// number `E(i, h) - E(i, h + 1)`: no voxel needs to know whether its run ends there.
pub fn run_lengths(roi: &Roi, d: [i64; 3], slice: Option<usize>) -> Mat {
    run_lengths_in(roi, d, slice, &mut RunScratch::for_roi(roi))
}

/// Working arrays of [`run_lengths`], reused across directions and slices.
struct RunScratch {
    /// Each voxel's position in its run along the current direction, on the padded grid (stale
    /// outside the voxels just visited, and then multiplied by 0).
    position: Vec<u32>,
    /// `E(i, h)` in two interleaved tables ([`run_lengths_in`]).
    table: Vec<u32>,
}

impl RunScratch {
    fn for_roi(roi: &Roi) -> RunScratch {
        RunScratch { position: vec![0; roi.padded.len()], table: Vec::new() }
    }
}

/// [`run_lengths`] with working arrays sized for the ROI.
///
/// Positions come one segment ([`Roi::segments`]) at a time from aligned slices of levels (the
/// segment's and those behind). Along x the position behind is the previous voxel's, kept in
/// a register; along any other direction the voxels behind lie in earlier rows (the step is at
/// least a padded row less one voxel, longer than any segment), so their positions are a slice
/// before the segment's and the loop vectorises. `E` is then counted in two tables, even and
/// odd voxels apart, so that neighbouring voxels counting one cell (common in smooth regions)
/// need not wait on each other's increments (four tables measured slower: more to clear and
/// add up).
fn run_lengths_in(roi: &Roi, d: [i64; 3], slice: Option<usize>, scratch: &mut RunScratch) -> Mat {
    let off = roi.offset(d).unsigned_abs();
    let RunScratch { position, table } = scratch;
    let padded = &roi.padded[..];
    let segments = roi.segments_in(slice);
    let mut widest = 1;
    let mut voxels = 0;
    for segment in segments {
        let (start, n) = (segment.start, segment.len());
        voxels += n;
        let level = &padded[start..start + n];
        let behind = &padded[start - off..start - off + n];
        let (before, from_start) = position.split_at_mut(start);
        let here = &mut from_start[..n];
        if off == 1 {
            let mut h = 0;
            for k in 0..n {
                h = u32::from(behind[k] == level[k]) * h + 1;
                here[k] = h;
            }
        } else {
            assert!(off >= n, "a step off the row is longer than a segment");
            let behind_position = &before[start - off..start - off + n];
            for k in 0..n {
                here[k] = u32::from(behind[k] == level[k]) * behind_position[k] + 1;
            }
        }
        widest = here.iter().fold(widest, |w, &h| w.max(h));
    }
    // E(i, h) for levels 0..=Ng and positions 0..=widest + 1 (the last column stays 0).
    let cols = widest as usize + 2;
    let cells = (roi.ng as usize + 1) * cols;
    table.clear();
    table.resize(2 * cells, 0);
    let (even, odd) = table.split_at_mut(cells);
    for segment in segments {
        let level = &padded[segment.clone()];
        let here = &position[segment.clone()];
        let mut pairs = level.chunks_exact(2).zip(here.chunks_exact(2));
        for (l, h) in &mut pairs {
            even[usize::from(l[0]) * cols + h[0] as usize] += 1;
            odd[usize::from(l[1]) * cols + h[1] as usize] += 1;
        }
        if level.len() % 2 == 1 {
            even[usize::from(level[level.len() - 1]) * cols + here[here.len() - 1] as usize] += 1;
        }
    }
    let mut m = Mat::zeros(roi.ng as usize, widest as usize);
    for i in 1..=roi.ng as usize {
        let e = |h: usize| even[i * cols + h] + odd[i * cols + h];
        for h in 1..=widest as usize {
            m.data[(i - 1) * m.cols + h - 1] = f64::from(e(h) - e(h + 1));
        }
    }
    m.voxels = voxels as f64;
    m
}

/// Names of the run length features (in [`size_features`] order).
pub const GLRLM_NAMES: [&str; 16] = [
    "sre",
    "lre",
    "lgre",
    "hgre",
    "srlge",
    "srhge",
    "lrlge",
    "lrhge",
    "glnu",
    "glnu_norm",
    "rlnu",
    "rlnu_norm",
    "r_perc",
    "gl_var",
    "rl_var",
    "rl_entr",
];

/// Matrices per slice in the in-plane directions and for the volume in the 13 directions.
/// The volume's in-plane matrices are the sums of the slices' (every in-plane pair lies in one
/// slice), so only the 9 directions leaving the plane are counted again.
fn per_slice_and_volume(
    roi: &Roi,
    mut build: impl FnMut(&Roi, [i64; 3], Option<usize>) -> Mat,
) -> (Vec<Vec<Mat>>, Vec<Mat>) {
    debug_assert_eq!(DIRECTIONS_3D[..4], DIRECTIONS_2D);
    let per_slice: Vec<Vec<Mat>> =
        roi.slices().into_iter().map(|z| DIRECTIONS_2D.iter().map(|&d| build(roi, d, Some(z))).collect()).collect();
    let in_plane =
        (0..DIRECTIONS_2D.len()).map(|d| Mat::sum(per_slice.iter().map(|s| &s[d])).expect("the ROI has a slice"));
    let volume = in_plane.chain(DIRECTIONS_3D[4..].iter().map(|&d| build(roi, d, None))).collect();
    (per_slice, volume)
}

/// GLCM features (`cm_<name>_<aggregation>`), all six aggregations.
pub fn glcm(roi: &Roi, out: &mut Features) {
    let (per_slice, volume) = per_slice_and_volume(roi, cooccurrence);
    for (suffix, values) in directional(&per_slice, &volume, glcm_features) {
        for (name, v) in GLCM_NAMES.iter().zip(values) {
            out.push((format!("cm_{name}_{suffix}"), v));
        }
    }
}

/// GLRLM features (`rlm_<name>_<aggregation>`), all six aggregations. Merged matrices count the
/// voxels once per merged direction, so the run percentage of a merge is runs over
/// (directions x voxels).
pub fn glrlm(roi: &Roi, out: &mut Features) {
    let mut scratch = RunScratch::for_roi(roi);
    let (per_slice, volume) = per_slice_and_volume(roi, |roi, d, slice| run_lengths_in(roi, d, slice, &mut scratch));
    let features = |m: &Mat| size_features(m).map(|f| f[..16].to_vec());
    for (suffix, values) in directional(&per_slice, &volume, features) {
        for (name, v) in GLRLM_NAMES.iter().zip(values) {
            out.push((format!("rlm_{name}_{suffix}"), v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roi::Discretisation;

    /// Run lengths by walking each run from its first voxel.
    fn walked(roi: &Roi, d: [i64; 3], slice: Option<usize>) -> Vec<(u32, usize)> {
        let off = roi.offset(d);
        let mut runs = Vec::new();
        for &p in roi.padded_in(slice) {
            let level = roi.padded[p];
            if roi.padded[(p as isize - off) as usize] == level {
                continue;
            }
            let (mut length, mut q) = (1, (p as isize + off) as usize);
            while roi.padded[q] == level {
                length += 1;
                q = (q as isize + off) as usize;
            }
            runs.push((u32::from(level), length));
        }
        runs
    }

    #[test]
    fn run_lengths_match_walked_runs_and_cooccurrences_count_every_pair() {
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        for case in 0..20 {
            let dims = [2 + (next() % 8) as usize, 2 + (next() % 8) as usize, 1 + (next() % 5) as usize];
            let n: usize = dims.iter().product();
            let image: Vec<f64> = (0..n).map(|_| (1 + next() % (1 + case % 3)) as f64).collect();
            let mut mask: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(4)).collect();
            mask[n - 1] = true;
            let roi = Roi::new(dims, [1.0; 3], image, mask, Discretisation::None).unwrap();
            let slices: Vec<Option<usize>> = roi.slices().into_iter().map(Some).chain([None]).collect();
            for slice in slices {
                let directions: &[[i64; 3]] = if slice.is_some() { &DIRECTIONS_2D } else { &DIRECTIONS_3D };
                for &d in directions {
                    let m = run_lengths(&roi, d, slice);
                    let mut want = Mat::zeros(roi.ng as usize, m.cols);
                    for (level, length) in walked(&roi, d, slice) {
                        want.count(level, length);
                    }
                    want.voxels = roi.padded_in(slice).len() as f64;
                    assert_eq!(m, want, "case {case}, direction {d:?}, slice {slice:?}");
                    // Every ROI pair one step apart along d, counted once from its first voxel.
                    let c = cooccurrence(&roi, d, slice);
                    let w = c.rows;
                    let pairs: f64 = c.data.chunks_exact(w).skip(1).map(|row| row[1..].iter().sum::<f64>()).sum();
                    let off = roi.offset(d);
                    let direct = roi.padded_in(slice).iter().filter(|&&p| roi.padded[(p as isize + off) as usize] != 0);
                    assert_eq!(pairs, direct.count() as f64);
                }
            }
        }
    }
}
