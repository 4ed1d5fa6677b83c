//! Playbooks: the ordered steps `carve run` takes for a pipeline, as a TOML file.
//! Pure: parsing, validation and `${VAR}` expansion from a given environment; the
//! command runs them.
//!
//! ```toml
//! version = 1
//! name = "move and cut over one domain"
//!
//! [[steps]]
//! name = "move"
//! carve = ["move", "--domain", "${DOMAIN}", "--target", "${TARGET}"]
//!
//! [[steps]]
//! name = "lag under 1 MiB"
//! wait_lag = { domain = "${DOMAIN}", max_bytes = 1048576, timeout = "10m" }
//!
//! [[steps]]
//! name = "cut over"
//! carve = ["cutover", "--domain", "${DOMAIN}", "--pgbouncer", "${PGBOUNCER}"]
//! on_failure = "rollback"
//!
//! [[steps]]
//! name = "tell the team"
//! shell = "echo ${DOMAIN} cut over"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The playbook format this carve reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub version: u32,
    pub name: String,
    pub steps: Vec<PlaybookStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookStep {
    /// Unique in the playbook: the run's record names steps by it.
    pub name: String,
    /// A carve command and its arguments (`--plan`, `--yes` and `--format json` are
    /// added).
    #[serde(default)]
    pub carve: Option<Vec<String>>,
    /// A shell command (`sh -c`), with `CARVE_PLAN` set.
    #[serde(default)]
    pub shell: Option<String>,
    /// Wait until a moved domain's server is at most `max_bytes` behind.
    #[serde(default)]
    pub wait_lag: Option<WaitLag>,
    #[serde(default)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitLag {
    pub domain: String,
    pub max_bytes: u64,
    #[serde(default = "default_wait", with = "humantime_serde_str")]
    pub timeout: Duration,
}

fn default_wait() -> Duration {
    Duration::from_secs(600)
}

/// What a failed step leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The run stops; running it again retries the step.
    #[default]
    Stop,
    /// The step's phase is taken back (`cutover` → `rollback`, `move` → `undo move`,
    /// `assign`/`restrict` → `undo`), then the run stops.
    Rollback,
}

/// What a step does, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Carve(Vec<String>),
    Shell(String),
    WaitLag(WaitLag),
}

impl PlaybookStep {
    pub fn action(&self) -> Result<Action, String> {
        match (&self.carve, &self.shell, &self.wait_lag) {
            (Some(args), None, None) if !args.is_empty() => Ok(Action::Carve(args.clone())),
            (None, Some(command), None) => Ok(Action::Shell(command.clone())),
            (None, None, Some(wait)) => Ok(Action::WaitLag(wait.clone())),
            _ => Err(format!(
                "step {:?} needs exactly one of `carve = [...]` (not empty), `shell = \"...\"` or `wait_lag = {{...}}`",
                self.name
            )),
        }
    }

    /// The carve command that takes back what this step did, for `on_failure =
    /// "rollback"`.
    pub fn rollback(&self) -> Result<Option<Vec<String>>, String> {
        if self.on_failure == OnFailure::Stop {
            return Ok(None);
        }
        let Ok(Action::Carve(args)) = self.action() else {
            return Err(format!(
                "step {:?}: on_failure = \"rollback\" is for a carve command",
                self.name
            ));
        };
        let domain = args
            .iter()
            .position(|a| a == "--domain")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let with_domain = |mut command: Vec<String>| match &domain {
            Some(d) => {
                command.extend(["--domain".to_string(), d.clone()]);
                Ok(Some(command))
            }
            None => Err(format!(
                "step {:?}: a rollback of {} needs its --domain",
                self.name, args[0]
            )),
        };
        match args[0].as_str() {
            "cutover" => with_domain(vec!["rollback".into()]),
            "move" => with_domain(vec!["undo".into(), "move".into()]),
            "assign" | "restrict" => Ok(Some(vec!["undo".into(), args[0].clone()])),
            other => Err(format!(
                "step {:?}: carve {other} has no rollback; use on_failure = \"stop\"",
                self.name
            )),
        }
    }
}

/// Parses and validates a playbook: its version, unique step names, one action per
/// step, rollbacks that exist. Errors name the file's line where TOML can.
pub fn parse(text: &str) -> Result<Playbook, String> {
    let playbook: Playbook = toml::from_str(text).map_err(|e| e.to_string())?;
    if playbook.version != VERSION {
        return Err(format!(
            "playbook version {} is not one this carve reads (it reads version {VERSION})",
            playbook.version
        ));
    }
    if playbook.steps.is_empty() {
        return Err("the playbook has no [[steps]]".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for step in &playbook.steps {
        if !seen.insert(step.name.as_str()) {
            return Err(format!("two steps are named {:?}", step.name));
        }
        step.action()?;
        step.rollback()?;
    }
    Ok(playbook)
}

/// `text` with each `${NAME}` replaced from `env`; every missing name is listed.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        match env.get(name) {
            Some(value) => out.push_str(value),
            None => missing.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// The playbook with every `${NAME}` in its steps replaced, or every name missing.
pub fn expanded(playbook: &Playbook, env: &BTreeMap<String, String>) -> Result<Playbook, String> {
    let mut missing = std::collections::BTreeSet::new();
    let mut one = |text: &str| match expand(text, env) {
        Ok(t) => t,
        Err(names) => {
            missing.extend(names);
            String::new()
        }
    };
    let mut out = playbook.clone();
    for step in &mut out.steps {
        if let Some(args) = &mut step.carve {
            for a in args.iter_mut() {
                *a = one(a);
            }
        }
        if let Some(command) = &mut step.shell {
            *command = one(command);
        }
        if let Some(wait) = &mut step.wait_lag {
            wait.domain = one(&wait.domain);
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the playbook needs these environment variables, which are not set: {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYBOOK: &str = r#"
version = 1
name = "move and cut over"

[[steps]]
name = "move"
carve = ["move", "--domain", "${DOMAIN}", "--target", "${TARGET}"]
on_failure = "rollback"

[[steps]]
name = "lag"
wait_lag = { domain = "${DOMAIN}", max_bytes = 1024, timeout = "30s" }

[[steps]]
name = "cut over"
carve = ["cutover", "--domain", "${DOMAIN}"]
on_failure = "rollback"

[[steps]]
name = "say so"
shell = "echo done"
"#;

    #[test]
    fn a_playbook_parses_validates_and_expands() {
        let playbook = parse(PLAYBOOK).unwrap();
        assert_eq!(playbook.steps.len(), 4);
        assert_eq!(
            playbook.steps[0].rollback().unwrap(),
            Some(vec![
                "undo".into(),
                "move".into(),
                "--domain".into(),
                "${DOMAIN}".into()
            ])
        );
        assert_eq!(
            playbook.steps[2].rollback().unwrap().unwrap()[0],
            "rollback"
        );
        let env = BTreeMap::from([
            ("DOMAIN".to_string(), "orders".to_string()),
            ("TARGET".to_string(), "host=db2".to_string()),
        ]);
        let done = expanded(&playbook, &env).unwrap();
        assert_eq!(done.steps[0].carve.as_ref().unwrap()[2], "orders");
        assert_eq!(
            done.steps[1].wait_lag.as_ref().unwrap().timeout,
            Duration::from_secs(30)
        );
        let err = expanded(&playbook, &BTreeMap::new()).unwrap_err();
        assert!(err.contains("DOMAIN, TARGET"), "{err}");
    }

    #[test]
    fn bad_playbooks_are_refused_with_the_reason() {
        for (text, reason) in [
            ("version = 2\nname = \"x\"\n[[steps]]\nname = \"a\"\nshell = \"true\"", "version 2"),
            ("version = 1\nname = \"x\"", "missing field `steps`"),
            ("version = 1\nname = \"x\"\nsteps = []", "no [[steps]]"),
            ("version = 1\nname = \"x\"\n[[steps]]\nname = \"a\"", "exactly one"),
            ("version = 1\nname = \"x\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\n[[steps]]\nname = \"a\"\nshell = \"true\"", "two steps"),
            ("version = 1\nname = \"x\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\non_failure = \"rollback\"", "for a carve command"),
            ("version = 1\nname = \"x\"\n[[steps]]\nname = \"a\"\ncarve = [\"verify\", \"--domain\", \"d\"]\non_failure = \"rollback\"", "has no rollback"),
            ("version = 1\nname = \"x\"\n[[steps]]\nname = \"a\"\nshel = \"true\"", "unknown field"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(reason), "{reason}: {err}");
        }
        assert_eq!(expand("a ${B", &BTreeMap::new()), Ok("a ${B".into()));
    }
}
