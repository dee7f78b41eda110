//! Certificates made for a test: a certificate authority and a server certificate it issued.

/// A certificate authority made for one test and a certificate it issued for one name (a host
/// name or an IP address), each in PEM and DER.
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
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    InternalCa {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}
