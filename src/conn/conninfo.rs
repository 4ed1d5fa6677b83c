//! Parsing libpq connection strings, in both forms libpq accepts:
//! `key=value` pairs and `postgresql://` URLs. Pure: no environment, no I/O.

use std::collections::BTreeMap;

/// The keywords carve understands. Anything else is refused by name, as libpq does,
/// so a typo (`dbnmae=`) is an error rather than a silently ignored setting.
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "options",
];

/// The settings a connection string named explicitly, keyed by libpq keyword.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("invalid connection string: {0}")]
    Syntax(String),
    #[error("invalid connection option {0:?} (known options: {known})", known = KNOWN_KEYS.join(", "))]
    UnknownKey(String),
}

impl ConnInfo {
    pub fn parse(text: &str) -> Result<ConnInfo, ConnInfoError> {
        let trimmed = text.trim();
        if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_url(trimmed)
        } else {
            parse_key_values(trimmed)
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), ConnInfoError> {
        if !KNOWN_KEYS.contains(&key) {
            return Err(ConnInfoError::UnknownKey(key.to_string()));
        }
        self.settings.insert(key.to_string(), value);
        Ok(())
    }

    /// The same settings as a `key=value` string with the password left out: safe to
    /// show, log and keep in the plan file.
    pub fn redacted(&self) -> String {
        self.settings
            .iter()
            .filter(|(k, _)| k.as_str() != "password")
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes a value for `key=value` form when it is empty or has spaces, quotes or backslashes.
pub fn quote_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '\t', '\n']) {
        return value.to_string();
    }
    let mut out = String::from("'");
    for ch in value.chars() {
        if ch == '\'' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

fn parse_key_values(text: &str) -> Result<ConnInfo, ConnInfoError> {
    let mut info = ConnInfo::default();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(info);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!(
                "missing \"=\" after {key:?} (expected key=value pairs or a postgresql:// URL)"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnInfoError::Syntax(format!(
                            "unterminated quoted value for {key:?}"
                        )))
                    }
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(ConnInfoError::Syntax(format!(
                                "unterminated quoted value for {key:?}"
                            )))
                        }
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        info.set(&key, value)?;
    }
}

fn parse_url(text: &str) -> Result<ConnInfo, ConnInfoError> {
    let mut info = ConnInfo::default();
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // userinfo ends at the last '@': a password may itself contain '@' when not encoded.
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            info.set("user", percent_decode(user)?)?;
        }
        if let Some(password) = password {
            info.set("password", percent_decode(password)?)?;
        }
    }
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for entry in hostlist.split(',') {
            let (host, port) = split_host_port(entry)?;
            hosts.push(percent_decode(host)?);
            ports.push(port.map(percent_decode).transpose()?.unwrap_or_default());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            info.set("host", hosts.join(","))?;
        }
        if ports.iter().any(|p| !p.is_empty()) {
            info.set("port", ports.join(","))?;
        }
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        info.set("dbname", percent_decode(path)?)?;
    }
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ConnInfoError::Syntax(format!("URL parameter {pair:?} has no \"=\"")))?;
        let key = percent_decode(key)?;
        // libpq accepts ssl=true as an alias for sslmode=require in URLs.
        if key == "ssl" && value == "true" {
            info.set("sslmode", "require".into())?;
        } else {
            info.set(&key, percent_decode(value)?)?;
        }
    }
    Ok(info)
}

fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), ConnInfoError> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ConnInfoError::Syntax(format!("unclosed '[' in host {entry:?}")))?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| ConnInfoError::Syntax(format!("bad host {entry:?}"))),
        };
    }
    Ok(match entry.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    })
}

fn percent_decode(text: &str) -> Result<String, ConnInfoError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ConnInfoError::Syntax("invalid percent-encoding in URL".to_string())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConnInfoError::Syntax("percent-encoding in URL is not UTF-8".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String)> {
        ConnInfo::parse(text)
            .unwrap()
            .settings
            .into_iter()
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn key_value_form_with_quotes_and_escapes() {
        assert_eq!(
            parsed(
                "host=db.example port = 6432 dbname='my db' user=o\\'brien password='a\\'b\\\\c'"
            ),
            pairs(&[
                ("host", "db.example"),
                ("port", "6432"),
                ("dbname", "my db"),
                ("user", "o'brien"),
                ("password", "a'b\\c")
            ])
        );
        assert_eq!(parsed(""), pairs(&[]));
    }

    #[test]
    fn url_form_with_everything() {
        assert_eq!(
            parsed("postgresql://al%40ice:p%3Ass@h1:5433,[::1]:5434/shop%20db?sslmode=verify-full&application_name=carve"),
            pairs(&[
                ("user", "al@ice"),
                ("password", "p:ss"),
                ("host", "h1,::1"),
                ("port", "5433,5434"),
                ("dbname", "shop db"),
                ("sslmode", "verify-full"),
                ("application_name", "carve")
            ])
        );
        assert_eq!(
            parsed("postgres:///shop?host=%2Fvar%2Frun%2Fpostgresql"),
            pairs(&[("dbname", "shop"), ("host", "/var/run/postgresql")])
        );
        assert_eq!(parsed("postgresql://"), pairs(&[]));
        assert_eq!(
            parsed("postgresql://h?ssl=true"),
            pairs(&[("host", "h"), ("sslmode", "require")])
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            ConnInfo::parse("dbnmae=x"),
            Err(ConnInfoError::UnknownKey(k)) if k == "dbnmae"
        ));
        assert!(matches!(
            ConnInfo::parse("host"),
            Err(ConnInfoError::Syntax(_))
        ));
        assert!(matches!(
            ConnInfo::parse("password='open"),
            Err(ConnInfoError::Syntax(_))
        ));
        assert!(matches!(
            ConnInfo::parse("postgresql://h/db?x"),
            Err(ConnInfoError::Syntax(_))
        ));
        assert!(matches!(
            ConnInfo::parse("postgresql://h/%zz"),
            Err(ConnInfoError::Syntax(_))
        ));
    }

    #[test]
    fn redacted_form_drops_the_password_and_reparses() {
        let info = ConnInfo::parse("postgresql://u:secret@h/d b?application_name=x%20y").unwrap();
        let shown = info.redacted();
        assert!(!shown.contains("secret"), "{shown}");
        let again = ConnInfo::parse(&shown).unwrap();
        assert_eq!(again.get("dbname"), Some("d b"));
        assert_eq!(again.get("application_name"), Some("x y"));
        assert_eq!(again.get("password"), None);
    }
}
