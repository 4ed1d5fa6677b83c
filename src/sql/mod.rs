//! SQL rendering. Every identifier and literal that reaches the database is quoted by
//! the functions in this module, and nowhere else.

use std::fmt;

/// An identifier quoted for SQL: always double-quoted, inner `"` doubled.
///
/// Always quoting (rather than only when PostgreSQL would need it) keeps the rule
/// trivially correct for reserved words, mixed case, spaces and unicode.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Names quoted by [`ident`] and joined by `, `: a column list, a `search_path`.
pub fn ident_list<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = names.into_iter().map(|n| ident(n.as_ref())).collect();
    quoted.join(", ")
}

/// A list of names as PostgreSQL keeps a list setting such as `search_path`
/// (`app, "$user", "My Schema"`): split at commas outside double quotes, each name
/// unquoted (`""` inside quotes is one `"`), bare names lower-cased as the server
/// would read them. Empty entries are left out.
pub fn parse_name_list(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars().peekable();
    let mut push = |current: &mut String, was_quoted: &mut bool| {
        let name = if *was_quoted {
            std::mem::take(current)
        } else {
            std::mem::take(current).trim().to_lowercase()
        };
        if !name.is_empty() {
            names.push(name);
        }
        *was_quoted = false;
    };
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => current.push(c),
            (false, '"') => {
                current.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => push(&mut current, &mut was_quoted),
            (false, c) if was_quoted && c.is_whitespace() => {}
            (false, c) => current.push(c),
        }
    }
    push(&mut current, &mut was_quoted);
    names
}

/// An identifier as PostgreSQL prints it (its `quote_identifier`): bare when it is a
/// plain lower-case name and no keyword that needs quoting, double-quoted otherwise.
/// carve writes names with [`ident`]; this is for predicting the server's own text
/// (`pg_get_viewdef`, `pg_get_constraintdef`).
pub fn ident_as_printed(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_quoted_keyword(name);
    if plain {
        name.to_string()
    } else {
        ident(name)
    }
}

/// Whether `name` is a keyword PostgreSQL only takes as a name in double quotes.
pub fn is_quoted_keyword(name: &str) -> bool {
    QUOTED_KEYWORDS.contains(&name)
}

/// PostgreSQL 15's keywords that `quote_identifier` quotes: the reserved, column-name
/// and type-or-function-name ones of `kwlist.h` (unreserved keywords stay bare).
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// A schema-qualified identifier for SQL: `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal for SQL. Backslashes switch to the `E'…'` form (as PostgreSQL's own
/// `quote_literal` does), so the result is right whatever `standard_conforming_strings` is.
///
/// PostgreSQL text cannot hold NUL bytes, so a string with one is refused rather than
/// silently truncated by the server.
pub fn literal(value: &str) -> Result<String, NulInLiteral> {
    if value.contains('\0') {
        return Err(NulInLiteral);
    }
    // Doubled backslashes only mean one backslash in the E'…' form.
    let prefix = if value.contains('\\') { "E" } else { "" };
    Ok(format!("{prefix}{}", single_quoted(value)))
}

/// `body` dollar-quoted (`$carve$…$carve$`, for a `DO` block), with a tag that does
/// not occur in it: a name inside the body cannot end the quote early.
pub fn dollar_quoted(body: &str) -> String {
    let mut tag = "$carve$".to_string();
    let mut n = 0;
    // The quote ends at the tag's first occurrence after the opening one.
    while format!("{body}{tag}").find(&tag) != Some(body.len()) {
        n += 1;
        tag = format!("$carve{n}$");
    }
    format!("{tag}{body}{tag}")
}

/// An argument of a psql meta-command (`\connect '…'`): single-quoted, with `'`
/// doubled and `\` escaped, as psql reads them.
pub fn psql_argument(value: &str) -> String {
    single_quoted(value)
}

/// A word for a POSIX shell (`sh -c` after psql's `\!`): single-quoted, each `'`
/// closed, escaped and reopened, so nothing in it is expanded.
pub fn shell_word(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// `value` in single quotes, with `'` and `\` doubled.
fn single_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
    out.push('\'');
    out
}

/// Why `name` cannot be the name of a schema carve creates or moves tables into, or
/// `None` when it can. PostgreSQL itself refuses to create `pg_*` schemas, but an
/// existing one (`pg_catalog`, `pg_toast`) would silently take tables out of every
/// dump; `information_schema` is the standard's, rebuilt on upgrade.
pub fn schema_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 63 {
        return Some(format!(
            "{} is {} bytes long: a schema name must be 1 to 63 bytes",
            display_ident(name),
            name.len()
        ));
    }
    if name.contains('\0') {
        return Some("a schema name cannot contain a NUL byte".into());
    }
    if name.starts_with("pg_") {
        return Some(format!(
            "{} is reserved: schema names starting with pg_ belong to PostgreSQL (pg_catalog, pg_toast, …), and tables moved there leave pg_dump's output",
            display_ident(name)
        ));
    }
    if name == "information_schema" {
        return Some(
            "information_schema is reserved: it belongs to PostgreSQL and is recreated by upgrades"
                .into(),
        );
    }
    None
}

/// A string with a NUL byte cannot become a PostgreSQL literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a string with a NUL byte cannot be sent to PostgreSQL")]
pub struct NulInLiteral;

/// How a name is shown to people and written in the plan file: bare when it is a plain
/// lower-case identifier, double-quoted otherwise. `"schema.table"` strings made with
/// [`display_qualified`] read back unambiguously with [`parse_qualified`].
pub fn display_ident(name: &str) -> DisplayIdent<'_> {
    DisplayIdent(name)
}

pub struct DisplayIdent<'a>(&'a str);

impl fmt::Display for DisplayIdent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain_ident(self.0) {
            f.write_str(self.0)
        } else {
            f.write_str(&ident(self.0))
        }
    }
}

/// `schema.name` for display and for keys in the plan file.
pub fn display_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", display_ident(schema), display_ident(name))
}

fn is_plain_ident(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// Parses `schema.name` as written by [`display_qualified`]: each part bare or
/// double-quoted (with `""` for a quote). A bare part is taken as written; it is not
/// case-folded, because the plan file only ever holds names carve wrote itself.
pub fn parse_qualified(text: &str) -> Result<(String, String), String> {
    let (schema, rest) = parse_part(text)?;
    let rest = rest
        .strip_prefix('.')
        .ok_or_else(|| format!("expected schema.name, got {text:?}"))?;
    let (name, rest) = parse_part(rest)?;
    if !rest.is_empty() {
        return Err(format!("unexpected {rest:?} after schema.name in {text:?}"));
    }
    Ok((schema, name))
}

fn parse_part(text: &str) -> Result<(String, &str), String> {
    if let Some(mut rest) = text.strip_prefix('"') {
        let mut out = String::new();
        loop {
            let end = rest
                .find('"')
                .ok_or_else(|| format!("unterminated quoted name in {text:?}"))?;
            out.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix('"') {
                out.push('"');
                rest = after;
            } else {
                break;
            }
        }
        if out.is_empty() {
            return Err(format!("empty quoted name in {text:?}"));
        }
        Ok((out, rest))
    } else {
        let end = text.find('.').unwrap_or(text.len());
        if end == 0 {
            return Err(format!("empty name in {text:?}"));
        }
        Ok((text[..end].to_string(), &text[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lists_split_and_unquote_as_the_server_reads_them() {
        assert_eq!(parse_name_list(r#""$user", public"#), ["$user", "public"]);
        assert_eq!(
            parse_name_list(r#"App ,"My ""odd"", schema",  "select",x"#),
            ["app", r#"My "odd", schema"#, "select", "x"]
        );
        assert_eq!(parse_name_list(""), Vec::<String>::new());
        assert_eq!(parse_name_list("  "), Vec::<String>::new());
        // The list a name renders to reads back as the same names.
        let names = ["élan", "a,b", "\"q\"", "Mixed Case"];
        assert_eq!(parse_name_list(&ident_list(names)), names);
    }

    #[test]
    fn names_are_printed_as_postgresql_prints_them() {
        assert_eq!(ident_as_printed("orders"), "orders");
        assert_eq!(ident_as_printed("order_2"), "order_2");
        assert_eq!(ident_as_printed("order"), "\"order\"");
        assert_eq!(ident_as_printed("user"), "\"user\"");
        // Unreserved keywords stay bare.
        assert_eq!(ident_as_printed("comment"), "comment");
        assert_eq!(ident_as_printed("Orders"), "\"Orders\"");
        assert_eq!(ident_as_printed("2nd"), "\"2nd\"");
        assert_eq!(ident_as_printed("a b\"c"), "\"a b\"\"c\"");
    }

    #[test]
    fn dollar_quotes_are_never_ended_by_the_body() {
        assert_eq!(dollar_quoted("BEGIN END"), "$carve$BEGIN END$carve$");
        for body in ["a $carve$ b", "ends with $carve", "$carve1$ and $carve$"] {
            let quoted = dollar_quoted(body);
            let tag_end = quoted[1..].find('$').unwrap() + 2;
            let tag = &quoted[..tag_end];
            assert!(quoted.ends_with(tag), "{quoted}");
            assert_eq!(
                quoted[tag_end..].find(tag),
                Some(quoted.len() - tag_end - tag.len()),
                "{quoted}"
            );
        }
    }

    #[test]
    fn system_and_overlong_schema_names_are_refused() {
        for bad in [
            "pg_catalog",
            "pg_toast",
            "pg_anything",
            "information_schema",
            "",
        ] {
            assert!(schema_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(schema_name_problem(&"x".repeat(64)).is_some());
        assert!(schema_name_problem("a\0b").is_some());
        for good in [
            "sales",
            "PG_upper",
            "select",
            "Dömain \"one\"",
            &"x".repeat(63),
        ] {
            assert_eq!(schema_name_problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn psql_arguments_survive_quotes_and_backslashes() {
        assert_eq!(psql_argument("dbname=shop"), "'dbname=shop'");
        assert_eq!(psql_argument("it's"), "'it''s'");
        assert_eq!(psql_argument(r"C:\x"), r"'C:\\x'");
    }

    const HOSTILE: &[&str] = &[
        "plain",
        "Mixed Case",
        "with \"quotes\"",
        "\"",
        "select",
        "order",
        "dot.ted",
        "ünïcødé 表",
        "trailing space ",
        "semi;colon--dash",
        "back\\slash",
        "$dollar",
        "1starts_with_digit",
    ];

    #[test]
    fn ident_always_quotes_and_doubles_inner_quotes() {
        assert_eq!(ident("plain"), "\"plain\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("\""), "\"\"\"\"");
        assert_eq!(qualified("s p", "t"), "\"s p\".\"t\"");
    }

    #[test]
    fn literal_doubles_quotes_and_escapes_backslashes() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal("").unwrap(), "''");
        assert_eq!(literal("a\\b'c").unwrap(), "E'a\\\\b''c'");
        assert_eq!(literal("nul\0byte"), Err(NulInLiteral));
    }

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(display_qualified("public", "orders"), "public.orders");
        assert_eq!(display_qualified("public", "Orders"), "public.\"Orders\"");
        assert_eq!(
            display_qualified("my schema", "a.b"),
            "\"my schema\".\"a.b\""
        );
    }

    #[test]
    fn display_and_parse_round_trip_hostile_names() {
        for schema in HOSTILE {
            for name in HOSTILE {
                let shown = display_qualified(schema, name);
                let (s, n) = parse_qualified(&shown).unwrap();
                assert_eq!((s.as_str(), n.as_str()), (*schema, *name), "{shown}");
            }
        }
        let long = "x".repeat(63);
        let shown = display_qualified(&long, &long);
        assert_eq!(parse_qualified(&shown).unwrap(), (long.clone(), long));
    }

    #[test]
    fn parse_rejects_malformed_names() {
        for bad in [
            "", "nodot", "a.", ".b", "\"open.b", "a.b.c", "\"\".b", "a.\"b\"x",
        ] {
            assert!(parse_qualified(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
