//! TLS helpers: load PEM certificates, generate a self-signed development certificate, and pin
//! a server by the SHA-256 fingerprint of its certificate.
//!
//! Owns rustls configuration (with the `ring` provider, which builds offline with only a C
//! compiler). Never disables verification silently: pinning verifies the exact certificate, and
//! there is no "accept anything" mode.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::{ClientTls, ServerTls};
use crate::error::Error;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ALPN-free server TLS config for a certificate chain and key.
pub fn server_tls(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerTls, Error> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(ServerTls {
        config: Arc::new(config),
    })
}

/// Loads a PEM certificate chain and private key from files.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    Ok((chain, key))
}

/// A self-signed certificate for `names` (development only), with its SHA-256 fingerprint.
///
/// Behind the `self-signed` feature (off by default: a server in production loads its
/// certificate with [`load_pem`]); `rhizomorph serve --self-signed` and the tests turn it on.
#[cfg(feature = "self-signed")]
pub fn self_signed(
    names: &[&str],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>, String), Error> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| Error::Tls(e.to_string()))?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| Error::Tls(e.to_string()))?;
    let fp = fingerprint(&cert);
    Ok((cert, key, fp))
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated uppercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Client TLS that verifies servers against the bundled web PKI roots.
pub fn client_tls_web_roots() -> Result<ClientTls, Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ClientTls {
        config: Arc::new(config),
    })
}

/// Client TLS that accepts exactly the server certificate with this SHA-256 fingerprint (as
/// printed by `rhizomorph serve --self-signed`), and still checks the handshake signature.
pub fn client_tls_pinned(fingerprint_hex: &str) -> Result<ClientTls, Error> {
    let want: String = fingerprint_hex
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_uppercase();
    if want.len() != 64 {
        return Err(Error::Tls(format!(
            "fingerprint {fingerprint_hex:?} is not 32 bytes of hex"
        )));
    }
    let verifier = PinnedVerifier {
        want,
        provider: provider(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(ClientTls {
        config: Arc::new(config),
    })
}

#[derive(Debug)]
struct PinnedVerifier {
    want: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity).replace(':', "");
        if got == self.want {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {got} does not match the pinned {}",
                self.want
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
