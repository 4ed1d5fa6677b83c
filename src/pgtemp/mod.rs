//! Throw-away PostgreSQL servers for tests, the demo and the benchmarks.
//!
//! Each [`TempServer`] runs `initdb` in its own temp directory, listens on its own Unix
//! socket directory and on 127.0.0.1 at a free port, and is stopped by its own pid when
//! dropped. PostgreSQL refuses to run as root, so when carve runs as uid 0 the server
//! runs as the `postgres` user (created if missing) and its directory is handed to it.

pub mod bouncer;

pub use bouncer::TempBouncer;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::os_user::OsUser;

/// What a throw-away server needs beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra `postgresql.conf` settings, passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// Files to copy into the data directory before start (e.g. TLS key and certificate),
    /// as (file name, contents).
    pub data_files: Vec<(String, Vec<u8>)>,
}

impl ServerOptions {
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TempServerError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH, in `pg_config --bindir` \
         or in /usr/lib/postgresql/*/bin.\n  Install them, e.g. `apt-get install postgresql` \
         (Debian/Ubuntu), `dnf install postgresql-server` (Fedora) or `brew install postgresql` (macOS)."
    )]
    BinariesNotFound,
    #[error("{step} failed: {detail}")]
    Failed { step: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) fn failed(step: &str, detail: impl Into<String>) -> TempServerError {
    TempServerError::Failed {
        step: step.to_string(),
        detail: detail.into(),
    }
}

/// The superuser every throw-away server is created with.
pub const SUPERUSER: &str = "postgres";

/// A running throw-away server. Dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct TempServer {
    child: Option<Child>,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    options: ServerOptions,
}

impl TempServer {
    pub fn start() -> Result<TempServer, TempServerError> {
        Self::start_with(&ServerOptions::default())
    }

    pub fn start_with(options: &ServerOptions) -> Result<TempServer, TempServerError> {
        let bin_dir = find_bin_dir()?;
        let run_as = server_user()?;
        let root = tempfile::Builder::new().prefix("carve-pg-").tempdir()?;
        let root_path = root.path().to_path_buf();
        let data = root_path.join("data");
        let sockets = root_path.join("socket");
        fs::create_dir(&sockets)?;
        if let Some(user) = &run_as {
            // The server user must reach its data and socket directories.
            fs::set_permissions(&root_path, fs::Permissions::from_mode(0o755))?;
            for dir in [&root_path, &sockets] {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
            }
        }

        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        run_quietly(initdb, run_as.as_ref(), "initdb")?;
        for (name, contents) in &options.data_files {
            let path = data.join(name);
            fs::write(&path, contents)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            if let Some(user) = &run_as {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))?;
            }
        }

        let mut server = TempServer {
            child: None,
            root: Some(root),
            root_path,
            bin_dir,
            port: 0,
            options: options.clone(),
        };
        // A free port can be taken by someone else between our check and the server's
        // bind, most often by a parallel test: try a few.
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.launch(run_as.as_ref()) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Starts the server again after `stop`, on the same port with the same
    /// settings: a test that puts a data directory back (a snapshot of a stopped
    /// server) restarts it where its clients and the plan expect it.
    pub fn start_again(&mut self) -> Result<(), TempServerError> {
        if self.child.is_some() {
            return Ok(());
        }
        let run_as = server_user()?;
        self.launch(run_as.as_ref())
    }

    fn launch(&mut self, run_as: Option<&OsUser>) -> Result<(), TempServerError> {
        let log = fs::File::create(self.log_path())?;
        if let Some(user) = run_as {
            std::os::unix::fs::chown(self.log_path(), Some(user.uid), Some(user.gid))?;
        }
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir());
        let defaults = [
            ("listen_addresses", "127.0.0.1"),
            ("wal_level", "logical"),
            ("max_replication_slots", "20"),
            ("max_wal_senders", "20"),
            ("max_logical_replication_workers", "8"),
            // A subscription copies two tables at a time, and the next table's copy
            // waits up to this long to start (default 5 s: a 30-table move then
            // takes minutes on a throw-away server).
            ("wal_retrieve_retry_interval", "200ms"),
            ("max_connections", "100"),
            // Throw-away data: trade durability for speed.
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("shared_buffers", "32MB"),
        ];
        let mut settings: Vec<(String, String)> = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.extend(self.options.settings.iter().cloned());
        for (name, value) in &settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal reaches carve, which then
            // stops the server in order, rather than the server directly.
            .process_group(0);
        if let Some(user) = run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &self.root_path);
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed("starting postgres", e.to_string()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until `postmaster.pid` says the server accepts connections.
    fn wait_ready(&mut self) -> Result<(), TempServerError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid_file = self.data_dir().join("postmaster.pid");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(failed(
                    "starting postgres",
                    format!("server exited with {status}; log:\n{}", self.log_tail()),
                ));
            }
            if let Ok(text) = fs::read_to_string(&pid_file) {
                if text.lines().nth(7).map(str::trim) == Some("ready") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(failed(
                    "starting postgres",
                    format!("not ready after 60s; log:\n{}", self.log_tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn root(&self) -> &Path {
        &self.root_path
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root_path.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root_path.join("socket")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root_path.join("server.log")
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Connection string over the Unix socket as the superuser (trusted, no password).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            crate::conn::quote_value(&self.socket_dir().display().to_string()),
            self.port,
            crate::conn::quote_value(dbname)
        )
    }

    /// Connection string over TCP on 127.0.0.1, where passwords are checked.
    pub fn tcp_conninfo(&self, user: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            self.port,
            crate::conn::quote_value(user),
            crate::conn::quote_value(dbname)
        )
    }

    /// The psql command line a person would use to look inside.
    pub fn psql_command(&self, dbname: &str) -> String {
        format!(
            "psql -h {} -p {} -U {SUPERUSER} {}",
            self.socket_dir().display(),
            self.port,
            dbname
        )
    }

    /// Runs SQL through psql with `ON_ERROR_STOP`, as a user would.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, TempServerError> {
        let psql = ["psql"]
            .iter()
            .map(|b| self.bin_dir.join(b))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let output = Command::new(psql)
            .arg("-X")
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", dbname, "-c", sql])
            .output()?;
        if !output.status.success() {
            return Err(failed(
                "psql",
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Leaves the server running after this value is gone and keeps its files; returns
    /// the directory they are in.
    pub fn keep(mut self) -> PathBuf {
        self.child = None;
        if let Some(root) = self.root.take() {
            return root.keep();
        }
        self.root_path.clone()
    }

    /// Stops the server (fast shutdown), waiting for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; the server ignored a fast shutdown for 30 s.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let _ = child.wait();
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run_quietly(
    mut cmd: Command,
    run_as: Option<&OsUser>,
    step: &str,
) -> Result<(), TempServerError> {
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(step, e.to_string()))?;
    if !output.status.success() {
        return Err(failed(
            step,
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    Ok(())
}

/// Finds a directory holding both `initdb` and `postgres`: on PATH, then
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, TempServerError> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    find_bin_dir_in(&path_dirs, pg_config, Path::new("/usr/lib/postgresql"))
}

fn find_bin_dir_in(
    path_dirs: &[PathBuf],
    pg_config_bindir: Option<PathBuf>,
    versions_root: &Path,
) -> Result<PathBuf, TempServerError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    // /usr/local/bin/initdb may be a link into the real bin directory.
    let from_path = path_dirs
        .iter()
        .filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf));
    let mut versions: Vec<PathBuf> = fs::read_dir(versions_root)
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    // Newest major version first.
    versions.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(Path::file_name)
                .and_then(OsStr::to_str)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    from_path
        .chain(pg_config_bindir)
        .chain(versions)
        .find(|dir| has_server(dir))
        .ok_or(TempServerError::BinariesNotFound)
}

/// The user to run the server as: none when carve itself is not root; otherwise the
/// `postgres` user, created when it does not exist.
pub(crate) fn server_user() -> Result<Option<OsUser>, TempServerError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    if let Some(user) = crate::os_user::by_name("postgres") {
        return Ok(Some(user));
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ])
        .status()
        .map_err(|e| failed("useradd postgres", e.to_string()))?;
    // A parallel caller may have created it first; look again either way.
    crate::os_user::by_name("postgres")
        .map(Some)
        .ok_or_else(|| {
            failed(
                "useradd postgres",
                format!(
                "exit status {status}; PostgreSQL cannot run as root and no `postgres` user exists"
            ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_bin_dir_in(&[empty.path().to_path_buf()], None, empty.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TempServerError::BinariesNotFound));
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(text.contains("initdb"), "{text}");
    }

    #[test]
    fn finds_the_newest_version_directory_with_both_binaries() {
        let root = tempfile::tempdir().unwrap();
        for (version, files) in [
            ("13", &["initdb", "postgres"][..]),
            ("16", &["initdb", "postgres"][..]),
            ("17", &["initdb"][..]),
        ] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for f in files {
                fs::write(bin.join(f), "").unwrap();
            }
        }
        let found = find_bin_dir_in(&[], None, root.path()).unwrap();
        assert_eq!(found, root.path().join("16").join("bin"));
        // PATH comes first.
        let on_path = root.path().join("13").join("bin");
        assert_eq!(
            find_bin_dir_in(std::slice::from_ref(&on_path), None, root.path()).unwrap(),
            on_path
        );
    }
}
