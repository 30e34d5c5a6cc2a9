//! Records the git commit the binary is built from, for `kanava --version` and the
//! `kanava_build_info` metric: `KANAVA_COMMIT` when set (a package built from a source tarball
//! sets it), else `git rev-parse` of the checkout, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KANAVA_COMMIT");
    let commit = std::env::var("KANAVA_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KANAVA_COMMIT={commit}");
}

/// The checkout's commit (12 hex digits); tells cargo to run again when HEAD or the branch it
/// names moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let absolute = |which: &str| git(&["rev-parse", "--path-format=absolute", which]);
    if let (Some(dir), Some(common)) = (absolute("--git-dir"), absolute("--git-common-dir")) {
        // The branch's file, or while it has none (a fresh clone keeps the branch in
        // packed-refs alone) its directory, where the first commit creates it.
        let branch = git(&["symbolic-ref", "-q", "HEAD"]).map(|r| format!("{common}/{r}"));
        let branch = branch.and_then(|file| {
            if std::path::Path::new(&file).exists() {
                Some(file)
            } else {
                file.rsplit_once('/').map(|(dir, _)| dir.to_owned())
            }
        });
        let watched = [
            Some(format!("{dir}/HEAD")),
            branch,
            Some(format!("{common}/packed-refs")),
        ];
        // Cargo runs a build script whose watched path is missing at every build: watch only
        // what exists.
        for path in watched.into_iter().flatten() {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(commit)
}
