//! TLS contexts as istiod writes them: Istio mutual TLS between proxies
//! (pilot/pkg/networking/core/cluster_tls.go `buildIstioMutualTLS`,
//! pilot/pkg/security/authn/utils/utils.go `BuildInboundTLS`) with the workload
//! certificate `default` and the root `ROOTCA` from SDS, and the gateway's server TLS
//! (pilot/pkg/networking/core/listener.go `BuildListenerTLSContext`) with a
//! `credentialName`'s secrets `kubernetes://<name>` and `kubernetes://<name>-cacert`.
//! SDS comes from the stand-in istiod's REST endpoint here, not from pilot-agent's
//! `sds-grpc` socket.

use crate::envoy::xds_server::source;
use serde_json::{Value, json};

pub(crate) const WORKLOAD_SECRET: &str = "default";
pub(crate) const ROOT_SECRET: &str = "ROOTCA";

/// `authn/utils.go SupportedCiphers`.
const CIPHERS: [&str; 6] = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
];

/// An SDS reference to the secret `name`.
pub(crate) fn sds(name: &str) -> Value {
    json!({"name": name, "sds_config": source()})
}

pub(crate) fn raw_buffer() -> Value {
    json!({"name": "envoy.transport_sockets.raw_buffer",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}})
}

/// The client side of Istio mTLS towards a cluster: SNI `outbound_.<port>_.<subset>_.<host>`,
/// ALPN `istio-peer-exchange`, `istio`, and the peers' SPIFFE IDs to verify.
pub(crate) fn upstream_istio_mutual(sni: &str, sans: &[String]) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "alpn_protocols": ["istio-peer-exchange", "istio"],
                "tls_certificate_sds_secret_configs": [sds(WORKLOAD_SECRET)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": sans.iter().map(|s| json!({"exact": s})).collect::<Vec<_>>()
                    },
                    "validation_context_sds_secret_config": sds(ROOT_SECRET)
                }
            },
            "sni": sni
        }
    })
}

/// The server side of Istio mTLS on a sidecar's inbound HTTP chain: a client
/// certificate from the mesh's trust domain is required.
pub(crate) fn downstream_istio_mutual(trust_domain: &str) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3",
                               "cipher_suites": CIPHERS},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [sds(WORKLOAD_SECRET)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": [{"prefix": format!("spiffe://{trust_domain}/")}]
                    },
                    "validation_context_sds_secret_config": sds(ROOT_SECRET)
                }
            },
            "require_client_certificate": true
        }
    })
}

/// How a gateway server's TLS is bent by a fault.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GatewayTlsBend {
    pub client_certificate_optional: bool,
    pub accept_untrusted: bool,
}

/// A gateway server's TLS for `credentialName` `credential`: `SIMPLE` serves the
/// certificate; `MUTUAL` also requires a client certificate that chains to the CA of
/// `<credential>-cacert`. ALPN `h2`, `http/1.1`; Envoy's TLS defaults (1.2 to 1.3).
pub(crate) fn downstream_gateway(credential: &str, mutual: bool, bend: GatewayTlsBend) -> Value {
    let mut common = json!({
        "alpn_protocols": ["h2", "http/1.1"],
        "tls_certificate_sds_secret_configs": [sds(&credential_secret(credential))],
    });
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    });
    if mutual {
        let mut default_validation = json!({});
        if bend.accept_untrusted {
            default_validation["trust_chain_verification"] = json!("ACCEPT_UNTRUSTED");
        }
        common["combined_validation_context"] = json!({
            "default_validation_context": default_validation,
            "validation_context_sds_secret_config": sds(&ca_secret(credential)),
        });
        context["require_client_certificate"] = json!(!bend.client_certificate_optional);
    }
    context["common_tls_context"] = common;
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

/// The SDS name of a `credentialName`'s certificate and key.
pub(crate) fn credential_secret(credential: &str) -> String {
    format!("kubernetes://{credential}")
}

/// The SDS name of a `credentialName`'s CA.
pub(crate) fn ca_secret(credential: &str) -> String {
    format!("kubernetes://{credential}-cacert")
}

/// A `Secret` holding a certificate chain and key.
pub(crate) fn certificate_secret(name: &str, chain: &str, key: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "tls_certificate": {"certificate_chain": {"inline_string": chain}, "private_key": {"inline_string": key}}
    })
}

/// A `Secret` holding the CA certificates to verify peers with.
pub(crate) fn validation_secret(name: &str, ca: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "validation_context": {"trusted_ca": {"inline_string": ca}}
    })
}
