//! `kanava replay`, `kanava graphviz` and `kanava export --asciicast` on real debug-me logs and
//! a synthetic signed session, checked by the real consumers: `dot` must lay out the graph,
//! `asciinema cat` and `asciinema play` must print the session's output, and a replay must print
//! exactly the user's terminal output, in a terminal too, where Space skips pauses and the
//! terminal is restored.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../crates/debugme/testdata/{name}"))
}

fn synthetic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/debugme-tools/testdata/synthetic.log")
}

/// The logs with user output, and that output: all their Seen data, concatenated.
fn sessions() -> [(PathBuf, &'static [u8]); 2] {
    [
        (
            testdata("appendix-a.log"),
            b"** debug-me session started\r\n\r\n** debug-me session ended (1)\r\n",
        ),
        (
            synthetic(),
            "** debug-me session started\r\n$ ls\r\ncafé €\r\n$ \x1b[1mbye\x1b[0m\r\n".as_bytes(),
        ),
    ]
}

fn kanava() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kanava"))
}

/// A child's exit status and what it wrote to stdout (kept in a file, so it never blocks).
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `command` with stdout and stderr in files, and `while_running` called every 50 ms
/// until it exits; fails if it takes longer than `timeout`.
fn run(mut command: Command, timeout: Duration, mut while_running: impl FnMut()) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child: Child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        while_running();
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// A pseudo-terminal: the master end, and the slave end that becomes a child's stdin and
/// controlling terminal.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two new descriptors, which are then owned here.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        unsafe {
            Pty {
                master: std::fs::File::from_raw_fd(master),
                slave: OwnedFd::from_raw_fd(slave),
            }
        }
    }

    /// Makes `command` run in a new session with this terminal as stdin and controlling tty.
    fn attach(&self, command: &mut Command) {
        command.stdin(Stdio::from(self.slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Whether the terminal is in canonical (line) mode, as a shell leaves it.
    fn canonical(&self) -> bool {
        // SAFETY: termios is plain data, filled in by tcgetattr on a descriptor owned here.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut termios) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        termios.c_lflag & libc::ICANON != 0
    }
}

/// Runs `asciinema ARGS`: asciinema 2 reads keys from /dev/tty while it prints, so it gets a
/// terminal for stdin (its output goes to a file, byte for byte).
fn asciinema(args: &[&str], cast: &Path) -> Finished {
    let pty = Pty::open();
    let mut command = Command::new("asciinema");
    command.args(args).arg(cast);
    pty.attach(&mut command);
    run(command, Duration::from_secs(60), || {})
}

#[test]
fn asciicast_export_prints_the_session_in_asciinema() {
    let dir = tempfile::tempdir().unwrap();
    for (log, output) in sessions() {
        let cast = dir.path().join("session.cast");
        let mut command = kanava();
        command
            .args(["export", "--asciicast"])
            .arg(&log)
            .arg("-o")
            .arg(&cast);
        let exported = run(command, Duration::from_secs(60), || {});
        assert!(exported.status.success(), "{}", exported.stderr);

        let text = std::fs::read_to_string(&cast).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(
            (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
            (Some(80), Some(24))
        );
        assert!(lines[1..].iter().all(|e| e[1] == "o" && e[0].is_f64()));

        // Pauses capped at 0.1 s for play.
        for args in [&["cat"][..], &["play", "--idle-time-limit", "0.1"]] {
            let played = asciinema(args, &cast);
            assert!(
                played.status.success(),
                "asciinema {args:?}: {}",
                played.stderr
            );
            assert_eq!(
                played.stdout,
                output,
                "asciinema {args:?} {}: {:?}",
                log.display(),
                String::from_utf8_lossy(&played.stdout)
            );
        }

        let mut command = kanava();
        command
            .args(["export", "--width", "132", "--height", "43", "--asciicast"])
            .arg(&log);
        let to_stdout = run(command, Duration::from_secs(60), || {});
        assert!(to_stdout.status.success(), "{}", to_stdout.stderr);
        let header: serde_json::Value =
            serde_json::from_slice(to_stdout.stdout.split(|b| *b == b'\n').next().unwrap())
                .unwrap();
        assert_eq!(
            (header["width"].as_u64(), header["height"].as_u64()),
            (Some(132), Some(43))
        );
    }
}

/// Lays out DOT text with the real `dot`; returns the plain layout (a line per node and edge).
fn dot(text: &[u8], format: &str) -> Vec<u8> {
    let mut child = Command::new("dot")
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz is installed (apt-get install graphviz)");
    child.stdin.take().unwrap().write_all(text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "dot {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn graphviz_output_is_laid_out_by_dot() {
    let dir = tempfile::tempdir().unwrap();
    // Each log with its nodes (lines, plus hashes named but not in the log) and edges.
    for (log, nodes, edges) in [
        (testdata("appendix-a.log"), 3, 1),
        (testdata("appendix-b-controls.log"), 6, 2),
        (testdata("developer-entered.log"), 2, 1),
        (synthetic(), 14, 16),
    ] {
        let file = dir.path().join("chain.dot");
        let mut command = kanava();
        command.arg("graphviz").arg(&log).arg("-o").arg(&file);
        let drawn = run(command, Duration::from_secs(60), || {});
        assert!(drawn.status.success(), "{}", drawn.stderr);
        let text = std::fs::read(&file).unwrap();

        let svg = dot(&text, "-Tsvg");
        assert!(String::from_utf8_lossy(&svg).contains("</svg>"));
        let plain = String::from_utf8(dot(&text, "-Tplain")).unwrap();
        let count = |what: &str| plain.lines().filter(|l| l.starts_with(what)).count();
        assert_eq!(
            (count("node "), count("edge ")),
            (nodes, edges),
            "{}",
            log.display()
        );

        let mut command = kanava();
        command.arg("graphviz").arg(&log);
        let to_stdout = run(command, Duration::from_secs(60), || {});
        assert!(to_stdout.status.success(), "{}", to_stdout.stderr);
        assert_eq!(to_stdout.stdout, text);
    }
}

#[test]
fn replay_prints_exactly_the_users_output() {
    for (log, output) in sessions() {
        let mut command = kanava();
        command
            .args(["replay", "--speed", "1000"])
            .arg(&log)
            .stdin(Stdio::null());
        let replayed = run(command, Duration::from_secs(60), || {});
        assert!(replayed.status.success(), "{}", replayed.stderr);
        assert_eq!(replayed.stdout, output, "{}", log.display());
    }
}

#[test]
fn in_a_terminal_space_skips_pauses_and_the_terminal_is_restored() {
    // At a hundredth of the speed, the synthetic session's pauses add up to 500 s: it ends in
    // time only if Space skips them.
    let pty = Pty::open();
    assert!(pty.canonical());
    let mut command = kanava();
    command.args(["replay", "--speed", "0.01"]).arg(synthetic());
    pty.attach(&mut command);
    let mut master = pty.master.try_clone().unwrap();
    let replayed = run(command, Duration::from_secs(60), || {
        if !pty.canonical() {
            master.write_all(b" ").unwrap();
        }
    });
    assert!(replayed.status.success(), "{}", replayed.stderr);
    assert_eq!(replayed.stdout, sessions()[1].1);
    assert!(pty.canonical(), "raw mode was left on");
}

#[test]
fn in_a_terminal_ctrl_c_stops_the_replay_and_the_terminal_is_restored() {
    let pty = Pty::open();
    let mut command = kanava();
    command.args(["replay", "--speed", "0.01"]).arg(synthetic());
    pty.attach(&mut command);
    let mut master = pty.master.try_clone().unwrap();
    let mut sent = false;
    let replayed = run(command, Duration::from_secs(60), || {
        // Only once raw mode is on: before, the terminal itself would turn it into SIGINT.
        if !sent && !pty.canonical() {
            master.write_all(b"\x03").unwrap();
            sent = true;
        }
    });
    assert_eq!(replayed.status.code(), Some(130), "{}", replayed.stderr);
    assert_eq!(replayed.stdout, b"** debug-me session started\r\n");
    assert!(pty.canonical(), "raw mode was left on");
}

#[test]
fn unparsable_logs_fail_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(testdata("appendix-a.log")).unwrap();
    let first = good.lines().next().unwrap();
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, format!("{first}\n\n{{\"loggedMessage\": 7}}\n")).unwrap();
    let not_utf8 = dir.path().join("binary.log");
    std::fs::write(&not_utf8, b"\xff\xfe\n").unwrap();
    for args in [&["replay"][..], &["graphviz"], &["export", "--asciicast"]] {
        for (log, line) in [(&garbage, "line 3: "), (&not_utf8, "line 1: ")] {
            let mut command = kanava();
            command.args(args).arg(log).stdin(Stdio::null());
            let failed = run(command, Duration::from_secs(60), || {});
            assert_eq!(failed.status.code(), Some(1), "{args:?}: {}", failed.stderr);
            assert!(failed.stdout.is_empty(), "{args:?}");
            assert!(
                failed.stderr.contains(&log.display().to_string()) && failed.stderr.contains(line),
                "{args:?}: {}",
                failed.stderr
            );
        }
        let mut command = kanava();
        command.args(args).arg(dir.path().join("missing.log"));
        let failed = run(command, Duration::from_secs(60), || {});
        assert_eq!(failed.status.code(), Some(1), "{args:?}: {}", failed.stderr);
        assert!(failed.stderr.contains("cannot read"), "{}", failed.stderr);
    }
}
