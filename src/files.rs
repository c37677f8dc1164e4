//! Files only their owner may read: the data directory (0700), the token key, generated
//! certificates, state and the SQLite database (0600).
//!
//! Modes are enforced, not just requested at creation: a directory or file that existed
//! with wider modes is narrowed. Writes go through a temporary file created with `O_EXCL`
//! (so a planted symlink or file at that name is never followed or reused) and an atomic
//! rename, which replaces a symlink at the target instead of writing through it.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// A temporary name next to `path` that nobody can predict.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

/// Writes a file readable by its owner only, atomically (temp file + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = temp_name(path);
    let written = (|| -> anyhow::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        // create_new = O_CREAT|O_EXCL: fails on anything already there, symlinks included.
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Narrows an existing regular file to 0600 (a symlink is left alone, never followed).
pub fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return Ok(());
        };
        if meta.file_type().is_file() && meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates the data directory if needed, makes it 0700 and every regular file directly in
/// it 0600, whatever modes they had.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make data directory {} private", dir.display()))?;
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read data directory {}", dir.display()))?;
        for entry in entries.flatten() {
            restrict(&entry.path())?;
        }
    }
    Ok(())
}

/// Records that a loop is alive: writes the current time (RFC 3339) to `path`, through a
/// temporary file so a reader never sees half a line. Not synced to disk: losing a beat in a
/// power cut costs nothing, and a Pi's SD card is spared a flush every 30 s. A failure is
/// logged and otherwise ignored: the loop's work matters more than its heartbeat.
pub fn beat(path: &Path) {
    let tmp = path.with_extension("tmp");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let written = dir
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, now))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the heartbeat file");
    }
}

/// Why there is no heartbeat to judge (one line each, for `healthcheck`).
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// No file at all.
    #[error("no heartbeat file {} (the loop has not started, or writes elsewhere: HEALTHCHECK_FILE)", .0.display())]
    Missing(std::path::PathBuf),
    /// The file cannot be read.
    #[error("cannot read heartbeat file {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no RFC 3339 time.
    #[error("heartbeat file {} holds no time", .0.display())]
    NoTime(std::path::PathBuf),
}

/// When the heartbeat at `path` was last written.
pub fn last_beat(path: &Path) -> Result<chrono::DateTime<chrono::Utc>, HeartbeatError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => HeartbeatError::Missing(path.to_owned()),
        _ => HeartbeatError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })?;
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| HeartbeatError::NoTime(path.to_owned()))
}
