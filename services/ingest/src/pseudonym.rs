//! Patient identity stays at the edge: a keyed pseudonym replaces the patient ID.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `site` and `patient_id` under the deployment's secret, lower-case hex.
/// Stable for a deployment (so lesions group by patient), meaningless without the secret.
pub fn pseudonym(secret: &[u8], site: &str, patient_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(site.as_bytes());
    mac.update(&[0]);
    mac.update(patient_id.as_bytes());
    renal_base::hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_case_2_and_separates_sites() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Our framing: site, NUL, patient id.
        assert_eq!(pseudonym(b"Jefe", "what do ya want", " for nothing?").len(), 64);
        assert_ne!(pseudonym(b"k", "HUP", "123"), pseudonym(b"k", "MAY", "123"));
        assert_ne!(pseudonym(b"k", "HUP", "123"), pseudonym(b"other", "HUP", "123"));
        assert_eq!(pseudonym(b"k", "HUP", "123"), pseudonym(b"k", "HUP", "123"));
    }
}
