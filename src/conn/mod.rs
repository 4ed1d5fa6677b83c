//! Connecting to PostgreSQL the way libpq users expect: connection strings in URL or
//! `key=value` form, the `PG*` environment variables, `~/.pgpass`, and `sslmode`.
//!
//! Resolution ([`ConnSpec::resolve`]) is pure and takes the environment as data;
//! [`connect`] is the only part that does I/O. No password is ever part of a
//! `Display`, a `Debug`, an error or the plan file.

mod conninfo;
pub mod password;
pub mod pgpass;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use conninfo::{quote_value, ConnInfo, ConnInfoError};
pub use tls::SslMode;
use tokio_postgres::Client;

/// Where one connection attempt goes: a host name, an IP address or a Unix socket
/// directory (a path starting with `/`), and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub hostaddr: Option<String>,
    pub port: u16,
}

impl Target {
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/') && self.hostaddr.is_none()
    }
}

/// A password kept out of `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the resolution reads from the outside world, gathered once so that resolving
/// is a pure function (and tests need not touch the process environment).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: HashMap<String, String>,
    pub home: Option<PathBuf>,
    pub os_user: Option<String>,
    /// libpq's compiled-in socket directory, when it exists on this machine.
    pub default_socket_dir: Option<PathBuf>,
    /// This carve process, `pid 4242 on db-admin-1`: part of the default
    /// `application_name`, so a run that finds the lock taken can say which carve
    /// (and on which machine) holds it.
    pub process: Option<String>,
}

impl Environment {
    pub fn from_process() -> Environment {
        let vars: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("PG"))
            .collect();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let os_user = std::env::var("USER")
            .ok()
            .or_else(|| crate::os_user::current().map(|u| u.name));
        let default_socket_dir = ["/var/run/postgresql", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .find(|dir| dir.is_dir() && has_any_socket(dir));
        let process = Some(format!("pid {} on {}", std::process::id(), host_name()));
        Environment {
            vars,
            home,
            os_user,
            default_socket_dir,
            process,
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn has_any_socket(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".s.PGSQL."))
        })
        .unwrap_or(false)
}

/// A fully resolved connection: every setting decided, ready to connect.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// The settings as the user wrote them, less the password.
    pub given: ConnInfo,
    pub targets: Vec<Target>,
    pub user: String,
    pub dbname: String,
    password: Option<Secret>,
    pub passfile: Option<PathBuf>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<tls::RootSource>,
    pub application_name: String,
    pub connect_timeout: Duration,
    pub options: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Syntax(#[from] ConnInfoError),
    #[error("{0}")]
    Invalid(String),
}

impl ConnSpec {
    /// Parses a connection string and fills what it leaves out from the `PG*`
    /// variables and libpq's defaults, in libpq's order of precedence.
    pub fn resolve(text: &str, env: &Environment) -> Result<ConnSpec, ResolveError> {
        let mut given = ConnInfo::parse(text)?;
        // Out of the settings and into a Secret at once, so no Debug can show it.
        let explicit_password = given.settings.remove("password").map(Secret);
        let setting = |key: &str, var: &str| -> Option<String> {
            given
                .get(key)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .or_else(|| env.var(var).map(str::to_string))
        };

        let hosts: Vec<String> = match setting("host", "PGHOST") {
            Some(h) => h.split(',').map(str::to_string).collect(),
            None => vec![env
                .default_socket_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "localhost".to_string())],
        };
        let hostaddrs: Vec<Option<String>> = match setting("hostaddr", "PGHOSTADDR") {
            Some(a) => a.split(',').map(|s| Some(s.to_string())).collect(),
            None => vec![None; hosts.len()],
        };
        if hostaddrs.len() != hosts.len() {
            return Err(ResolveError::Invalid(format!(
                "{} host names but {} hostaddr values",
                hosts.len(),
                hostaddrs.len()
            )));
        }
        let ports: Vec<u16> = match setting("port", "PGPORT") {
            Some(p) => p
                .split(',')
                .map(|p| match p.trim() {
                    "" => Ok(5432),
                    p => p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| ResolveError::Invalid(format!("invalid port {p:?}"))),
                })
                .collect::<Result<_, _>>()?,
            None => vec![5432],
        };
        let ports = match ports.len() {
            1 => vec![ports[0]; hosts.len()],
            n if n == hosts.len() => ports,
            n => {
                return Err(ResolveError::Invalid(format!(
                    "{} hosts but {n} ports (give one port, or one per host)",
                    hosts.len()
                )))
            }
        };
        let targets = hosts
            .into_iter()
            .zip(hostaddrs)
            .zip(ports)
            .map(|((host, hostaddr), port)| Target {
                host: if host.is_empty() {
                    "localhost".into()
                } else {
                    host
                },
                hostaddr,
                port,
            })
            .collect();

        let user = setting("user", "PGUSER")
            .or_else(|| env.os_user.clone())
            .ok_or_else(|| {
                ResolveError::Invalid("no user name: set user= or PGUSER".to_string())
            })?;
        let dbname = setting("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
        let password =
            explicit_password.or_else(|| env.var("PGPASSWORD").map(|p| Secret(p.to_string())));
        let passfile = setting("passfile", "PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")));
        let sslmode = SslMode::parse(
            &setting("sslmode", "PGSSLMODE").unwrap_or_else(|| "prefer".to_string()),
        )
        .map_err(ResolveError::Invalid)?;
        let sslrootcert = match setting("sslrootcert", "PGSSLROOTCERT") {
            Some(s) if s == "system" => Some(tls::RootSource::System),
            Some(path) => Some(tls::RootSource::File(PathBuf::from(path))),
            None => env
                .home
                .as_ref()
                .map(|h| h.join(".postgresql/root.crt"))
                .filter(|p| p.is_file())
                .map(tls::RootSource::File),
        };
        let application_name = setting("application_name", "PGAPPNAME")
            .unwrap_or_else(|| carve_application_name(env.process.as_deref()));
        let connect_timeout = match setting("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(t) => {
                let secs: u64 = t
                    .parse()
                    .map_err(|_| ResolveError::Invalid(format!("invalid connect_timeout {t:?}")))?;
                // libpq: values below 2 seconds are taken as 2.
                Duration::from_secs(secs.max(2))
            }
            None => Duration::from_secs(10),
        };
        let options = setting("options", "PGOPTIONS");
        Ok(ConnSpec {
            given: given.clone(),
            targets,
            user,
            dbname,
            password,
            passfile,
            sslmode,
            sslrootcert,
            application_name,
            connect_timeout,
            options,
        })
    }

    /// The connection as the user wrote it, without the password: what goes in the
    /// plan file and in messages.
    pub fn reference(&self) -> String {
        self.given.redacted()
    }

    /// `host=… port=… user=… dbname=…` of one attempt, for error messages.
    pub fn describe(&self, target: &Target) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            quote_value(&target.host),
            target.port,
            quote_value(&self.user),
            quote_value(&self.dbname)
        )
    }

    /// The password for one attempt: the explicit one, else the password file's.
    fn password_for(&self, target: &Target) -> Option<Secret> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let path = self.passfile.as_ref()?;
        let contents = read_passfile(path)?;
        pgpass::lookup(
            &contents,
            &target.host,
            target.port,
            &self.dbname,
            &self.user,
        )
        .map(Secret)
    }
}

/// Reads the password file, ignoring it (as libpq does) when others may read it.
fn read_passfile(path: &PathBuf) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; ignoring it (chmod 0600 it)",
            path.display()
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// A failed connection, naming every host, port, user and database tried and why each
/// failed. It never holds a password.
#[derive(Debug, thiserror::Error)]
pub struct ConnectError {
    pub attempts: Vec<(String, String)>,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attempts.as_slice() {
            [(target, why)] => write!(f, "cannot connect to PostgreSQL at {target}: {why}"),
            attempts => {
                write!(f, "cannot connect to PostgreSQL; tried:")?;
                for (target, why) in attempts {
                    write!(f, "\n  {target}: {why}")?;
                }
                Ok(())
            }
        }
    }
}

/// Connects to the first target that accepts, trying each in turn as libpq does.
pub async fn connect(spec: &ConnSpec) -> Result<Client, ConnectError> {
    let mut attempts = Vec::new();
    for target in &spec.targets {
        match connect_one(spec, target).await {
            Ok(client) => return Ok(client),
            Err(why) => attempts.push((spec.describe(target), why)),
        }
    }
    Err(ConnectError { attempts })
}

/// Opens `n` connections to the same database at once (for work shared among them).
pub async fn connect_many(spec: &ConnSpec, n: usize) -> Result<Vec<Client>, ConnectError> {
    futures_util::future::try_join_all((0..n.max(1)).map(|_| connect(spec))).await
}

async fn connect_one(spec: &ConnSpec, target: &Target) -> Result<Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .user(&spec.user)
        .dbname(&spec.dbname)
        .application_name(&spec.application_name)
        .connect_timeout(spec.connect_timeout)
        .port(target.port);
    if target.host.starts_with('/') {
        config.host_path(&target.host);
    } else {
        config.host(&target.host);
    }
    if let Some(addr) = &target.hostaddr {
        let ip = addr
            .parse()
            .map_err(|_| format!("invalid hostaddr {addr:?}"))?;
        config.hostaddr(ip);
    }
    if let Some(options) = &spec.options {
        config.options(options);
    }
    let password = spec.password_for(target);
    if let Some(p) = &password {
        config.password(p.expose());
    }
    // libpq never uses TLS over a Unix socket.
    let mode = if target.is_unix_socket() {
        SslMode::Disable
    } else {
        spec.sslmode
    };
    config.ssl_mode(mode.wire_mode());
    let tls_config = tls::client_config(mode, spec.sslrootcert.as_ref())?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
    let connecting = config.connect(tls);
    // connect_timeout covers each socket attempt; this also bounds a server that
    // accepts the socket but never answers the startup packet.
    let result = tokio::time::timeout(spec.connect_timeout * 2, connecting)
        .await
        .map_err(|_| format!("timed out after {:?}", spec.connect_timeout * 2))?;
    match result {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("connection closed with error: {e}");
                }
            });
            Ok(client)
        }
        Err(e) => Err(explain(&e, password.is_some())),
    }
}

/// A statement's error as people need it: the server's message, SQLSTATE, detail and
/// hint (which often says what to change), or the client-side error.
pub fn describe_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => e.to_string(),
    }
}

/// A connection error as a person wants to read it: the server's own message where
/// there is one, the OS error otherwise, and a hint for the common causes.
fn explain(error: &tokio_postgres::Error, had_password: bool) -> String {
    if let Some(db) = error.as_db_error() {
        let hint = match db.code().code() {
            "28P01" => " (check the password: PGPASSWORD, ~/.pgpass or PGPASSFILE)",
            "3D000" => " (check dbname, or create the database)",
            "28000" => " (check pg_hba.conf on the server, or the user name)",
            _ => "",
        };
        return format!("{}{hint}", db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    if text.contains("password missing") && !had_password {
        text.push_str(" (the server asks for a password: set PGPASSWORD, or add it to ~/.pgpass)");
    } else if text.contains("Connection refused") || text.contains("No such file or directory") {
        text.push_str(" (is the server running and accepting connections there?)");
    }
    text
}

/// `carve (pid 4242 on db-admin-1)`, cut to the 63 bytes PostgreSQL keeps.
fn carve_application_name(process: Option<&str>) -> String {
    let mut name = match process {
        Some(p) => format!("{} ({p})", crate::workload::service_map::CARVE_APPLICATION),
        None => crate::workload::service_map::CARVE_APPLICATION.to_string(),
    };
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// This machine's name (`gethostname`), or `unknown host`.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_application_name_says_which_carve() {
        assert_eq!(carve_application_name(None), "carve");
        assert_eq!(
            carve_application_name(Some("pid 42 on db1")),
            "carve (pid 42 on db1)"
        );
        let long = carve_application_name(Some(&format!("pid 42 on {}", "h".repeat(80))));
        assert_eq!(long.len(), 63);
        assert!(!host_name().is_empty());
    }

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            home: Some(PathBuf::from("/nonexistent-home")),
            os_user: Some("osuser".into()),
            default_socket_dir: None,
            process: None,
        }
    }

    #[test]
    fn explicit_settings_beat_environment_which_beats_defaults() {
        let e = env(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
        ]);
        let spec = ConnSpec::resolve("host=given dbname=shop", &e).unwrap();
        assert_eq!(spec.targets[0].host, "given");
        assert_eq!(spec.targets[0].port, 6000);
        assert_eq!(spec.user, "envuser");
        assert_eq!(spec.dbname, "shop");
        let spec = ConnSpec::resolve("", &env(&[])).unwrap();
        assert_eq!(spec.targets[0].host, "localhost");
        assert_eq!(spec.targets[0].port, 5432);
        assert_eq!(spec.user, "osuser");
        assert_eq!(spec.dbname, "osuser");
        assert_eq!(spec.sslmode, SslMode::Prefer);
        assert_eq!(spec.application_name, "carve");
    }

    #[test]
    fn several_hosts_share_or_pair_ports() {
        let spec = ConnSpec::resolve("host=a,b port=7", &env(&[])).unwrap();
        assert_eq!(
            spec.targets.iter().map(|t| t.port).collect::<Vec<_>>(),
            [7, 7]
        );
        let spec = ConnSpec::resolve("postgresql://a:1,b:2/db", &env(&[])).unwrap();
        assert_eq!(
            spec.targets.iter().map(|t| t.port).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(ConnSpec::resolve("host=a,b,c port=1,2", &env(&[])).is_err());
        assert!(ConnSpec::resolve("port=99999", &env(&[])).is_err());
    }

    #[test]
    fn password_never_shows() {
        let e = env(&[("PGPASSWORD", "envsecret")]);
        let spec = ConnSpec::resolve("postgresql://u:urlsecret@h/db", &e).unwrap();
        let all = format!(
            "{spec:?} {} {}",
            spec.reference(),
            spec.describe(&spec.targets[0])
        );
        assert!(
            !all.contains("urlsecret") && !all.contains("envsecret"),
            "{all}"
        );
        assert_eq!(
            spec.password_for(&spec.targets[0]).unwrap().expose(),
            "urlsecret"
        );
        let spec = ConnSpec::resolve("host=h", &e).unwrap();
        assert_eq!(
            spec.password_for(&spec.targets[0]).unwrap().expose(),
            "envsecret"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(ConnSpec::resolve("sslmode=sometimes", &env(&[])).is_err());
        assert!(ConnSpec::resolve("connect_timeout=soon", &env(&[])).is_err());
        assert!(ConnSpec::resolve("", &env(&[("PGSSLMODE", "bogus")])).is_err());
    }
}
