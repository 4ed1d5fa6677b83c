//! The passwords of the login roles restrict creates: one step each, its secret read
//! from (or written to) the password file when the step runs.

use super::*;

/// The id prefix of the steps that create login roles (they get passwords after).
pub const CREATE_LOGIN_STEP: &str = "create login role ";
/// The id of the step that creates a domain's group role, before its name.
pub const CREATE_GROUP_STEP: &str = "create group role ";

/// The id prefix of the steps that give those roles their passwords.
pub const SET_PASSWORD_STEP: &str = "set password ";

/// Where the passwords of new login roles go: the password file, and the host, port
/// and database of their `~/.pgpass` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordTarget {
    pub file: std::path::PathBuf,
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// The login roles `steps` create.
pub fn created_login_roles(steps: &[Step]) -> Vec<&str> {
    steps
        .iter()
        .filter_map(|s| s.id.strip_prefix(CREATE_LOGIN_STEP))
        .collect()
}

/// The catalog as restrict found it, once restrict's recorded `steps` are applied:
/// without the roles they created. Planning restrict again on it gives the roles
/// and probes it was applied with (what a later phase proves again elsewhere).
pub fn catalog_before(
    catalog: &crate::catalog::Catalog,
    steps: &[Step],
) -> crate::catalog::Catalog {
    let created: Vec<&str> = steps
        .iter()
        .filter_map(|s| {
            s.id.strip_prefix(CREATE_LOGIN_STEP)
                .or_else(|| s.id.strip_prefix(CREATE_GROUP_STEP))
        })
        .collect();
    let mut before = catalog.clone();
    before.roles.retain(|r| !created.contains(&r.name.as_str()));
    for role in before.roles.iter_mut() {
        role.member_of.retain(|g| !created.contains(&g.as_str()));
    }
    before
}

/// The login roles `steps` create that no step gives a password.
pub fn roles_without_password_step(steps: &[Step]) -> Vec<&str> {
    created_login_roles(steps)
        .into_iter()
        .filter(|role| {
            !steps
                .iter()
                .any(|s| s.id.strip_prefix(SET_PASSWORD_STEP) == Some(role))
        })
        .collect()
}

/// One step per login role `steps` create without a password step yet: the role's
/// password, from the password file (or generated and written there first), set
/// as its SCRAM verifier when the step runs. The plan holds only where it comes from.
pub fn password_steps(steps: &[Step], target: &PasswordTarget) -> Vec<Step> {
    roles_without_password_step(steps)
        .into_iter()
        .map(|role| Step {
            id: format!("{SET_PASSWORD_STEP}{role}"),
            description: format!(
                "password of login role {} (kept in {})",
                display_ident(role),
                target.file.display()
            ),
            target: Target::Source,
            action: Action::Sql(SqlAction {
                sql: format!(
                    "ALTER ROLE {} PASSWORD {};",
                    ident(role),
                    crate::engine::SECRET_VARIABLE
                ),
                done_check: format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_authid WHERE rolname = {} AND rolpassword IS NOT NULL)",
                    lit(role)
                ),
                undo: format!("ALTER ROLE {} PASSWORD NULL;", ident(role)),
                transactional: true,
                strong_lock: false,
                secret: Some(crate::engine::SecretInput::PasswordVerifier {
                    file: target.file.clone(),
                    host: target.host.clone(),
                    port: target.port,
                    database: target.database.clone(),
                    role: role.to_string(),
                }),
                read: None,
            }),
        })
        .collect()
}
