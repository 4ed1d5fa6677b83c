//! PgBouncer's configuration file, as far as a cut-over changes it: where one
//! `[databases]` entry points. Reading and rewriting the entry's line are pure
//! functions on the text (tested without a file); `point` writes the result with
//! `local::replace`: atomically, keeping its owner and mode, so PgBouncer never
//! reads half a file and a crash leaves either the old file or the new one.

use std::fs;
use std::path::Path;

use super::EntryTarget;

/// The line of entry `entry` in the `[databases]` section: (index, value after `=`).
fn find(text: &str, entry: &str) -> Option<(usize, String)> {
    let mut in_databases = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_databases = trimmed.eq_ignore_ascii_case("[databases]");
            continue;
        }
        if !in_databases || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let key = key
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(key);
        if key == entry {
            return Some((i, value.trim().to_string()));
        }
    }
    None
}

/// `key=value` pairs of an entry's connection string (values may be in single
/// quotes).
fn pairs(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("cannot read {value:?}: expected key=value pairs"))?;
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| format!("cannot read {value:?}: a quote is not closed"))?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key.trim().to_string(), val));
        rest = remaining.trim_start();
    }
    Ok(out)
}

/// Where entry `entry` points in `text`, PgBouncer's defaults filled in (port 5432,
/// the entry's own name as dbname); None when the file has no such entry.
pub fn entry_target(text: &str, entry: &str) -> Result<Option<EntryTarget>, String> {
    let Some((_, value)) = find(text, entry) else {
        return Ok(None);
    };
    let pairs = pairs(&value)?;
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let port = match get("port") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("entry {entry}: port {p:?} is not a number"))?,
        None => 5432,
    };
    Ok(Some(EntryTarget {
        host: get("host").unwrap_or_default(),
        port,
        dbname: get("dbname").unwrap_or_else(|| entry.to_string()),
    }))
}

/// `text` with entry `entry` pointed at `to`: its host, port and dbname replaced
/// (or added), every other setting of the entry and every other line kept as it was.
pub fn with_entry(text: &str, entry: &str, to: &EntryTarget) -> Result<String, String> {
    let (index, value) = find(text, entry)
        .ok_or_else(|| format!("the [databases] section has no entry {entry:?}"))?;
    for (what, v) in [("host", &to.host), ("dbname", &to.dbname)] {
        if v.is_empty() || v.contains(['\'', '"', '\n', ' ', '\t', '=']) {
            return Err(format!(
                "cannot write {what} {v:?} into a PgBouncer entry: it must be a plain word (no spaces, quotes or '=')"
            ));
        }
    }
    let mut pairs: Vec<(String, String)> = pairs(&value)?
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "port" | "dbname"))
        .collect();
    pairs.insert(0, ("dbname".into(), to.dbname.clone()));
    pairs.insert(0, ("port".into(), to.port.to_string()));
    pairs.insert(0, ("host".into(), to.host.clone()));
    let rendered: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            if v.contains(char::is_whitespace) {
                format!("{k}='{v}'")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    let mut out = String::with_capacity(text.len() + 32);
    for (i, line) in text.lines().enumerate() {
        if i == index {
            let key = line
                .split_once('=')
                .map(|(k, _)| k.trim_end())
                .unwrap_or(entry);
            out.push_str(&format!("{key} = {}", rendered.join(" ")));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Where entry `entry` of the file at `path` points now.
pub fn read(path: &Path, entry: &str) -> Result<EntryTarget, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    entry_target(&text, entry)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "{} has no entry {entry:?} in its [databases] section (an entry in a file it %includes is not followed: pass that file with --pgbouncer-config)",
                path.display()
            )
        })
}

/// Points entry `entry` of the file at `path` at `to`, atomically, keeping the
/// file's owner and mode (PgBouncer, running as another user, must still read it).
pub fn point(path: &Path, entry: &str, to: &EntryTarget) -> Result<(), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let new = with_entry(&text, entry, to).map_err(|e| format!("{}: {e}", path.display()))?;
    super::local::replace(path, &new)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const INI: &str = "[databases]\n; the shop\norders = host=/run/pg port=5432 dbname=shop pool_size=20\n\"my app\"=host=db1 dbname='shop two'\n\n[pgbouncer]\nlisten_port = 6432\norders = not-an-entry\n";

    fn to() -> EntryTarget {
        EntryTarget {
            host: "db2.internal".into(),
            port: 6543,
            dbname: "orders".into(),
        }
    }

    #[test]
    fn reads_an_entry_with_defaults_filled_in() {
        assert_eq!(
            entry_target(INI, "orders").unwrap(),
            Some(EntryTarget {
                host: "/run/pg".into(),
                port: 5432,
                dbname: "shop".into()
            })
        );
        let quoted = entry_target(INI, "my app").unwrap().unwrap();
        assert_eq!((quoted.port, quoted.dbname.as_str()), (5432, "shop two"));
        assert_eq!(entry_target(INI, "listen_port").unwrap(), None);
        assert_eq!(entry_target(INI, "absent").unwrap(), None);
    }

    #[test]
    fn repointing_changes_only_that_entry_and_round_trips() {
        let moved = with_entry(INI, "orders", &to()).unwrap();
        assert_eq!(entry_target(&moved, "orders").unwrap(), Some(to()));
        assert!(
            moved.contains("orders = host=db2.internal port=6543 dbname=orders pool_size=20\n"),
            "{moved}"
        );
        // Everything else as it was, the [pgbouncer] key of the same name included.
        assert!(moved.contains("orders = not-an-entry\n"), "{moved}");
        assert!(moved.contains("dbname='shop two'"), "{moved}");
        let back = entry_target(INI, "orders").unwrap().unwrap();
        let again = with_entry(&moved, "orders", &back).unwrap();
        assert_eq!(entry_target(&again, "orders").unwrap(), Some(back));
        assert_eq!(again.lines().count(), INI.lines().count());
    }

    #[test]
    fn refuses_what_it_cannot_write_safely() {
        let mut hostile = to();
        hostile.host = "db2 password=x".into();
        assert!(with_entry(INI, "orders", &hostile).is_err());
        assert!(with_entry(INI, "absent", &to()).is_err());
        assert!(entry_target("[databases]\nx = host='open", "x").is_err());
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgbouncer.ini");
        fs::write(&path, INI).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        point(&path, "orders", &to()).unwrap();
        assert_eq!(read(&path, "orders").unwrap(), to());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        assert!(read(&path, "absent").unwrap_err().contains("no entry"));
    }
}
