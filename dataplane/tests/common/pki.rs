//! Certificates for the TLS suites, from rcgen: a CA, a server certificate for localhost and
//! 127.0.0.1 signed by it, and client certificates (mutual TLS), written as PEM files.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use std::fs;
use std::path::{Path, PathBuf};

/// A CA that signs server and client certificates into a directory.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub dir: PathBuf,
    pub ca_file: PathBuf,
}

/// A certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("riptide test CA {name}"));
        let certificate = params.self_signed(&key)?;
        let ca_file = dir.join(format!("{name}-ca.pem"));
        fs::write(&ca_file, certificate.pem())?;
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            ca_file,
        })
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.sign(
            name,
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A server certificate that expired in 2021.
    pub fn expired_server(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.sign(
            name,
            vec!["localhost".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
            Some((2020, 2021)),
        )
    }

    pub fn client(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.sign(
            name,
            vec![format!("{name}.clients.riptide.test")],
            ExtendedKeyUsagePurpose::ClientAuth,
            None,
        )
    }

    fn sign(
        &self,
        name: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        validity_years: Option<(i32, i32)>,
    ) -> anyhow::Result<CertFiles> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if let Some((from, until)) = validity_years {
            params.not_before = date_time_ymd(from, 1, 1);
            params.not_after = date_time_ymd(until, 1, 1);
        }
        let certificate = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert_file: self.dir.join(format!("{name}-cert.pem")),
            key_file: self.dir.join(format!("{name}-key.pem")),
        };
        fs::write(&files.cert_file, certificate.pem())?;
        fs::write(&files.key_file, key.serialize_pem())?;
        Ok(files)
    }
}

/// The `[tls]` section of a riptide.toml serving `server`, and `[http]` off: these suites run the
/// dataplane alone, and with mutual TLS or on a DPDK port its HTTP pool would be refused.
pub fn tls_section(server: &CertFiles, client_ca_file: Option<&Path>, ktls: &str) -> String {
    format!(
        "[tls]\nenabled = true\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\nktls = \"{ktls}\"\n[http]\nenabled = false\n",
        server.cert_file.display(),
        server.key_file.display(),
        client_ca_file.map_or(String::new(), |p| p.display().to_string()),
    )
}
