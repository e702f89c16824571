//! A minimal C-STORE SCU: sends Part 10 files over one association, as a PACS router would.
//!
//! It exists for the throughput benchmark and for tests that need a sender faster than DCMTK's
//! `storescu`; the worker itself only receives. Each file's data set is sent as stored, in the
//! transfer syntax its meta group names (no transcoding), so a file whose syntax the SCP did not
//! accept is refused before anything is sent.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTable;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use renal_dicom::read::text;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("association with {addr} failed: {reason}")]
    Associate { addr: String, reason: String },
    #[error("{path}: not a DICOM Part 10 file: {reason}")]
    NotPart10 { path: String, reason: String },
    #[error("{path}: the SCP accepted no presentation context for SOP class {class} in transfer syntax {syntax}")]
    NoContext { path: String, class: String, syntax: String },
    #[error("C-STORE of {path} failed: {reason}")]
    Transfer { path: String, reason: String },
    #[error("C-STORE of {path} answered with status {status:#06x}")]
    Status { path: String, status: u16 },
}

/// One open association to a storage SCP.
pub struct StoreScu {
    association: ClientAssociation<TcpStream>,
    /// (presentation context id, abstract syntax, transfer syntax) of every accepted context.
    contexts: Vec<(u8, String, String)>,
    next_message_id: u16,
}

/// Explicit VR little endian first: it is what the synthetic cohort and most scanners write.
const TRANSFER_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

impl StoreScu {
    /// Open an association from `calling_ae` to `called_ae` at `addr` (host:port), proposing
    /// one presentation context per SOP class in `classes`.
    pub fn connect(addr: &str, calling_ae: &str, called_ae: &str, classes: &[&str]) -> Result<StoreScu, ScuError> {
        let mut options = ClientAssociationOptions::new().calling_ae_title(calling_ae).called_ae_title(called_ae);
        for class in classes {
            options = options.with_presentation_context(*class, TRANSFER_SYNTAXES.to_vec());
        }
        let mut association = options
            .establish(addr)
            .map_err(|e| ScuError::Associate { addr: addr.to_string(), reason: e.to_string() })?;
        let contexts = association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.id, trim(&pc.abstract_syntax), trim(&pc.transfer_syntax)))
            .collect();
        // Each C-STORE waits for its response: small writes must not wait for delayed ACKs.
        let _ = association.inner_stream().set_nodelay(true);
        Ok(StoreScu { association, contexts, next_message_id: 1 })
    }

    /// Send one Part 10 file and wait for its response; success (0x0000) and warnings
    /// (0xB000, 0xB007, 0xB006) are Ok, anything else an error.
    pub fn store_file(&mut self, path: &Path) -> Result<(), ScuError> {
        let shown = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| ScuError::NotPart10 { path: shown.clone(), reason: e.to_string() })?;
        self.store_bytes(&shown, &bytes)
    }

    /// Send one Part 10 file held in memory; `name` is used in errors only.
    pub fn store_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ScuError> {
        let not_part10 = |reason: String| ScuError::NotPart10 { path: name.to_string(), reason };
        if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
            return Err(not_part10("no DICM preamble".into()));
        }
        let mut reader = std::io::Cursor::new(&bytes[128..]);
        let meta = FileMetaTable::from_reader(&mut reader).map_err(|e| not_part10(e.to_string()))?;
        let dataset = &bytes[128 + reader.position() as usize..];
        let class = meta.media_storage_sop_class_uid().to_string();
        let instance = meta.media_storage_sop_instance_uid().to_string();
        let syntax = meta.transfer_syntax().to_string();
        let Some(&(pc, _, _)) = self.contexts.iter().find(|(_, c, t)| *c == class && *t == syntax) else {
            return Err(ScuError::NoContext { path: name.to_string(), class, syntax });
        };
        let transfer = |reason: String| ScuError::Transfer { path: name.to_string(), reason };
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let cmd = store_request(&class, &instance, id);
        self.association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: cmd,
                }],
            })
            .map_err(|e| transfer(e.to_string()))?;
        {
            // The writer splits the data set into PDUs of the SCP's maximum length.
            let mut writer = self.association.send_pdata(pc);
            writer.write_all(dataset).map_err(|e| transfer(e.to_string()))?;
            writer.finish().map_err(|e| transfer(e.to_string()))?;
        }
        let mut response = Vec::new();
        loop {
            match self.association.receive().map_err(|e| transfer(e.to_string()))? {
                Pdu::PData { data } => {
                    let mut done = false;
                    for pdv in data {
                        if pdv.value_type == PDataValueType::Command {
                            response.extend_from_slice(&pdv.data);
                            done |= pdv.is_last;
                        }
                    }
                    if done {
                        break;
                    }
                }
                Pdu::AbortRQ { .. } => return Err(transfer("the SCP aborted the association".into())),
                other => return Err(transfer(format!("unexpected PDU {other:?}"))),
            }
        }
        let rsp = InMemDicomObject::read_dataset_with_ts(&response[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| transfer(e.to_string()))?;
        let status: u16 = text(&rsp, tags::STATUS).parse().unwrap_or(0xFFFF);
        match status {
            0x0000 | 0xB000 | 0xB006 | 0xB007 => Ok(()),
            status => Err(ScuError::Status { path: name.to_string(), status }),
        }
    }

    /// Release the association politely.
    pub fn release(self) -> Result<(), ScuError> {
        self.association.release().map_err(|e| ScuError::Transfer { path: "(release)".into(), reason: e.to_string() })
    }
}

/// UIDs may arrive padded with a NUL to even length.
fn trim(uid: &str) -> String {
    uid.trim_end_matches('\0').to_string()
}

fn store_request(class: &str, instance: &str, message_id: u16) -> Vec<u8> {
    crate::scp::command(vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(instance)),
    ])
}
