//! The catalog model: what carve knows about a database's structure. Plain data,
//! serializable, with no connection in it; [`reader`] fills it from a live server in
//! a fixed number of queries, and [`fingerprint`] reduces it to what a plan depends on.

pub mod facts;
pub mod fingerprint;
pub mod reader;
pub mod replication;

use serde::{Deserialize, Serialize};

use crate::sql::display_qualified;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub server: ServerInfo,
    pub schemas: Vec<Schema>,
    pub tables: Vec<Table>,
    pub views: Vec<View>,
    pub sequences: Vec<Sequence>,
    pub functions: Vec<Function>,
    pub roles: Vec<Role>,
    pub extensions: Vec<Extension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: i32,
    pub database: String,
    pub current_user: String,
    pub wal_level: String,
}

/// A schema-qualified object name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualName {
    pub schema: String,
    pub name: String,
}

impl QualName {
    pub fn new(schema: &str, name: &str) -> QualName {
        QualName {
            schema: schema.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for QualName {
    /// `schema.name`, quoting only the parts that need it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display_qualified(&self.schema, &self.name))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    pub owner: String,
    pub comment: Option<String>,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    Ordinary,
    Partitioned,
    Foreign,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub name: QualName,
    pub kind: TableKind,
    pub unlogged: bool,
    pub owner: String,
    /// The parent, when this table is a partition.
    pub partition_of: Option<QualName>,
    pub partition_bound: Option<String>,
    /// `PARTITION BY …` of a partitioned table.
    pub partition_key: Option<String>,
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    pub replica_identity: ReplicaIdentity,
    pub size_bytes: i64,
    /// The planner's estimate; `None` when the table was never analyzed.
    pub row_estimate: Option<i64>,
    pub comment: Option<String>,
    pub grants: Vec<Grant>,
}

impl Table {
    pub fn primary_key(&self) -> Option<&Constraint> {
        self.constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
    }

    pub fn foreign_keys(&self) -> impl Iterator<Item = (&Constraint, &ForeignKey)> {
        self.constraints
            .iter()
            .filter_map(|c| c.foreign_key.as_ref().map(|fk| (c, fk)))
    }

    /// Whether UPDATE and DELETE could be published by logical replication as it is.
    pub fn has_usable_replica_identity(&self) -> bool {
        match &self.replica_identity {
            ReplicaIdentity::Default => self.primary_key().is_some(),
            ReplicaIdentity::Nothing => false,
            ReplicaIdentity::Full | ReplicaIdentity::Index(_) => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    Default,
    Nothing,
    Full,
    Index(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// As `format_type` shows it, e.g. `numeric(10,2)` or `character varying(80)[]`.
    pub type_name: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub identity: Option<Identity>,
    /// The expression of a generated (stored) column.
    pub generated: Option<String>,
    pub comment: Option<String>,
    /// Column-level grants only; table-level grants are on the table.
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    Always,
    ByDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Check,
    ForeignKey,
    Exclusion,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    pub columns: Vec<String>,
    /// As `pg_get_constraintdef` shows it.
    pub definition: String,
    pub deferrable: bool,
    pub initially_deferred: bool,
    /// Cloned onto a partition from its parent's constraint.
    pub inherited: bool,
    pub foreign_key: Option<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub references: QualName,
    pub referenced_columns: Vec<String>,
    pub on_update: FkAction,
    pub on_delete: FkAction,
    pub match_full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FkAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    /// As `pg_get_indexdef` shows it.
    pub definition: String,
    pub unique: bool,
    pub primary: bool,
    /// Plain key columns; expression keys are in the definition only.
    pub columns: Vec<String>,
    /// The constraint this index implements (primary key, unique, exclusion).
    pub constraint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    pub function: QualName,
    pub timing: TriggerTiming,
    pub events: Vec<TriggerEvent>,
    /// `UPDATE OF these columns`: the trigger fires only when one of them is set.
    pub columns: Vec<String>,
    pub for_each_row: bool,
    pub enabled: bool,
    /// As `pg_get_triggerdef` shows it.
    pub definition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerTiming {
    Before,
    After,
    InsteadOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    Insert,
    Update,
    Delete,
    Truncate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub name: QualName,
    pub materialized: bool,
    pub owner: String,
    pub definition: String,
    pub columns: Vec<Column>,
    /// `WITH (…)` options such as `security_invoker=true`.
    pub options: Vec<String>,
    /// The relations (tables, views) this view reads, with the columns it uses.
    pub depends_on: Vec<ViewDependency>,
    pub triggers: Vec<Trigger>,
    pub comment: Option<String>,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDependency {
    pub relation: QualName,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    pub name: QualName,
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    pub owner: String,
    /// The column that owns this sequence (serial or `OWNED BY`), if any.
    pub owned_by: Option<ColumnRef>,
    /// Whether it backs an identity column.
    pub identity: bool,
    pub comment: Option<String>,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRef {
    pub table: QualName,
    pub column: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    Function,
    Procedure,
    Aggregate,
    Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    pub name: QualName,
    /// Argument types as `pg_get_function_identity_arguments` shows them; with the
    /// name, this identifies an overload.
    pub arguments: String,
    /// How many input arguments (`pronargs`).
    pub arity: i32,
    pub result: Option<String>,
    pub kind: FunctionKind,
    pub language: String,
    /// Source text for SQL and PL languages; the link symbol for C.
    pub body: String,
    pub volatility: String,
    pub security_definer: bool,
    pub owner: String,
    pub comment: Option<String>,
    /// The whole `CREATE OR REPLACE FUNCTION` (`pg_get_functiondef`) of a function or
    /// procedure, with its settings, strictness and cost: what a move recreates on
    /// the domain's server. None for aggregates and window functions. Not part of
    /// the fingerprint (`body` stands for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

impl Function {
    /// `schema.name(arguments)`: the identity of one overload.
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.arguments)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    pub create_db: bool,
    pub create_role: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    pub inherit: bool,
    /// -1 for no limit.
    pub connection_limit: i32,
    pub valid_until: Option<String>,
    pub member_of: Vec<String>,
    /// The `search_path` a login as this role gets in this database, when
    /// `ALTER ROLE … [IN DATABASE …] SET` or `ALTER DATABASE … SET` gives one
    /// (the most specific wins, as PostgreSQL applies them), as the server keeps it:
    /// `app, "$user", public`. None: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_path: Option<String>,
}

impl Role {
    /// [`Role::search_path`] as a list of schema names (`$user` as written).
    pub fn search_path_list(&self) -> Option<Vec<String>> {
        self.search_path.as_deref().map(crate::sql::parse_name_list)
    }
}

/// One privilege granted on an object. `grantee` is `PUBLIC` for everyone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: String,
    pub privilege: String,
    pub grantable: bool,
    pub grantor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub version: String,
    pub schema: String,
}

impl Catalog {
    /// The table of that name. Binary search, since `normalize` (which the reader
    /// always runs) keeps tables sorted by name; a linear scan backs it up for a
    /// catalog built by hand in another order.
    pub fn table(&self, name: &QualName) -> Option<&Table> {
        match self.tables.binary_search_by(|t| t.name.cmp(name)) {
            Ok(i) => Some(&self.tables[i]),
            Err(_) => self.tables.iter().find(|t| &t.name == name),
        }
    }

    /// The partitioned table at the top of `name`'s partition tree (`name` itself when
    /// it is not a partition). Partitions belong wherever their root goes.
    pub fn partition_root(&self, name: &QualName) -> QualName {
        let mut current = name.clone();
        while let Some(parent) = self.table(&current).and_then(|t| t.partition_of.clone()) {
            current = parent;
        }
        current
    }

    /// The view of that name (binary search, as for [`Catalog::table`]).
    pub fn view(&self, name: &QualName) -> Option<&View> {
        match self.views.binary_search_by(|v| v.name.cmp(name)) {
            Ok(i) => Some(&self.views[i]),
            Err(_) => self.views.iter().find(|v| &v.name == name),
        }
    }

    /// Every trigger of every table and view, with the relation it is on.
    pub fn triggers(&self) -> impl Iterator<Item = (&QualName, &Trigger)> {
        let on_tables = self
            .tables
            .iter()
            .flat_map(|t| t.triggers.iter().map(move |tr| (&t.name, tr)));
        let on_views = self
            .views
            .iter()
            .flat_map(|v| v.triggers.iter().map(move |tr| (&v.name, tr)));
        on_tables.chain(on_views)
    }

    /// Puts every list in name order, so that equal databases give equal models.
    /// Grants keep PostgreSQL's ACL order: it is what pg_dump prints, and what an
    /// undo that gives privileges back must restore.
    pub fn normalize(&mut self) {
        self.schemas.sort_by(|a, b| a.name.cmp(&b.name));
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.views.sort_by(|a, b| a.name.cmp(&b.name));
        self.sequences.sort_by(|a, b| a.name.cmp(&b.name));
        self.functions
            .sort_by(|a, b| (&a.name, &a.arguments).cmp(&(&b.name, &b.arguments)));
        self.roles.sort_by(|a, b| a.name.cmp(&b.name));
        self.extensions.sort_by(|a, b| a.name.cmp(&b.name));
        for table in &mut self.tables {
            table.constraints.sort_by(|a, b| a.name.cmp(&b.name));
            table.indexes.sort_by(|a, b| a.name.cmp(&b.name));
            table.triggers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for view in &mut self.views {
            view.depends_on.sort_by(|a, b| a.relation.cmp(&b.relation));
            view.triggers.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

/// Small hand-made catalogs for unit tests of the pure code.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A login role with no attributes but `superuser` (as asked) and no memberships.
    pub fn role(name: &str, superuser: bool) -> Role {
        Role {
            name: name.into(),
            login: true,
            superuser,
            create_db: false,
            create_role: false,
            replication: false,
            bypass_rls: false,
            inherit: true,
            connection_limit: -1,
            valid_until: None,
            member_of: vec![],
            search_path: None,
        }
    }

    /// `privilege` granted to `grantee` by `app`, the owner of [`table`]'s tables.
    pub fn grant(grantee: &str, privilege: &str) -> Grant {
        Grant {
            grantee: grantee.into(),
            privilege: privilege.into(),
            grantable: false,
            grantor: "app".into(),
        }
    }

    /// A primary key `name` on `columns`.
    pub fn primary_key(name: &str, columns: &[&str]) -> Constraint {
        Constraint {
            name: name.into(),
            kind: ConstraintKind::PrimaryKey,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            definition: format!("PRIMARY KEY ({})", columns.join(", ")),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: None,
        }
    }

    pub fn column(name: &str, type_name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
            not_null: false,
            default: None,
            identity: None,
            generated: None,
            comment: None,
            grants: vec![],
        }
    }

    /// The roles of a fixture: `owner`, which does not log in, and the login roles
    /// of `services`.
    pub fn push_roles(catalog: &mut Catalog, owner: &str, services: &[&str]) {
        catalog.roles.push(Role {
            login: false,
            ..role(owner, false)
        });
        catalog
            .roles
            .extend(services.iter().map(|name| role(name, false)));
    }

    /// An `INSTEAD OF INSERT` trigger `name` on the view `view` (`schema.name`),
    /// calling `function`, as a split puts on the view over its parts.
    pub fn instead_of_trigger(name: &str, view: &str, function: QualName) -> Trigger {
        Trigger {
            name: name.into(),
            definition: format!(
                "CREATE TRIGGER {name} INSTEAD OF INSERT ON {view} FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
            function,
            timing: TriggerTiming::InsteadOf,
            events: vec![TriggerEvent::Insert],
            columns: Vec::new(),
            for_each_row: true,
            enabled: true,
        }
    }

    /// The `AFTER INSERT` row trigger a split leaves on its table (`table`,
    /// `schema.name`), calling `function`: it makes each part's row.
    pub fn split_row_trigger(table: &str, function: QualName) -> Trigger {
        Trigger {
            name: "carve_split_row".into(),
            definition: format!(
                "CREATE TRIGGER carve_split_row AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
            function,
            timing: TriggerTiming::After,
            events: vec![TriggerEvent::Insert],
            columns: Vec::new(),
            for_each_row: true,
            enabled: true,
        }
    }

    /// An ordinary table owned by `app` with one integer column `total`.
    pub fn table(schema: &str, name: &str) -> Table {
        Table {
            name: QualName::new(schema, name),
            kind: TableKind::Ordinary,
            unlogged: false,
            owner: "app".into(),
            partition_of: None,
            partition_bound: None,
            partition_key: None,
            columns: vec![Column {
                not_null: true,
                ..column("total", "integer")
            }],
            constraints: vec![],
            indexes: vec![],
            triggers: vec![],
            replica_identity: ReplicaIdentity::Default,
            size_bytes: 8192,
            row_estimate: Some(10),
            comment: None,
            grants: vec![],
        }
    }

    /// A PostgreSQL 15 catalog of database `db` holding `tables`.
    pub fn catalog(tables: Vec<Table>) -> Catalog {
        let mut catalog = Catalog {
            server: ServerInfo {
                version: "15.0".into(),
                version_num: 150000,
                database: "db".into(),
                current_user: "u".into(),
                wal_level: "logical".into(),
            },
            schemas: vec![],
            tables,
            views: vec![],
            sequences: vec![],
            functions: vec![],
            roles: vec![],
            extensions: vec![],
        };
        catalog.normalize();
        catalog
    }
}
