//! The line interface (`ssh -T host`, or piped stdin): the bot interface. Every line read is a
//! message or a slash command; every event is one plain line written (`TIME text`); nothing is
//! echoed, no escape sequence is ever sent. EOF leaves with status 0.
//!
//! Answers to commands and errors go to stderr, so that stdout carries only events. The backlog
//! of the room comes first, unless the client sets `KANAVA_BACKLOG=0`
//! (`ssh -o SetEnv=KANAVA_BACKLOG=0`).

use bytes::BytesMut;
use kanava_core::Nick;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::Input;
use crate::chat::directory::Mode;
use crate::chat::session::{ChatContext, ChatSession, Flow, Kind, Next, Shown};
use crate::exec::Output;
use crate::line::utc_timestamp;

/// Writes lines for a bot: events to stdout, answers to stderr, the user's own messages not
/// at all. Returns whether the client still listens.
async fn write(out: &Output, shown: Vec<Shown>) -> bool {
    let mut events = String::new();
    for line in shown {
        match line.kind {
            Kind::Own => {}
            Kind::Reply => out.err(line.text.trim_start_matches("* ").to_owned()).await,
            Kind::Room | Kind::Private | Kind::Notice => {
                events.push_str(&format!("{} {}\n", utc_timestamp(line.time_ms), line.text));
            }
        }
    }
    events.is_empty() || out.out(events).await
}

/// Runs a line session until EOF, `/quit`, the client going, or cancellation; returns the exit
/// status.
pub(crate) async fn run(
    ctx: ChatContext,
    nick: Nick,
    fingerprint: String,
    backlog: bool,
    out: &Output,
    mut input: mpsc::Receiver<Input>,
    cancel: &CancellationToken,
) -> u32 {
    let max_line = ctx.max_message_bytes;
    let started = ChatSession::start(ctx, nick, fingerprint, Mode::Line, cancel.clone(), backlog);
    let (mut session, shown) = match started.await {
        Ok(started) => started,
        Err(error) => {
            out.err(error).await;
            return 1;
        }
    };
    if !write(out, shown).await {
        session.close().await;
        return 0;
    }
    let mut pending = BytesMut::new();
    let mut discarding = false;
    let status = 'session: loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break 0,
            next = session.next() => match next {
                Next::Show(shown) => {
                    if !write(out, shown).await {
                        break 0;
                    }
                    continue;
                }
                Next::Unread | Next::Members => continue,
                Next::End(status, last) => {
                    write(out, vec![last]).await;
                    break status;
                }
            },
            event = input.recv() => event,
        };
        let data = match event {
            Some(Input::Data(data)) => data,
            Some(Input::Eof) | None => break 0,
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            if std::mem::take(&mut discarding) {
                continue;
            }
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (shown, flow) = session.submit(&String::from_utf8_lossy(line)).await;
            if !write(out, shown).await || flow == Flow::Quit {
                break 'session 0;
            }
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
