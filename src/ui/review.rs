//! The interactive review of a discover proposal (dialoguer, on the terminal's stderr):
//! how many domains (when the sweep offers a choice), then accept or rename each
//! domain, move tables between domains, choose a resolution for every joint or common
//! table. Produces `plan::choices::Choice`s; writing them into the
//! plan is pure and lives there. Only called on a terminal without `--yes`.

use std::collections::BTreeSet;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Select};

use crate::analysis::ownership::Ownership;
use crate::analysis::Discovery;
use crate::plan::choices::Choice;

/// What a domain prompt offers.
const ACCEPT: usize = 0;
const RENAME: usize = 1;
const MOVE: usize = 2;
const LATER: usize = 3;
const ACCEPT_REST: usize = 4;
const SKIP_REST: usize = 5;

/// Asks how many domains, when the sweep's resolutions give different numbers: the
/// resolution of the one picked, or `None` to keep the proposal's (Esc too).
pub fn choose_scale(d: &Discovery) -> anyhow::Result<Option<f64>> {
    // One entry per number of domains: the resolution nearest the chosen one.
    let mut offered: Vec<&crate::analysis::domains::ScaleReport> = Vec::new();
    for s in &d.quality.alternatives {
        match offered.iter_mut().find(|o| o.domains == s.domains) {
            Some(o) if !o.chosen && (s.chosen || s.resolution == 1.0) => *o = s,
            Some(_) => {}
            None => offered.push(s),
        }
    }
    if offered.len() < 2 {
        return Ok(None);
    }
    let items: Vec<String> = offered
        .iter()
        .map(|s| {
            format!(
                "{} domains (resolution {}, modularity {:.3}, seeds agree {:.0}%){}",
                s.domains,
                s.resolution,
                s.modularity,
                s.agreement * 100.0,
                if s.chosen { " — as proposed" } else { "" }
            )
        })
        .collect();
    let proposed = offered.iter().position(|s| s.chosen).unwrap_or(0);
    let picked = Select::with_theme(&ColorfulTheme::default())
        .with_prompt("How many domains? (the plan keeps a resolution you pick)")
        .items(&items)
        .default(proposed)
        .interact_opt()?;
    Ok(picked
        .filter(|&i| i != proposed)
        .map(|i| offered[i].resolution))
}

/// Walks the user through the proposal; an empty list when nothing was chosen or the
/// choices were not confirmed.
pub fn walk(d: &Discovery) -> anyhow::Result<Vec<Choice>> {
    let theme = ColorfulTheme::default();
    let mut choices = Vec::new();
    // The review's own view of the domains, updated as tables move and names change.
    let mut names: Vec<String> = d.domains.iter().map(|x| x.name.clone()).collect();
    let mut tables: Vec<Vec<String>> = d.domains.iter().map(|x| x.tables.clone()).collect();

    eprintln!(
        "\nReview: {} domains, then the joint and common tables. Your choices go into the plan as pins and decisions; Esc leaves an item for later.",
        names.len()
    );
    let mut i = 0;
    while i < names.len() {
        let preview: Vec<&str> = tables[i].iter().take(6).map(String::as_str).collect();
        let more = tables[i].len().saturating_sub(preview.len());
        let prompt = format!(
            "Domain {} ({} of {}): {}{}",
            names[i],
            i + 1,
            names.len(),
            preview.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        let action = Select::with_theme(&theme)
            .with_prompt(prompt)
            .items([
                "accept",
                "rename",
                "move a table to another domain",
                "decide later",
                "accept this and all the rest",
                "leave this and all the rest for later",
            ])
            .default(ACCEPT)
            .interact_opt()?
            .unwrap_or(LATER);
        match action {
            ACCEPT => choices.push(Choice::Accept {
                domain: names[i].clone(),
                tables: tables[i].clone(),
            }),
            RENAME => {
                let taken: BTreeSet<String> = names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, n)| n.clone())
                    .collect();
                // The next best names first, with why; or one typed.
                let offered: Vec<&crate::analysis::naming::NameChoice> = d.domains[i]
                    .alternatives
                    .iter()
                    .filter(|a| !taken.contains(&a.name))
                    .collect();
                let mut items: Vec<String> = offered
                    .iter()
                    .map(|a| format!("{} ({})", a.name, a.why))
                    .collect();
                items.push("another name…".into());
                let picked = if offered.is_empty() {
                    Some(items.len() - 1)
                } else {
                    Select::with_theme(&theme)
                        .with_prompt(format!("New name for {}", names[i]))
                        .items(&items)
                        .default(0)
                        .interact_opt()?
                };
                let Some(picked) = picked else {
                    continue;
                };
                let to = match offered.get(picked) {
                    Some(a) => a.name.clone(),
                    None => {
                        let typed: String = Input::with_theme(&theme)
                            .with_prompt(format!("New name for {}", names[i]))
                            .default(names[i].clone())
                            .validate_with(|name: &String| valid_name(name, &taken))
                            .interact_text()?;
                        typed.trim().to_string()
                    }
                };
                choices.push(Choice::Rename {
                    from: names[i].clone(),
                    to: to.clone(),
                    tables: tables[i].clone(),
                });
                names[i] = to;
            }
            MOVE => {
                if names.len() < 2 {
                    eprintln!("There is no other domain to move a table to.");
                    continue;
                }
                let Some(t) = Select::with_theme(&theme)
                    .with_prompt(format!("Which table of {}?", names[i]))
                    .items(&tables[i])
                    .default(0)
                    .interact_opt()?
                else {
                    continue;
                };
                let others: Vec<usize> = (0..names.len()).filter(|j| *j != i).collect();
                let labels: Vec<&String> = others.iter().map(|j| &names[*j]).collect();
                let Some(k) = Select::with_theme(&theme)
                    .with_prompt(format!("Move {} to", tables[i][t]))
                    .items(&labels)
                    .default(0)
                    .interact_opt()?
                else {
                    continue;
                };
                let to = others[k];
                let table = tables[i].remove(t);
                choices.push(Choice::Move {
                    table: table.clone(),
                    to: names[to].clone(),
                    to_tables: tables[to].clone(),
                });
                tables[to].push(table);
                // Stay on this domain: the user may move more, then accept it.
                if !tables[i].is_empty() {
                    continue;
                }
            }
            ACCEPT_REST => {
                for j in i..names.len() {
                    choices.push(Choice::Accept {
                        domain: names[j].clone(),
                        tables: tables[j].clone(),
                    });
                }
                break;
            }
            SKIP_REST => break,
            _ => {}
        }
        i += 1;
    }

    for t in d.tables.iter().filter(|t| {
        matches!(t.owned.ownership, Ownership::Joint | Ownership::Common)
            && !t.owned.resolutions.is_empty()
    }) {
        let mut items: Vec<String> = t
            .owned
            .resolutions
            .iter()
            .map(|r| format!("{} — {}", r.proposal, r.reason))
            .collect();
        items.push("decide later".into());
        let picked = Select::with_theme(&theme)
            .with_prompt(format!(
                "{} is {}: {}",
                t.name,
                t.owned.ownership.as_str(),
                t.owned.reason
            ))
            .items(&items)
            .default(0)
            .interact_opt()?;
        if let Some(r) = picked.and_then(|k| t.owned.resolutions.get(k)) {
            choices.push(Choice::Resolve {
                table: t.name.clone(),
                kind: r.kind.as_str().to_string(),
                proposal: r.proposal.clone(),
            });
        }
    }

    if choices.is_empty() {
        return Ok(choices);
    }
    let record = Confirm::with_theme(&theme)
        .with_prompt(format!(
            "Record these {} choices in the plan?",
            choices.len()
        ))
        .default(true)
        .interact_opt()?
        .unwrap_or(false);
    Ok(if record { choices } else { Vec::new() })
}

/// A domain name becomes a schema name: one carve may use (1 to 63 bytes, no `pg_*`,
/// not `information_schema`), and unique.
fn valid_name(name: &str, taken: &BTreeSet<String>) -> Result<(), String> {
    let name = name.trim();
    if let Some(problem) = crate::sql::schema_name_problem(name) {
        return Err(problem);
    }
    if taken.contains(name) {
        return Err(format!("another domain is already called {name}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_a_schema_and_be_unique() {
        let taken: BTreeSet<String> = ["orders".to_string()].into();
        assert!(valid_name("sales", &taken).is_ok());
        assert!(valid_name(" ", &taken).is_err());
        assert!(valid_name(&"x".repeat(64), &taken).is_err());
        assert!(valid_name("orders", &taken).is_err());
    }
}
