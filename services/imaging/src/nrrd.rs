//! NRRD images (`.nrrd`, data attached) from bytes: what 3D Slicer and SimpleITK write for
//! segmentations.
//!
//! Handled: three spatial axes; types `uchar`/`char`/`short`/`ushort`/`int`/`uint`/`float`/
//! `double` (and their C spellings); `raw`, `gzip` and `ascii` encodings; either endianness;
//! `space` left-posterior-superior (LPS, as DICOM) or right-anterior-superior (RAS, converted
//! here); `space directions` and `space origin`. Detached data (`data file:`) and 4D images are
//! refused with a reason, as is anything else this reader would have to guess at.

use crate::geometry::{norm, scale, Geometry, Vec3};
use crate::volume::Volume;
use std::io::Read;

/// Why NRRD bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NrrdError {
    /// The first line is not `NRRD000n`.
    #[error("not an NRRD file (no NRRD magic)")]
    NotNrrd,
    /// A required field is absent.
    #[error("NRRD header has no `{0}` field")]
    MissingField(&'static str),
    /// A field has a value this reader does not handle, or cannot parse.
    #[error("NRRD field `{field}`: {reason}")]
    BadField { field: String, reason: String },
    /// Fewer data bytes than the header promises.
    #[error("NRRD data is truncated: {have} bytes, {need} needed")]
    Truncated { have: usize, need: usize },
    /// The gzip layer failed.
    #[error("NRRD gzip data: {0}")]
    Gzip(#[from] std::io::Error),
}

fn bad(field: &str, reason: impl Into<String>) -> NrrdError {
    NrrdError::BadField { field: field.into(), reason: reason.into() }
}

/// Reads one value from its bytes (first `width` of 8 used), big-endian when the flag is set.
type ValueReader = fn([u8; 8], bool) -> f64;

/// Bytes per value and a reader for one value, from the NRRD type name.
fn value_type(name: &str) -> Option<(usize, ValueReader)> {
    fn take<const N: usize>(b: [u8; 8]) -> [u8; N] {
        b[..N].try_into().expect("width within 8")
    }
    let t: (usize, ValueReader) = match name {
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => (1, |b, _| f64::from(b[0])),
        "signed char" | "int8" | "int8_t" | "char" => (1, |b, _| f64::from(b[0] as i8)),
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
            (2, |b, be| f64::from(if be { i16::from_be_bytes(take(b)) } else { i16::from_le_bytes(take(b)) }))
        }
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => {
            (2, |b, be| f64::from(if be { u16::from_be_bytes(take(b)) } else { u16::from_le_bytes(take(b)) }))
        }
        "int" | "signed int" | "int32" | "int32_t" => {
            (4, |b, be| f64::from(if be { i32::from_be_bytes(take(b)) } else { i32::from_le_bytes(take(b)) }))
        }
        "uint" | "unsigned int" | "uint32" | "uint32_t" => {
            (4, |b, be| f64::from(if be { u32::from_be_bytes(take(b)) } else { u32::from_le_bytes(take(b)) }))
        }
        "float" => (4, |b, be| f64::from(if be { f32::from_be_bytes(take(b)) } else { f32::from_le_bytes(take(b)) })),
        "double" => (8, |b, be| if be { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }),
        _ => return None,
    };
    Some(t)
}

/// `(a,b,c)` to a vector.
fn parse_vector(field: &str, text: &str) -> Result<Vec3, NrrdError> {
    let inner = text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| bad(field, text))?;
    let parts: Vec<f64> =
        inner.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad(field, text))?;
    match parts[..] {
        [x, y, z] if parts.iter().all(|v| v.is_finite()) => Ok([x, y, z]),
        _ => Err(bad(field, format!("{text}: want three finite numbers"))),
    }
}

/// Decode an NRRD file with attached data. Values come back as `f32`; geometry in LPS.
pub fn decode(bytes: &[u8]) -> Result<Volume<f32>, NrrdError> {
    if !bytes.starts_with(b"NRRD000") {
        return Err(NrrdError::NotNrrd);
    }
    // The header ends at the first empty line; the data follows it.
    let mut fields = std::collections::HashMap::new();
    let mut at = 0;
    let mut first = true;
    loop {
        let end =
            bytes[at..].iter().position(|&b| b == b'\n').map(|p| at + p).ok_or(NrrdError::MissingField("data"))?;
        let line = String::from_utf8_lossy(&bytes[at..end]).trim_end_matches('\r').to_string();
        at = end + 1;
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            break;
        }
        if line.starts_with('#') || line.contains(":=") {
            continue; // comments and key/value pairs carry nothing geometric
        }
        let (k, v) = line.split_once(": ").ok_or_else(|| bad(&line, "not `field: value`"))?;
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let field = |name: &'static str| fields.get(name).map(String::as_str).ok_or(NrrdError::MissingField(name));
    if fields.contains_key("data file") || fields.contains_key("datafile") {
        return Err(bad("data file", "detached data is not supported; save with the data attached (.nrrd)"));
    }
    let dimension: usize =
        field("dimension")?.parse().map_err(|_| bad("dimension", field("dimension").unwrap_or("")))?;
    if dimension != 3 {
        return Err(bad("dimension", format!("{dimension}; only 3D images are read")));
    }
    let sizes: Vec<usize> = field("sizes")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad("sizes", field("sizes").unwrap_or("")))?;
    if sizes.len() != 3 || sizes.iter().any(|&s| s == 0 || s > 1 << 16) {
        return Err(bad("sizes", format!("{sizes:?}: want three extents in 1..=65536")));
    }
    let type_name = field("type")?;
    let (width, read_value) = value_type(type_name).ok_or_else(|| bad("type", type_name))?;
    let big_endian = match fields.get("endian").map(String::as_str) {
        None | Some("little") => false,
        Some("big") => true,
        Some(other) => return Err(bad("endian", other)),
    };

    // Geometry: LPS is DICOM's frame; RAS flips x and y.
    let flip = match fields.get("space").map(String::as_str) {
        Some("left-posterior-superior") | Some("LPS") => [1.0, 1.0, 1.0],
        Some("right-anterior-superior") | Some("RAS") => [-1.0, -1.0, 1.0],
        Some(other) => return Err(bad("space", format!("{other}; want LPS or RAS"))),
        None => return Err(NrrdError::MissingField("space")),
    };
    let to_lps = |v: Vec3| [v[0] * flip[0], v[1] * flip[1], v[2] * flip[2]];
    let directions_text = field("space directions")?;
    let directions: Vec<Vec3> = directions_text
        .split(')')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_vector("space directions", &format!("{s})")))
        .collect::<Result<_, _>>()?;
    if directions.len() != 3 {
        return Err(bad("space directions", format!("{directions_text}: want three vectors")));
    }
    let origin = to_lps(parse_vector("space origin", field("space origin")?)?);
    let mut axes = [[0.0; 3]; 3];
    let mut spacing_mm = [0.0; 3];
    for (a, d) in directions.iter().enumerate() {
        let length = norm(*d);
        if length <= 0.0 {
            return Err(bad("space directions", format!("axis {a} has zero length")));
        }
        spacing_mm[a] = length;
        axes[a] = to_lps(scale(*d, 1.0 / length));
    }
    let geometry = Geometry {
        dims: [sizes[0], sizes[1], sizes[2]],
        spacing_mm,
        origin_mm: origin,
        row_dir: axes[0],
        col_dir: axes[1],
        normal: axes[2],
    };

    let count = sizes.iter().product::<usize>();
    let body = &bytes[at..];
    let encoding = field("encoding")?;
    let data = match encoding {
        "raw" | "gzip" | "gz" => {
            let raw;
            let payload = if encoding == "raw" {
                body
            } else {
                let mut out = Vec::with_capacity(count * width);
                flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out)?;
                raw = out;
                &raw[..]
            };
            let need = count * width;
            if payload.len() < need {
                return Err(NrrdError::Truncated { have: payload.len(), need });
            }
            // Raw data that is longer than needed sits at the end of the file (NRRD's byte skip -1).
            let start = if encoding == "raw" { payload.len() - need } else { 0 };
            payload[start..start + need]
                .chunks_exact(width)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..width].copy_from_slice(c);
                    read_value(b, big_endian) as f32
                })
                .collect::<Vec<f32>>()
        }
        "ascii" | "text" | "txt" => {
            let text = String::from_utf8_lossy(body);
            let values: Vec<f32> = text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad("encoding", "ascii data has a non-number"))?;
            if values.len() < count {
                return Err(NrrdError::Truncated { have: values.len(), need: count });
            }
            values[..count].to_vec()
        }
        other => return Err(bad("encoding", format!("{other}; want raw, gzip or ascii"))),
    };
    Ok(Volume { geometry, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(extra: &str) -> String {
        format!(
            "NRRD0004\n# a comment\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 2 1 2\n\
             space directions: (-0.5,0,0) (0,2,0) (0,0,3)\nkinds: domain domain domain\nendian: little\n\
             space origin: (10,20,30)\n{extra}"
        )
    }

    #[test]
    fn raw_little_endian_ras_becomes_lps() {
        let mut bytes = header("encoding: raw\n\n").into_bytes();
        for v in [1i16, -2, 300, 4] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let v = decode(&bytes).unwrap();
        assert_eq!(v.data, vec![1.0, -2.0, 300.0, 4.0]);
        assert_eq!(v.geometry.dims, [2, 1, 2]);
        assert_eq!(v.geometry.spacing_mm, [0.5, 2.0, 3.0]);
        assert_eq!(v.geometry.origin_mm, [-10.0, -20.0, 30.0]);
        assert_eq!(v.geometry.row_dir, [1.0, 0.0, 0.0]);
        assert_eq!(v.geometry.col_dir, [0.0, -1.0, 0.0]);
    }

    #[test]
    fn ascii_and_gzip_read_the_same_values() {
        let ascii = decode(header("encoding: ascii\n\n1 -2\n300 4\n").as_bytes()).unwrap();
        let mut gz = header("encoding: gzip\n\n").into_bytes();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for v in [1i16, -2, 300, 4] {
            std::io::Write::write_all(&mut enc, &v.to_le_bytes()).unwrap();
        }
        gz.extend(enc.finish().unwrap());
        assert_eq!(decode(&gz).unwrap().data, ascii.data);
    }

    #[test]
    fn refusals_say_why() {
        assert!(matches!(decode(b"P5 2 2 255\n"), Err(NrrdError::NotNrrd)));
        let short = header("encoding: raw\n\n").into_bytes();
        assert!(matches!(decode(&short), Err(NrrdError::Truncated { have: 0, need: 8 })));
        let detached = header("data file: mask.raw\nencoding: raw\n\n");
        assert!(decode(detached.as_bytes()).unwrap_err().to_string().contains("detached"));
        let four_d = header("encoding: raw\n\n").replace("dimension: 3", "dimension: 4");
        assert!(decode(four_d.as_bytes()).unwrap_err().to_string().contains("only 3D"));
        let odd_type = header("encoding: raw\n\n").replace("type: short", "type: block");
        assert!(decode(odd_type.as_bytes()).unwrap_err().to_string().contains("block"));
        let no_space = header("encoding: raw\n\n").replace("space: right-anterior-superior\n", "");
        assert!(matches!(decode(no_space.as_bytes()), Err(NrrdError::MissingField("space"))));
    }
}
