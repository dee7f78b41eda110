//! Certificates made for a test: a certificate authority and certificates it issues.

/// A certificate issued for a test, with its key, in PEM and DER.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Its private key, DER (PKCS#8).
    pub key_der: Vec<u8>,
}

/// A certificate authority made for one test and a certificate it issued for one name (a host
/// name or an IP address); [`InternalCa::issue`] makes more.
pub struct InternalCa {
    /// The authority's certificate, PEM.
    pub ca_pem: String,
    /// The authority's certificate, DER.
    pub ca_der: Vec<u8>,
    /// The issued certificate, PEM.
    pub cert_pem: String,
    /// The issued certificate, DER.
    pub cert_der: Vec<u8>,
    /// The issued certificate's private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The issued certificate's private key, DER (PKCS#8).
    pub key_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl InternalCa {
    /// Another certificate of this authority, for `name`.
    pub fn issue(&self, name: &str) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// A new authority and a certificate for `name` it signed.
pub fn internal_ca(name: &str) -> InternalCa {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mcp-warden test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut out = InternalCa {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        cert_pem: String::new(),
        cert_der: Vec::new(),
        key_pem: String::new(),
        key_der: Vec::new(),
        issuer: rcgen::Issuer::new(ca_params, ca_key),
    };
    let first = out.issue(name);
    out.cert_pem = first.cert_pem;
    out.cert_der = first.cert_der;
    out.key_pem = first.key_pem;
    out.key_der = first.key_der;
    out
}

/// A TLS acceptor (TLS 1.2 and 1.3, no client certificate) presenting `certificate`.
pub fn acceptor(certificate: &Issued) -> tokio_rustls::TlsAcceptor {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.cert_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::try_from(certificate.key_der.clone()).unwrap(),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// An HTTPS server on 127.0.0.1 presenting `certificate`, answering every request 200 with
/// an empty body; its port, the number of requests it answered, and its task. A client that
/// refuses the certificate ends the handshake, so only trusted requests are counted.
pub async fn counting_https_server(
    certificate: &Issued,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let acceptor = acceptor(certificate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, count, task)
}
