//! Which certificate authorities the provider's TLS is checked against: reqwest's built-in
//! Mozilla roots, the system's trust store (as update-ca-certificates or SSL_CERT_FILE /
//! SSL_CERT_DIR make it), and `PROVIDER__CA_FILE`.

use std::sync::OnceLock;

use oauth2::reqwest::{Certificate, ClientBuilder};

/// Adds the system's roots and `extra` (the CA file) to a client under construction.
pub(super) fn with_roots(mut builder: ClientBuilder, extra: &[Certificate]) -> ClientBuilder {
    for certificate in system_roots().iter().chain(extra) {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder
}

/// The system's trust store, read once per process. reqwest parses roots only when a client
/// is built, and a single root it cannot parse fails the build; system stores do hold some
/// (ancient or malformed), so each is tried alone here and kept only when it parses.
fn system_roots() -> &'static [Certificate] {
    static ROOTS: OnceLock<Vec<Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if let Some(e) = loaded.errors.first() {
            tracing::warn!(error = %e, "part of the system's trust store could not be read");
        }
        loaded
            .certs
            .iter()
            .filter_map(|der| Certificate::from_der(der.as_ref()).ok())
            .filter(|certificate| {
                oauth2::reqwest::Client::builder()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(certificate.clone())
                    .build()
                    .is_ok()
            })
            .collect()
    })
}
