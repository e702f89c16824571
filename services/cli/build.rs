//! Records the git commit the binary is built from as `RENAL_GIT_COMMIT`, which every message,
//! table row and bundle names as its code version. A build outside a git checkout (a container
//! image built from a source archive) passes it in the environment variable of the same name;
//! without either it is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RENAL_GIT_COMMIT");
    let commit = std::env::var("RENAL_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a commit) and
        // the packed refs (a gc).
        for path in ["HEAD", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        git(&["rev-parse", "HEAD"])
    });
    println!("cargo:rustc-env=RENAL_GIT_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
}
