//! Drop folders: listing what arrived, naming files without naming patients, and taking
//! handled files out.

use renal_store::sha256_hex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A dead-letter key for a file that names no patient: the site, a hash of the folder path
/// (export tools often name folders after patients), and the file name.
pub fn file_key(site: &str, drop_folder: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(drop_folder).unwrap_or(path);
    let dir = rel.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{site}:{}/{name}", &sha256_hex(dir.as_bytes())[..16])
}

/// Every file under `root`, recursively, skipping hidden entries (`.rejected`, files
/// still being written under a dot-name), sorted.
pub fn list_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            // The entry's type comes with the directory listing; only a link needs a stat.
            let is_dir = match e.file_type() {
                Ok(t) if t.is_symlink() => p.is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => continue,
            };
            if is_dir {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Move an unusable file into `folder` (`.rejected`) of its drop folder and forget it.
pub fn move_under(drop: &Path, path: &Path, folder: &str, seen: &mut HashSet<PathBuf>) {
    let rel = path.strip_prefix(drop).unwrap_or(path);
    let to = drop.join(folder).join(rel);
    if let Some(parent) = to.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::rename(path, to);
    // Hidden folders are not scanned, so a moved file need not be remembered: the seen set
    // stays as small as the drop folder.
    seen.remove(path);
}

/// Delete a file whose case was sent (its de-identified copy is stored) and forget it.
pub fn remove_handled(path: &Path, seen: &mut HashSet<PathBuf>) {
    let _ = std::fs::remove_file(path);
    seen.remove(path);
}
