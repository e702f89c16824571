//! Voxel grids placed in the DICOM patient coordinate system (LPS, millimetres).

/// A 3-vector in patient coordinates (x = patient left, y = posterior, z = superior), mm.
pub type Vec3 = [f64; 3];

/// Dot product.
pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// Euclidean norm.
pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// `a * s`.
pub fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// `a + b`.
pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `a - b`.
pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Where a voxel grid sits in patient space.
///
/// Index `(i, j, k)` is column `i`, row `j`, slice `k`, the order in which DICOM stores pixels
/// (columns fastest) and NIfTI stores voxels. The voxel centre is
/// `origin_mm + i * spacing_mm[0] * row_dir + j * spacing_mm[1] * col_dir + k * spacing_mm[2] * normal`.
///
/// In DICOM terms: `ImageOrientationPatient = row_dir ++ col_dir` (row_dir is the direction of
/// increasing column index), `PixelSpacing = [spacing_mm[1], spacing_mm[0]]` (row spacing first),
/// and `ImagePositionPatient` of slice `k` is the centre of voxel `(0, 0, k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Centre-to-centre distance along i, j, k, in mm.
    pub spacing_mm: [f64; 3],
    /// Centre of voxel (0, 0, 0), in mm.
    pub origin_mm: Vec3,
    /// Unit vector along increasing i.
    pub row_dir: Vec3,
    /// Unit vector along increasing j.
    pub col_dir: Vec3,
    /// Unit vector along increasing k (not necessarily `row_dir x col_dir`).
    pub normal: Vec3,
}

impl Geometry {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// True when the grid holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Linear index of `(i, j, k)`.
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Patient coordinates of a (possibly fractional) voxel index.
    pub fn to_patient(&self, ijk: [f64; 3]) -> Vec3 {
        let mut p = self.origin_mm;
        for a in 0..3 {
            p[a] += ijk[0] * self.spacing_mm[0] * self.row_dir[a]
                + ijk[1] * self.spacing_mm[1] * self.col_dir[a]
                + ijk[2] * self.spacing_mm[2] * self.normal[a];
        }
        p
    }

    /// Fractional voxel index of a patient-space point (inverse of [`Geometry::to_patient`]).
    pub fn to_index(&self, p: Vec3) -> [f64; 3] {
        self.index_map().apply(p)
    }

    /// [`Geometry::to_index`] with the matrix inverted once, for mapping many points.
    pub fn index_map(&self) -> IndexMap {
        IndexMap {
            inverse: invert3(self.matrix()).expect("grid axes are linearly independent"),
            origin_mm: self.origin_mm,
        }
    }

    /// Columns of this matrix map a unit index step along i, j, k to patient mm.
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        let mut m = [[0.0; 3]; 3];
        for a in 0..3 {
            m[a][0] = self.row_dir[a] * self.spacing_mm[0];
            m[a][1] = self.col_dir[a] * self.spacing_mm[1];
            m[a][2] = self.normal[a] * self.spacing_mm[2];
        }
        m
    }

    /// Patient position of slice `k` (its `ImagePositionPatient`).
    pub fn slice_position(&self, k: usize) -> Vec3 {
        self.to_patient([0.0, 0.0, k as f64])
    }

    /// The eight corner voxel centres, in patient mm.
    pub fn corners(&self) -> [Vec3; 8] {
        let hi = [
            self.dims[0].saturating_sub(1) as f64,
            self.dims[1].saturating_sub(1) as f64,
            self.dims[2].saturating_sub(1) as f64,
        ];
        let mut out = [[0.0; 3]; 8];
        for (n, c) in out.iter_mut().enumerate() {
            let ijk = [
                if n & 1 == 0 { 0.0 } else { hi[0] },
                if n & 2 == 0 { 0.0 } else { hi[1] },
                if n & 4 == 0 { 0.0 } else { hi[2] },
            ];
            *c = self.to_patient(ijk);
        }
        out
    }

    /// Whether `other` puts the same voxels in the same places, up to `tolerance_mm` at any voxel
    /// centre (files that store geometry as float32, as NIfTI does, differ in the last digits).
    pub fn same_grid(&self, other: &Geometry, tolerance_mm: f64) -> bool {
        self.dims == other.dims
            && self.corners().iter().zip(other.corners()).all(|(a, b)| norm(sub(*a, b)) <= tolerance_mm)
    }

    /// Volume of one voxel in mm³.
    pub fn voxel_volume_mm3(&self) -> f64 {
        let m = self.matrix();
        det3(m).abs()
    }
}

/// Determinant of a 3x3 matrix.
pub fn det3(m: [[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse of a 3x3 matrix, `None` when singular.
pub fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det3(m);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / d;
        }
    }
    Some(inv)
}

/// A grid's patient-to-index map ([`Geometry::index_map`]).
#[derive(Debug, Clone, Copy)]
pub struct IndexMap {
    inverse: [[f64; 3]; 3],
    origin_mm: Vec3,
}

impl IndexMap {
    /// Fractional voxel index of a patient-space point.
    pub fn apply(&self, p: Vec3) -> [f64; 3] {
        let d = sub(p, self.origin_mm);
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            *o = self.inverse[r][0] * d[0] + self.inverse[r][1] * d[1] + self.inverse[r][2] * d[2];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_grid_allows_float32_rounding_and_nothing_more() {
        let g = coronal();
        let mut h = g.clone();
        h.origin_mm[0] += 1e-5;
        assert!(g.same_grid(&h, 1e-3));
        h.spacing_mm[2] *= 1.001; // 0.1% on a slice axis moves the far corners by more than 1e-3 mm
        assert!(!g.same_grid(&h, 1e-3));
        let mut d = g.clone();
        d.dims[0] += 1;
        assert!(!g.same_grid(&d, 1.0));
    }

    fn coronal() -> Geometry {
        Geometry {
            dims: [4, 5, 6],
            spacing_mm: [1.5, 2.0, 5.0],
            origin_mm: [-10.0, 20.0, 30.0],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 0.0, -1.0],
            normal: [0.0, 1.0, 0.0],
        }
    }

    #[test]
    fn index_round_trip_is_exact_to_rounding() {
        let g = coronal();
        let p = g.to_patient([1.5, 2.25, 3.0]);
        let back = g.to_index(p);
        for a in 0..3 {
            assert!((back[a] - [1.5, 2.25, 3.0][a]).abs() < 1e-12);
        }
        // Column index moves along patient left, row index towards the feet, slice index posterior.
        assert_eq!(g.to_patient([1.0, 0.0, 0.0]), [-8.5, 20.0, 30.0]);
        assert_eq!(g.to_patient([0.0, 1.0, 0.0]), [-10.0, 20.0, 28.0]);
        assert_eq!(g.to_patient([0.0, 0.0, 1.0]), [-10.0, 25.0, 30.0]);
    }

    #[test]
    fn voxel_volume_is_product_of_spacings_for_orthonormal_axes() {
        assert!((coronal().voxel_volume_mm3() - 15.0).abs() < 1e-12);
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let m = [[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0]];
        let inv = invert3(m).unwrap();
        for r in 0..3 {
            for c in 0..3 {
                let v: f64 = (0..3).map(|k| m[r][k] * inv[k][c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
}
