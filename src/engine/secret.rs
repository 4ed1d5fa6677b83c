//! Secrets a step needs when it runs (a login role's password, a role's verifier on
//! the source): fetched at that moment and put into the step's SQL, never into the
//! plan, the journal or a log.

use std::borrow::Cow;

use tokio_postgres::Client;

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

/// `role`'s `rolpassword` on the source (a superuser's connection reads `pg_authid`).
async fn verifier_on_source(source: &Client, role: &str) -> Result<Option<String>, String> {
    let row = source
        .query_opt(
            "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| {
            format!(
                "reading the password of role {} on the source: {}",
                crate::sql::display_ident(role),
                crate::conn::describe_db_error(&e)
            )
        })?;
    match row {
        Some(row) => Ok(row.get(0)),
        None => Err(format!(
            "role {} no longer exists on the source",
            crate::sql::display_ident(role)
        )),
    }
}

/// `action` with its secret in place of `:'carve_secret'`. For a password, the file's
/// line for the role is used, or a new password is appended to the file (and synced)
/// before it is sent, so a crash between the two is finished by a re-run with the
/// same password. A verifier on the source is read through `source` (NULL when the
/// role has no password).
pub async fn resolve<'a>(
    action: &'a SqlAction,
    source: &Client,
) -> Result<Cow<'a, SqlAction>, String> {
    let Some(input) = &action.secret else {
        return Ok(Cow::Borrowed(action));
    };
    let quoted = match input {
        SecretInput::VerifierOnSource { role } => match verifier_on_source(source, role).await? {
            Some(verifier) => literal(&verifier).map_err(|e| e.to_string())?,
            None => "NULL".to_string(),
        },
        SecretInput::PasswordVerifier { .. } | SecretInput::ConninfoWithPassword { .. } => {
            from_file(input)?
        }
    };
    Ok(Cow::Owned(with_secret(action, &quoted)))
}

/// `action` with `quoted` (a SQL literal, or NULL) in place of `:'carve_secret'`.
fn with_secret(action: &SqlAction, quoted: &str) -> SqlAction {
    SqlAction {
        sql: action.sql.replace(SECRET_VARIABLE, quoted),
        secret: None,
        ..action.clone()
    }
}

/// The SQL literal of a secret kept in the password file (what `VerifierOnSource`
/// reads from the source is not).
fn from_file(input: &SecretInput) -> Result<String, String> {
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
        SecretInput::VerifierOnSource { role } => {
            return Err(format!(
                "the password of role {} is read from the source, not from a file",
                crate::sql::display_ident(role)
            ))
        }
    };
    literal(&value).map_err(|e| e.to_string())
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
            read: None,
        }
    }

    /// What `resolve` makes of a step whose secret is in the password file.
    fn resolve_from_file(action: &SqlAction) -> Result<SqlAction, String> {
        let input = action.secret.as_ref().expect("a secret");
        Ok(with_secret(action, &from_file(input)?))
    }

    #[test]
    fn a_password_is_written_once_and_sent_as_its_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords");
        let first = resolve_from_file(&step(&path)).unwrap();
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
        resolve_from_file(&step(&path)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn an_unwritable_file_is_a_step_error() {
        let err =
            resolve_from_file(&step(std::path::Path::new("/proc/carve-passwords"))).unwrap_err();
        assert!(err.contains("/proc/carve-passwords"), "{err}");
    }
}
