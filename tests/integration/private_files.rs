//! Issue 13, item 10: the data directory, the token key and the SQLite files are the
//! owner's alone even when they existed before with wider modes, and writing a private
//! file never follows a symlink planted next to it.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use teams_presence::config::{Settings, Sources};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn private_files_are_owner_only_even_when_they_existed_with_wider_modes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = data.join("token-key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = data.join("teams-presence.sqlite3");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();

    let settings = Settings::parse(&Sources::from_map(Default::default())).unwrap();
    teams_presence::serve::build_state(settings, &data)
        .await
        .unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn write_private_never_follows_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let target = dir.path().join("state.json");
    // Where the old code put its temporary file, and the target itself.
    std::os::unix::fs::symlink(&victim, dir.path().join("state.tmp")).unwrap();
    teams_presence::files::write_private(&target, b"secret").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
    assert_eq!(mode(&target), 0o600);

    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    teams_presence::files::write_private(&link, b"other").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}
