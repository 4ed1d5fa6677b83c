//! Plans written by an older carve, upgraded on load (the file itself is rewritten
//! in the new format the next time carve saves it).

use serde::Deserialize;
use toml::{Table, Value};

use super::{
    Decision, Domain, Fingerprint, PhaseRecord, Pin, Plan, Service, Source, WorkloadSources,
    FORMAT_VERSION,
};

/// A version 1 plan: as now, except its phases (upgraded one by one) and no consoles.
/// Parsed from the text itself, so its errors keep their line and column.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1 {
    #[allow(dead_code)]
    format_version: u32,
    written_by: String,
    source: Source,
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(default)]
    pins: Vec<Pin>,
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    decisions: Vec<Decision>,
    #[serde(default)]
    phases: Vec<Table>,
    #[serde(default)]
    workload: Option<WorkloadSources>,
    fingerprint: Fingerprint,
}

impl V1 {
    /// The plan in today's format, or why a phase could not be upgraded.
    pub fn upgrade(self) -> Result<Plan, String> {
        let mut phases = Vec::with_capacity(self.phases.len());
        for (i, mut table) in self.phases.into_iter().enumerate() {
            upgrade_phase(&mut table);
            let mut record: PhaseRecord = Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| format!("[[phases]] #{}: {}", i + 1, e.message()))?;
            record.state = record.implied_state();
            phases.push(record);
        }
        Ok(Plan {
            format_version: FORMAT_VERSION,
            written_by: self.written_by,
            resolution: None,
            source: self.source,
            domains: self.domains,
            pins: self.pins,
            services: self.services,
            decisions: self.decisions,
            splits: Vec::new(),
            consoles: Vec::new(),
            phases,
            workload: self.workload,
            runs: Vec::new(),
            fingerprint: self.fingerprint,
        })
    }
}

/// Version 1 → 2 for one phase: a step's SQL fields move into `action = { kind =
/// "sql", … }`; `renames`, `creates_schemas` and `privileges` into `gate`; a `state`
/// is added (then recomputed from the journal, as version 1 implied it).
fn upgrade_phase(phase: &mut Table) {
    let mut gate = Table::new();
    for key in ["renames", "creates_schemas", "privileges"] {
        if let Some(value) = phase.remove(key) {
            gate.insert(key.into(), value);
        }
    }
    if !gate.is_empty() {
        phase.insert("gate".into(), Value::Table(gate));
    }
    phase.insert("state".into(), Value::String("running".into()));
    let Some(Value::Array(steps)) = phase.get_mut("steps") else {
        return;
    };
    for step in steps.iter_mut().filter_map(Value::as_table_mut) {
        let mut action = Table::new();
        action.insert("kind".into(), Value::String("sql".into()));
        for key in [
            "sql",
            "done_check",
            "undo",
            "transactional",
            "strong_lock",
            "secret",
        ] {
            if let Some(value) = step.remove(key) {
                action.insert(key.into(), value);
            }
        }
        step.insert("action".into(), Value::Table(action));
    }
}
