//! Steps on the machine carve runs on (target `local`): files written whole and
//! atomically, and hook commands. No connection; the executor and the checks call
//! these.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::{FileAction, HookAction};

/// What the file at `path` holds now (None: there is none).
fn current(path: &Path) -> Result<Option<String>, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Whether the file is as the action wants it.
pub fn file_is_done(action: &FileAction) -> Result<bool, String> {
    Ok(current(&action.path)? == action.content)
}

/// Writes (or removes) the file as the action says.
pub fn write_file(action: &FileAction) -> Result<(), String> {
    match &action.content {
        Some(content) => replace(&action.path, content),
        None => match fs::remove_file(&action.path) {
            Ok(()) => {
                sync_dir(&action.path);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", action.path.display())),
        },
    }
}

/// Puts `content` at `path` atomically: a new file beside it, with the old one's
/// mode and owner (0644 and the caller when there was none), fsynced and renamed
/// over it, then the directory fsynced. A reader sees the old file or the new one,
/// never half of one.
pub fn replace(path: &Path, content: &str) -> Result<(), String> {
    let failed = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    let old = fs::metadata(path).ok();
    let mut temp = tempfile::Builder::new()
        .prefix(".carve-")
        .tempfile_in(dir)
        .map_err(|e| failed("cannot write beside", e))?;
    temp.write_all(content.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| failed("cannot write beside", e))?;
    let mode = old.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode))
        .map_err(|e| failed("cannot set the mode of the new", e))?;
    if let Some(m) = &old {
        // Only root may give a file away; as anyone else the file stays the
        // caller's, which owns the directory then.
        let _ = std::os::unix::fs::chown(temp.path(), Some(m.uid()), Some(m.gid()));
    }
    temp.persist(path)
        .map_err(|e| failed("cannot replace", e.error))?;
    sync_dir(path);
    Ok(())
}

/// Makes a rename or removal in `path`'s directory durable.
fn sync_dir(path: &Path) {
    if let Ok(d) = fs::File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
}

/// Runs the hook with `sh -c`; its output is kept for the error when it fails.
pub fn run_hook(action: &HookAction) -> Result<(), String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(&action.command)
        .envs(action.env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| format!("cannot run the hook {:?}: {e}", action.command))?;
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if said.is_empty() {
        said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(format!(
        "the hook {:?} failed ({}){}",
        action.command,
        out.status,
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_written_then_taken_back_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let write = FileAction {
            path: dir.path().join("orders.env"),
            content: Some("PGHOST=db2\n".into()),
            previous: None,
        };
        assert!(!file_is_done(&write).unwrap());
        write_file(&write).unwrap();
        assert!(file_is_done(&write).unwrap());
        let mode = fs::metadata(&write.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let back = FileAction {
            path: write.path.clone(),
            content: write.previous.clone(),
            previous: write.content.clone(),
        };
        write_file(&back).unwrap();
        assert!(!write.path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_hook_gets_its_environment_and_its_failure_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let hook = HookAction {
            command: format!("echo \"$CARVE_LIVE\" > {}", marker.display()),
            env: vec![("CARVE_LIVE".into(), "server".into())],
            undo_env: vec![],
        };
        run_hook(&hook).unwrap();
        assert_eq!(fs::read_to_string(&marker).unwrap(), "server\n");
        let failing = HookAction {
            command: "echo nope >&2; exit 3".into(),
            env: vec![],
            undo_env: vec![],
        };
        let err = run_hook(&failing).unwrap_err();
        assert!(err.contains("nope") && err.contains('3'), "{err}");
    }
}
