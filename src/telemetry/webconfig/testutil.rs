//! Test helpers: certificates made on the spot (a CA, server and client
//! certificates), files in a temp dir, and a real TLS exchange in process
//! (a tokio-rustls server with the config under test, a tokio-rustls
//! client).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TLS section naming server.pem and server.key (see [`Dir::server_cert`]).
pub(super) const TLS: &str =
    "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

/// A temp dir with a server certificate from a new CA.
pub(super) fn setup() -> (Dir, Ca) {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    d.server_cert(&ca);
    (d, ca)
}

/// The errors of `yaml` as web.yml in `d` (it must not load).
pub(super) fn errors(d: &Dir, yaml: &str) -> Vec<String> {
    let path = d.write("web.yml", yaml);
    match super::load(&path) {
        Ok(_) => panic!("loaded:\n{yaml}"),
        Err(e) => e.errors,
    }
}

/// `yaml` as web.yml in `d`, loaded (it must load).
pub(super) fn ok(d: &Dir, yaml: &str) -> super::WebConfig {
    let path = d.write("web.yml", yaml);
    super::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A certificate authority.
pub(super) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key, as PEM, and the certificate's DER.
pub(super) struct Leaf {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    pub(super) der: Vec<u8>,
}

impl Ca {
    pub(super) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub(super) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (IP addresses become IP SANs, others DNS).
    pub(super) fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A temp dir with files in it.
pub(super) struct Dir {
    pub(super) dir: tempfile::TempDir,
}

impl Dir {
    pub(super) fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `name` by renaming a new file over it (a new inode, as a
    /// rotation tool or a Kubernetes secret update does), mode 0600 (a key
    /// must be: see `fsutil::read_secret`).
    pub(super) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let tmp = self.path(&format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// A server certificate for 127.0.0.1 from `ca`, as server.pem and
    /// server.key.
    pub(super) fn server_cert(&self, ca: &Ca) -> Leaf {
        let leaf = ca.leaf(&["127.0.0.1"]);
        self.write("server.pem", &leaf.cert_pem);
        self.write("server.key", &leaf.key_pem);
        leaf
    }
}

/// A client for the server under test: trusts `server_ca`, offers only
/// `versions`, and shows `cert` if given.
pub(super) fn client(
    server_ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    cert: Option<&Leaf>,
) -> Arc<ClientConfig> {
    client_with(ring::default_provider(), server_ca, versions, cert)
}

/// [`client`] with a provider of its own (suites and curves in its order).
pub(super) fn client_with(
    provider: rustls::crypto::CryptoProvider,
    server_ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    cert: Option<&Leaf>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server_ca.pem().as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.der.clone())],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// What a successful exchange saw from the client's side.
#[derive(Debug)]
pub(super) struct Seen {
    /// The server's certificate (DER).
    pub(super) peer: Vec<u8>,
    pub(super) version: rustls::ProtocolVersion,
    pub(super) suite: rustls::CipherSuite,
    pub(super) group: Option<rustls::NamedGroup>,
}

/// Connect to a tokio-rustls server with `server` on 127.0.0.1, complete the
/// handshake and read one message the server writes after it (so a client
/// certificate refused after a TLS 1.3 handshake shows too).
pub(super) async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<Seen, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    let cli = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        if got != b"hello" {
            return Err(format!("read {got:?}"));
        }
        let conn = tls.get_ref().1;
        Ok(Seen {
            peer: conn.peer_certificates().unwrap()[0].to_vec(),
            version: conn.protocol_version().unwrap(),
            suite: conn.negotiated_cipher_suite().unwrap().suite(),
            group: conn.negotiated_key_exchange_group().map(|g| g.name()),
        })
    };
    let both = async {
        let c = cli.await;
        let s = srv.await.unwrap();
        match (c, s) {
            (Ok(seen), Ok(())) => Ok(seen),
            (c, s) => Err(format!("client: {:?}; server: {s:?}", c.map(|_| ()))),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), both)
        .await
        .expect("exchange timed out")
}

/// Run openssl (installed by .ci/setup) with `args` in `dir`.
pub(super) fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
