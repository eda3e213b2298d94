//! The mesh's certificate authority, as istiod's built-in CA (a self-signed root,
//! `O=cluster.local`) signs workload certificates: one per service account, with the
//! SPIFFE ID `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` as its only
//! subject alternative name (a URI), for client and server authentication, valid for a
//! day (Istio: 24 h by default). Every proxy of a world trusts this one root
//! (`ROOTCA`); a world may hold a second, unrelated root to make proxies that do not
//! trust each other.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A workload's certificate and key, PEM.
#[derive(Clone, Debug)]
pub(crate) struct WorkloadCert {
    pub chain: String,
    pub key: String,
}

pub(crate) struct MeshCa {
    trust_domain: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    root: String,
    issued: Mutex<HashMap<(String, String), WorkloadCert>>,
}

impl MeshCa {
    pub fn new(trust_domain: &str) -> Result<MeshCa, String> {
        let fail = |what: &str, e: rcgen::Error| format!("the mesh CA cannot make its {what}: {e}");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("root", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| fail("root key", e))?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(|e| fail("root", e))?;
        let root = issuer.pem();
        Ok(MeshCa {
            trust_domain: trust_domain.to_string(),
            issuer,
            root,
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// The root certificate every proxy trusts (`ROOTCA`), PEM.
    pub fn root_pem(&self) -> &str {
        &self.root
    }

    pub fn spiffe_id(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.trust_domain
        )
    }

    /// The certificate of `namespace`/`service_account` (made once, then reused).
    pub fn workload(&self, namespace: &str, service_account: &str) -> Result<WorkloadCert, String> {
        let key = (namespace.to_string(), service_account.to_string());
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = issued.get(&key) {
            return Ok(c.clone());
        }
        let id = self.spiffe_id(namespace, service_account);
        let fail = |e: rcgen::Error| format!("the mesh CA cannot sign {id}: {e}");
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name = DistinguishedName::new();
        let uri = id.clone().try_into().map_err(fail)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time_now() - std::time::Duration::from_secs(60);
        params.not_after = time_now() + std::time::Duration::from_secs(24 * 3600);
        let key_pair = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key_pair, &self.issuer).map_err(fail)?;
        let made = WorkloadCert {
            chain: cert.pem(),
            key: key_pair.serialize_pem(),
        };
        issued.insert(key, made.clone());
        Ok(made)
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The CAs of a world: one root every revision's istiod signs with (istiods of one
/// namespace share `istio-ca-secret`, or a `cacerts` Secret), or, when revisions do
/// not share a root (a separate `cacerts` per revision, istiods in different
/// namespaces), one per revision.
pub(crate) struct CaSet {
    trust_domain: String,
    shared: Arc<MeshCa>,
    per_revision: Mutex<HashMap<String, Arc<MeshCa>>>,
}

impl CaSet {
    pub fn new(trust_domain: &str) -> Result<CaSet, String> {
        Ok(CaSet {
            trust_domain: trust_domain.to_string(),
            shared: Arc::new(MeshCa::new(trust_domain)?),
            per_revision: Mutex::new(HashMap::new()),
        })
    }

    /// The CA that signs the certificates of revision `revision`'s proxies.
    pub fn for_revision(&self, revision: &str, own_roots: bool) -> Result<Arc<MeshCa>, String> {
        if !own_roots || revision == "default" {
            return Ok(Arc::clone(&self.shared));
        }
        let mut m = self.per_revision.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = m.get(revision) {
            return Ok(Arc::clone(ca));
        }
        let ca = Arc::new(MeshCa::new(&self.trust_domain)?);
        m.insert(revision.to_string(), Arc::clone(&ca));
        Ok(ca)
    }
}
