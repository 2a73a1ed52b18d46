//! TLS with libpq's `sslmode` semantics, on rustls (ring). tokio-postgres knows only whether
//! to ask for TLS (disable/prefer/require); what the certificate must prove is decided here,
//! in the verifier the connector is built with:
//!
//! | sslmode | TLS | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` | when the server offers it | not checked |
//! | `require` | always | not checked, unless a root certificate is there: then as `verify-ca` |
//! | `verify-ca` | always | chain up to `sslrootcert` |
//! | `verify-full` | always | chain up to `sslrootcert`, and the host name |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Treated as `prefer`: it connects wherever libpq's `allow` would, but tries TLS first.
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(mode: &str) -> Option<SslMode> {
        Some(match mode {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS is tried, and whether it is a must.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Allow | SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted roots.
    System,
}

/// The TLS half of a connection target.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    /// Client certificate and its key (`sslcert`, `sslkey`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// What the server's certificate must prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsOptions {
    fn check(&self) -> Check {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Check::ChainAndName,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Check::Chain,
            _ => Check::Nothing,
        }
    }

    /// Refuses combinations libpq refuses, before any connection is tried.
    pub fn validate(&self) -> Result<(), Error> {
        if self.mode.verifies() && self.root_cert.is_none() {
            return Err(Error::Usage(format!(
                "sslmode={} needs a root certificate: set sslrootcert (or PGSSLROOTCERT), put \
                 the CA certificate in ~/.postgresql/root.crt, use sslrootcert=system, or choose \
                 sslmode=require to skip verification",
                self.mode.name()
            )));
        }
        if self.root_cert == Some(RootCert::System) && self.mode != SslMode::VerifyFull {
            return Err(Error::Usage(format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                self.mode.name()
            )));
        }
        Ok(())
    }

    /// The connector for tokio-postgres: reads the certificate files, refusing (as a usage
    /// error) those that are missing, unreadable, empty or, for keys, readable by others.
    pub fn connector(&self) -> Result<MakeRustlsConnect, Error> {
        self.validate()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // validate() made sure the modes that verify have roots.
        let chain = match (self.check(), &self.root_cert) {
            (Check::Nothing, _) | (_, None) => None,
            (_, Some(root)) => Some(
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(load_roots(root)?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| Error::Usage(format!("sslrootcert: {e}")))?,
            ),
        };
        let verifier = Arc::new(Verifier {
            chain,
            check_name: self.check() == Check::ChainAndName,
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_cert {
            Some((cert, key)) => {
                let chain = load_certs(cert, "sslcert")?;
                let key = load_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Usage(format!("sslcert/sslkey: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// A one-line account of a TLS failure in `err`, if it is one: what the certificate
    /// failed to prove, or that the server would not speak TLS.
    pub fn describe_failure(&self, err: &tokio_postgres::Error) -> Option<String> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(c) = cause {
            let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
                c.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls {
                return Some(format!("TLS: {}", self.describe_rustls(tls)));
            }
            if c.to_string() == "server does not support TLS" {
                return Some(format!(
                    "TLS: the server does not support TLS (sslmode={})",
                    self.mode.name()
                ));
            }
            cause = c.source();
        }
        None
    }

    fn describe_rustls(&self, err: &rustls::Error) -> String {
        let roots = match &self.root_cert {
            Some(RootCert::File(path)) => path.display().to_string(),
            Some(RootCert::System) => "the system's trusted roots".into(),
            None => "the root certificates".into(),
        };
        let why = match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => format!(
                    "name mismatch (sslmode={} expects {}; the certificate is for {})",
                    self.mode.name(),
                    expected.to_str(),
                    presented
                        .iter()
                        .map(|name| bare_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                CertificateError::NotValidForName => format!(
                    "name mismatch (sslmode={} checks the host name)",
                    self.mode.name()
                ),
                CertificateError::UnknownIssuer => {
                    format!("unknown issuer: not signed by a CA in {roots}")
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the certificate has expired".into()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "the certificate is not valid yet".into()
                }
                other => format!("{other:?}"),
            },
            rustls::Error::AlertReceived(alert) => {
                let hint = match &self.client_cert {
                    Some((cert, _)) => format!(
                        "; does it trust the CA of the client certificate {}?",
                        cert.display()
                    ),
                    None => String::new(),
                };
                return format!("the server refused the handshake ({alert:?}){hint}");
            }
            other => return other.to_string(),
        };
        format!("certificate verify failed: {why}")
    }
}

/// `localhost` from rustls's `DnsName("localhost")` (or `IpAddress(…)`).
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Usage(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_roots(root: &RootCert) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for cert in load_certs(path, "sslrootcert")? {
                store
                    .add(cert)
                    .map_err(|e| Error::Usage(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::Usage(
                    "sslrootcert=system: no trusted root certificates found on this system".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// The client key, refused like libpq refuses it when others may read it: the file must be
/// u=rw (0600) or less, or u=rw,g=r (0640) or less when root owns it.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Usage(format!("sslkey {}: {e}", path.display())))?;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if meta.mode() & 0o777 & !allowed != 0 {
        return Err(Error::Usage(format!(
            "private key file {} has group or world access; it must be u=rw (0600) or less \
             if owned by the current user, or u=rw,g=r (0640) or less if owned by root",
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::Usage(format!("sslkey {}: {e}", path.display())))
}

/// The server certificate check for every mode. Without `chain`, any certificate is taken
/// (the connection is encrypted, not authenticated); with it, the chain must lead to a
/// trusted root, and the name must match only if `check_name` (rustls checks the name after
/// the chain, so a name mismatch means the chain was good). The handshake signatures are
/// always checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: SslMode, root: Option<RootCert>) -> TlsOptions {
        TlsOptions {
            mode,
            root_cert: root,
            client_cert: None,
        }
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("plain"), "plain");
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let ca = Some(RootCert::File("/ca.pem".into()));
        assert_eq!(opts(SslMode::Require, None).check(), Check::Nothing);
        assert_eq!(opts(SslMode::Require, ca.clone()).check(), Check::Chain);
        assert_eq!(opts(SslMode::Prefer, ca.clone()).check(), Check::Nothing);
        assert_eq!(opts(SslMode::VerifyCa, ca.clone()).check(), Check::Chain);
        assert_eq!(opts(SslMode::VerifyFull, ca).check(), Check::ChainAndName);
    }

    #[test]
    fn verification_without_roots_and_weak_modes_with_system_roots_are_refused() {
        assert!(opts(SslMode::VerifyCa, None).validate().is_err());
        assert!(opts(SslMode::VerifyFull, None).validate().is_err());
        assert!(opts(SslMode::Require, None).validate().is_ok());
        assert!(
            opts(SslMode::Require, Some(RootCert::System))
                .validate()
                .is_err()
        );
        assert!(
            opts(SslMode::VerifyFull, Some(RootCert::System))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn missing_or_empty_certificate_files_are_usage_errors() {
        let missing = opts(
            SslMode::VerifyFull,
            Some(RootCert::File("/nonexistent/ca.pem".into())),
        );
        let err = missing.connector().err().expect("a missing CA file fails");
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let empty = std::env::temp_dir().join(format!("empty_ca_{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let err = opts(SslMode::VerifyCa, Some(RootCert::File(empty.clone())))
            .connector()
            .err()
            .expect("an empty CA file fails");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_file(empty).unwrap();
    }
}
