//! A throw-away PgBouncer in front of a throw-away server: the real Debian
//! `pgbouncer` binary, on a free port, with its admin console open to `postgres`.
//! PgBouncer refuses to run as root, so as root it runs as the `postgres` user, as the
//! servers do. Stopped (SIGTERM to its pid) and removed when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{failed, free_port, server_user, TempServer, TempServerError, SUPERUSER};

#[derive(Debug)]
pub struct TempBouncer {
    child: Option<Child>,
    root: tempfile::TempDir,
    port: u16,
    binary: PathBuf,
}

impl TempBouncer {
    /// Starts PgBouncer (transaction pooling) with one `[databases]` entry per
    /// `(name, database)`, each pointing at `server`'s database of that name.
    pub fn start(
        server: &TempServer,
        databases: &[(&str, &str)],
    ) -> Result<TempBouncer, TempServerError> {
        let binary = find_pgbouncer()?;
        // A free port can be taken between the check and PgBouncer's bind: try a few.
        let mut last_error = None;
        for _ in 0..5 {
            match TempBouncer::try_start(&binary, server, databases) {
                Ok(bouncer) => return Ok(bouncer),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn try_start(
        binary: &Path,
        server: &TempServer,
        databases: &[(&str, &str)],
    ) -> Result<TempBouncer, TempServerError> {
        let run_as = server_user()?;
        let root = tempfile::Builder::new()
            .prefix("carve-pgbouncer-")
            .tempdir()?;
        let port = free_port()?;
        let ini_path = root.path().join("pgbouncer.ini");
        fs::write(&ini_path, config(root.path(), port, server, databases))?;
        let users = root.path().join("userlist.txt");
        fs::write(&users, format!("\"{SUPERUSER}\" \"\"\n"))?;
        if let Some(user) = &run_as {
            fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755))?;
            for path in [root.path(), &ini_path, &users] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
            }
        }
        let mut bouncer = TempBouncer {
            child: None,
            root,
            port,
            binary: binary.to_path_buf(),
        };
        bouncer.launch()?;
        Ok(bouncer)
    }

    /// Starts PgBouncer again after `stop`, on the same port, reading its
    /// configuration file as it is now (fresh: no pause, no pooled connection).
    pub fn start_again(&mut self) -> Result<(), TempServerError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.launch()
    }

    fn launch(&mut self) -> Result<(), TempServerError> {
        let run_as = server_user()?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("stdout.log"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some(user) = &run_as {
            cmd.uid(user.uid).gid(user.gid).current_dir("/");
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed("starting pgbouncer", e.to_string()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until PgBouncer accepts TCP connections (or has exited).
    fn wait_ready(&mut self) -> Result<(), TempServerError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(failed(
                        "starting pgbouncer",
                        format!("exited with {status}: {}", self.log_tail()),
                    ));
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(failed(
            "starting pgbouncer",
            format!("not listening after 10 s: {}", self.log_tail()),
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The admin console, as `postgres` over TCP.
    pub fn console_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=pgbouncer sslmode=disable",
            self.port
        )
    }

    /// A database entry, as clients reach it through PgBouncer.
    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname={} sslmode=disable",
            self.port,
            crate::conn::quote_value(database)
        )
    }

    /// Its configuration file (`[databases]` and `[pgbouncer]`), owned by the user
    /// PgBouncer runs as.
    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("pgbouncer.ini")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("pgbouncer.log")
    }

    fn log_tail(&self) -> String {
        let mut text = fs::read_to_string(self.log_path()).unwrap_or_default();
        text.push_str(&fs::read_to_string(self.root.path().join("stdout.log")).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops PgBouncer at once (SIGTERM: its immediate shutdown), waiting for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TempBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(dir: &Path, port: u16, server: &TempServer, databases: &[(&str, &str)]) -> String {
    let mut ini = String::from("[databases]\n");
    for (name, database) in databases {
        ini.push_str(&format!(
            "{name} = host={} port={} dbname={database}\n",
            server.socket_dir().display(),
            server.port()
        ));
    }
    ini.push_str(&format!(
        "\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {dir}/userlist.txt\n\
         admin_users = {SUPERUSER}\n\
         pool_mode = transaction\n\
         logfile = {dir}/pgbouncer.log\n\
         pidfile = {dir}/pgbouncer.pid\n\
         ignore_startup_parameters = extra_float_digits\n",
        dir = dir.display()
    ));
    ini
}

/// `pgbouncer` on PATH or in `/usr/sbin` (where Debian puts it).
fn find_pgbouncer() -> Result<PathBuf, TempServerError> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            failed(
                "finding pgbouncer",
                "PgBouncer is not installed: `apt-get install pgbouncer` (Debian/Ubuntu), `dnf install pgbouncer` (Fedora) or `brew install pgbouncer` (macOS)",
            )
        })
}
