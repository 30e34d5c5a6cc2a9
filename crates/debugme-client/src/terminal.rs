//! The local terminal during a session: raw mode while it runs (so that every key goes to the
//! shared program or to the developer's side), always restored on the way out — at the end,
//! on an error, on a panic and on SIGTERM, since the session loop returns then too — with the
//! cursor made visible. Keys are read on a thread of their own, so that a read blocked on the
//! terminal never keeps the process from exiting.

use std::io::{IsTerminal, Read};

use tokio::sync::mpsc;

use crate::pty::Size;

/// Raw mode on the controlling terminal; dropping it restores the terminal.
#[derive(Debug)]
pub struct RawTerminal(());

impl RawTerminal {
    /// Puts the terminal in raw mode; `None` when stdin is not a terminal (nothing to
    /// restore then).
    pub fn enter() -> std::io::Result<Option<Self>> {
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        restore_on_panic();
        crossterm::terminal::enable_raw_mode()?;
        Ok(Some(Self(())))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore();
    }
}

/// Raw mode off, cursor visible.
fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"\x1b[?25h");
    let _ = stdout.flush();
}

fn restore_on_panic() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The terminal's size, or 80×24 when stdout is not a terminal.
pub fn size() -> Size {
    crossterm::terminal::size()
        .map(|(cols, rows)| Size { cols, rows })
        .unwrap_or(Size { cols: 80, rows: 24 })
}

/// What stdin reads, chunk by chunk, until end of file; read on its own thread.
pub fn keys() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sender.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}
