//! What a session says to its person, in one place for the user's and the developer's side:
//! on this terminal (in raw mode, so lines end in CR LF) and in the control windows
//! (`kanava control`), which bring chat lines, answers and `/quit` back. Text from other people
//! reaches either only made printable.

use std::io::Write;
use std::path::Path;

use tokio::sync::mpsc;

use crate::control::{Control, Notice, Request};

/// Writes bytes to the terminal as they are (the shared program's own output, echoes).
pub fn show(bytes: &[u8]) {
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// A chat line from `sender`, made printable.
pub fn chat_line(sender: &[u8], text: &[u8]) -> String {
    format!(
        "<{}> {}",
        kanava_core::sanitize(sender),
        kanava_core::sanitize(text)
    )
}

/// The terminal and, when the socket could be made, the control windows.
pub(crate) struct Console {
    control: Option<Control>,
}

impl Console {
    /// Serves control windows at `socket` if it can (a session runs without them); their
    /// requests arrive on the receiver.
    pub(crate) fn open(socket: &Path) -> (Self, Option<mpsc::Receiver<Request>>) {
        match Control::bind(socket) {
            Ok((control, requests)) => (
                Self {
                    control: Some(control),
                },
                Some(requests),
            ),
            Err(error) => {
                tracing::warn!(%error, "no control window for this session");
                (Self { control: None }, None)
            }
        }
    }

    /// Tells the control windows only.
    pub(crate) fn notify(&self, notice: Notice) {
        if let Some(control) = &self.control {
            control.notify(notice);
        }
    }

    /// Printable lines, on the terminal and in the control windows.
    pub(crate) fn say(&self, lines: &str) {
        show(format!("\r\n{}\r\n", lines.replace('\n', "\r\n")).as_bytes());
        for line in lines.lines() {
            self.notify(Notice::Line(line.to_owned()));
        }
    }

    /// A note of kanava's.
    pub(crate) fn note(&self, text: &str) {
        self.say(&format!("** kanava: {text}"));
    }

    /// A chat line sent from a control window, shown on the terminal too.
    pub(crate) fn said(&self, text: &str) {
        show(format!("\r\n[chat] {}\r\n", kanava_core::sanitize(text.as_bytes())).as_bytes());
    }
}
