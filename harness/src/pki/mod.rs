//! This run's PKI, as the ingress suite needs it: a CA, a server certificate for the
//! gateway host, a client certificate, and an unrelated CA with its own client
//! certificate for the negative case. Every certificate carries a subjectAltName
//! (rustls/webpki ignore the CN). Keys are written 0600 and never printed.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub const CA_ORGANIZATION: &str = "example Inc.";
pub const CA_COMMON_NAME: &str = "example.com";
pub const CLIENT_NAME: &str = "client.example.com";

/// The files a run writes under `<reports-dir>/pki/`.
pub mod files {
    pub const CA_CERT: &str = "ca.crt";
    pub const SERVER_CERT: &str = "server.crt";
    pub const SERVER_KEY: &str = "server.key";
    pub const CLIENT_CERT: &str = "client.crt";
    pub const CLIENT_KEY: &str = "client.key";
    pub const UNTRUSTED_CA_CERT: &str = "untrusted-ca.crt";
    pub const UNTRUSTED_CLIENT_CERT: &str = "untrusted-client.crt";
    pub const UNTRUSTED_CLIENT_KEY: &str = "untrusted-client.key";
}

/// PEM texts of the run's PKI. `Debug` is implemented by hand so keys never reach a log.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    pub untrusted_ca_cert: String,
    pub untrusted_client_cert: String,
    pub untrusted_client_key: String,
    /// The folder the files were written to, once written.
    pub dir: Option<PathBuf>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("keys", &"<redacted>")
            .finish()
    }
}

fn validity(params: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that disagree between the harness and the cluster.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(30);
}

fn ca_params(organization: &str, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    params
}

fn leaf_params(
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "ACMEorg");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    validity(&mut params);
    Ok(params)
}

impl Pki {
    /// Issues a fresh PKI for the gateway host (e.g. `sentences.example.com`).
    pub fn issue(server_host: &str) -> Result<Pki, String> {
        let fail = |what: &str, e: rcgen::Error| format!("cannot issue the {what}: {e}");
        let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
        let ca = CertifiedIssuer::self_signed(ca_params(CA_ORGANIZATION, CA_COMMON_NAME), ca_key)
            .map_err(|e| fail("CA certificate", e))?;

        let server_key = KeyPair::generate().map_err(|e| fail("server key", e))?;
        let server = leaf_params(server_host, ExtendedKeyUsagePurpose::ServerAuth)
            .and_then(|p| p.signed_by(&server_key, &ca))
            .map_err(|e| fail("server certificate", e))?;

        let client_key = KeyPair::generate().map_err(|e| fail("client key", e))?;
        let client = leaf_params(CLIENT_NAME, ExtendedKeyUsagePurpose::ClientAuth)
            .and_then(|p| p.signed_by(&client_key, &ca))
            .map_err(|e| fail("client certificate", e))?;

        let other_ca_key = KeyPair::generate().map_err(|e| fail("untrusted CA key", e))?;
        let other_ca = CertifiedIssuer::self_signed(
            ca_params("untrusted Inc.", "untrusted.example.org"),
            other_ca_key,
        )
        .map_err(|e| fail("untrusted CA certificate", e))?;
        let other_client_key = KeyPair::generate().map_err(|e| fail("untrusted client key", e))?;
        let other_client = leaf_params(CLIENT_NAME, ExtendedKeyUsagePurpose::ClientAuth)
            .and_then(|p| p.signed_by(&other_client_key, &other_ca))
            .map_err(|e| fail("untrusted client certificate", e))?;

        Ok(Pki {
            ca_cert: ca.pem(),
            server_cert: server.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
            untrusted_ca_cert: other_ca.pem(),
            untrusted_client_cert: other_client.pem(),
            untrusted_client_key: other_client_key.serialize_pem(),
            dir: None,
        })
    }

    /// Writes every file under `dir`; keys with mode 0600 from their creation.
    pub fn write(&mut self, dir: &Path) -> Result<(), String> {
        use files::*;
        let entries: [(&str, &str, bool); 8] = [
            (CA_CERT, &self.ca_cert, false),
            (SERVER_CERT, &self.server_cert, false),
            (SERVER_KEY, &self.server_key, true),
            (CLIENT_CERT, &self.client_cert, false),
            (CLIENT_KEY, &self.client_key, true),
            (UNTRUSTED_CA_CERT, &self.untrusted_ca_cert, false),
            (UNTRUSTED_CLIENT_CERT, &self.untrusted_client_cert, false),
            (UNTRUSTED_CLIENT_KEY, &self.untrusted_client_key, true),
        ];
        for (name, text, private) in entries {
            crate::report::write_atomically(&dir.join(name), text.as_bytes(), private)?;
        }
        self.dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// Path of one of [`files`] once written (for the curl line of the report).
    pub fn path(&self, file: &str) -> String {
        match &self.dir {
            Some(dir) => dir.join(file).display().to_string(),
            None => file.to_string(),
        }
    }

    /// The values the Secret manifest template takes (base64 of the PEM texts).
    pub fn template_values(&self) -> [(&'static str, String); 3] {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        [
            ("pki_ca_cert", b64(&self.ca_cert)),
            ("pki_server_cert", b64(&self.server_cert)),
            ("pki_server_key", b64(&self.server_key)),
        ]
    }
}
