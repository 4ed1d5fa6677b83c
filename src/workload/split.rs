//! Splits SQL text into statements at top-level `;`, respecting quotes ('…', E'…',
//! "…"), dollar quoting ($$…$$, $tag$…$tag$) and comments (--, nested /* */), and
//! keeps the line each statement starts on.

/// One statement's text (trimmed, without the `;`) and its 1-based starting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub line: usize,
}

/// Where a quote, dollar body or comment opened and never closed: everything after it
/// would otherwise run together into one statement that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unterminated {
    /// `'…' string`, `$body$ quote`, `/* comment`, …
    pub what: String,
    /// The 1-based line it opens on.
    pub line: usize,
    /// The 1-based line of the statement it is in (left out).
    pub statement_line: usize,
}

impl std::fmt::Display for Unterminated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unterminated {} opened on line {}: the statement starting on line {} and everything after it were left out",
            self.what, self.line, self.statement_line
        )
    }
}

/// The statements of `sql`, as [`split`] finds them, except that a statement holding
/// an unterminated quote, dollar body or comment is left out and reported.
pub fn split_checked(sql: &str) -> (Vec<Piece>, Option<Unterminated>) {
    let (mut pieces, unterminated) = scan(sql);
    if let Some(u) = &unterminated {
        pieces.retain(|p| p.line < u.statement_line);
    }
    (pieces, unterminated)
}

/// Splits `sql` into statements; an unterminated quote runs to the end of the text
/// (the lenient form, for function bodies the server has already accepted).
pub fn split(sql: &str) -> Vec<Piece> {
    scan(sql).0
}

fn scan(sql: &str) -> (Vec<Piece>, Option<Unterminated>) {
    let bytes = sql.as_bytes();
    let mut unterminated = None;
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut line = 1;
    let mut start_line = 1;
    let mut i = 0;
    let push = |from: usize, to: usize, at: usize, pieces: &mut Vec<Piece>| {
        let raw = &sql[from..to];
        // Lines before the first real character do not count.
        let lead = raw.len() - raw.trim_start().len();
        let text = strip_comments_only(raw.trim());
        if !text.is_empty() {
            let skipped = raw[..lead].matches('\n').count();
            pieces.push(Piece {
                text: raw.trim().to_string(),
                line: at + skipped,
            });
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let opened = line;
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
                if depth > 0 {
                    unterminated.get_or_insert(("/* comment".to_string(), opened));
                }
            }
            b'\'' => {
                // E'…' strings take backslash escapes.
                let backslashes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !bytes[i - 2].is_ascii_alphanumeric());
                let opened = line;
                let closed;
                (i, closed) = skip_quoted(bytes, i, backslashes, &mut line);
                if !closed {
                    unterminated.get_or_insert(("'…' string".to_string(), opened));
                }
            }
            b'"' => {
                let opened = line;
                let closed;
                (i, closed) = skip_quoted(bytes, i, false, &mut line);
                if !closed {
                    unterminated.get_or_insert(("\"…\" identifier".to_string(), opened));
                }
            }
            b'$' => match dollar_tag(&sql[i..]) {
                Some(tag) => {
                    let body_start = i + tag.len();
                    let end = match sql[body_start..].find(tag) {
                        Some(at) => body_start + at + tag.len(),
                        None => {
                            unterminated.get_or_insert((format!("{tag} quote"), line));
                            sql.len()
                        }
                    };
                    line += sql[i..end].matches('\n').count();
                    i = end;
                }
                None => i += 1,
            },
            b';' => {
                push(start, i, start_line, &mut pieces);
                i += 1;
                start = i;
                start_line = line;
            }
            _ => i += 1,
        }
    }
    push(start, sql.len(), start_line, &mut pieces);
    // The statement an unterminated quote is in: the last one that starts before it.
    let unterminated = unterminated.map(|(what, line)| Unterminated {
        what,
        line,
        statement_line: pieces
            .iter()
            .map(|p| p.line)
            .rfind(|l| *l <= line)
            .unwrap_or(line),
    });
    (pieces, unterminated)
}

/// Skips a quoted string or identifier starting at `start` (on its opening quote):
/// a doubled quote stands for itself, and with `backslashes` a `\` escapes the next
/// byte. Returns the index after the closing quote (or the end), counting newlines,
/// and whether the quote was closed.
fn skip_quoted(bytes: &[u8], start: usize, backslashes: bool, line: &mut usize) -> (usize, bool) {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslashes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return (i + 1, true),
            b'\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    (i.min(bytes.len()), false)
}

/// `$tag$` at the start of `text`, if it opens a dollar-quoted string (a `$1`
/// parameter does not).
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = &text[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    valid.then(|| &text[..end + 2])
}

/// The words a statement starts with, after leading comments: `BEGIN`, `START
/// TRANSACTION`… (letters, digits and `_`; anything else separates words).
pub fn words(sql: &str) -> impl Iterator<Item = &str> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            break;
        }
    }
    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The text with comments removed, to tell whether a piece holds any statement.
fn strip_comments_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("--") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<(String, usize)> {
        split(sql).into_iter().map(|p| (p.text, p.line)).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_with_lines() {
        assert_eq!(
            texts("SELECT 1;\n\n-- note\nSELECT 2\n  FROM t;\nSELECT 3"),
            [
                ("SELECT 1".to_string(), 1),
                ("-- note\nSELECT 2\n  FROM t".to_string(), 3),
                ("SELECT 3".to_string(), 6)
            ]
        );
    }

    #[test]
    fn semicolons_inside_quotes_comments_and_dollar_bodies_do_not_split() {
        let sql = "INSERT INTO t VALUES ('a;b', E'c\\';d', \"x;y\");\n\
                   /* one; /* nested; */ still; */ SELECT $1;\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql;\n\
                   SELECT $$;$$";
        let got = texts(sql);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].0.ends_with("\"x;y\")"));
        assert!(got[1].0.ends_with("SELECT $1"));
        assert!(got[2].0.contains("RETURN 1; END"));
        assert_eq!(got[3].0, "SELECT $$;$$");
    }

    #[test]
    fn first_words_skip_comments() {
        let got: Vec<&str> = words("-- why\n/* how */  START\tTRANSACTION ISOLATION").collect();
        assert_eq!(got, ["START", "TRANSACTION", "ISOLATION"]);
        assert_eq!(words("  -- only").next(), None);
    }

    #[test]
    fn an_unterminated_quote_is_reported_and_its_statement_left_out() {
        let sql = "SELECT 1;\nSELECT 2;\nCREATE FUNCTION f() AS $body$\nBEGIN; RETURN 1;\n";
        let (pieces, u) = split_checked(sql);
        let texts: Vec<&str> = pieces.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["SELECT 1", "SELECT 2"]);
        let u = u.expect("reported");
        assert_eq!(
            (u.what.as_str(), u.line, u.statement_line),
            ("$body$ quote", 3, 3)
        );
        assert!(u.to_string().contains("line 3"), "{u}");
        for (sql, what) in [
            ("SELECT 'abc", "'…' string"),
            ("SELECT \"abc", "\"…\" identifier"),
            ("SELECT 1 /* a /* b */", "/* comment"),
        ] {
            let (pieces, u) = split_checked(sql);
            assert!(pieces.is_empty(), "{sql}");
            assert_eq!(u.unwrap().what, what, "{sql}");
        }
        // The lenient form keeps the tail, as before.
        assert_eq!(split("SELECT 'abc").len(), 1);
        assert_eq!(split_checked("SELECT 'a;b'; SELECT $$x$$").1, None);
    }

    #[test]
    fn empty_and_comment_only_pieces_are_dropped() {
        assert!(split(" ;\n;-- only a comment\n").is_empty());
    }
}
