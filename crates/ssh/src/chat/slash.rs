//! The slash commands of a chat session (`/join #dev`, `/msg bob hi`, …), parsed without I/O.
//! The same commands work in the full-screen chat and the line interface.

use std::time::Duration;

use kanava_core::{ChannelName, Nick, parse_duration};

use crate::command::room;

/// A parsed slash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slash {
    /// `/help`: the commands (operators also see theirs).
    Help,
    /// `/quit`, `/exit`: leave.
    Quit,
    /// `/join ROOM`: move to a room, creating it.
    Join(ChannelName),
    /// `/switch ROOM`: show an open room.
    Switch(ChannelName),
    /// `/bell on|off`: whether a mention or a private message rings the terminal's bell.
    Bell(bool),
    /// `/part`: back to the default room.
    Part,
    /// `/who`, `/names`: who is in this room.
    Who,
    /// `/rooms`: the rooms with people in them.
    Rooms,
    /// `/whois NAME`: a name's keys, sessions and status.
    Whois(Nick),
    /// `/me ACTION`: an emote.
    Me(String),
    /// `/msg NAME TEXT`: a private message.
    Msg(Nick, String),
    /// `/reply TEXT`: a private message to whoever last sent one.
    Reply(String),
    /// `/away REASON`: set away.
    Away(String),
    /// `/back`: clear away.
    Back,
    /// `/quiet`: hide people joining and leaving the room, or show them again (toggles).
    Quiet,
    /// `/tz [ZONE]`: show the time zone times are shown in, or set it (an IANA name; `UTC`
    /// resets it).
    Tz(Option<String>),
    /// `/ignore [NAME]`: hide a name's messages, or list who is hidden.
    Ignore(Option<Nick>),
    /// `/unignore NAME`: show a name's messages again.
    Unignore(Nick),
    /// `/topic [TEXT]`: show or set the room's topic.
    Topic(Option<String>),
    /// `/key`: list one's keys.
    Keys,
    /// `/key add PUBLIC-KEY`: let another key of one's own log in under this name.
    KeyAdd(String),
    /// `/key remove FINGERPRINT`: remove one of one's keys (never the last).
    KeyRemove(String),
    /// `/nick NEW`: move one's keys to the free name NEW, freeing the current one.
    Nick(Nick),
    /// `/release [NAME]`: free one's name and all its keys; NAME (one's own) confirms.
    Release(Option<Nick>),
    /// `/kick NAME [REASON]` (operators): end a name's sessions, telling them why.
    Kick(Nick, Option<String>),
    /// `/ban NAME [DURATION]` (operators): refuse a name's keys, for a while or for good.
    Ban(Nick, Option<Duration>),
    /// `/unban NAME|FINGERPRINT` (operators).
    Unban(String),
    /// `/banned` (operators): the bans in force.
    Banned,
    /// `/mute NAME` (operators): toggle; a muted name's messages reach nobody else.
    Mute(Nick),
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlashError {
    /// Not a command.
    #[error("unknown command /{0}; /help lists them")]
    Unknown(String),
    /// Missing or extra arguments.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A bad room or user name, or duration.
    #[error("{0}")]
    Argument(String),
}

/// The commands and what each does, one line each.
const COMMANDS: [(&str, &str); 22] = [
    ("/join ROOM", "open a room, or switch to it"),
    (
        "/switch ROOM",
        "show an open room (also Alt-1..9, Ctrl-N, Ctrl-P)",
    ),
    ("/part", "leave this room"),
    ("/who", "who is in this room"),
    ("/rooms", "the rooms with people in them"),
    ("/whois NAME", "a name's keys, sessions and status"),
    ("/me ACTION", "say what you do"),
    ("/msg NAME TEXT", "a private message"),
    ("/reply TEXT", "answer the last private message"),
    ("/away REASON", "say you are away"),
    ("/back", "say you are back"),
    (
        "/quiet",
        "hide people joining and leaving, or show them again",
    ),
    (
        "/ignore [NAME]",
        "hide a name's messages, or list who you hide",
    ),
    ("/unignore NAME", "show a name's messages again"),
    ("/topic [TEXT]", "show or set the room's topic"),
    (
        "/bell on|off",
        "ring the bell on a mention or private message",
    ),
    ("/key [add KEY | remove FINGERPRINT]", "your keys"),
    ("/nick NEW", "move your name and keys to NEW (once an hour)"),
    (
        "/tz [ZONE]",
        "your time zone, e.g. Europe/Helsinki (UTC resets it)",
    ),
    ("/release [YOURNAME]", "free your name and its keys"),
    ("/help", "this list"),
    ("/quit", "leave the chat"),
];

/// The operators' commands, one line each.
const OPERATOR_COMMANDS: [(&str, &str); 5] = [
    ("/kick NAME [REASON]", "end a name's sessions"),
    (
        "/ban NAME [DURATION]",
        "refuse a name's keys, for a while or for good",
    ),
    ("/unban NAME|FINGERPRINT", "lift a ban"),
    ("/banned", "the bans in force"),
    (
        "/mute NAME",
        "toggle: a muted name's messages reach nobody else",
    ),
];

/// The help, one line per command; operators' commands follow when `op` is set.
pub fn help(op: bool) -> Vec<String> {
    let line = |(usage, what): &(&str, &str)| format!("  {usage:<16} {what}");
    let mut lines = vec!["commands:".to_owned()];
    lines.extend(COMMANDS.iter().map(line));
    if op {
        lines.push("operators:".to_owned());
        lines.extend(OPERATOR_COMMANDS.iter().map(line));
    }
    lines
}

fn nick(word: Option<&str>, usage: &'static str) -> Result<Nick, SlashError> {
    let word = word.ok_or(SlashError::Usage(usage))?;
    Nick::new(word.strip_prefix('@').unwrap_or(word))
        .map_err(|e| SlashError::Argument(format!("{word:?}: {e}")))
}

/// The text after the first `n` words of `line`, trimmed.
fn rest(line: &str, n: usize) -> &str {
    let mut rest = line.trim_start();
    for _ in 0..n {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
    }
    rest.trim()
}

/// Parses a command line without its leading `/`.
pub fn parse(line: &str) -> Result<Slash, SlashError> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let (first, second, third) = (words.next(), words.next(), words.next());
    let none = |slash: Slash, usage: &'static str| match first {
        None => Ok(slash),
        Some(_) => Err(SlashError::Usage(usage)),
    };
    let text = |usage: &'static str, n: usize| match rest(line, n) {
        "" => Err(SlashError::Usage(usage)),
        text => Ok(text.to_owned()),
    };
    match name {
        "help" => none(Slash::Help, "/help"),
        "quit" | "exit" => none(Slash::Quit, "/quit"),
        "part" => none(Slash::Part, "/part"),
        "who" | "names" => none(Slash::Who, "/who"),
        "rooms" => none(Slash::Rooms, "/rooms"),
        "back" => none(Slash::Back, "/back"),
        "quiet" => none(Slash::Quiet, "/quiet"),
        "tz" if second.is_none() => Ok(Slash::Tz(first.map(str::to_owned))),
        "tz" => Err(SlashError::Usage("/tz [ZONE]")),
        "banned" => none(Slash::Banned, "/banned"),
        "join" => match (first, second) {
            (Some(word), None) => room(word)
                .map(Slash::Join)
                .map_err(|e| SlashError::Argument(format!("bad room name: {e}"))),
            _ => Err(SlashError::Usage("/join ROOM")),
        },
        "switch" => match (first, second) {
            (Some(word), None) => room(word)
                .map(Slash::Switch)
                .map_err(|e| SlashError::Argument(format!("bad room name: {e}"))),
            _ => Err(SlashError::Usage("/switch ROOM")),
        },
        "bell" => match (first, second) {
            (Some("on"), None) => Ok(Slash::Bell(true)),
            (Some("off"), None) => Ok(Slash::Bell(false)),
            _ => Err(SlashError::Usage("/bell on|off")),
        },
        "whois" if second.is_none() => Ok(Slash::Whois(nick(first, "/whois NAME")?)),
        "whois" => Err(SlashError::Usage("/whois NAME")),
        "me" => Ok(Slash::Me(text("/me ACTION", 1)?)),
        "msg" => {
            let to = nick(first, "/msg NAME TEXT")?;
            Ok(Slash::Msg(to, text("/msg NAME TEXT", 2)?))
        }
        "reply" => Ok(Slash::Reply(text("/reply TEXT", 1)?)),
        "away" => Ok(Slash::Away(text("/away REASON", 1)?)),
        "ignore" if second.is_none() => Ok(Slash::Ignore(
            first.map(|w| nick(Some(w), "/ignore [NAME]")).transpose()?,
        )),
        "ignore" => Err(SlashError::Usage("/ignore [NAME]")),
        "unignore" if second.is_none() => Ok(Slash::Unignore(nick(first, "/unignore NAME")?)),
        "unignore" => Err(SlashError::Usage("/unignore NAME")),
        "topic" => Ok(Slash::Topic(text("", 1).ok())),
        "key" => match (first, second) {
            (None, _) => Ok(Slash::Keys),
            (Some("add"), Some(_)) => Ok(Slash::KeyAdd(text("", 2)?)),
            (Some("remove"), Some(fingerprint)) if third.is_none() => {
                Ok(Slash::KeyRemove(fingerprint.to_owned()))
            }
            _ => Err(SlashError::Usage(
                "/key, /key add PUBLIC-KEY, /key remove FINGERPRINT",
            )),
        },
        "nick" if second.is_none() => Ok(Slash::Nick(nick(first, "/nick NEW")?)),
        "nick" => Err(SlashError::Usage("/nick NEW")),
        "release" if second.is_none() => Ok(Slash::Release(
            first
                .map(|w| nick(Some(w), "/release [YOUR-NAME]"))
                .transpose()?,
        )),
        "release" => Err(SlashError::Usage("/release [YOUR-NAME]")),
        "kick" => Ok(Slash::Kick(
            nick(first, "/kick NAME [REASON]")?,
            text("", 2).ok(),
        )),
        "ban" if third.is_none() => {
            let who = nick(first, "/ban NAME [DURATION]")?;
            let duration = second
                .map(|d| parse_duration(d).map_err(|e| SlashError::Argument(e.to_string())))
                .transpose()?;
            Ok(Slash::Ban(who, duration))
        }
        "ban" => Err(SlashError::Usage("/ban NAME [DURATION]")),
        "unban" => match (first, second) {
            (Some(who), None) => Ok(Slash::Unban(who.to_owned())),
            _ => Err(SlashError::Usage("/unban NAME|FINGERPRINT")),
        },
        "mute" if second.is_none() => Ok(Slash::Mute(nick(first, "/mute NAME")?)),
        "mute" => Err(SlashError::Usage("/mute NAME")),
        other => Err(SlashError::Unknown(other.chars().take(32).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse("join #dev"),
            Ok(Slash::Join(ChannelName::new("dev").unwrap()))
        );
        assert_eq!(
            parse("msg @bob  hi  there "),
            Ok(Slash::Msg(n("bob"), "hi  there".into()))
        );
        assert_eq!(parse("me waves"), Ok(Slash::Me("waves".into())));
        assert_eq!(parse("topic"), Ok(Slash::Topic(None)));
        assert_eq!(
            parse("topic ship it"),
            Ok(Slash::Topic(Some("ship it".into())))
        );
        assert_eq!(parse("ignore"), Ok(Slash::Ignore(None)));
        assert_eq!(parse("ignore eve"), Ok(Slash::Ignore(Some(n("eve")))));
        assert_eq!(
            parse("ban eve 1h"),
            Ok(Slash::Ban(n("eve"), Some(Duration::from_secs(3600))))
        );
        assert_eq!(parse("ban eve"), Ok(Slash::Ban(n("eve"), None)));
        assert_eq!(parse("kick eve"), Ok(Slash::Kick(n("eve"), None)));
        assert_eq!(parse("tz"), Ok(Slash::Tz(None)));
        assert_eq!(
            parse("tz Europe/Helsinki"),
            Ok(Slash::Tz(Some("Europe/Helsinki".into())))
        );
        assert_eq!(parse("tz a b"), Err(SlashError::Usage("/tz [ZONE]")));
        assert_eq!(
            parse("kick eve  stop spamming "),
            Ok(Slash::Kick(n("eve"), Some("stop spamming".into())))
        );
        assert_eq!(
            parse("key add ssh-ed25519 AAAA x@y"),
            Ok(Slash::KeyAdd("ssh-ed25519 AAAA x@y".into()))
        );
        assert_eq!(parse("key"), Ok(Slash::Keys));
        assert_eq!(
            parse("nick bob"),
            Ok(Slash::Nick(Nick::new("bob").unwrap()))
        );
        assert!(matches!(parse("nick b/b"), Err(SlashError::Argument(_))));
        assert_eq!(parse("release"), Ok(Slash::Release(None)));
        assert_eq!(
            parse("release alice"),
            Ok(Slash::Release(Some(Nick::new("alice").unwrap())))
        );
        assert_eq!(parse("names"), Ok(Slash::Who));
        assert_eq!(
            parse("switch #dev"),
            Ok(Slash::Switch(ChannelName::new("dev").unwrap()))
        );
        assert_eq!(parse("bell off"), Ok(Slash::Bell(false)));
        assert_eq!(parse("bell on"), Ok(Slash::Bell(true)));
        assert_eq!(parse("bell"), Err(SlashError::Usage("/bell on|off")));
        assert_eq!(parse("away  lunch "), Ok(Slash::Away("lunch".into())));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("msg bob"), Err(SlashError::Usage("/msg NAME TEXT")));
        assert_eq!(parse("me"), Err(SlashError::Usage("/me ACTION")));
        assert_eq!(parse("who x"), Err(SlashError::Usage("/who")));
        assert!(matches!(parse("msg b/ob hi"), Err(SlashError::Argument(_))));
        assert!(matches!(
            parse("ban eve soon"),
            Err(SlashError::Argument(_))
        ));
        assert!(matches!(parse("join #"), Err(SlashError::Argument(_))));
        assert_eq!(
            parse("frobnicate"),
            Err(SlashError::Unknown("frobnicate".into()))
        );
        assert_eq!(parse(""), Err(SlashError::Unknown(String::new())));
        let has = |lines: Vec<String>, command: &str| lines.iter().any(|l| l.contains(command));
        assert!(has(help(true), "/ban") && !has(help(false), "/ban"));
        assert!(help(false).iter().all(|l| l.matches(" /").count() <= 1));
    }
}
