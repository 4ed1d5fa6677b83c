//! Each verify's progress in a file beside the plan (`<plan>.verify-<domain>.jsonl`),
//! one JSON line per fact as it is learnt: the run's settings, each table's chunks,
//! each chunk's result. A killed verify run again with `--resume` keeps the chunks
//! and results and compares only what is left; without it the file starts afresh.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Chunk, ChunkResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "kebab-case")]
pub enum Entry {
    Started { domain: String, chunk_rows: u64 },
    Planned { table: String, chunks: Vec<Chunk> },
    Compared(ChunkResult),
}

/// The journal file of one domain's verify.
pub struct VerifyJournal {
    path: PathBuf,
    file: std::fs::File,
}

/// Where a domain's verify journal lives: beside the plan, named with a digest of the
/// domain (any name is a safe file name then).
pub fn path_for(plan: &Path, domain: &str) -> PathBuf {
    let digest: String = Sha256::digest(domain.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = plan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "carve.plan.toml".into());
    plan.with_file_name(format!("{name}.verify-{digest}.jsonl"))
}

impl VerifyJournal {
    /// Opens the journal: what an earlier run recorded when resuming (for the same
    /// domain and chunk size), nothing otherwise (the file is started afresh).
    pub fn open(
        path: &Path,
        domain: &str,
        chunk_rows: u64,
        resume: bool,
    ) -> anyhow::Result<(VerifyJournal, Vec<Entry>)> {
        let mut earlier = Vec::new();
        // How much of the file to keep: every whole line (a line cut short by a kill
        // has no newline yet, and goes).
        let mut keep = 0;
        if resume {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    keep = text.rfind('\n').map_or(0, |i| i + 1);
                    for (n, line) in text[..keep].lines().enumerate() {
                        match serde_json::from_str::<Entry>(line) {
                            Ok(entry) => earlier.push(entry),
                            Err(e) => anyhow::bail!(
                                "{}:{}: not a verify journal line ({e}); run without --resume to start afresh",
                                path.display(),
                                n + 1
                            ),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
            }
            match earlier.first() {
                Some(Entry::Started {
                    domain: d,
                    chunk_rows: c,
                }) if d == domain && *c == chunk_rows => {}
                Some(Entry::Started { chunk_rows: c, .. }) if *c != chunk_rows => anyhow::bail!(
                    "{} was made with --chunk-rows {c}: resume with the same, or run without --resume",
                    path.display()
                ),
                None => {}
                Some(_) => anyhow::bail!(
                    "{} is not a journal of this domain's verify; run without --resume",
                    path.display()
                ),
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        if earlier.is_empty() {
            keep = 0;
        }
        file.set_len(keep as u64)?;
        let mut journal = VerifyJournal {
            path: path.to_path_buf(),
            file,
        };
        if earlier.is_empty() {
            journal.append(&Entry::Started {
                domain: domain.to_string(),
                chunk_rows,
            })?;
        }
        Ok((journal, earlier))
    }

    /// Appends one entry as a line, written through to the file at once: a run
    /// killed after this keeps it.
    pub fn append(&mut self, entry: &Entry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(entry)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until everything appended is on disk.
    pub fn sync(&self) -> anyhow::Result<()> {
        Ok(self.file.sync_data()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: usize) -> Chunk {
        Chunk {
            table: "s.t".into(),
            index,
            lo: None,
            hi: Some(vec![index.to_string()]),
        }
    }

    #[test]
    fn a_resumed_journal_gives_back_what_was_recorded_and_a_fresh_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("carve.plan.toml"), "Sälës \"x\"/..");
        assert_eq!(path.parent(), Some(dir.path()));
        let (mut j, earlier) = VerifyJournal::open(&path, "sales", 100, true).unwrap();
        assert!(earlier.is_empty());
        let planned = Entry::Planned {
            table: "s.t".into(),
            chunks: vec![chunk(0), chunk(1)],
        };
        j.append(&planned).unwrap();
        drop(j);
        // A line cut short by a kill.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"entry\":\"compa")
            .unwrap();
        let (mut j, earlier) = VerifyJournal::open(&path, "sales", 100, true).unwrap();
        assert_eq!(earlier.len(), 2);
        assert_eq!(earlier[1], planned);
        // The cut line is gone: what is appended next reads back.
        j.append(&planned).unwrap();
        drop(j);
        let (_, earlier) = VerifyJournal::open(&path, "sales", 100, true).unwrap();
        assert_eq!(earlier.len(), 3);
        let err = VerifyJournal::open(&path, "sales", 50, true).err().unwrap();
        assert!(err.to_string().contains("--chunk-rows 100"), "{err}");
        let (_, earlier) = VerifyJournal::open(&path, "sales", 50, false).unwrap();
        assert!(earlier.is_empty());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
