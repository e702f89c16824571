//! A check of a DICOM file's declared lengths before it is parsed.
//!
//! dicom-rs's parser reserves and zero-fills each element's declared length before reading its
//! value, so a 20 KB file that declares a 2 GB element makes it take 2 GB (found by fuzzing:
//! `fuzz/regressions/`). [`declared_lengths_fit`] walks the elements of a file held in memory
//! (file meta group, then the data set in its transfer syntax: explicit or implicit VR, little or
//! big endian, nested sequences and items, encapsulated pixel data fragments) and refuses the file
//! when any defined length runs past its end. A deflated data set is not walked (its lengths
//! refer to the inflated bytes).

use dicom_core::dictionary::DataDictionary;
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// VRs whose explicit-VR header has two reserved bytes and a 4-byte length.
fn long_header(vr: &[u8]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    big_endian: bool,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn u16(&mut self) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(self.at..self.at + 2)?.try_into().ok()?;
        self.at += 2;
        Some(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(self.at..self.at + 4)?.try_into().ok()?;
        self.at += 4;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
}

/// Whether every element of the DICOM file in `bytes` (with or without its 128-byte preamble)
/// declares a length that fits in the bytes after it; the error names the first that does not.
/// A file cut short in an element's header is left to the parser, which reports it.
pub fn declared_lengths_fit(bytes: &[u8]) -> Result<(), String> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" { &bytes[132..] } else { bytes };
    let body = body.strip_prefix(b"DICM").unwrap_or(body);
    // The file meta group: explicit VR little endian, group 0002 only.
    let mut c = Cursor { bytes: body, at: 0, big_endian: false };
    let mut transfer_syntax = String::new();
    while c.left() >= 8 && body[c.at..c.at + 2] == [0x02, 0x00] {
        let element = u16::from_le_bytes([body[c.at + 2], body[c.at + 3]]);
        c.at += 4;
        let vr = [body[c.at], body[c.at + 1]];
        c.at += 2;
        let len = if long_header(&vr) {
            c.at += 2;
            c.u32().ok_or("file meta cut short")?
        } else {
            u32::from(c.u16().ok_or("file meta cut short")?)
        };
        if len as usize > c.left() {
            return Err(format!("file meta element (0002,{element:04X}) declares {len} bytes, {} remain", c.left()));
        }
        if element == 0x0010 {
            transfer_syntax =
                String::from_utf8_lossy(&body[c.at..c.at + len as usize]).trim_end_matches(['\0', ' ']).into();
        }
        c.at += len as usize;
    }
    let (explicit, big_endian) = match transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => (false, false),
        "1.2.840.10008.1.2.2" => (true, true),
        "1.2.840.10008.1.2.1.99" => return Ok(()), // deflated: lengths count inflated bytes
        _ => (true, false),
    };
    walk(&mut Cursor { bytes: body, at: c.at, big_endian }, explicit)
}

/// Walk the data set from `c`: items of sequences are walked into, fragments of encapsulated
/// pixel data are skipped.
fn walk(c: &mut Cursor<'_>, explicit: bool) -> Result<(), String> {
    // Depth of undefined-length values whose items are fragments (encapsulated pixel data).
    let mut fragments = 0usize;
    while c.left() >= 8 {
        let (group, element) = (c.u16().unwrap_or(0), c.u16().unwrap_or(0));
        let tag = (group, element);
        if group == 0xFFFE {
            let len = c.u32().unwrap_or(0);
            if tag == SEQUENCE_END && fragments > 0 {
                fragments -= 1;
            } else if tag == ITEM && len != UNDEFINED {
                if len as usize > c.left() {
                    return Err(format!("an item declares {len} bytes, {} remain", c.left()));
                }
                if fragments > 0 {
                    c.at += len as usize; // a pixel data fragment: bytes, not elements
                }
            } else if tag != ITEM && tag != ITEM_END && tag != SEQUENCE_END {
                return Err(format!("({group:04X},{element:04X}) is not an item or delimiter"));
            }
            continue;
        }
        let (vr, len): ([u8; 2], u32) = if explicit {
            if c.left() < 4 {
                return Ok(());
            }
            let vr = [c.bytes[c.at], c.bytes[c.at + 1]];
            c.at += 2;
            if long_header(&vr) {
                c.at += 2;
                match c.u32() {
                    Some(l) => (vr, l),
                    None => return Ok(()),
                }
            } else {
                match c.u16() {
                    Some(l) => (vr, u32::from(l)),
                    None => return Ok(()),
                }
            }
        } else {
            let vr = match StandardDataDictionary.by_tag(Tag(group, element)) {
                Some(e) if e.vr.relaxed() == dicom_core::VR::SQ => *b"SQ",
                _ => *b"UN",
            };
            match c.u32() {
                Some(l) => (vr, l),
                None => return Ok(()),
            }
        };
        if len == UNDEFINED {
            match &vr {
                b"SQ" => {}                         // items follow, walked into
                b"UN" if explicit => return Ok(()), // an implicit-VR data set inside: not walked
                _ => fragments += 1,                // encapsulated pixel data: fragments follow
            }
            continue;
        }
        if len as usize > c.left() {
            return Err(format!("element ({group:04X},{element:04X}) declares {len} bytes, {} remain", c.left()));
        }
        if &vr != b"SQ" {
            c.at += len as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explicit-VR little-endian Part 10 file: meta, then `dataset`.
    fn file(dataset: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        f.extend_from_slice(ts);
        f.extend_from_slice(dataset);
        f
    }

    fn short(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&group.to_le_bytes());
        e.extend_from_slice(&element.to_le_bytes());
        e.extend_from_slice(vr);
        e.extend_from_slice(&(value.len() as u16).to_le_bytes());
        e.extend_from_slice(value);
        e
    }

    #[test]
    fn a_length_past_the_end_is_refused_and_fitting_ones_pass() {
        let good = [short(0x0010, 0x0010, b"PN", b"ANON"), short(0x0028, 0x0010, b"US", &[64, 0])].concat();
        assert_eq!(declared_lengths_fit(&file(&good)), Ok(()));
        // OB with a 4-byte length of 2 GB, 4 bytes of value present.
        let mut huge = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        huge.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        let err = declared_lengths_fit(&file(&[good.clone(), huge].concat())).unwrap_err();
        assert!(err.contains("(7FE0,0010) declares 2147483648 bytes, 4 remain"), "{err}");
    }

    #[test]
    fn sequences_are_walked_into_and_fragments_skipped() {
        // SQ of undefined length with one item (undefined length) holding an element that
        // declares too much: found inside the sequence.
        let mut sq = vec![0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        sq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let inner_bad = [0x08, 0x00, 0x50, 0x11, b'U', b'I', 0xFF, 0x7F];
        let tail = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
        let bad = [sq.clone(), inner_bad.to_vec(), tail.to_vec()].concat();
        assert!(declared_lengths_fit(&file(&bad)).unwrap_err().contains("(0008,1150)"));
        // Encapsulated pixel data: an offset table and a fragment whose bytes look like an
        // element declaring 4 GB, which must not be read as one.
        let mut px = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        px.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        let fragment = [0x10, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0xFE, 0xFF, 0xFF, 0xFF];
        px.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, fragment.len() as u8, 0, 0, 0]);
        px.extend_from_slice(&fragment);
        px.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(declared_lengths_fit(&file(&px)), Ok(()));
        // And a fragment longer than the file is refused.
        let mut cut = px[..px.len() - 8 - fragment.len()].to_vec();
        cut.extend_from_slice(&[0x01, 0x02]);
        assert!(declared_lengths_fit(&file(&cut)).is_err());
    }
}
