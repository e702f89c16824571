//! Keyed pseudonyms: every identity the pipeline derives from a hospital's identifiers, in one
//! place, under the deployment's secret. Ingest de-identifies instances with them; label intake
//! turns a hospital's accession numbers into the lesion ids ingest gave the same studies.
//!
//! ```
//! let keys = renal_base::keys::Keys::new(b"deployment secret");
//! let id = keys.lesion_id("MAY", "A123456");
//! assert!(id.starts_with("MAY-") && !id.contains("A123456"));
//! assert_eq!(id, keys.lesion_id("MAY", "A123456"));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Derivations under the deployment's secret. Each kind of value has its own domain, so a
/// patient ID and an accession number that happen to be equal map to unrelated pseudonyms.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)") // never the secret
    }
}

impl Keys {
    /// Keys for this secret.
    pub fn new(secret: &[u8]) -> Self {
        Keys { secret: secret.to_vec() }
    }

    /// Keys for the secret in environment variable `var`; none when it is unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().filter(|s| !s.is_empty()).map(|s| Keys::new(s.as_bytes()))
    }

    fn mac(&self, domain: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        for p in parts {
            mac.update(&[0]);
            mac.update(p.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// The patient pseudonym, 64 hex digits: HMAC-SHA256 of the site, a NUL and the patient
    /// ID. Stable for a deployment (so lesions group by patient), meaningless without the
    /// secret; the same framing as before the other derivations existed, so pseudonyms made
    /// earlier still match.
    pub fn patient(&self, site: &str, patient_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(site.as_bytes());
        mac.update(&[0]);
        mac.update(patient_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The accession pseudonym (16 hex digits, what AccessionNumber becomes).
    pub fn accession(&self, site: &str, accession: &str) -> String {
        hex::encode(&self.mac("renal:accession", &[site, accession])[..8])
    }

    /// The remapped UID: `2.25.` and a version 8 UUID from the HMAC of `uid`.
    pub fn uid(&self, uid: &str) -> String {
        let mut b: [u8; 16] = self.mac("renal:uid", &[uid])[..16].try_into().expect("16 of 32 bytes");
        b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
        format!("2.25.{}", u128::from_be_bytes(b))
    }

    /// Days every date of this patient moves back: 1 to 3,650.
    pub fn date_shift_days(&self, site: &str, patient_id: &str) -> i64 {
        let m = self.mac("renal:date-shift", &[site, patient_id]);
        1 + (u64::from_be_bytes(m[..8].try_into().expect("8 bytes")) % 3_650) as i64
    }

    /// The lesion id ingest gives a study of `site` with this accession number: see
    /// [`case_id`].
    pub fn lesion_id(&self, site: &str, accession: &str) -> String {
        case_id(site, &self.accession(site, accession))
    }

    /// A reader code for a segmentation author that is a name, not a code: `RD` and 6 hex.
    pub fn reader(&self, site: &str, name: &str) -> String {
        format!("RD{}", hex::encode(&self.mac("renal:reader", &[site, name])[..3]))
    }
}

/// The lesion id of a study: the site code and its accession pseudonym. Labels exported
/// against the hospital's accession numbers reach their lesion through the same derivation.
pub fn case_id(site: &str, accession_pseudonym: &str) -> String {
    format!("{site}-{accession_pseudonym}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patient_pseudonym_is_rfc_4231_hmac_and_separates_sites_and_secrets() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"; our framing puts
        // a NUL between site and patient ID, so split the data at a NUL-free point and check the
        // framing separately.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut framed = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        framed.update(b"HUP\x00123");
        assert_eq!(Keys::new(b"k").patient("HUP", "123"), hex::encode(framed.finalize().into_bytes()));
        assert_ne!(Keys::new(b"k").patient("HUP", "123"), Keys::new(b"k").patient("MAY", "123"));
        assert_ne!(Keys::new(b"k").patient("HUP", "123"), Keys::new(b"other").patient("HUP", "123"));
    }

    #[test]
    fn each_kind_of_identity_has_its_own_domain() {
        let keys = Keys::new(b"k");
        assert_ne!(keys.accession("HUP", "123"), keys.patient("HUP", "123")[..16]);
        assert_eq!(keys.accession("HUP", "123").len(), 16);
        assert_eq!(keys.lesion_id("HUP", "123"), format!("HUP-{}", keys.accession("HUP", "123")));
        assert_ne!(keys.lesion_id("HUP", "123"), keys.lesion_id("MAY", "123"), "accessions repeat across sites");
        assert!(format!("{keys:?}").contains(".."), "Debug never shows the secret");
    }
}
