//! NIfTI-1 single-file images (`.nii`, `.nii.gz`) to and from bytes.
//!
//! NIfTI's world space is RAS (x right-to-left is *negated* relative to DICOM's LPS); the
//! conversion between the two happens here and nowhere else. Both `sform` (code 1, scanner
//! anatomical) and `qform` are written, so that readers that prefer either agree.

use crate::geometry::{det3, Geometry, Vec3};
use crate::volume::Volume;
use std::io::{Read, Write};

const HEADER_BYTES: usize = 348;
const DATA_OFFSET: usize = 352;

/// Why a NIfTI byte buffer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    /// Fewer bytes than a header, or fewer than the header promises.
    #[error("NIfTI data is truncated: {what}")]
    Truncated { what: String },
    /// `sizeof_hdr` is not 348 in either byte order.
    #[error("not a NIfTI-1 file (sizeof_hdr = {0})")]
    NotNifti(i32),
    /// A voxel type this reader does not handle.
    #[error("unsupported NIfTI datatype code {0}")]
    UnsupportedDatatype(i16),
    /// A dimension outside 1..=7, or a zero/negative extent.
    #[error("unsupported NIfTI dimensions {0:?}")]
    BadDims([i16; 8]),
    /// Neither sform nor qform gives a usable orientation.
    #[error("NIfTI orientation is singular")]
    SingularOrientation,
    /// The gzip layer failed.
    #[error("gzip: {0}")]
    Gzip(#[from] std::io::Error),
}

/// Voxel types the writer emits.
pub trait NiftiVoxel: Copy {
    /// NIfTI datatype code.
    const DATATYPE: i16;
    /// Bits per voxel.
    const BITPIX: i16;
    /// Little-endian bytes of one voxel.
    fn write_le(self, out: &mut Vec<u8>);
    /// Little-endian bytes of many voxels.
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            v.write_le(out);
        }
    }
}

impl NiftiVoxel for u8 {
    const DATATYPE: i16 = 2;
    const BITPIX: i16 = 8;
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
}

impl NiftiVoxel for u16 {
    const DATATYPE: i16 = 512;
    const BITPIX: i16 = 16;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NiftiVoxel for f32 {
    const DATATYPE: i16 = 16;
    const BITPIX: i16 = 32;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

fn lps_to_ras(v: Vec3) -> Vec3 {
    [-v[0], -v[1], v[2]]
}

/// Encode a volume as an uncompressed NIfTI-1 file.
pub fn encode<T: NiftiVoxel>(volume: &Volume<T>, description: &str) -> Vec<u8> {
    let g = &volume.geometry;
    let mut h = vec![0u8; DATA_OFFSET];
    put_i32(&mut h, 0, HEADER_BYTES as i32);
    h[38] = b'r';
    let dim: [i16; 8] = [3, g.dims[0] as i16, g.dims[1] as i16, g.dims[2] as i16, 1, 1, 1, 1];
    for (n, d) in dim.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * n, *d);
    }
    put_i16(&mut h, 70, T::DATATYPE);
    put_i16(&mut h, 72, T::BITPIX);

    // Rotation with unit columns in RAS; a left-handed grid is expressed through qfac.
    let cols = [lps_to_ras(g.row_dir), lps_to_ras(g.col_dir), lps_to_ras(g.normal)];
    let mut r = [[0.0; 3]; 3];
    for c in 0..3 {
        for a in 0..3 {
            r[a][c] = cols[c][a];
        }
    }
    let qfac = if det3(r) < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    let pixdim = [qfac, g.spacing_mm[0], g.spacing_mm[1], g.spacing_mm[2], 0.0, 0.0, 0.0, 0.0];
    for (n, p) in pixdim.iter().enumerate() {
        put_f32(&mut h, 76 + 4 * n, *p as f32);
    }
    put_f32(&mut h, 108, DATA_OFFSET as f32);
    put_f32(&mut h, 112, 1.0); // scl_slope
    h[123] = 2 | 8; // mm, seconds
    let desc = description.as_bytes();
    let n = desc.len().min(79);
    h[148..148 + n].copy_from_slice(&desc[..n]);
    put_i16(&mut h, 252, 1); // qform: scanner anatomical
    put_i16(&mut h, 254, 1); // sform: scanner anatomical
    let q = quaternion(r);
    let origin = lps_to_ras(g.origin_mm);
    for (n, v) in [q[1], q[2], q[3], origin[0], origin[1], origin[2]].iter().enumerate() {
        put_f32(&mut h, 256 + 4 * n, *v as f32);
    }
    for a in 0..3 {
        for c in 0..3 {
            put_f32(&mut h, 280 + 16 * a + 4 * c, (cols[c][a] * g.spacing_mm[c]) as f32);
        }
        put_f32(&mut h, 280 + 16 * a + 12, origin[a] as f32);
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h.reserve(volume.data.len() * (T::BITPIX as usize / 8));
    T::extend_le(&volume.data, &mut h);
    h
}

/// Encode and gzip (what `.nii.gz` holds).
pub fn encode_gz<T: NiftiVoxel>(volume: &Volume<T>, description: &str) -> Vec<u8> {
    let raw = encode(volume, description);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Unit quaternion (a, b, c, d) of a proper rotation matrix, as NIfTI's reference code derives it.
fn quaternion(r: [[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, b, c, d);
    if trace > 0.5 {
        let a2 = 0.5 * trace.sqrt();
        a = a2;
        b = 0.25 * (r[2][1] - r[1][2]) / a2;
        c = 0.25 * (r[0][2] - r[2][0]) / a2;
        d = 0.25 * (r[1][0] - r[0][1]) / a2;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        let (mut aa, mut bb, mut cc, mut dd);
        if xd > 1.0 {
            bb = 0.5 * xd.sqrt();
            cc = 0.25 * (r[0][1] + r[1][0]) / bb;
            dd = 0.25 * (r[0][2] + r[2][0]) / bb;
            aa = 0.25 * (r[2][1] - r[1][2]) / bb;
        } else if yd > 1.0 {
            cc = 0.5 * yd.sqrt();
            bb = 0.25 * (r[0][1] + r[1][0]) / cc;
            dd = 0.25 * (r[1][2] + r[2][1]) / cc;
            aa = 0.25 * (r[0][2] - r[2][0]) / cc;
        } else {
            dd = 0.5 * zd.sqrt();
            bb = 0.25 * (r[0][2] + r[2][0]) / dd;
            cc = 0.25 * (r[1][2] + r[2][1]) / dd;
            aa = 0.25 * (r[1][0] - r[0][1]) / dd;
        }
        if aa < 0.0 {
            aa = -aa;
            bb = -bb;
            cc = -cc;
            dd = -dd;
        }
        a = aa;
        b = bb;
        c = cc;
        d = dd;
    }
    [a, b, c, d]
}

/// A decoded NIfTI image: geometry in LPS plus voxel values as `f32` (after `scl_slope`/`scl_inter`).
#[derive(Debug, Clone)]
pub struct NiftiImage {
    /// The voxel grid in patient (LPS) space.
    pub volume: Volume<f32>,
    /// The header's `descrip` text.
    pub description: String,
}

/// Decode `.nii` or `.nii.gz` bytes (gzip is detected by its magic number).
pub fn decode(bytes: &[u8]) -> Result<NiftiImage, NiftiError> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut raw)?;
        return decode_raw(&raw);
    }
    decode_raw(bytes)
}

fn decode_raw(b: &[u8]) -> Result<NiftiImage, NiftiError> {
    if b.len() < HEADER_BYTES {
        return Err(NiftiError::Truncated { what: format!("{} bytes, header needs 348", b.len()) });
    }
    let le = i32::from_le_bytes(b[0..4].try_into().unwrap());
    let big = match le {
        348 => false,
        _ if i32::from_be_bytes(b[0..4].try_into().unwrap()) == 348 => true,
        other => return Err(NiftiError::NotNifti(other)),
    };
    let rd = Reader { b, big };
    let mut dim = [0i16; 8];
    for (n, d) in dim.iter_mut().enumerate() {
        *d = rd.i16(40 + 2 * n);
    }
    if !(1..=7).contains(&dim[0]) || dim[1..=dim[0] as usize].iter().any(|&d| d < 1) {
        return Err(NiftiError::BadDims(dim));
    }
    let extent = |n: usize| if (n as i16) <= dim[0] { dim[n] as usize } else { 1 };
    let dims = [extent(1), extent(2), extent(3)];
    let datatype = rd.i16(70);
    let vox_offset = rd.f32(108).max(HEADER_BYTES as f32) as usize;
    let mut slope = rd.f32(112) as f64;
    let inter = rd.f32(116) as f64;
    if slope == 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let n = dims[0] * dims[1] * dims[2];
    let width = match datatype {
        2 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 => 8,
        other => return Err(NiftiError::UnsupportedDatatype(other)),
    };
    let end = vox_offset + n * width;
    if b.len() < end {
        return Err(NiftiError::Truncated { what: format!("{} bytes, voxel data needs {end}", b.len()) });
    }
    let mut data = Vec::with_capacity(n);
    for v in 0..n {
        let at = vox_offset + v * width;
        let raw = match datatype {
            2 => b[at] as f64,
            4 => rd.i16(at) as f64,
            512 => rd.u16(at) as f64,
            8 => rd.i32(at) as f64,
            768 => rd.u32(at) as f64,
            16 => rd.f32(at) as f64,
            _ => rd.f64(at),
        };
        data.push((raw * slope + inter) as f32);
    }
    let geometry = read_geometry(&rd, dims)?;
    let descrip = &b[148..228];
    let end = descrip.iter().position(|&c| c == 0).unwrap_or(descrip.len());
    Ok(NiftiImage {
        volume: Volume { geometry, data },
        description: String::from_utf8_lossy(&descrip[..end]).into_owned(),
    })
}

fn read_geometry(rd: &Reader<'_>, dims: [usize; 3]) -> Result<Geometry, NiftiError> {
    let sform_code = rd.i16(254);
    let qform_code = rd.i16(252);
    let mut m = [[0.0f64; 3]; 3]; // RAS columns per index axis
    let mut origin = [0.0f64; 3];
    if sform_code > 0 {
        for a in 0..3 {
            for c in 0..3 {
                m[a][c] = rd.f32(280 + 16 * a + 4 * c) as f64;
            }
            origin[a] = rd.f32(280 + 16 * a + 12) as f64;
        }
    } else if qform_code > 0 {
        let (b, c, d) = (rd.f32(256) as f64, rd.f32(260) as f64, rd.f32(264) as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let qfac = if rd.f32(76) < 0.0 { -1.0 } else { 1.0 };
        let px = [rd.f32(80) as f64, rd.f32(84) as f64, rd.f32(88) as f64 * qfac];
        for a in 0..3 {
            for c in 0..3 {
                m[a][c] = r[a][c] * px[c];
            }
        }
        origin = [rd.f32(268) as f64, rd.f32(272) as f64, rd.f32(276) as f64];
    } else {
        let px = [rd.f32(80) as f64, rd.f32(84) as f64, rd.f32(88) as f64];
        for c in 0..3 {
            m[c][c] = if px[c] > 0.0 { px[c] } else { 1.0 };
        }
    }
    let mut spacing = [0.0; 3];
    let mut axes = [[0.0; 3]; 3];
    for c in 0..3 {
        let col = [m[0][c], m[1][c], m[2][c]];
        let len = crate::geometry::norm(col);
        if len <= 0.0 || !len.is_finite() {
            return Err(NiftiError::SingularOrientation);
        }
        spacing[c] = len;
        axes[c] = lps_to_ras(crate::geometry::scale(col, 1.0 / len));
    }
    Ok(Geometry {
        dims,
        spacing_mm: spacing,
        origin_mm: lps_to_ras(origin),
        row_dir: axes[0],
        col_dir: axes[1],
        normal: axes[2],
    })
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
}

macro_rules! reader_fn {
    ($name:ident, $t:ty, $n:expr) => {
        fn $name(&self, at: usize) -> $t {
            let bytes: [u8; $n] = self.b[at..at + $n].try_into().unwrap();
            if self.big {
                <$t>::from_be_bytes(bytes)
            } else {
                <$t>::from_le_bytes(bytes)
            }
        }
    };
}

impl Reader<'_> {
    reader_fn!(i16, i16, 2);
    reader_fn!(u16, u16, 2);
    reader_fn!(i32, i32, 4);
    reader_fn!(u32, u32, 4);
    reader_fn!(f32, f32, 4);
    reader_fn!(f64, f64, 8);
}

fn put_i16(h: &mut [u8], at: usize, v: i16) {
    h[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_i32(h: &mut [u8], at: usize, v: i32) {
    h[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_f32(h: &mut [u8], at: usize, v: f32) {
    h[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique_volume() -> Volume<u8> {
        let (s, c) = (0.1f64.sin(), 0.1f64.cos());
        let g = Geometry {
            dims: [3, 4, 5],
            spacing_mm: [0.8, 0.9, 3.0],
            origin_mm: [12.0, -40.0, 100.0],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, c, -s],
            normal: [0.0, s, c],
        };
        let data = (0..g.len()).map(|v| (v % 7) as u8).collect();
        Volume { geometry: g, data }
    }

    #[test]
    fn round_trip_keeps_geometry_and_values() {
        let v = oblique_volume();
        for bytes in [encode(&v, "mask"), encode_gz(&v, "mask")] {
            let back = decode(&bytes).unwrap();
            assert_eq!(back.description, "mask");
            assert_eq!(back.volume.geometry.dims, v.geometry.dims);
            for (p, q) in back.volume.geometry.corners().iter().zip(v.geometry.corners().iter()) {
                for a in 0..3 {
                    assert!((p[a] - q[a]).abs() < 1e-4, "{p:?} vs {q:?}");
                }
            }
            let vals: Vec<u8> = back.volume.data.iter().map(|&x| x as u8).collect();
            assert_eq!(vals, v.data);
        }
    }

    #[test]
    fn qform_alone_gives_the_same_corners() {
        let v = oblique_volume();
        let mut bytes = encode(&v, "");
        bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // drop the sform
        let back = decode(&bytes).unwrap();
        for (p, q) in back.volume.geometry.corners().iter().zip(v.geometry.corners().iter()) {
            for a in 0..3 {
                assert!((p[a] - q[a]).abs() < 1e-4, "{p:?} vs {q:?}");
            }
        }
    }

    #[test]
    fn left_handed_grid_survives_qform() {
        let mut v = oblique_volume();
        v.geometry.normal = crate::geometry::scale(v.geometry.normal, -1.0);
        let mut bytes = encode(&v, "");
        bytes[254..256].copy_from_slice(&0i16.to_le_bytes());
        let back = decode(&bytes).unwrap();
        for (p, q) in back.volume.geometry.corners().iter().zip(v.geometry.corners().iter()) {
            for a in 0..3 {
                assert!((p[a] - q[a]).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn truncated_and_foreign_bytes_are_errors() {
        let v = oblique_volume();
        let bytes = encode(&v, "");
        assert!(matches!(decode(&bytes[..200]), Err(NiftiError::Truncated { .. })));
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(NiftiError::Truncated { .. })));
        assert!(matches!(decode(&[0u8; 400]), Err(NiftiError::NotNifti(0))));
    }
}
