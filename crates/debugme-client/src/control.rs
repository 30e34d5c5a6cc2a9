//! The control window: `kanava control`, in a second terminal, shows a session's chat and
//! consent questions and sends chat lines, answers and `/quit`, as debug-me's control window
//! does. The session serves a Unix socket (mode 0600, in the private log directory); each
//! window that connects gets what was said so far, then everything new. The messages are
//! newline-delimited JSON, private to kanava.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

/// Lines kept for a window that connects late.
const KEPT: usize = 200;

/// The socket of the user's session whose log goes to `log_dir`.
pub fn socket_path(log_dir: &Path) -> PathBuf {
    log_dir.join("control.sock")
}

/// The socket of the developer's session whose log goes to `log_dir`.
pub fn developer_socket_path(log_dir: &Path) -> PathBuf {
    log_dir.join("control-developer.sock")
}

/// The next request of the control windows; never, without a socket.
pub async fn next_request(requests: &mut Option<mpsc::Receiver<Request>>) -> Option<Request> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// From the session to its windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// A line to show (already printable).
    Line(String),
    /// A question waits for y/n.
    Ask(String),
    /// The question was answered (here or elsewhere).
    Answered,
    /// The session is over.
    End,
}

/// From a window to the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Send a chat line.
    Say(String),
    /// Answer the pending question.
    Answer(bool),
    /// End the session.
    Quit,
}

/// The session's end of the control socket.
pub struct Control {
    notices: broadcast::Sender<Notice>,
    kept: std::sync::Arc<std::sync::Mutex<Vec<Notice>>>,
    path: PathBuf,
}

impl Control {
    /// Binds the socket at `path` (replacing a stale one) and serves windows; their requests
    /// arrive on the returned receiver.
    pub fn bind(path: &Path) -> std::io::Result<(Self, mpsc::Receiver<Request>)> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (notices, _) = broadcast::channel(KEPT);
        let (requests, received) = mpsc::channel(16);
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let control = Self {
            notices: notices.clone(),
            kept: std::sync::Arc::clone(&kept),
            path: path.to_owned(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let backlog = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
                tokio::spawn(window(
                    stream,
                    backlog,
                    notices.subscribe(),
                    requests.clone(),
                ));
            }
        });
        Ok((control, received))
    }

    /// Tells every window (and keeps it for those that connect later).
    pub fn notify(&self, notice: Notice) {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEPT {
                kept.remove(0);
            }
            kept.push(notice.clone());
        }
        let _ = self.notices.send(notice);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One window: the backlog, then new notices out; its requests in.
async fn window(
    stream: UnixStream,
    backlog: Vec<Notice>,
    mut notices: broadcast::Receiver<Notice>,
    requests: mpsc::Sender<Request>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let encode = |notice: &Notice| serde_json::to_string(notice).unwrap_or_default() + "\n";
    for notice in &backlog {
        if write.write_all(encode(notice).as_bytes()).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(notice) => {
                    if write.write_all(encode(&notice).as_bytes()).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    // A window that sends nonsense is ignored, line by line.
                    if let Ok(request) = serde_json::from_str(&line)
                        && requests.send(request).await.is_err()
                    {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// A window's connection to a session.
pub struct Window {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Window {
    /// Connects to the session's socket.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let (read, write) = UnixStream::connect(path).await?.into_split();
        Ok(Self {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    /// The session's next notice; `None` once it is gone.
    pub async fn next(&mut self) -> Option<Notice> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Ok(notice) = serde_json::from_str(&line) {
                return Some(notice);
            }
        }
    }

    /// Sends a request to the session.
    pub async fn send(&mut self, request: &Request) -> std::io::Result<()> {
        let line = serde_json::to_string(request).map_err(std::io::Error::other)? + "\n";
        self.write.write_all(line.as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_window_gets_the_backlog_and_its_requests_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let (control, mut requests) = Control::bind(&path).unwrap();
        control.notify(Notice::Line("<dev> hello".into()));
        control.notify(Notice::Ask("let them in? [y/n]".into()));
        let mut window = Window::connect(&path).await.unwrap();
        assert_eq!(
            window.next().await,
            Some(Notice::Line("<dev> hello".into()))
        );
        assert_eq!(
            window.next().await,
            Some(Notice::Ask("let them in? [y/n]".into()))
        );
        window.send(&Request::Answer(true)).await.unwrap();
        assert_eq!(requests.recv().await, Some(Request::Answer(true)));
        control.notify(Notice::End);
        assert_eq!(window.next().await, Some(Notice::End));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        drop(control);
        assert!(!path.exists());
    }
}
