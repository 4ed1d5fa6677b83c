//! TLS for PostgreSQL connections with rustls, following libpq's `sslmode` semantics:
//! `prefer`/`require` encrypt without checking the certificate (unless a root
//! certificate file exists, when `require` checks the chain, as libpq does),
//! `verify-ca` checks the chain, `verify-full` checks the chain and the host name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    /// libpq tries plain text first with `allow`; carve treats it like `prefer`.
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?} (use disable, allow, prefer, require, verify-ca or verify-full)"
                ))
            }
        })
    }

    /// The mode tokio-postgres runs the handshake in; the checks beyond it are ours.
    pub fn wire_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            SslMode::Disable => Wire::Disable,
            SslMode::Allow | SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        }
    }
}

/// Where trusted root certificates come from: a PEM file, or the bundled web roots
/// when `sslrootcert=system`.
#[derive(Debug, Clone)]
pub enum RootSource {
    File(PathBuf),
    System,
}

/// Builds the rustls client configuration for one connection.
pub fn client_config(mode: SslMode, roots: Option<&RootSource>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root_store = match roots {
        Some(RootSource::System) => Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Some(RootSource::File(path)) => Some(load_roots(path)?),
        None => None,
    };
    let verify = match (mode, root_store) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs a root certificate: set sslrootcert (or PGSSLROOTCERT), put one in ~/.postgresql/root.crt, or use sslrootcert=system",
                if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
            ))
        }
        (SslMode::VerifyFull, Some(store)) => Verify::Full(store),
        // libpq: require with a root certificate file present behaves like verify-ca.
        (SslMode::VerifyCa | SslMode::Require, Some(store)) => Verify::Chain(store),
        _ => Verify::Nothing,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full(store) => webpki_verifier(store, &provider)?,
        Verify::Chain(store) => Arc::new(ChainOnly(webpki_verifier(store, &provider)?)),
        Verify::Nothing => Arc::new(EncryptOnly(provider.clone())),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

enum Verify {
    Nothing,
    Chain(RootCertStore),
    Full(RootCertStore),
}

fn webpki_verifier(
    store: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("cannot use the root certificates: {e}"))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read root certificate file {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
        store
            .add(cert)
            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    }
    if store.is_empty() {
        return Err(format!("no certificates found in {}", path.display()));
    }
    Ok(store)
}

/// `sslmode=prefer/require`: the server's handshake signatures are still checked, so the
/// session is encrypted to whoever holds the key, but the certificate is not validated.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_parses_libpq_names_only() {
        assert_eq!(SslMode::parse("verify-full"), Ok(SslMode::VerifyFull));
        assert!(SslMode::parse("verify_full").is_err());
    }

    #[test]
    fn verify_modes_need_roots() {
        let err = client_config(SslMode::VerifyFull, None).unwrap_err();
        assert!(err.contains("root certificate"), "{err}");
        assert!(client_config(SslMode::VerifyFull, Some(&RootSource::System)).is_ok());
        assert!(client_config(SslMode::Require, None).is_ok());
    }
}
