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
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={common}/{reference}");
        }
        println!("cargo:rerun-if-changed={common}/packed-refs");
    }
    Some(commit)
}
