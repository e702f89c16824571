//! A voxel array with its place in patient space.

use crate::geometry::Geometry;

/// Voxels in `Geometry` order (column fastest, then row, then slice).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    /// Where the grid sits.
    pub geometry: Geometry,
    /// `geometry.len()` values.
    pub data: Vec<T>,
}

impl<T: Copy> Volume<T> {
    /// A volume filled with `value`.
    pub fn filled(geometry: Geometry, value: T) -> Self {
        let data = vec![value; geometry.len()];
        Volume { geometry, data }
    }

    /// Value at `(i, j, k)`.
    pub fn at(&self, i: usize, j: usize, k: usize) -> T {
        self.data[self.geometry.index(i, j, k)]
    }

    /// Slice `k` as a row-major `rows x columns` slab.
    pub fn slice(&self, k: usize) -> &[T] {
        let n = self.geometry.dims[0] * self.geometry.dims[1];
        &self.data[k * n..(k + 1) * n]
    }
}

impl Volume<f32> {
    /// The binary mask of a mask read as numbers (NIfTI and NRRD decode to float): 1 where the
    /// value is above 0.5.
    pub fn to_mask(&self) -> Volume<u8> {
        Volume { geometry: self.geometry.clone(), data: self.data.iter().map(|&v| u8::from(v > 0.5)).collect() }
    }
}

impl Volume<u8> {
    /// Number of non-zero voxels.
    pub fn count_nonzero(&self) -> usize {
        self.data.iter().map(|&v| (v != 0) as usize).sum()
    }

    /// Volume of the non-zero voxels in millilitres.
    pub fn foreground_ml(&self) -> f64 {
        self.count_nonzero() as f64 * self.geometry.voxel_volume_mm3() / 1000.0
    }
}

/// Sørensen–Dice coefficient of two binary masks on the same grid: `2|A∩B| / (|A|+|B|)`.
/// Two empty masks agree perfectly (1.0).
pub fn dice(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "dice needs masks on the same grid");
    // Branch-free sums so the compiler can vectorise.
    let na: usize = a.iter().map(|&x| (x != 0) as usize).sum();
    let nb: usize = b.iter().map(|&y| (y != 0) as usize).sum();
    let both: usize = a.iter().zip(b).map(|(&x, &y)| ((x != 0) & (y != 0)) as usize).sum();
    if na + nb == 0 {
        1.0
    } else {
        2.0 * both as f64 / (na + nb) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_matches_hand_count() {
        // |A| = 3, |B| = 2, |A∩B| = 1 -> 2/5.
        assert!((dice(&[1, 1, 1, 0], &[0, 0, 1, 1]) - 0.4).abs() < 1e-15);
        assert_eq!(dice(&[0, 0], &[0, 0]), 1.0);
        assert_eq!(dice(&[1, 0], &[0, 1]), 0.0);
    }
}
