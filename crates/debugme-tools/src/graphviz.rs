//! `kanava graphviz`: the hash chain of a session log as a Graphviz DOT graph, to see who typed
//! what after which output, and what the user refused.
//!
//! One node per line. Activities are chained: a solid edge for `prevActivity`, a dashed one for
//! `prevEntered`, drawn from the earlier activity so that time runs down the page, with the
//! arrow at the activity pointed to. The user's output (Seen) is a blue box, a developer's
//! input (Entered) a green rounded box, and an Entered the user rejected is red, with a red
//! edge from the rejection. Control messages, which are not chained, sit apart in a grey
//! cluster; a key decision points at the key's announcement. A hash that names no line of the
//! log (a truncated log, a developer's view of someone else's line) is a dotted box. Pointers
//! are the ones the signatures prove ([`crate::chain`]); an activity no key of the log signed
//! has a double border and keeps the pointers written in the file.

use std::collections::HashMap;
use std::fmt::Write as _;

use kanava_debugme::model::{AnyMessage, Control, ControlAction, Hash, Message, PerhapsSigned};

use crate::chain::{Link, links};
use crate::log::Line;

/// Characters of data shown in a node.
pub const PREVIEW_CHARS: usize = 24;
/// Hex characters of a hash or key shown in a node.
pub const HASH_CHARS: usize = 12;

/// A Rust-like printable rendering of some bytes, cut to [`PREVIEW_CHARS`] characters:
/// control characters are written as escapes (`\r`, `\e`, `\x07`), invalid UTF-8 as U+FFFD.
pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == PREVIEW_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` as a DOT quoted string whose label shows it literally: quotes and backslashes are
/// escaped, a newline becomes a centred line break, other control characters a visible escape.
pub fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\\\x{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn short(hex: &[u8]) -> String {
    String::from_utf8_lossy(&hex[..hex.len().min(HASH_CHARS)]).into_owned()
}

fn key_hex(key: &[u8]) -> String {
    short(&base16ct::lower::encode_string(key).into_bytes())
}

/// Node ids of the hashes that name no line, in order of first mention.
#[derive(Default)]
struct Missing {
    ids: HashMap<Vec<u8>, String>,
    order: Vec<(String, Hash)>,
}

impl Missing {
    fn id(&mut self, hash: &Hash) -> String {
        if let Some(id) = self.ids.get(&hash.value) {
            return id.clone();
        }
        let id = format!("m{}", self.order.len() + 1);
        self.ids.insert(hash.value.clone(), id.clone());
        self.order.push((id.clone(), hash.clone()));
        id
    }
}

/// The DOT text of a log's chain.
pub fn dot(lines: &[Line]) -> String {
    let links = links(lines);
    let by_hash: HashMap<&[u8], usize> = lines
        .iter()
        .zip(&links)
        .filter_map(|(line, link)| Some((link.as_ref()?.hash.value.as_slice(), line.number)))
        .collect();
    let controls = || {
        lines.iter().filter_map(|line| match &line.line.message {
            AnyMessage::User(Message::Control(c)) => Some((line.number, c, true)),
            AnyMessage::Developer(Message::Control(c)) => Some((line.number, c, false)),
            _ => None,
        })
    };
    let rejected: Vec<&Hash> = controls()
        .filter_map(|(_, c, _)| match &c.control {
            ControlAction::EnteredRejected {
                entered_rejected, ..
            } => Some(entered_rejected),
            _ => None,
        })
        .collect();
    let mut missing = Missing::default();
    let mut target = |hash: &Hash| match by_hash.get(hash.value.as_slice()) {
        Some(line) => format!("l{line}"),
        None => missing.id(hash),
    };

    let mut out = String::from("digraph debugme {\n");
    out.push_str(
        "  graph [fontname=\"monospace\", labelloc=t, label=\"debug-me session log: blue = the user's output (Seen), green = a developer's input (Entered), red = rejected; solid edge = prevActivity, dashed = prevEntered\"];\n",
    );
    out.push_str("  node [fontname=\"monospace\", fontsize=10, shape=box, style=filled];\n");
    out.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    let mut edges = String::new();
    for (line, link) in lines.iter().zip(&links) {
        let Some(link) = link else { continue };
        let (kind, data, attributes) = match &line.line.message {
            AnyMessage::User(Message::Activity(a)) => {
                ("Seen", &a.activity.seen_data, "fillcolor=lightblue")
            }
            AnyMessage::Developer(Message::Activity(a)) => {
                if rejected.iter().any(|h| h.value == link.hash.value) {
                    (
                        "Entered, REJECTED",
                        &a.activity.entered_data,
                        "fillcolor=\"#ffb3b3\", color=red, penwidth=2, style=\"filled,rounded\"",
                    )
                } else {
                    (
                        "Entered",
                        &a.activity.entered_data,
                        "fillcolor=palegreen, style=\"filled,rounded\"",
                    )
                }
            }
            _ => continue,
        };
        let unverified = if link.verified {
            ""
        } else {
            "\n(signature unverified)"
        };
        let label = format!(
            "line {}: {kind}\n{}\n{}{unverified}",
            line.number,
            preview(data),
            short(&link.hash.value)
        );
        let border = if link.verified { "" } else { ", peripheries=2" };
        let _ = writeln!(
            out,
            "  l{} [label={}, {attributes}{border}];",
            line.number,
            quote(&label)
        );
        chain_edges(&mut edges, line.number, link, &mut target);
    }
    out.push_str("  subgraph cluster_controls {\n    label=\"control messages (not chained)\";\n    style=filled; color=gray92;\n");
    for (number, control, from_user) in controls() {
        let label = format!("line {number}: {}", control_label(control, from_user));
        let _ = writeln!(
            out,
            "    l{number} [label={}, shape=note, fillcolor=white];",
            quote(&label)
        );
        match &control.control {
            ControlAction::EnteredRejected {
                entered_rejected, ..
            } => {
                let _ = writeln!(
                    edges,
                    "  l{number} -> {} [color=red, fontcolor=red, label=\"rejects\"];",
                    target(entered_rejected)
                );
            }
            ControlAction::SessionKeyAccepted(key) | ControlAction::SessionKeyRejected(key) => {
                let announced = controls().find(|(_, c, _)| {
                    matches!(&c.control, ControlAction::SessionKey(k, _) if k.key() == key)
                });
                if let Some((announcement, _, _)) = announced {
                    let _ = writeln!(
                        edges,
                        "  l{number} -> l{announcement} [style=dotted, color=gray40];"
                    );
                }
            }
            _ => {}
        }
    }
    out.push_str("  }\n");
    for (id, hash) in &missing.order {
        let label = format!("not in the log\n{}", short(&hash.value));
        let color = if rejected.iter().any(|h| h.value == hash.value) {
            "red"
        } else {
            "gray40"
        };
        let _ = writeln!(
            out,
            "  {id} [label={}, style=dotted, color={color}];",
            quote(&label)
        );
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}

fn chain_edges(
    edges: &mut String,
    number: usize,
    link: &Link,
    target: &mut impl FnMut(&Hash) -> String,
) {
    if let Some(pa) = &link.prev_activity {
        let _ = writeln!(edges, "  {} -> l{number} [dir=back];", target(pa));
    }
    if let Some(pe) = &link.prev_entered {
        let _ = writeln!(
            edges,
            "  {} -> l{number} [dir=back, style=dashed, color=darkgreen];",
            target(pe)
        );
    }
}

fn control_label(control: &Control, from_user: bool) -> String {
    let who = if from_user { "user" } else { "developer" };
    match &control.control {
        ControlAction::SessionKey(PerhapsSigned::UnSigned(key), _) => {
            format!("session key of the {who}\nunsigned {}", key_hex(&key.0))
        }
        ControlAction::SessionKey(PerhapsSigned::GpgSigned(key, _, _), _) => {
            format!("session key of the {who}\nGnuPG-signed {}", key_hex(&key.0))
        }
        ControlAction::SessionKeyAccepted(key) => format!("{who} accepts key\n{}", key_hex(&key.0)),
        ControlAction::SessionKeyRejected(key) => format!("{who} rejects key\n{}", key_hex(&key.0)),
        ControlAction::EnteredRejected {
            entered_rejected, ..
        } => format!("{who} rejects Entered\n{}", short(&entered_rejected.value)),
        ControlAction::ChatMessage(sender, text) => {
            format!("chat from {}\n{}", preview(sender), preview(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::log::parse;
    use crate::testlog;

    /// The graph laid out by the real `dot`, in its plain format (a line per node and edge).
    fn layout(dot_text: &str) -> String {
        render(dot_text, "-Tplain")
    }

    /// `dot_text` rendered by the real `dot` in `format`, which must not complain.
    fn render(dot_text: &str, format: &str) -> String {
        let mut child = Command::new("dot")
            .arg(format)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("graphviz is installed (apt-get install graphviz)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot_text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn count(plain: &str, what: &str) -> usize {
        plain.lines().filter(|l| l.starts_with(what)).count()
    }

    #[test]
    fn text_is_escaped_for_dot() {
        assert_eq!(
            preview(b"a\r\n\x1b[0m\x07\\\xff"),
            "a\\r\\n\\e[0m\\x{7}\\\\\u{fffd}"
        );
        assert_eq!(
            preview("é".repeat(30).as_bytes()),
            format!("{}…", "é".repeat(24))
        );
        assert_eq!(
            quote("say \"hi\" \\ now\nnext\x01"),
            "\"say \\\"hi\\\" \\\\ now\\nnext\\\\x{1}\""
        );
    }

    #[test]
    fn dot_shows_quoted_text_literally() {
        let text = r#"say "hi" \ \n \\ é"#;
        let svg = render(&format!("digraph {{ a [label={}] }}", quote(text)), "-Tsvg");
        let shown: Vec<String> = svg
            .lines()
            .filter_map(|l| {
                Some(
                    l.split_once("<text")?
                        .1
                        .split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0,
                )
            })
            .map(|t| t.replace("&quot;", "\"").replace("&amp;", "&"))
            .collect();
        assert_eq!(shown, [text]);
    }

    #[test]
    fn the_session_draws_every_line_and_pointer() {
        for pointers in [true, false] {
            let lines = parse(testlog::session(pointers).as_bytes()).unwrap();
            let text = dot(&lines);
            let plain = layout(&text);
            // 14 lines; 8 prevActivity and 6 prevEntered pointers, a rejection, an acceptance.
            assert_eq!(count(&plain, "node "), 14, "{text}");
            assert_eq!(count(&plain, "edge "), 8 + 6 + 1 + 1, "{text}");
            assert!(text.contains("l12 -> l11 [color=red"), "{text}");
            assert!(text.contains("line 11: Entered, REJECTED"), "{text}");
            assert!(text.contains("l4 -> l3 [style=dotted"), "{text}");
            assert!(text.contains("l10 -> l14 [dir=back]"), "{text}");
            assert!(!text.contains("unverified"), "{text}");
            // The chat line's quotes, and its backslash in the preview's escaped form.
            assert!(plain.contains(r#"no \"thanks\" \\\\ bye"#), "{plain}");
        }
    }

    #[test]
    fn the_real_logs_draw() {
        let log = include_str!("../../debugme/testdata/appendix-a.log");
        let plain = layout(&dot(&parse(log.as_bytes()).unwrap()));
        assert_eq!((count(&plain, "node "), count(&plain, "edge ")), (3, 1));

        let log = include_str!("../../debugme/testdata/appendix-b-controls.log");
        let text = dot(&parse(log.as_bytes()).unwrap());
        let plain = layout(&text);
        // Five controls and the rejected Entered, which is not in this excerpt.
        assert_eq!(
            (count(&plain, "node "), count(&plain, "edge ")),
            (6, 2),
            "{text}"
        );
        assert!(
            text.contains("m1 [label=\"not in the log\\ne3167bc8ddef\", style=dotted, color=red]"),
            "{text}"
        );

        let log = include_str!("../../debugme/testdata/developer-entered.log");
        let text = dot(&parse(log.as_bytes()).unwrap());
        let plain = layout(&text);
        assert_eq!(
            (count(&plain, "node "), count(&plain, "edge ")),
            (2, 1),
            "{text}"
        );
        assert!(text.contains("(signature unverified)"), "{text}");
    }
}
