//! A DICOM C-STORE SCP that lands received instances in a site's drop folder.
//!
//! Each received instance is written as a Part 10 file under a dot-name and renamed into the
//! drop folder before the C-STORE response reports success, so the drop-folder worker picks it
//! up like any other file and never sees half an instance. With [`Durability::Fsync`] (the
//! default) the file is fsynced before the rename, so a success response survives a power cut;
//! with [`Durability::PageCache`] it survives a crash of this process but not of the machine,
//! and the receiver is no longer bound by the disk's synced-write bandwidth (measured by
//! `renal bench cstore`). C-ECHO is answered. One thread per association, at most
//! `max_associations` at once: one more is rejected as transient ("local limit exceeded"), and
//! the sender retries. An association is accepted only when its called AE title is the
//! receiver's and, when the site has an allow list, its calling AE title is on it. With a
//! `tls` section the receiver speaks DICOM over TLS only, and with a client CA it requires
//! each sender to present a certificate that chains to it.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PDataValue, PDataValueType, Pdu, UserIdentity,
};

use crate::config::{ScpConfig, ScpTls};
use crate::events::AssociationEnded;
use renal_dicom::read::text;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Storage SOP classes accepted.
pub const ACCEPTED: [&str; 3] = [
    crate::instance::MR_IMAGE_STORAGE,
    crate::instance::ENHANCED_MR_IMAGE_STORAGE,
    crate::instance::SEGMENTATION_STORAGE,
];
/// Seconds an association may stay silent before it is closed.
pub const IDLE_TIMEOUT_S: u64 = 120;
const VERIFICATION: &str = "1.2.840.10008.1.1";
const TRANSFER_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// When a received instance counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// On stable storage (fsync) before the success response.
    #[default]
    Fsync,
    /// In the kernel's page cache before the success response.
    PageCache,
}

/// A running SCP; dropping it does not stop it, call [`Scp::stop`].
pub struct Scp {
    /// Bound address (port 0 in the request gives an ephemeral port).
    pub addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    /// Instances stored so far.
    pub stored: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Who may associate: the called AE title must be the receiver's, and the calling one on the
/// site's allow list when it has one.
#[derive(Debug, Clone)]
struct Allowed {
    calling: Vec<String>,
}

impl AccessControl for Allowed {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        } else if !self.calling.is_empty() && !self.calling.iter().any(|a| a.trim() == calling_ae_title.trim()) {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        } else {
            Ok(())
        }
    }
}

/// Counts an association as served until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answer an association over the limit with A-ASSOCIATE-RJ (transient, local limit exceeded)
/// without reading its request, and close it.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let _ = dicom_ul::write_pdu(&mut stream, &rj);
    let _ = stream.flush();
    // Let the request arrive and be discarded before closing, so the sender reads the reply
    // rather than a reset.
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(500)));
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 4096]);
}

/// The rustls server settings of a `tls` section: its certificate and key, and the client
/// verifier when it names a CA. Errors name the file and what is wrong with it.
pub fn tls_server_config(tls: &ScpTls) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, what: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: {what}", path.display()))
    };
    let certs = |path: &Path| -> std::io::Result<Vec<CertificateDer<'static>>> {
        let all: Result<Vec<_>, _> =
            CertificateDer::pem_file_iter(path).map_err(|e| bad(path, e.to_string()))?.collect();
        let all = all.map_err(|e| bad(path, e.to_string()))?;
        if all.is_empty() {
            return Err(bad(path, "no PEM certificate in it".into()));
        }
        Ok(all)
    };
    let chain = certs(&tls.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&tls.private_key).map_err(|e| bad(&tls.private_key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&tls.certificate, e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| bad(ca, e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| bad(&tls.certificate, e.to_string()))?;
    Ok(Arc::new(config))
}

impl Scp {
    /// Listen as `config` says, storing into `drop_folder`, the drop folder of its site (the
    /// label its associations are counted under). A `tls` section that cannot be loaded is an
    /// error here, at start-up.
    pub fn start(config: &ScpConfig, drop_folder: &Path) -> std::io::Result<Scp> {
        let tls = config.tls.as_ref().map(tls_server_config).transpose()?;
        let listener = TcpListener::bind(&config.bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stored = Arc::new(AtomicU64::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let (s, n, folder) = (stop.clone(), stored.clone(), drop_folder.to_path_buf());
        let (ae, site, durability, max) =
            (config.ae_title.clone(), config.site.clone(), config.durability, config.max_associations.max(1));
        let allowed = Allowed { calling: config.calling_ae_titles.clone() };
        std::fs::create_dir_all(&folder)?;
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let site = site.clone();
                        if active.fetch_add(1, Ordering::SeqCst) >= max {
                            active.fetch_sub(1, Ordering::SeqCst);
                            let error = Some(format!("more than {max} associations at once"));
                            renal_telemetry::emit(AssociationEnded { site: &site, outcome: "busy", error });
                            std::thread::spawn(move || refuse_busy(stream));
                            continue;
                        }
                        let slot = Slot(active.clone());
                        let (ae, n, allowed, tls) = (ae.clone(), n.clone(), allowed.clone(), tls.clone());
                        let target = Target { folder: folder.clone(), durability };
                        std::thread::spawn(move || {
                            let _slot = slot;
                            let _ = stream.set_nonblocking(false);
                            // Small responses must not wait for Nagle and delayed ACKs (~40 ms each).
                            let _ = stream.set_nodelay(true);
                            let (outcome, error) = match serve(stream, &ae, allowed, tls, &target, &n) {
                                Ok(()) => ("ok", None),
                                Err((outcome, e)) => (outcome, Some(e)),
                            };
                            renal_telemetry::emit(AssociationEnded { site: &site, outcome, error });
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Ok(Scp { addr, stop, stored, thread: Some(thread) })
    }

    /// Stop accepting associations (running ones finish).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn command(fields: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::from_element_iter(fields);
    let mut body = Vec::new();
    obj.write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).expect("command encodes");
    let mut out = Vec::with_capacity(body.len() + 12);
    // (0000,0000) CommandGroupLength, UL, implicit VR: tag, length 4, value.
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn response(field: u16, class: &str, instance: Option<&str>, message_id: u16, status: u16) -> Vec<u8> {
    let mut f = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field)),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0101u16)),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ];
    if let Some(i) = instance {
        f.push(DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(i)));
    }
    command(f)
}

/// Where and how an association's instances are stored.
struct Target {
    folder: PathBuf,
    durability: Durability,
}

fn store_file(to: &Target, class: &str, instance: &str, ts: &str, dataset: &[u8]) -> std::io::Result<PathBuf> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(ts)
        .build()
        .map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).map_err(std::io::Error::other)?;
    bytes.extend_from_slice(dataset);
    // The SOP instance UID names the file: digits and dots only, so no identifier leaks into paths.
    let safe: String = instance.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    let path = to.folder.join(format!("{safe}.dcm"));
    let tmp = to.folder.join(format!(".{safe}.part"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    if to.durability == Durability::Fsync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// How long a sender may take to send its whole TLS ClientHello.
const HELLO_TIMEOUT_MS: u64 = 10_000;

/// Wait until the connection's first bytes can be taken by dicom-ul, or say why not.
///
/// dicom-ul 0.10.1 built with TLS support (the `sync-tls` feature) loops forever, burning a core,
/// when a connection closes or goes silent before its first message is complete: its TLS
/// acceptor reads an empty stream again and again (for a TLS receiver; and for a plain one, where
/// it checks whether a failed first read was a TLS client). So nothing reaches it until there is
/// something to read: for a plain receiver a first byte that does not start a TLS record, for a
/// TLS receiver a whole first TLS record (the ClientHello).
fn first_message_ready(stream: &TcpStream, tls: bool) -> Result<(), String> {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(IDLE_TIMEOUT_S)));
    let mut head = [0u8; 5];
    let n = stream.peek(&mut head).map_err(|e| format!("nothing received: {e}"))?;
    if n == 0 {
        return Err("closed before sending anything".into());
    }
    let handshake = head[0] == 0x16; // a TLS handshake record
    match (tls, handshake) {
        (false, false) => return Ok(()),
        (false, true) => return Err("a TLS client on a receiver without TLS".into()),
        (true, false) => return Err("not a TLS handshake on a TLS receiver".into()),
        (true, true) => {}
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(HELLO_TIMEOUT_MS);
    let mut buf = vec![0u8; 5 + u16::MAX as usize];
    loop {
        let got = stream.peek(&mut buf).map_err(|e| format!("TLS handshake: {e}"))?;
        if got >= 5 && got >= 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize {
            return Ok(());
        }
        if got == 0 || std::time::Instant::now() > deadline {
            return Err("incomplete TLS ClientHello".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn serve(
    stream: TcpStream,
    ae_title: &str,
    allowed: Allowed,
    tls: Option<Arc<rustls::ServerConfig>>,
    to: &Target,
    stored: &AtomicU64,
) -> Result<(), (&'static str, String)> {
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(allowed)
        .ae_title(ae_title.to_string())
        .promiscuous(false)
        // A peer silent this long (a connection that never asks, a sender gone) frees its slot.
        .read_timeout(std::time::Duration::from_secs(IDLE_TIMEOUT_S));
    for class in ACCEPTED.iter().chain(std::iter::once(&VERIFICATION)) {
        options = options.with_abstract_syntax(*class);
    }
    for ts in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(ts);
    }
    first_message_ready(&stream, tls.is_some()).map_err(|e| ("refused", e))?;
    // Refused AE titles and unusable proposals end here, answered with A-ASSOCIATE-RJ; over TLS,
    // so do failed handshakes (no certificate, one from another CA, a plain connection).
    match tls {
        Some(config) => {
            let association =
                options.tls_config(config).establish_tls(stream).map_err(|e| ("refused", e.to_string()))?;
            exchange(association, to, stored)
        }
        None => exchange(options.establish(stream).map_err(|e| ("refused", e.to_string()))?, to, stored),
    }
}

/// Answer an established association's C-ECHO and C-STORE requests until it is released.
fn exchange<S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket>(
    mut association: dicom_ul::association::server::ServerAssociation<S>,
    to: &Target,
    stored: &AtomicU64,
) -> Result<(), (&'static str, String)> {
    let failed = |e: String| ("failed", e);
    let contexts: Vec<(u8, String)> =
        association.presentation_contexts().iter().map(|pc| (pc.id, pc.transfer_syntax.clone())).collect();
    let (mut cmd_bytes, mut data_bytes) = (Vec::new(), Vec::new());
    let mut pending: Option<(InMemDicomObject, u8)> = None;
    loop {
        match association.receive().map_err(|e| failed(e.to_string()))? {
            Pdu::PData { data } => {
                for pdv in data {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            cmd_bytes.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let cmd = InMemDicomObject::read_dataset_with_ts(
                                &cmd_bytes[..],
                                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                            )
                            .map_err(|e| failed(e.to_string()))?;
                            cmd_bytes.clear();
                            let field: u16 = text(&cmd, tags::COMMAND_FIELD).parse().unwrap_or(0);
                            let id: u16 = text(&cmd, tags::MESSAGE_ID).parse().unwrap_or(0);
                            if field == 0x0030 {
                                let rsp = response(0x8030, VERIFICATION, None, id, 0);
                                association
                                    .send(&Pdu::PData {
                                        data: vec![PDataValue {
                                            presentation_context_id: pdv.presentation_context_id,
                                            value_type: PDataValueType::Command,
                                            is_last: true,
                                            data: rsp,
                                        }],
                                    })
                                    .map_err(|e| failed(e.to_string()))?;
                            } else {
                                pending = Some((cmd, pdv.presentation_context_id));
                            }
                        }
                        PDataValueType::Data => {
                            data_bytes.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let Some((cmd, pc)) = pending.take() else {
                                return Err(failed("data set without a command".into()));
                            };
                            let class = text(&cmd, tags::AFFECTED_SOP_CLASS_UID);
                            let instance = text(&cmd, tags::AFFECTED_SOP_INSTANCE_UID);
                            let id: u16 = text(&cmd, tags::MESSAGE_ID).parse().unwrap_or(0);
                            let ts = contexts.iter().find(|c| c.0 == pc).map(|c| c.1.clone()).unwrap_or_default();
                            // 0x0000 success; 0xA700 out of resources (the sender will retry).
                            let status = match store_file(to, &class, &instance, &ts, &data_bytes) {
                                Ok(_) => {
                                    stored.fetch_add(1, Ordering::Relaxed);
                                    0x0000
                                }
                                Err(_) => 0xA700,
                            };
                            data_bytes.clear();
                            let rsp = response(0x8001, &class, Some(&instance), id, status);
                            association
                                .send(&Pdu::PData {
                                    data: vec![PDataValue {
                                        presentation_context_id: pc,
                                        value_type: PDataValueType::Command,
                                        is_last: true,
                                        data: rsp,
                                    }],
                                })
                                .map_err(|e| failed(e.to_string()))?;
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).map_err(|e| failed(e.to_string()))?;
                return Ok(());
            }
            Pdu::AbortRQ { .. } => return Ok(()),
            _ => {}
        }
    }
}
