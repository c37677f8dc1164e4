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
