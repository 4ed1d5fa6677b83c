//! Which service a database role or `application_name` stands for.
//!
//! Logs and `pg_stat_statements` know roles and application names, not services. The
//! map comes from `--service-map FILE` and from the plan's `[[services]]`; without an
//! entry, the role name is the service (or the application name when no role is known).
//!
//! ```toml
//! ignore = ["postgres", "pg_dump"]      # roles or applications that are no service
//!
//! [roles]
//! orders_rw = "orders"
//!
//! [applications]
//! "billing-worker" = "billing"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

/// carve's own `application_name`: its catalog queries are no service's workload.
/// carve connects as `carve (pid N on HOST)` (see `conn`).
pub const CARVE_APPLICATION: &str = "carve";

/// Whether an `application_name` is one of carve's own connections.
pub fn is_carve(application: &str) -> bool {
    application == CARVE_APPLICATION
        || application
            .strip_prefix(CARVE_APPLICATION)
            .is_some_and(|rest| rest.starts_with(" (pid "))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMap {
    #[serde(default)]
    pub ignore: BTreeSet<String>,
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    #[serde(default)]
    pub applications: BTreeMap<String, String>,
}

impl ServiceMap {
    /// Reads a map file; errors name the file, line and column.
    pub fn load(path: &Path) -> anyhow::Result<ServiceMap> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read service map {}: {e}", path.display()))?;
        let map: ServiceMap = toml::from_str(&text).map_err(|e| {
            let (line, column) = crate::plan::toml_error_position(&text, &e);
            anyhow::anyhow!("{}:{line}:{column}: {}", path.display(), e.message())
        })?;
        for (key, service) in map.roles.iter().chain(&map.applications) {
            if service.trim().is_empty() {
                anyhow::bail!(
                    "{}: {key:?} maps to an empty service name (to leave it out, list it under ignore)",
                    path.display()
                );
            }
        }
        Ok(map)
    }

    /// The map the plan's services imply (the roles and applications recorded there).
    pub fn from_plan(services: &[crate::plan::Service]) -> ServiceMap {
        let mut map = ServiceMap::default();
        for s in services {
            for role in &s.roles {
                map.roles.insert(role.clone(), s.name.clone());
            }
            for app in &s.applications {
                map.applications.insert(app.clone(), s.name.clone());
            }
        }
        map
    }

    /// `self` with `other`'s entries added where `self` has none.
    pub fn or(mut self, other: ServiceMap) -> ServiceMap {
        self.ignore.extend(other.ignore);
        for (k, v) in other.roles {
            self.roles.entry(k).or_insert(v);
        }
        for (k, v) in other.applications {
            self.applications.entry(k).or_insert(v);
        }
        self
    }

    /// The service a session with this role and application name belongs to, or `None`
    /// when its statements are to be left out (ignored, carve itself, or anonymous).
    /// An application name mapped explicitly wins over the role: one shared role often
    /// serves several applications.
    pub fn service_for(&self, role: Option<&str>, application: Option<&str>) -> Option<String> {
        let role = role.filter(|r| !r.is_empty());
        let app = application.filter(|a| !a.is_empty());
        if app.is_some_and(is_carve)
            || role.is_some_and(|r| self.ignore.contains(r))
            || app.is_some_and(|a| self.ignore.contains(a))
        {
            return None;
        }
        if let Some(service) = app.and_then(|a| self.applications.get(a)) {
            return Some(service.clone());
        }
        if let Some(service) = role.and_then(|r| self.roles.get(r)) {
            return Some(service.clone());
        }
        role.or(app).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ServiceMap {
        toml::from_str(
            r#"
            ignore = ["postgres"]
            [roles]
            shared_rw = "monolith"
            orders_rw = "orders"
            [applications]
            "billing-worker" = "billing"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn applications_win_then_roles_then_the_role_name() {
        let m = map();
        assert_eq!(
            m.service_for(Some("shared_rw"), Some("billing-worker")),
            Some("billing".into())
        );
        assert_eq!(
            m.service_for(Some("shared_rw"), Some("psql")),
            Some("monolith".into())
        );
        assert_eq!(
            m.service_for(Some("orders_rw"), None),
            Some("orders".into())
        );
        assert_eq!(
            m.service_for(Some("reports"), Some("x")),
            Some("reports".into())
        );
        assert_eq!(m.service_for(None, Some("cron")), Some("cron".into()));
        assert_eq!(m.service_for(Some(""), Some("")), None);
    }

    #[test]
    fn ignored_and_carve_itself_are_left_out() {
        let m = map();
        assert_eq!(
            m.service_for(Some("postgres"), Some("billing-worker")),
            None
        );
        assert_eq!(
            m.service_for(Some("orders_rw"), Some(CARVE_APPLICATION)),
            None
        );
        assert_eq!(
            m.service_for(Some("orders_rw"), Some("carve (pid 42 on db1)")),
            None
        );
        assert!(!is_carve("carver"));
    }

    #[test]
    fn bad_files_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.toml");
        std::fs::write(&path, "[roles]\norders_rw = \"orders\"\nbogus = 1\n").unwrap();
        let err = ServiceMap::load(&path).unwrap_err().to_string();
        assert!(err.contains("map.toml:3:9"), "{err}");
        std::fs::write(&path, "[roles]\nx = \" \"\n").unwrap();
        let err = ServiceMap::load(&path).unwrap_err().to_string();
        assert!(err.contains("empty service name"), "{err}");
        std::fs::write(&path, "services = 1\n").unwrap();
        assert!(ServiceMap::load(&path).is_err());
    }

    #[test]
    fn command_line_map_wins_over_the_plan() {
        let plan = ServiceMap::from_plan(&[crate::plan::Service {
            name: "old".into(),
            roles: vec!["orders_rw".into(), "x".into()],
            applications: vec![],
            ..Default::default()
        }]);
        let m = map().or(plan);
        assert_eq!(
            m.service_for(Some("orders_rw"), None),
            Some("orders".into())
        );
        assert_eq!(m.service_for(Some("x"), None), Some("old".into()));
    }
}
