//! The TLS listener configuration: rustls with the ring provider, TLS 1.2 and 1.3 only.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::TlsFiles;
use crate::DownstreamError;

/// Builds the acceptor from PEM files. Offers `h2` and `http/1.1` by ALPN.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, DownstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Other rustls users in the process (the upstream HTTP client) pick up the same provider;
    // an error only means one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    // rustls implements nothing older than TLS 1.2; naming both versions keeps it explicit.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| DownstreamError::Tls { source })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| DownstreamError::Tls { source })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn open(path: &Path) -> Result<BufReader<File>, DownstreamError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| DownstreamError::TlsFile {
            path: path.to_owned(),
            source,
        })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, DownstreamError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DownstreamError::TlsFile {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(DownstreamError::TlsMissing {
            what: "certificate",
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, DownstreamError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| DownstreamError::TlsFile {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| DownstreamError::TlsMissing {
            what: "private key",
            path: path.to_owned(),
        })
}
