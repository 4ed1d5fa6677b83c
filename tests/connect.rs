//! Connections against real servers: clear errors that never show a password, the
//! password file, and TLS in each sslmode.

mod support;

use std::path::PathBuf;

use carve::conn::{self, ConnSpec, Environment};
use carve::pgtemp::{ServerOptions, TempServer};
use support::*;

const PASSWORD: &str = "S3cret-pa55word";
const WRONG: &str = "wr0ng-Passw0rd-XYZ";

async fn with_alice(server: &TempServer) {
    create_db(
        server,
        "shop",
        &format!("CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}'; CREATE TABLE t (id int);"),
    )
    .await;
}

async fn try_connect(conninfo: &str, env: &Environment) -> Result<tokio_postgres::Client, String> {
    let spec = ConnSpec::resolve(conninfo, env).map_err(|e| e.to_string())?;
    conn::connect(&spec).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn failures_name_host_port_user_database_and_never_the_password() {
    let server = server();
    with_alice(&server).await;
    let port = server.port();

    // Nothing listens on this port (we hold it bound but never accept).
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = blocker.local_addr().unwrap().port();
    drop(blocker);
    let err = try_connect(
        &format!("postgresql://alice:{WRONG}@127.0.0.1:{dead}/shop"),
        &clean_env(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains(&format!(
            "host=127.0.0.1 port={dead} user=alice dbname=shop"
        )),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains(WRONG), "{err}");

    let err = try_connect(
        &format!("host=127.0.0.1 port={port} user=alice dbname=shop password={WRONG}"),
        &clean_env(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    assert!(err.contains(&format!("port={port}")), "{err}");
    assert!(!err.contains(WRONG), "{err}");

    let err = try_connect(
        &format!("host=127.0.0.1 port={port} user=alice dbname=nope password={PASSWORD}"),
        &clean_env(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("database \"nope\" does not exist"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    let err = try_connect(
        &format!("host=127.0.0.1 port={port} user=alice dbname=shop"),
        &clean_env(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("PGPASSWORD"),
        "a missing password says how to give one: {err}"
    );

    try_connect(
        &format!("host=127.0.0.1 port={port} user=alice dbname=shop password={PASSWORD}"),
        &clean_env(),
    )
    .await
    .expect("the right password works");
}

#[tokio::test]
async fn password_comes_from_pgpassword_or_the_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let server = server();
    with_alice(&server).await;
    let conninfo = server.tcp_conninfo("alice", "shop");

    let mut env = clean_env();
    env.vars.insert("PGPASSWORD".into(), PASSWORD.into());
    try_connect(&conninfo, &env).await.expect("PGPASSWORD");

    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("127.0.0.1:{}:shop:alice:{PASSWORD}\n", server.port()),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut env = clean_env();
    env.vars
        .insert("PGPASSFILE".into(), passfile.display().to_string());
    try_connect(&conninfo, &env).await.expect("PGPASSFILE");

    // ~/.pgpass by default.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::copy(&passfile, home.join(".pgpass")).unwrap();
    let env = Environment {
        home: Some(home.clone()),
        ..clean_env()
    };
    try_connect(&conninfo, &env).await.expect("~/.pgpass");

    // A file others can read is ignored, as libpq does.
    std::fs::set_permissions(home.join(".pgpass"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = try_connect(&conninfo, &env).await.unwrap_err();
    assert!(err.contains("password"), "{err}");
}

struct Tls {
    server: TempServer,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// A server with TLS on, its certificate issued for `localhost` by a test CA.
fn tls_server() -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.crt");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let mut options = ServerOptions::default()
        .setting("ssl", "on")
        .setting("ssl_cert_file", "server.crt")
        .setting("ssl_key_file", "server.key");
    options
        .data_files
        .push(("server.crt".into(), cert.pem().into_bytes()));
    options
        .data_files
        .push(("server.key".into(), key.serialize_pem().into_bytes()));
    let server = TempServer::start_with(&options).unwrap_or_else(|e| panic!("{e}"));
    Tls {
        server,
        ca_file,
        _dir: dir,
    }
}

async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tls_in_every_sslmode() {
    let tls = tls_server();
    with_alice(&tls.server).await;
    let port = tls.server.port();
    let base = |host: &str, mode: &str| {
        format!(
            "host={host} port={port} user=alice dbname=shop password={PASSWORD} sslmode={mode} sslrootcert={}",
            tls.ca_file.display()
        )
    };
    let no_roots = |mode: &str| {
        format!(
            "host=127.0.0.1 port={port} user=alice dbname=shop password={PASSWORD} sslmode={mode}"
        )
    };

    let c = try_connect(&no_roots("disable"), &clean_env())
        .await
        .unwrap();
    assert!(!uses_tls(&c).await);
    let c = try_connect(&no_roots("prefer"), &clean_env())
        .await
        .unwrap();
    assert!(
        uses_tls(&c).await,
        "prefer uses TLS when the server offers it"
    );
    let c = try_connect(&no_roots("require"), &clean_env())
        .await
        .unwrap();
    assert!(uses_tls(&c).await);

    let c = try_connect(&base("localhost", "verify-full"), &clean_env())
        .await
        .unwrap();
    assert!(uses_tls(&c).await);
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let err = try_connect(&base("127.0.0.1", "verify-full"), &clean_env())
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    let c = try_connect(&base("127.0.0.1", "verify-ca"), &clean_env())
        .await
        .unwrap();
    assert!(uses_tls(&c).await);

    // A certificate from a CA we do not trust: refused by verify-ca.
    let other = tls_server();
    let err = try_connect(
        &format!(
            "host=127.0.0.1 port={port} user=alice dbname=shop password={PASSWORD} sslmode=verify-ca sslrootcert={}",
            other.ca_file.display()
        ),
        &clean_env(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    let err = try_connect(&no_roots("verify-full"), &clean_env())
        .await
        .unwrap_err();
    assert!(err.contains("needs a root certificate"), "{err}");

    // A server without TLS: require fails, prefer falls back.
    let plain = server();
    with_alice(&plain).await;
    let plain_conn = |mode: &str| {
        format!(
            "host=127.0.0.1 port={} user=alice dbname=shop password={PASSWORD} sslmode={mode}",
            plain.port()
        )
    };
    let err = try_connect(&plain_conn("require"), &clean_env())
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("tls") || err.contains("SSL"),
        "{err}"
    );
    let c = try_connect(&plain_conn("prefer"), &clean_env())
        .await
        .unwrap();
    assert!(!uses_tls(&c).await);
}
