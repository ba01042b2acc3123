//! `riptidectl tls dev-cert`: a development PKI for `[tls]`: a CA, a server certificate for the
//! appliance's names and addresses, and a client certificate for mutual TLS, as PEM files.

use super::{exit, CliError, DevCertArgs};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::Path;

/// The files written, in order: (name, is a private key).
const FILES: [(&str, bool); 6] = [
    ("ca.pem", false),
    ("ca-key.pem", true),
    ("server.pem", false),
    ("server-key.pem", true),
    ("client.pem", false),
    ("client-key.pem", true),
];

fn failure(what: &str, error: impl std::fmt::Display) -> CliError {
    CliError::new(exit::FAILURE, format!("{what}: {error}"))
}

/// The names the server certificate carries: loopback, the hostname, the configured addresses'
/// hosts and the extra names (deduplicated, in that order).
pub fn server_names(config: Option<&riptide_config::Config>, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(hostname.trim().to_string());
    }
    if let Some(config) = config {
        if let Ok(address) = config.tcp_address() {
            names.push(address.ip().to_string());
        }
        names.push(config.dpdk.ip_address.clone());
    }
    names.extend(extra.iter().cloned());
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        let unspecified = name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !name.is_empty() && !unspecified && !unique.contains(&name) {
            unique.push(name);
        }
    }
    unique
}

/// Writes the six files into `args.out`.
///
/// # Errors
/// An unreadable configuration, an existing file (never overwritten), a write error.
pub fn dev_cert(args: &DevCertArgs) -> Result<(), CliError> {
    let config = match &args.config {
        Some(path) => Some(
            riptide_config::Config::load(Some(path))
                .map_err(|e| CliError::new(exit::CONFIG, e.to_string()))?,
        ),
        None => None,
    };
    let names = server_names(config.as_ref(), &args.names);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| failure(&format!("create {}", args.out.display()), e))?;
    for (file, _) in FILES {
        let path = args.out.join(file);
        if path.exists() {
            return Err(CliError::new(
                exit::FAILURE,
                format!("{} exists; not overwritten", path.display()),
            ));
        }
    }
    let pems = generate(&names, args.days).map_err(|e| failure("certificate generation", e))?;
    for ((file, private), pem) in FILES.iter().zip(pems) {
        write_pem(&args.out.join(file), &pem, *private)?;
    }
    let out = args.out.display();
    println!(
        "wrote {out}/{{ca,server,client}}.pem and their keys; the server certificate names: {}",
        names.join(", ")
    );
    println!();
    println!("riptide.toml:    [tls] enabled = true, cert_file = \"{out}/server.pem\", key_file = \"{out}/server-key.pem\"");
    println!("HTTP API pool:   [http] dataplane_tls_ca_file = \"{out}/ca.pem\" (verifies the dataplane; needed off loopback)");
    println!("SDK:             iggy://iggy:iggy@127.0.0.1:8090?tls=true&tls_domain=localhost&tls_ca_file={out}/ca.pem");
    println!("iggy CLI:        iggy --tcp-tls-enabled true --tcp-tls-domain localhost --tcp-tls-ca-file {out}/ca.pem ...");
    println!(
        "riptidectl:      riptidectl --tls-ca-file {out}/ca.pem --tls-domain localhost stream list"
    );
    println!("mutual TLS:      [tls] client_ca_file = \"{out}/ca.pem\"; clients present {out}/client.pem + client-key.pem");
    Ok(())
}

fn write_pem(path: &Path, pem: &str, private: bool) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| failure(&format!("write {}", path.display()), e))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| failure(&format!("write {}", path.display()), e))
}

/// PEM texts in the order of [`FILES`].
fn generate(names: &[String], days: u32) -> Result<Vec<String>, rcgen::Error> {
    let now = time_now();
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "riptide development CA");
    ca_params.not_before = now;
    ca_params.not_after = until;
    let ca = ca_params.self_signed(&ca_key)?;
    let (ca_pem, ca_key_pem) = (ca.pem(), ca_key.serialize_pem());
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.not_before = now;
        params.not_after = until;
        let certificate = params.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>((certificate.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key_pem) = leaf(
        names.to_vec(),
        "riptide",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_pem, client_key_pem) = leaf(
        vec!["riptide-client".to_string()],
        "riptide client",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(vec![
        ca_pem,
        ca_key_pem,
        server_pem,
        server_key_pem,
        client_pem,
        client_key_pem,
    ])
}

/// Now as rcgen's time type, a minute back (a client whose clock is a little behind still
/// accepts the certificate).
fn time_now() -> time::OffsetDateTime {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    time::OffsetDateTime::from_unix_timestamp(unix - 60).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[test]
    fn the_server_certificate_verifies_for_its_names_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let args = DevCertArgs {
            out: dir.path().join("pki"),
            config: None,
            names: vec!["appliance.example".to_string(), "10.1.2.3".to_string()],
            days: 30,
        };
        dev_cert(&args).unwrap();
        let read = |file: &str| CertificateDer::from_pem_file(args.out.join(file)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(read("ca.pem")).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let server = read("server.pem");
        for name in ["localhost", "127.0.0.1", "appliance.example", "10.1.2.3"] {
            verifier
                .verify_server_cert(
                    &server,
                    &[],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verifier
            .verify_server_cert(
                &server,
                &[],
                &ServerName::try_from("elsewhere.example").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(args.out.join("server-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys are private");
        assert!(
            dev_cert(&args).is_err(),
            "existing files are not overwritten"
        );
    }
}
