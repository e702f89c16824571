//! Value representations that need care: decimal strings and UIDs.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

/// A decimal string (VR DS) of at most 16 characters, as the standard requires.
pub fn ds(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    for decimals in (0..=8).rev() {
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        if s.len() <= 16 {
            return if s == "-0" { "0".into() } else { s };
        }
    }
    format!("{v:.3e}")
}

/// Backslash-joined decimal strings for a multi-valued DS.
pub fn ds_multi(values: &[f64]) -> String {
    values.iter().map(|&v| ds(v)).collect::<Vec<_>>().join("\\")
}

/// A UID under the `2.25` root (ISO/IEC 9834-8: a UUID written as one decimal integer).
pub fn uid_from_u128(n: u128) -> String {
    format!("2.25.{n}")
}

pub(crate) fn str_el(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

pub(crate) fn us_el(tag: Tag, value: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

pub(crate) fn seq_el(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, dicom_core::value::DataSetSequence::from(items))
}

/// A coded concept item (code value, scheme designator, meaning).
pub(crate) fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    use dicom_dictionary_std::tags;
    InMemDicomObject::from_element_iter([
        str_el(tags::CODE_VALUE, VR::SH, value),
        str_el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        str_el(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_sixteen_characters_and_keep_precision() {
        assert_eq!(ds(1.5), "1.5");
        assert_eq!(ds(0.0), "0");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(-187.34375), "-187.34375");
        let long = ds(-123456.123456789);
        assert!(long.len() <= 16, "{long}");
        assert!((long.parse::<f64>().unwrap() + 123456.123456789).abs() < 1e-6);
        assert_eq!(ds_multi(&[1.0, -0.5]), "1\\-0.5");
    }

    #[test]
    fn uids_are_valid_and_short_enough() {
        let u = uid_from_u128(u128::MAX);
        assert!(u.len() <= 64);
        assert!(u.chars().all(|c| c.is_ascii_digit() || c == '.'));
    }
}
