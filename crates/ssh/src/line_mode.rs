//! The line interface (`ssh -T host`, or piped stdin): the bot interface. Every line read is a
//! message or a slash command; every event is one plain line written (`TIME text`); nothing is
//! echoed, no escape sequence is ever sent. EOF (or `/quit`) leaves with status 0, once every
//! answer and event already due has been written: a script's last command is never cut off.
//!
//! Answers to commands and errors go to stderr, so that stdout carries only events. The backlog
//! of each room joined comes first, unless the client sets `KANAVA_BACKLOG=0`
//! (`ssh -o SetEnv=KANAVA_BACKLOG=0`).

use bytes::BytesMut;
use kanava_core::Nick;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::Input;
use crate::chat::directory::Mode;
use crate::chat::session::{ChatContext, ChatSession, Flow, Kind, Next, Shown};
use crate::clock::Zone;
use crate::exec::Output;
use crate::line::continued;

/// Writes lines for a bot: events to stdout, answers to stderr, the user's own messages not
/// at all. Returns whether the client still listens.
async fn write(out: &Output, shown: Vec<Shown>, zone: &Zone) -> bool {
    let mut events = String::new();
    for line in shown {
        match line.kind {
            Kind::Own => {}
            Kind::Reply => out.err(line.text.trim_start_matches("* ").to_owned()).await,
            Kind::Room | Kind::Private | Kind::Notice => {
                events.push_str(&event_lines(&line, zone));
                events.push('\n');
            }
        }
    }
    events.is_empty() || out.out(events).await
}

/// `line` as the line interface shows it: `TIME text`, and a multi-line message's further lines
/// on lines of their own, indented under its text (after `<name> ` or `[PM from name] `).
fn event_lines(line: &Shown, zone: &Zone) -> String {
    let stamp = zone.stamp(line.time_ms);
    let Some(first) = line.lines.first() else {
        return format!("{stamp} {}", line.text);
    };
    let start = line
        .nick
        .as_deref()
        .and_then(|nick| first.find(nick).map(|at| at + nick.len()))
        .and_then(|end| first[end..].find(' ').map(|gap| end + gap + 1))
        .unwrap_or(0);
    let mut rest = vec![first[start..].to_owned()];
    rest.extend_from_slice(&line.lines[1..]);
    continued(&format!("{stamp} {}", &first[..start]), &rest)
}

/// Events [`drain`] writes at most when the session ends, so that a busy room cannot keep a
/// leaving session writing.
const DRAIN_LIMIT: usize = 1024;

/// Writes what the session already has to show, without waiting for more: some answers to
/// commands arrive as notices (the copy of a `/msg`, a topic set, `/away`), queued by the time
/// the command returns, and would be lost if the session closed over them.
async fn drain(session: &mut ChatSession, out: &Output) {
    for _ in 0..DRAIN_LIMIT {
        let next = tokio::select! {
            biased;
            // Unconstrained: the task's cooperative budget must not make a ready queue look empty.
            next = tokio::task::unconstrained(session.next()) => next,
            () = std::future::ready(()) => return,
        };
        let shown = match next {
            Next::Show(shown) => shown,
            Next::Unread | Next::Members => continue,
            Next::End(_, last) => vec![last],
        };
        if !write(out, shown, session.zone()).await {
            return;
        }
    }
}

/// What the client asked of its line session.
pub(crate) struct Options {
    /// Whether entering a room shows its recent history (`KANAVA_BACKLOG=0` turns it off).
    pub(crate) backlog: bool,
    /// The time zone the client sent as `TZ` (UTC if none), until `/tz` changes it.
    pub(crate) zone: Zone,
}

/// Runs a line session until EOF, `/quit`, the client going, or cancellation; returns the exit
/// status.
pub(crate) async fn run(
    ctx: ChatContext,
    nick: Nick,
    fingerprint: String,
    Options { backlog, zone }: Options,
    out: &Output,
    mut input: mpsc::Receiver<Input>,
    cancel: &CancellationToken,
) -> u32 {
    let max_line = ctx.max_message_bytes;
    let shutdown = ctx.shutdown.clone();
    let started = ChatSession::start(ctx, nick, fingerprint, Mode::Line, cancel.clone(), backlog);
    let (mut session, shown) = match started.await {
        Ok(started) => started,
        Err(error) => {
            out.err(error).await;
            return 1;
        }
    };
    session.set_zone(zone);
    if !write(out, shown, session.zone()).await {
        session.close().await;
        return 0;
    }
    let mut pending = BytesMut::new();
    let mut discarding = false;
    let status = 'session: loop {
        let event = tokio::select! {
            () = cancel.cancelled() => {
                if shutdown.is_cancelled() {
                    out.err("the server is shutting down".to_owned()).await;
                    break 1;
                }
                break 0;
            }
            next = session.next() => match next {
                Next::Show(shown) => {
                    if !write(out, shown, session.zone()).await {
                        break 0;
                    }
                    continue;
                }
                Next::Unread | Next::Members => continue,
                Next::End(status, last) => {
                    // A server going down also ends the rooms: say the real reason.
                    if shutdown.is_cancelled() {
                        out.err("the server is shutting down".to_owned()).await;
                    } else {
                        write(out, vec![last], session.zone()).await;
                    }
                    break status;
                }
            },
            event = input.recv() => event,
        };
        let ended = match event {
            Some(Input::Data(data)) => {
                pending.extend_from_slice(&data);
                false
            }
            // A last line without a newline is a line too.
            Some(Input::Eof) | None => {
                if !pending.is_empty() && !discarding {
                    pending.extend_from_slice(b"\n");
                }
                true
            }
        };
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            if std::mem::take(&mut discarding) {
                continue;
            }
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (shown, flow) = session.submit(&String::from_utf8_lossy(line)).await;
            if !write(out, shown, session.zone()).await {
                break 'session 0;
            }
            if flow == Flow::Quit {
                drain(&mut session, out).await;
                break 'session 0;
            }
        }
        if ended {
            drain(&mut session, out).await;
            break 0;
        }
        if pending.len() > max_line {
            out.err(format!("line longer than {max_line} bytes dropped"))
                .await;
            pending.clear();
            discarding = true;
        }
    };
    session.close().await;
    status
}
