//! Secrets a step needs when it runs (a login role's password): fetched at that
//! moment and put into the step's SQL, never into the plan, the journal or a log.

use std::borrow::Cow;

use super::{SecretInput, SqlAction, SECRET_VARIABLE};
use crate::conn::password::{self, PasswordFile};
use crate::sql::literal;

/// `role`'s password in the password file, or a new one appended there (and synced)
/// first.
fn password_of(
    file: &std::path::Path,
    host: &str,
    port: u16,
    database: &str,
    role: &str,
) -> Result<crate::conn::Secret, String> {
    let file = PasswordFile::check(file).map_err(|e| format!("{e:#}"))?;
    if let Some(existing) = file.lookup(host, port, database, role) {
        return Ok(existing);
    }
    let fresh = password::generate().map_err(|e| format!("cannot generate a password: {e}"))?;
    file.append(host, port, database, role, &fresh)
        .map_err(|e| format!("cannot write {}: {e}", file.path().display()))?;
    Ok(fresh)
}

/// `action` with its secret in place of `:'carve_secret'`. For a password, the file's
/// line for the role is used, or a new password is appended to the file (and synced)
/// before it is sent, so a crash between the two is finished by a re-run with the
/// same password.
pub fn resolve(action: &SqlAction) -> Result<Cow<'_, SqlAction>, String> {
    let Some(input) = &action.secret else {
        return Ok(Cow::Borrowed(action));
    };
    let value = match input {
        SecretInput::PasswordVerifier {
            file,
            host,
            port,
            database,
            role,
        } => password::verifier(&password_of(file, host, *port, database, role)?),
        SecretInput::ConninfoWithPassword {
            file,
            host,
            port,
            database,
            role,
            conninfo,
        } => {
            let secret = password_of(file, host, *port, database, role)?;
            format!(
                "{conninfo} password={}",
                crate::conn::quote_value(secret.expose())
            )
        }
    };
    let quoted = literal(&value).map_err(|e| e.to_string())?;
    Ok(Cow::Owned(SqlAction {
        sql: action.sql.replace(SECRET_VARIABLE, &quoted),
        secret: None,
        ..action.clone()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(file: &std::path::Path) -> SqlAction {
        SqlAction {
            sql: format!("ALTER ROLE \"app\" PASSWORD {SECRET_VARIABLE};"),
            done_check: "true".into(),
            undo: "ALTER ROLE \"app\" PASSWORD NULL;".into(),
            transactional: true,
            strong_lock: false,
            secret: Some(SecretInput::PasswordVerifier {
                file: file.to_path_buf(),
                host: "localhost".into(),
                port: 5432,
                database: "shop".into(),
                role: "app".into(),
            }),
        }
    }

    #[test]
    fn a_password_is_written_once_and_sent_as_its_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords");
        let first = resolve(&step(&path)).unwrap().into_owned();
        assert!(
            first
                .sql
                .starts_with("ALTER ROLE \"app\" PASSWORD 'SCRAM-SHA-256$4096:"),
            "{}",
            first.sql
        );
        assert_eq!(first.secret, None);
        let text = std::fs::read_to_string(&path).unwrap();
        let password = text.trim_end().rsplit(':').next().unwrap();
        assert_eq!(password.len(), 32);
        assert!(
            !first.sql.contains(password),
            "the password never reaches SQL"
        );
        // A re-run uses the same password (the verifier's salt differs).
        resolve(&step(&path)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn an_unwritable_file_is_a_step_error() {
        let err = resolve(&step(std::path::Path::new("/proc/carve-passwords"))).unwrap_err();
        assert!(err.contains("/proc/carve-passwords"), "{err}");
    }
}
