//! The fingerprint gate: a phase only changes a database that is still the one its
//! plan was made from.
//!
//! When no phase is under way, the catalog must equal the plan's fingerprint exactly.
//! A phase stopped part-way (killed, failed, interrupted) has changed the catalog by
//! design, so both sides are first brought back to the names the phase started from:
//! compatibility views and the schemas it creates are set aside, moved objects get
//! their old names back (in keys and in definitions, which the catalog reader writes
//! schema-qualified), and view definitions are left out (a view over a moved table
//! reads differently). A phase that changes privileges has its grants and roles set
//! aside the same way. What remains must be equal, so a column added to a table
//! while assign was half done is still caught.

use std::collections::BTreeMap;

use crate::catalog::fingerprint::{Change, Fingerprint};
use crate::plan::GateHints;
use crate::sql::{display_ident, ident, parse_qualified};

/// What the catalog must match before a phase's steps run.
pub enum Gate<'a> {
    /// Nothing under way: equal fingerprints.
    Exact,
    /// A phase stopped part-way: equal once its own changes (these hints) are set
    /// aside.
    InFlight(&'a GateHints),
}

/// The changes that make `current` differ from the plan's `expected` fingerprint, or
/// nothing when the gate is met.
pub fn check(expected: &Fingerprint, current: &Fingerprint, gate: &Gate) -> Vec<Change> {
    if expected.digest == current.digest {
        return Vec::new();
    }
    match gate {
        Gate::Exact => expected.diff(current),
        Gate::InFlight(hints) => {
            let normal = |fp: &Fingerprint| Fingerprint {
                digest: String::new(),
                objects: normalize(&fp.objects, hints),
            };
            normal(expected).diff(&normal(current))
        }
    }
}

/// The fingerprint entries with a phase's own changes set aside (see the module doc).
pub fn normalize(
    objects: &BTreeMap<String, String>,
    hints: &GateHints,
) -> BTreeMap<String, String> {
    let (renames, created_schemas, privileges) =
        (&hints.renames, &hints.creates_schemas, hints.privileges);
    let created: Vec<String> = created_schemas
        .iter()
        .map(|s| display_ident(s).to_string())
        .collect();
    // A compatibility view stands in the old place once the object exists at its new
    // name; before that, the old name is the object itself.
    let compat: Vec<&str> = renames
        .iter()
        .filter(|r| {
            r.compat_view
                && (objects.contains_key(&format!("table {}", r.to))
                    || objects.contains_key(&format!("view {}", r.to)))
        })
        .map(|r| r.from.as_str())
        .collect();
    let forms: Vec<(Vec<String>, String)> = renames
        .iter()
        .map(|r| (spellings(&r.to), r.from.clone()))
        .collect();

    let mut out = BTreeMap::new();
    for (key, value) in objects {
        let (kind, object) = key.split_once(' ').unwrap_or((key, ""));
        let target = grant_target(key).unwrap_or(object);
        let in_created = created
            .iter()
            .any(|s| target == format!("schema {s}") || (kind == "schema" && object == s));
        let of_compat = compat.iter().any(|f| {
            target == format!("view {f}")
                || (kind == "view" && object == *f)
                || (target.starts_with(&format!("column {f}."))
                    && !objects.contains_key(&format!("table {f}")))
        });
        // A phase that changes privileges (restrict) changes grants and roles by
        // design; every other kind of change is still caught.
        let privilege = privileges && (kind == "grant" || kind == "role");
        let touched_object = match grant_target(key) {
            Some(on) => on.split_once(' ').map_or(on, |(_, name)| name),
            None => object,
        };
        let touched = hints.touches.iter().any(|t| {
            touched_object == t
                || touched_object.starts_with(&format!("{t}."))
                || touched_object.starts_with(&format!("{t}("))
        });
        if in_created || of_compat || privilege || touched {
            continue;
        }
        let key = translate(key, &forms);
        let mut value = translate(value, &forms);
        if kind == "view" {
            value = value
                .split("; ")
                .filter(|part| !part.starts_with("definition="))
                .collect::<Vec<_>>()
                .join("; ");
        }
        out.insert(key, value);
    }
    out
}

/// `grant SELECT on view public.v to alice` → `view public.v`.
fn grant_target(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("grant ")?;
    let (_, rest) = rest.split_once(" on ")?;
    let (target, _) = rest.rsplit_once(" to ")?;
    Some(target)
}

/// The ways a qualified name is written in fingerprint keys (carve's display form) and
/// in PostgreSQL's definitions (quoted only where needed, keywords too): each part
/// bare or quoted.
fn spellings(display: &str) -> Vec<String> {
    let Ok((schema, name)) = parse_qualified(display) else {
        return vec![display.to_string()];
    };
    let mut forms = vec![display.to_string()];
    for s in [display_ident(&schema).to_string(), ident(&schema)] {
        for n in [display_ident(&name).to_string(), ident(&name)] {
            let form = format!("{s}.{n}");
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// Replaces each spelling of a new name by the old name, where it stands as a whole
/// name (not inside a longer identifier).
fn translate(text: &str, forms: &[(Vec<String>, String)]) -> String {
    let mut text = text.to_string();
    for (spellings, old) in forms {
        for form in spellings {
            if text.contains(form.as_str()) {
                text = replace_whole(&text, form, old);
            }
        }
    }
    text
}

fn replace_whole(text: &str, from: &str, to: &str) -> String {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '"';
    let mut out = String::with_capacity(text.len());
    let mut consumed = 0;
    while let Some(found) = text[consumed..].find(from) {
        let at = consumed + found;
        let end = at + from.len();
        let before_ok = text[..at]
            .chars()
            .last()
            .is_none_or(|c| !is_name_char(c) && c != '.');
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_name_char(c));
        out.push_str(&text[consumed..at]);
        out.push_str(if before_ok && after_ok { to } else { from });
        consumed = end;
    }
    out.push_str(&text[consumed..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Rename;

    fn fp(entries: &[(&str, &str)]) -> Fingerprint {
        let objects: BTreeMap<String, String> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fingerprint {
            digest: format!("{:?}", objects),
            objects,
        }
    }

    fn phase() -> GateHints {
        GateHints {
            renames: vec![
                Rename {
                    from: "public.orders".into(),
                    to: "sales.orders".into(),
                    compat_view: true,
                },
                Rename {
                    from: "public.orders_id_seq".into(),
                    to: "sales.orders_id_seq".into(),
                    compat_view: false,
                },
            ],
            creates_schemas: vec!["sales".into()],
            privileges: false,
            touches: Vec::new(),
        }
    }

    fn before() -> Fingerprint {
        fp(&[
            ("schema public", "owner=postgres"),
            ("table public.orders", "kind=table; owner=app"),
            (
                "column public.orders.id",
                "type=integer; not_null; default=nextval('public.orders_id_seq'::regclass)",
            ),
            (
                "grant SELECT on table public.orders to reader",
                "grantor=app",
            ),
            (
                "grant SELECT on column public.orders.id to auditor",
                "grantor=app",
            ),
            (
                "index public.orders.orders_pkey",
                "definition=CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)",
            ),
            ("sequence public.orders_id_seq", "owned_by=public.orders.id"),
            (
                "view public.order_totals",
                "materialized=false; owner=app; definition=#aaaa",
            ),
            ("table public.orders_archive", "kind=table; owner=app"),
        ])
    }

    fn after() -> Fingerprint {
        fp(&[
            ("schema public", "owner=postgres"),
            ("schema sales", "owner=app"),
            ("grant USAGE on schema sales to reader", "grantor=app"),
            ("table sales.orders", "kind=table; owner=app"),
            (
                "column sales.orders.id",
                "type=integer; not_null; default=nextval('sales.orders_id_seq'::regclass)",
            ),
            (
                "grant SELECT on table sales.orders to reader",
                "grantor=app",
            ),
            (
                "grant SELECT on column sales.orders.id to auditor",
                "grantor=app",
            ),
            (
                "index sales.orders.orders_pkey",
                "definition=CREATE UNIQUE INDEX orders_pkey ON sales.orders USING btree (id)",
            ),
            ("sequence sales.orders_id_seq", "owned_by=sales.orders.id"),
            (
                "view public.orders",
                "materialized=false; owner=app; definition=#bbbb; options=security_invoker=true",
            ),
            (
                "grant SELECT on view public.orders to reader",
                "grantor=app",
            ),
            (
                "grant SELECT on column public.orders.id to auditor",
                "grantor=app",
            ),
            (
                "view public.order_totals",
                "materialized=false; owner=app; definition=#cccc",
            ),
            ("table public.orders_archive", "kind=table; owner=app"),
        ])
    }

    #[test]
    fn exact_gate_names_every_change() {
        let changes = check(&before(), &after(), &Gate::Exact);
        assert!(changes.len() > 5, "{changes:?}");
        assert!(check(&before(), &before(), &Gate::Exact).is_empty());
    }

    #[test]
    fn a_half_done_phase_matches_either_side() {
        let phase = phase();
        let gate = Gate::InFlight(&phase);
        assert_eq!(check(&before(), &after(), &gate), vec![]);
        assert_eq!(check(&after(), &before(), &gate), vec![]);
    }

    #[test]
    fn a_column_added_mid_phase_is_still_caught() {
        let phase = phase();
        let mut current = after();
        current
            .objects
            .insert("column sales.orders.note".into(), "type=text".into());
        current.digest = "changed".into();
        let changes = check(&before(), &current, &Gate::InFlight(&phase));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            matches!(&changes[0], Change::Added { object, .. } if object == "column public.orders.note"),
            "{changes:?}"
        );
    }

    #[test]
    fn a_half_done_privilege_phase_sets_grants_and_roles_aside_only() {
        let phase = GateHints {
            privileges: true,
            ..GateHints::default()
        };
        let mut current = before();
        current.objects.insert(
            "grant INSERT on table public.orders to domain_sales".into(),
            "grantor=app".into(),
        );
        current
            .objects
            .insert("role domain_sales".into(), "connection_limit=-1".into());
        current
            .objects
            .remove("grant SELECT on table public.orders to reader");
        current.digest = "changed".into();
        let gate = Gate::InFlight(&phase);
        assert_eq!(check(&before(), &current, &gate), vec![]);
        assert!(!check(&before(), &current, &Gate::Exact).is_empty());
        current
            .objects
            .insert("column public.orders.note".into(), "type=text".into());
        assert_eq!(check(&before(), &current, &gate).len(), 1);
    }

    #[test]
    fn a_half_done_split_sets_aside_what_it_touches_only() {
        let phase = GateHints {
            touches: vec![
                "sales.orders".into(),
                "sales.stock".into(),
                "sales.f".into(),
            ],
            ..GateHints::default()
        };
        let before = fp(&[
            ("table sales.orders", "owner=app"),
            ("column sales.orders.copies", "type=integer"),
            ("table sales.other", "owner=app"),
        ]);
        let mut current = fp(&[
            ("table sales.orders", "owner=app"),
            ("table sales.stock", "owner=app"),
            ("column sales.stock.copies", "type=integer"),
            ("grant SELECT on table sales.stock to reader", "grantor=app"),
            ("function sales.f()", "kind=function"),
            ("table sales.other", "owner=app"),
        ]);
        let gate = Gate::InFlight(&phase);
        assert_eq!(check(&before, &current, &gate), vec![]);
        // A change to something the split does not touch is still caught.
        current
            .objects
            .insert("column sales.other.note".into(), "type=text".into());
        current.digest = "changed".into();
        assert_eq!(check(&before, &current, &gate).len(), 1);
        // Nor does a name that merely starts like a touched one hide.
        current
            .objects
            .insert("table sales.orders_archive".into(), "owner=app".into());
        current.digest = "changed again".into();
        assert_eq!(check(&before, &current, &gate).len(), 2);
    }

    #[test]
    fn names_are_replaced_only_where_whole() {
        let forms = vec![(spellings("sales.orders"), "public.orders".to_string())];
        assert_eq!(
            translate(
                "ON sales.orders USING x; sales.orders_id_seq; xsales.orders",
                &forms
            ),
            "ON public.orders USING x; sales.orders_id_seq; xsales.orders"
        );
        let forms = vec![(spellings("\"Odd\".\"order\""), "public.\"order\"".into())];
        assert_eq!(
            translate("REFERENCES \"Odd\".\"order\"(id)", &forms),
            "REFERENCES public.\"order\"(id)"
        );
    }
}
