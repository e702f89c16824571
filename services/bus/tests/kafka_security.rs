//! TLS and SASL settings from a worker's `[kafka]` section reach librdkafka, and the secrets
//! they need come from the environment, never from the file or a log line.
//!
//! tansu, the tests' broker, speaks neither TLS nor SASL, so this is the config-level test: the
//! settings librdkafka is given are listed, librdkafka accepts them (it is built with OpenSSL),
//! and a CA file it cannot read fails the client with librdkafka's own error naming the setting.

use renal_bus::{BusError, KafkaBus, KafkaConfig};
use std::path::Path;
use std::process::Command;

/// A self-signed CA certificate written by the openssl command-line tool.
fn ca(dir: &Path) -> std::path::PathBuf {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=renal-test-ca"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cert
}

fn secured(ca: &Path) -> KafkaConfig {
    KafkaConfig {
        security_protocol: "sasl_ssl".into(),
        ssl_ca_location: Some(ca.to_path_buf()),
        sasl_mechanism: Some("SCRAM-SHA-512".into()),
        sasl_username: Some("renal-ingest".into()),
        sasl_password_env: Some("RENAL_TEST_KAFKA_PASSWORD".into()),
        ..KafkaConfig::local("127.0.0.1:9", "renal-ingest")
    }
}

#[test]
fn tls_and_sasl_settings_reach_librdkafka_and_the_password_stays_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = secured(&ca(dir.path()));
    config.validate().unwrap();
    std::env::remove_var("RENAL_TEST_KAFKA_PASSWORD");
    let missing = config.client_config().unwrap_err().to_string();
    assert!(missing.contains("RENAL_TEST_KAFKA_PASSWORD is not set"), "{missing}");

    std::env::set_var("RENAL_TEST_KAFKA_PASSWORD", "hunter2-not-in-files");
    let client = config.client_config().unwrap();
    for (key, want) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "renal-ingest"),
        ("sasl.password", "hunter2-not-in-files"),
        ("ssl.ca.location", config.ssl_ca_location.as_ref().unwrap().to_str().unwrap()),
    ] {
        assert_eq!(client.get(key), Some(want), "{key}");
    }
    assert!(!format!("{config:?}").contains("hunter2"), "the settings never hold the password");
    // librdkafka takes every setting (a producer makes no connection until its first send).
    KafkaBus::new(config.clone()).unwrap_or_else(|e| panic!("librdkafka refused the settings: {e}"));

    // A CA file that is not a certificate: librdkafka reads it at once and says so.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let err = KafkaBus::new(KafkaConfig { ssl_ca_location: Some(garbage), ..config.clone() }).err().unwrap();
    assert!(matches!(err, BusError::Fatal(_)), "{err}");
    assert!(err.to_string().contains("ssl.ca.location"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let good = secured(&ca(dir.path()));
    let refused = |c: KafkaConfig, says: &str| {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    };
    refused(KafkaConfig { security_protocol: "tls".into(), ..good.clone() }, "is not plaintext, ssl");
    refused(KafkaConfig { security_protocol: "ssl".into(), ..good.clone() }, "sasl_mechanism goes with");
    refused(KafkaConfig { sasl_mechanism: Some("GSSAPI".into()), ..good.clone() }, "is not PLAIN");
    refused(KafkaConfig { sasl_password_env: None, ..good.clone() }, "sasl_password_env");
    refused(KafkaConfig { ssl_ca_location: Some(dir.path().join("absent.pem")), ..good.clone() }, "is not a file");
    let plain = KafkaConfig::local("127.0.0.1:9", "x");
    refused(KafkaConfig { ssl_ca_location: good.ssl_ca_location.clone(), ..plain.clone() }, "go with an ssl");
    plain.validate().unwrap();
    assert_eq!(plain.client_config().unwrap().get("security.protocol"), Some("plaintext"));
}
