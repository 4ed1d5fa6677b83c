//! Passwords carve makes for the login roles it creates: generated from the operating
//! system's random source, sent to the server only as a SCRAM-SHA-256 verifier (as
//! psql's `\password` does, so not even the server's statement log sees them), and
//! written to one place only: the password file the operator names, in the
//! `~/.pgpass` format, mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{pgpass, Secret};

/// 32 characters from 62: about 190 bits.
const LENGTH: usize = 32;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new random password.
pub fn generate() -> std::io::Result<Secret> {
    let mut out = String::with_capacity(LENGTH);
    let mut byte = [0u8; 1];
    while out.len() < LENGTH {
        getrandom::fill(&mut byte).map_err(std::io::Error::other)?;
        // Rejection sampling keeps every character equally likely.
        if usize::from(byte[0]) < 256 - 256 % ALPHABET.len() {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(Secret::new(out))
}

/// The `PASSWORD` literal for `ALTER ROLE`: a SCRAM-SHA-256 verifier, never the
/// password itself.
pub fn verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// The password file: `host:port:database:role:password` lines, readable by its owner
/// only.
pub struct PasswordFile {
    path: PathBuf,
}

impl PasswordFile {
    /// Checks the file before anything is done: if it exists it must be a regular file
    /// that only its owner can read; if not, its directory must exist.
    pub fn check(path: &Path) -> anyhow::Result<PasswordFile> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                if !meta.is_file() {
                    anyhow::bail!("--password-file {} is not a regular file", path.display());
                }
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    anyhow::bail!(
                        "--password-file {} can be read by others (mode {mode:o}): `chmod 600` it first",
                        path.display()
                    );
                }
                if let Err(e) = std::fs::OpenOptions::new().append(true).open(path) {
                    anyhow::bail!("--password-file {} cannot be written: {e}", path.display());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    anyhow::bail!(
                        "--password-file {}: directory {} does not exist",
                        path.display(),
                        dir.display()
                    );
                }
                // Permission bits do not tell (root ignores them; some file systems
                // refuse anyway): try it.
                if let Err(e) = tempfile::Builder::new()
                    .prefix(".carve-check-")
                    .tempfile_in(dir)
                {
                    anyhow::bail!(
                        "--password-file {}: cannot create files in directory {}: {e}",
                        path.display(),
                        dir.display()
                    );
                }
            }
            Err(e) => anyhow::bail!("--password-file {}: {e}", path.display()),
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The password recorded for a role, if any.
    pub fn lookup(&self, host: &str, port: u16, dbname: &str, role: &str) -> Option<Secret> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        pgpass::lookup(&text, host, port, dbname, role).map(Secret::new)
    }

    /// Appends one entry and waits until it is on disk; creates the file with mode
    /// 0600.
    pub fn append(
        &self,
        host: &str,
        port: u16,
        dbname: &str,
        role: &str,
        password: &Secret,
    ) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(pgpass::line(host, port, dbname, role, password.expose()).as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_alphanumeric() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.expose().len(), LENGTH);
        assert!(a.expose().bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn the_verifier_is_scram_and_hides_the_password() {
        let p = Secret::new("correct horse".into());
        let v = verifier(&p);
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("correct horse"));
    }

    #[test]
    fn the_file_is_created_0600_and_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords");
        let file = PasswordFile::check(&path).unwrap();
        let secret = Secret::new("s3cret".into());
        file.append("localhost", 5432, "shop", "orders", &secret)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let found = file.lookup("/tmp/socket", 5432, "shop", "orders").unwrap();
        assert_eq!(found.expose(), "s3cret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PasswordFile::check(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let err = PasswordFile::check(&dir.path().join("no/such/file"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
