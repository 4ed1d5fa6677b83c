//! The services' login roles (kept or new) and their home domains, and the checks
//! that refuse a role restrict cannot make safe.

use super::*;

impl Planner<'_> {
    /// Each service's login role (kept or new, and whether it is new), before
    /// anything else: PostgreSQL resolves a role's unqualified names through a
    /// schema of the role's own name first (`"$user"`), so what its statements
    /// reach depends on it.
    pub(super) fn login_roles(&mut self, workload: &Workload) -> BTreeMap<String, (String, bool)> {
        let names: BTreeSet<&str> = workload
            .statements
            .iter()
            .map(|s| s.service.as_str())
            .collect();
        // Which services use each existing role, to tell a role of one's own from a
        // shared one.
        let mut users_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in &self.plan.services {
            for role in &service.roles {
                users_of.entry(role).or_default().insert(&service.name);
            }
        }
        for (service, seen) in &workload.seen {
            for role in &seen.roles {
                users_of.entry(role).or_default().insert(service);
            }
        }
        let mut out = BTreeMap::new();
        for name in names {
            let config = self.plan.services.iter().find(|s| s.name == name);
            let seen_roles: Vec<&str> = config
                .map(|c| c.roles.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let (role, new_role) = match config.and_then(|c| c.login_role.clone()) {
                Some(r) => {
                    let exists = self.catalog.roles.iter().any(|x| x.name == r);
                    (r, !exists)
                }
                None => {
                    let own = match seen_roles.as_slice() {
                        [only] => {
                            let alone = users_of.get(only).is_some_and(|u| u.len() == 1);
                            let usable = self
                                .catalog
                                .roles
                                .iter()
                                .any(|r| r.name == *only && r.login && !r.superuser);
                            (alone && usable).then(|| only.to_string())
                        }
                        _ => None,
                    };
                    match own {
                        Some(r) => (r, false),
                        None => {
                            if self.catalog.roles.iter().any(|r| r.name == name) {
                                self.errors.push(format!(
                                    "service {name}: a role named {name} already exists but is not this service's own; name the service's login role in the plan ([[services]] login_role = \"…\")"
                                ));
                            }
                            (name.to_string(), true)
                        }
                    }
                }
            };
            for shared in seen_roles.iter().filter(|r| **r != role) {
                let users: Vec<&str> = users_of
                    .get(shared)
                    .map(|u| u.iter().copied().collect())
                    .unwrap_or_default();
                let note = format!(
                    "role {} (used by {}) keeps its privileges: once every service connects as its own role, take its LOGIN away (ALTER ROLE {} NOLOGIN)",
                    display_ident(shared),
                    users.join(", "),
                    ident(shared)
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
            }
            if new_role {
                self.inherit_search_path(name, &role, &seen_roles);
            }
            out.insert(name.to_string(), (role, new_role));
        }
        out
    }

    /// A new login role logs in with the `search_path` the service's old roles were
    /// set to, when they agree on one: the service's unchanged SQL names its tables
    /// along it. When they differ, a note says the new role gets none.
    fn inherit_search_path(&mut self, service: &str, role: &str, old_roles: &[&str]) {
        let paths: BTreeSet<Vec<String>> = old_roles
            .iter()
            .filter_map(|old| self.catalog.roles.iter().find(|r| r.name == *old))
            .filter_map(crate::catalog::Role::search_path_list)
            .collect();
        match paths.len() {
            0 => {}
            1 => {
                let path = paths.into_iter().next().expect("one path");
                self.inherited_paths.insert(role.to_string(), path);
            }
            _ => self.notes.push(format!(
                "service {service}'s roles ({}) log in with different search_paths; its new role {} gets none of them: set the one its SQL needs (ALTER ROLE {} SET search_path = …)",
                old_roles.join(", "),
                display_ident(role),
                ident(role)
            )),
        }
    }

    /// The `search_path` a role is set to, or inherits as a new login role; none:
    /// the server's default.
    pub(super) fn configured_search_path(&self, role: &str) -> Option<Vec<String>> {
        self.inherited_paths.get(role).cloned().or_else(|| {
            self.catalog
                .roles
                .iter()
                .find(|r| r.name == role)
                .and_then(crate::catalog::Role::search_path_list)
        })
    }

    /// Where a role's unqualified names are looked up: the `search_path` the role
    /// or the database is set to (`Role::search_path`) or a new role inherits
    /// (`inherit_search_path`), else PostgreSQL's default
    /// `"$user", public`; `$user` only when a schema of the role's name exists
    /// (after assign, a domain schema named like the service's new role).
    pub(super) fn search_path_of(&self, role: &str) -> Vec<String> {
        let path = self.configured_search_path(role).unwrap_or_else(|| {
            std::iter::once("$user".to_string())
                .chain(default_search_path())
                .collect()
        });
        let own_schema = self.catalog.schemas.iter().any(|s| s.name == role);
        path.into_iter()
            .filter_map(|schema| match schema.as_str() {
                "$user" => own_schema.then(|| role.to_string()),
                _ => Some(schema),
            })
            .collect()
    }

    /// Each service's home domain, with its login role from `login_roles`.
    pub(super) fn services(
        &mut self,
        statements: &[Statement],
        roles: &BTreeMap<String, (String, bool)>,
    ) -> Vec<ServiceRoles> {
        let names: BTreeSet<&str> = statements.iter().map(|s| s.service.as_str()).collect();
        let mut out: Vec<ServiceRoles> = Vec::new();
        for name in names {
            let config = self.plan.services.iter().find(|s| s.name == name);
            let (domain, domain_from) = match config.and_then(|c| c.domain.clone()) {
                Some(d) => {
                    if !self.plan.domains.iter().any(|x| x.name == d) {
                        self.errors.push(format!(
                            "service {name}: domain {d:?} is not one of the plan's domains"
                        ));
                    }
                    (d, "plan")
                }
                None => match self.home_domain(&self.consolidated_with(name), statements) {
                    Some(d) => (d, "workload"),
                    None => {
                        self.errors.push(format!(
                            "service {name} touches no table of any domain: name its home domain in the plan ([[services]] name = {name:?}, domain = \"…\")"
                        ));
                        continue;
                    }
                },
            };
            let group = self
                .plan
                .domains
                .iter()
                .find(|d| d.name == domain)
                .and_then(|d| d.role.clone())
                .unwrap_or_else(|| format!("domain_{domain}"));
            let Some((role, new_role)) = roles.get(name).cloned() else {
                continue;
            };
            out.push(ServiceRoles {
                name: name.to_string(),
                domain,
                domain_from,
                role,
                new_role,
                group,
                connection_limit: config.and_then(|c| c.connection_limit),
            });
        }
        self.check_roles(&out);
        out
    }

    /// The writers of each table whose ownership the plan decides
    /// `service-consolidation` or `shared-data-domain`, from the workload.
    pub(super) fn ownership_resolutions(&mut self, statements: &[Statement]) {
        use crate::plan::choices::{tables_decided, CONSOLIDATION, SHARED_DATA_DOMAIN};
        let consolidating = tables_decided(&self.plan.decisions, CONSOLIDATION);
        let shared = tables_decided(&self.plan.decisions, SHARED_DATA_DOMAIN);
        let mut writers: BTreeMap<QualName, BTreeSet<String>> = BTreeMap::new();
        for s in statements {
            for need in s.needs.iter().filter(|n| n.privilege != "SELECT") {
                for table in &need.data {
                    let name = self.original_name(table).to_string();
                    if consolidating.contains(&name) || shared.contains(&name) {
                        writers
                            .entry(self.catalog.partition_root(table))
                            .or_default()
                            .insert(s.service.clone());
                    }
                }
            }
        }
        let (mut groups, mut sharers) = (Vec::new(), BTreeMap::new());
        for (table, services) in writers {
            if consolidating.contains(&self.original_name(&table).to_string()) {
                groups.push(services);
            } else {
                sharers.insert(table, services);
            }
        }
        self.consolidated = crate::plan::choices::merge_overlapping(groups);
        self.sharers = sharers;
    }

    /// `service` and the services the plan consolidates it with.
    pub(super) fn consolidated_with(&self, service: &str) -> BTreeSet<String> {
        self.consolidated
            .iter()
            .find(|g| g.contains(service))
            .cloned()
            .unwrap_or_else(|| [service.to_string()].into())
    }

    /// The domain whose tables a service (with those consolidated with it) writes
    /// most; reads break ties and decide for a service that only reads.
    pub(super) fn home_domain(
        &self,
        services: &BTreeSet<String>,
        statements: &[Statement],
    ) -> Option<String> {
        let mut score: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for s in statements.iter().filter(|s| services.contains(&s.service)) {
            // Each table a statement writes (or else reads) counts once, however
            // many needs reach it (a view and the table beneath, SELECT and UPDATE).
            let mut written = BTreeSet::new();
            let mut read = BTreeSet::new();
            for need in s.needs.iter().filter(|n| n.runtime.is_none()) {
                let into = if need.privilege == "SELECT" {
                    &mut read
                } else {
                    &mut written
                };
                into.extend(need.data.iter());
            }
            for table in &written {
                if let Some(d) = self.domain(table) {
                    score.entry(d).or_default().0 += 1;
                }
            }
            for table in read.difference(&written) {
                if let Some(d) = self.domain(table) {
                    score.entry(d).or_default().1 += 1;
                }
            }
        }
        // On a tie, the domain named after the service (discover names a domain
        // after the service that writes most of it).
        let named_after = |d: &str| {
            services
                .iter()
                .any(|s| s == d || crate::analysis::snake_case(s) == d)
        };
        score
            .into_iter()
            .max_by(|a, b| {
                a.1.cmp(&b.1)
                    .then_with(|| named_after(a.0).cmp(&named_after(b.0)))
                    .then_with(|| b.0.cmp(a.0))
            })
            .map(|(d, _)| d.to_string())
    }

    pub(super) fn check_roles(&mut self, services: &[ServiceRoles]) {
        let mut by_role: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in services {
            by_role.entry(&s.role).or_default().push(&s.name);
            for name in [&s.role, &s.group] {
                if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
                    self.errors.push(format!(
                        "service {}: role name {name:?} must be 1 to {MAX_NAME} bytes (PostgreSQL cuts longer names); set [[services]] login_role or [[domains]] role",
                        s.name
                    ));
                }
            }
            if self.catalog.roles.iter().any(|r| r.name == s.group) {
                self.errors.push(format!(
                    "domain {}: role {} already exists, and restrict creates the domain's group role; name another in the plan ([[domains]] role = \"…\")",
                    s.domain,
                    display_ident(&s.group)
                ));
            }
            if services.iter().any(|o| o.role == s.group) {
                self.errors.push(format!(
                    "role {} would be both a service's login role and domain {}'s group role",
                    display_ident(&s.group),
                    s.domain
                ));
            }
            if !s.new_role {
                self.check_kept_role(s);
            }
        }
        for (role, users) in by_role.into_iter().filter(|(_, u)| u.len() > 1) {
            self.errors.push(format!(
                "services {} would share login role {}: each service needs its own",
                users.join(", "),
                display_ident(role)
            ));
        }
    }

    /// A role the service keeps must be one that can be restricted.
    pub(super) fn check_kept_role(&mut self, s: &ServiceRoles) {
        let Some(role) = self.catalog.roles.iter().find(|r| r.name == s.role) else {
            return;
        };
        if role.superuser {
            self.errors.push(format!(
                "service {}: role {} is a superuser, which no grant can restrict; name a new login role in the plan ([[services]] login_role = \"…\")",
                s.name,
                display_ident(&role.name)
            ));
        }
        let owned: Vec<String> = self
            .relations()
            .filter(|(_, _, owner, _)| *owner == role.name)
            .filter(|(name, kind, _, _)| !self.inside(&self.data_of(name, *kind), &s.domain))
            .map(|(name, kind, _, _)| format!("{} {name}", kind.name()))
            .collect();
        if !owned.is_empty() {
            self.errors.push(format!(
                "service {}: role {} owns {} outside domain {} ({}), and an owner keeps every privilege; give them another owner, or name a new login role in the plan ([[services]] login_role = \"…\")",
                s.name,
                display_ident(&role.name),
                owned.len(),
                s.domain,
                owned.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }

    /// Whether membership in `role` gives privileges outside `domain`: the
    /// predefined roles that read or write everything, a superuser, a role holding
    /// or owning such a relation, or a role that is a member of one.
    pub(super) fn reaches_outside(
        &self,
        role: &str,
        domain: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        if !seen.insert(role.to_string()) {
            return false;
        }
        if matches!(role, "pg_read_all_data" | "pg_write_all_data") {
            return true;
        }
        let Some(r) = self.catalog.roles.iter().find(|r| r.name == role) else {
            return false;
        };
        if r.superuser {
            return true;
        }
        let holds = self.relations().any(|(name, kind, owner, grants)| {
            (owner == role || grants.iter().any(|g| g.grantee == role))
                && !self.inside(&self.data_of(name, kind), domain)
        });
        holds
            || r.member_of
                .iter()
                .any(|p| self.reaches_outside(p, domain, seen))
    }

    pub(super) fn service_plans(&self, services: &[ServiceRoles]) -> Vec<ServicePlan> {
        services
            .iter()
            .map(|s| ServicePlan {
                service: s.name.clone(),
                domain: s.domain.clone(),
                domain_from: s.domain_from,
                role: s.role.clone(),
                new_role: s.new_role,
                group: s.group.clone(),
                connection_limit: s.connection_limit,
                grants: self
                    .grants
                    .iter()
                    .filter(|((to, _, _), _)| *to == s.group || *to == s.role)
                    .map(|((to, kind, relation), acc)| GrantPlan {
                        on: relation.to_string(),
                        kind: *kind,
                        privileges: in_order(&acc.privileges)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        columns: acc
                            .columns
                            .iter()
                            .map(|(p, c)| (p.to_string(), c.iter().cloned().collect()))
                            .collect(),
                        to: to.clone(),
                        because: acc.because.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

pub(super) fn role_oid(role: &str) -> String {
    if role == "PUBLIC" {
        "0".to_string()
    } else {
        format!(
            "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {})",
            lit(role)
        )
    }
}

pub(super) fn is_member(role: &str, member: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members WHERE roleid = {} AND member = {})",
        role_oid(role),
        role_oid(member)
    )
}
