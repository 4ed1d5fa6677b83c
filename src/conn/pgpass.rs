//! The libpq password file (`~/.pgpass` or `PGPASSFILE`): `host:port:db:user:password`
//! lines, `*` matches anything, `\` escapes `:` and `\`.

/// One lookup in the password file's text. `host` is the host as connected; a Unix
/// socket directory matches entries for `localhost`, as in libpq.
pub fn lookup(contents: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    contents
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .filter_map(split_fields)
        .find(|fields| {
            let matches = |field: &str, value: &str| field == "*" || field == value;
            matches(&fields[0], host)
                && matches(&fields[1], &port)
                && matches(&fields[2], dbname)
                && matches(&fields[3], user)
        })
        .map(|fields| fields[4].clone())
}

/// One line of the file for an exact entry, `:` and `\` escaped.
pub fn line(host: &str, port: u16, dbname: &str, user: &str, password: &str) -> String {
    let escape = |field: &str| field.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "{}:{port}:{}:{}:{}\n",
        escape(host),
        escape(dbname),
        escape(user),
        escape(password)
    )
}

/// Splits a line into its five fields, or `None` when it has fewer (libpq skips those).
fn split_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment line
db.example:5432:shop:alice:first
*:*:shop:bob:bob\\:s\\\\pass
localhost:5433:*:*:local-any
too:few:fields
*:*:*:alice:fallback
";

    #[test]
    fn written_lines_read_back_with_odd_characters() {
        let text = line("db:1", 5432, "my\\db", "a:b\\c", "p:w\\d");
        assert_eq!(text, "db\\:1:5432:my\\\\db:a\\:b\\\\c:p\\:w\\\\d\n");
        assert_eq!(
            lookup(&text, "db:1", 5432, "my\\db", "a:b\\c").as_deref(),
            Some("p:w\\d")
        );
    }

    #[test]
    fn first_matching_line_wins() {
        assert_eq!(
            lookup(FILE, "db.example", 5432, "shop", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(FILE, "db.example", 5433, "shop", "alice").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_and_wildcards() {
        assert_eq!(
            lookup(FILE, "x", 1, "shop", "bob").as_deref(),
            Some("bob:s\\pass")
        );
        assert_eq!(lookup(FILE, "x", 1, "other", "bob"), None);
    }

    #[test]
    fn unix_sockets_match_localhost() {
        assert_eq!(
            lookup(FILE, "/run/pg", 5433, "any", "carol").as_deref(),
            Some("local-any")
        );
        assert_eq!(lookup(FILE, "/run/pg", 5434, "any", "carol"), None);
    }
}
