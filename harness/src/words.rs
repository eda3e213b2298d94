//! Library errors in words. Some libraries print their errors with Rust debug text
//! (`Other(OtherError(CaUsedAsEndEntity))` from rustls, `Status { status: Some(Failure),
//! ... }` from kube, `'"/root/.kube/config"'` from kube's kubeconfig loader); nothing the
//! harness says may read like that.

/// Why a peer's certificate was not accepted, as a sentence fragment.
pub fn certificate_problem(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::BadEncoding => "the certificate is not valid DER".into(),
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not valid yet".into(),
        C::Revoked => "the certificate is revoked".into(),
        C::UnknownIssuer => "the certificate is signed by a CA this client does not trust".into(),
        C::BadSignature => "the certificate's signature does not verify".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("the certificate is not valid for the name asked for ({e})")
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the certificate is not meant for this use (extended key usage)".into()
        }
        C::Other(other) => {
            let inner = other.0.to_string();
            match inner.as_str() {
                "CaUsedAsEndEntity" => {
                    "the peer presented a CA certificate as its own certificate".into()
                }
                "EndEntityUsedAsCa" => {
                    "a certificate of the chain that is not a CA signed another".into()
                }
                _ => spaced(&inner),
            }
        }
        other => spaced(&format!("{other:?}")),
    }
}

/// `UnsupportedCriticalExtension` → `unsupported critical extension`; wrappers such as
/// `Other(…)` dropped.
pub fn spaced(debug: &str) -> String {
    let core = debug
        .rsplit('(')
        .next()
        .unwrap_or(debug)
        .trim_end_matches(')');
    let mut out = String::new();
    for (i, c) in core.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A kube error in words: an API answer as `<code> <reason>: <message>`, anything else
/// as its own text (kube prints API answers with their debug form appended).
pub fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            format!(
                "the API server answered {}{reason}: {}",
                status.code,
                crate::exit::one_line(&status.message)
            )
        }
        other => crate::exit::one_line(&other.to_string()),
    }
}

/// [`kube_error`] as a method, for `map_err` closures.
pub trait Said {
    fn said(&self) -> String;
}

impl Said for kube::Error {
    fn said(&self) -> String {
        kube_error(self)
    }
}

/// kube's kubeconfig errors quote paths as `'"/root/.kube/config"'`: unquoted here.
pub fn unquoted_paths(text: &str) -> String {
    text.replace("'\"", "").replace("\"'", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_are_sentences() {
        let ca_as_leaf = rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        let text = certificate_problem(&ca_as_leaf);
        assert_eq!(
            text,
            "the peer presented a CA certificate as its own certificate"
        );
        let unknown = certificate_problem(&rustls::CertificateError::UnknownRevocationStatus);
        assert_eq!(unknown, "unknown revocation status");
        for t in [text, unknown] {
            assert!(!t.contains('(') && !t.contains("Error"), "{t}");
        }
    }

    #[test]
    fn an_api_answer_reads_without_its_debug_form() {
        let status = kube::core::Status::failure("deployments.apps \"age\" not found", "NotFound")
            .with_code(404);
        let e = kube::Error::Api(status.boxed());
        assert!(e.to_string().contains("Status {"), "kube's own text: {e}");
        let text = kube_error(&e);
        assert_eq!(
            text,
            "the API server answered 404 NotFound: deployments.apps \"age\" not found"
        );
    }

    #[test]
    fn kubeconfig_paths_lose_their_debug_quotes() {
        assert_eq!(
            unquoted_paths("failed to read kubeconfig '\"/root/.kube/config\"': denied"),
            "failed to read kubeconfig /root/.kube/config: denied"
        );
    }
}
