//! The domain map as text a graph tool draws: Graphviz dot or Mermaid.

use std::collections::BTreeMap;

use crate::analysis::Discovery;
/// Which graph language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    Dot,
    Mermaid,
}

/// One node per table inside one cluster per domain; edges for every integrator link
/// (foreign keys, views, triggers, functions, shared statements), crossing edges red.
pub fn render(discovery: &Discovery, format: GraphKind) -> String {
    let domain_of: BTreeMap<String, &str> = discovery
        .domains
        .iter()
        .flat_map(|d| d.tables.iter().map(move |t| (t.clone(), d.name.as_str())))
        .collect();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for link in discovery
        .proposal
        .links
        .iter()
        .filter(|l| l.kind.is_integrator())
    {
        *edges
            .entry((link.a.to_string(), link.b.to_string()))
            .or_default() += 1;
    }
    let ids: BTreeMap<&String, String> = domain_of
        .keys()
        .enumerate()
        .map(|(i, t)| (t, format!("t{i}")))
        .collect();
    let mut out = String::new();
    match format {
        GraphKind::Dot => {
            out.push_str("graph domains {\n  graph [rankdir=LR, fontname=\"sans-serif\"];\n  node [shape=box, fontname=\"sans-serif\"];\n");
            for (i, d) in discovery.domains.iter().enumerate() {
                out.push_str(&format!(
                    "  subgraph cluster_{i} {{\n    label={};\n",
                    dot_string(&d.name)
                ));
                for t in &d.tables {
                    out.push_str(&format!("    {} [label={}];\n", ids[t], dot_string(t)));
                }
                out.push_str("  }\n");
            }
            for ((a, b), n) in &edges {
                let crossing = domain_of.get(a) != domain_of.get(b);
                out.push_str(&format!(
                    "  {} -- {} [penwidth={}{}];\n",
                    ids[a],
                    ids[b],
                    (*n).min(5),
                    if crossing { ", color=red" } else { "" }
                ));
            }
            out.push_str("}\n");
        }
        GraphKind::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, d) in discovery.domains.iter().enumerate() {
                out.push_str(&format!("  subgraph d{i}[{}]\n", mermaid_string(&d.name)));
                for t in &d.tables {
                    out.push_str(&format!("    {}[{}]\n", ids[t], mermaid_string(t)));
                }
                out.push_str("  end\n");
            }
            for (a, b) in edges.keys() {
                let crossing = domain_of.get(a) != domain_of.get(b);
                out.push_str(&format!(
                    "  {} {} {}\n",
                    ids[a],
                    if crossing { "-.-" } else { "---" },
                    ids[b]
                ));
            }
        }
    }
    out
}

fn dot_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn mermaid_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "#quot;"))
}
