//! The Debian package, as an operator meets it: built by scripts/package (cargo-deb) from the
//! binary under test, installed with dpkg in a fresh Debian 12 root (debootstrap into a
//! directory, then chroot), checked there (files, system user, conffile, version, manual,
//! completions, the systemd units with systemd-analyze), run as its user, then removed and
//! purged. Needs root, debootstrap and a Debian mirror, as CI has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::*;

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A minimal Debian 12 root with systemd (as on a server), made once by debootstrap and kept in
/// target/ (it only holds Debian's own packages), copied for each test.
fn fresh_debian_root(into: &Path) {
    let base = repository().join("target/debootstrap/bookworm");
    let complete = base.join(".kanava-complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--include=systemd", "bookworm"])
            .arg(&base)
            .arg("http://deb.debian.org/debian"));
        std::fs::write(&complete, "").unwrap();
    }
    run(Command::new("cp").arg("-a").arg(&base).arg(into));
}

/// A command run inside `root` with chroot(8).
fn chroot(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("chroot");
    command
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8");
    command
}

#[tokio::test]
async fn the_package_installs_in_a_fresh_debian_12_runs_as_its_user_and_removes_cleanly() {
    let _heavy = heavy().await;
    // The package of the binary under test (the test build: the same files as a release).
    let built = run(Command::new(repository().join("scripts/package"))
        .args(["--profile", "dev"])
        .current_dir(repository())
        .stderr(Stdio::inherit()));
    let deb = repository().join(text(&built).trim());
    assert!(deb.is_file(), "{}", deb.display());

    let dir = tempfile::tempdir_in(repository().join("target")).unwrap();
    let root = dir.path().join("root");
    fresh_debian_root(&root);
    std::fs::copy(&deb, root.join("tmp/kanava.deb")).unwrap();
    run(&mut chroot(&root, &["dpkg", "-i", "/tmp/kanava.deb"]));

    let status = run(&mut chroot(
        &root,
        &["dpkg-query", "-W", "-f=${Status} ${Conffiles}", "kanava"],
    ));
    let status = text(&status);
    assert!(status.starts_with("install ok installed"), "{status}");
    assert!(
        status.contains("/etc/kanava/kanava.toml"),
        "not a conffile: {status}"
    );

    // The system user, and the config readable by it only.
    let user = text(&run(&mut chroot(&root, &["getent", "passwd", "kanava"])));
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/kanava", "{user}");
    assert!(fields[6].ends_with("nologin"), "{user}");
    let config = text(&run(&mut chroot(
        &root,
        &["stat", "-c", "%U:%G %a", "/etc/kanava/kanava.toml"],
    )));
    assert_eq!(config.trim(), "root:kanava 640");

    // The binary under test, its manual pages and completions.
    let ours = text(&run(
        Command::new(env!("CARGO_BIN_EXE_kanava")).arg("--version")
    ));
    let installed = text(&run(&mut chroot(&root, &["kanava", "--version"])));
    assert_eq!(installed, ours);
    let page = text(&run(&mut chroot(
        &root,
        &["zcat", "/usr/share/man/man1/kanava-serve.1.gz"],
    )));
    assert!(page.contains(".TH kanava-serve 1") && page.contains("check\\-config"));
    let completed = text(&run(&mut chroot(
        &root,
        &[
            "bash",
            "-c",
            "source /usr/share/bash-completion/completions/kanava; COMP_WORDS=(kanava se); \
             COMP_CWORD=1; _kanava kanava se kanava; echo \"${COMPREPLY[@]}\"",
        ],
    )));
    assert_eq!(completed.trim(), "serve");
    for file in [
        "usr/share/zsh/vendor-completions/_kanava",
        "usr/share/fish/vendor_completions.d/kanava.fish",
        "usr/share/man/man1/kanava.1.gz",
    ] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }

    // The units, as systemd reads them, and how much the service is exposed.
    let units = root.join("usr/lib/systemd/system");
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg(units.join("kanava.service"))
        .arg(units.join("kanava.socket")));
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(units.join("kanava.service")));
    let exposure = security_exposure(&text(&security));
    assert!(exposure < 2.0, "exposure {exposure} is 2.0 or more");
    // `systemctl enable --now kanava` on a booted system; here, without systemd running,
    // enabling links the unit where the boot starts it.
    run(&mut chroot(&root, &["systemctl", "enable", "kanava"]));
    let link =
        std::fs::read_link(root.join("etc/systemd/system/multi-user.target.wants/kanava.service"))
            .expect("enabled: linked into multi-user.target.wants");
    assert!(link.ends_with("systemd/system/kanava.service"), "{link:?}");

    // The service's command, as its user, on the packaged configuration.
    std::fs::create_dir_all(root.join("var/lib/kanava")).unwrap();
    run(&mut chroot(
        &root,
        &["chown", "kanava:kanava", "/var/lib/kanava"],
    ));
    let port = crate::nats::free_port();
    let admin = crate::nats::free_port();
    // chroot(8) with the service's user, as systemd runs it (User=kanava).
    let mut served = Command::new("chroot");
    served
        .arg("--userspec=kanava:kanava")
        .arg(&root)
        .args([
            "/usr/bin/kanava",
            "serve",
            "--config",
            "/etc/kanava/kanava.toml",
        ])
        .args(["--mles-listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args([
            "--ssh-listen",
            "127.0.0.1:0",
            "--debug-me-listen",
            "127.0.0.1:0",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("KANAVA_DATA", "/var/lib/kanava")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut server = served.spawn().unwrap();
    let ready = {
        use std::io::BufRead;
        let stdout = std::io::BufReader::new(server.stdout.take().unwrap());
        stdout
            .lines()
            .map(Result::unwrap)
            .any(|line| line == "ready")
    };
    assert!(ready, "the packaged kanava did not start");
    let (status, _) = admin_get(format!("127.0.0.1:{admin}").parse().unwrap(), "/healthz").await;
    assert!(status.contains("200"), "{status}");
    let owner = text(&run(&mut chroot(
        &root,
        &["stat", "-c", "%U", "/var/lib/kanava/kanava.db"],
    )));
    assert_eq!(owner.trim(), "kanava");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());

    // Removing keeps the configuration and the data; purging deletes both, and the user.
    run(&mut chroot(&root, &["dpkg", "-r", "kanava"]));
    assert!(!root.join("usr/bin/kanava").exists());
    assert!(root.join("etc/kanava/kanava.toml").is_file());
    assert!(root.join("var/lib/kanava/kanava.db").is_file());
    run(&mut chroot(&root, &["dpkg", "--purge", "kanava"]));
    assert!(!root.join("etc/kanava").exists());
    assert!(!root.join("var/lib/kanava").exists());
    let gone = chroot(&root, &["getent", "passwd", "kanava"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the kanava user is still there");
}

/// The overall exposure `systemd-analyze security` gives a unit.
fn security_exposure(report: &str) -> f64 {
    report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for kanava.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in {report}"))
}
