//! Which bound name a free-form uid would pass for.
//!
//! Mles uids are any ASCII, and readers see them as `<uid> text`; a uid such as `Alice`,
//! `alice `, `alice> fake`, `* alice` or `<b>alice</b>` reads as alice. Before an unverified uid
//! is let in, the transport asks whether the name it would pass for is bound; see
//! [`passes_for`].

use crate::Nick;

/// Characters a name may hold; anything else ends the name a reader would see.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The names `uid` would pass for, at most two: the first run of name characters, lowercased as
/// names are compared, read once as written and once with markup tags (`<…>`) removed, as a
/// page would render it. A run that is not a valid name (longer than a name may be) passes for
/// nothing.
///
/// The first run, not every word: `alice smith` passes for alice (a reader sees `<alice smith>`),
/// while `bob and alice` passes for bob.
pub fn passes_for(uid: &str) -> Vec<Nick> {
    let mut names: Vec<Nick> = [first_name(uid), first_name(&without_tags(uid))]
        .into_iter()
        .flatten()
        .collect();
    names.dedup();
    names
}

/// The first run of name characters in `text`, lowercased, if it is a valid name.
fn first_name(text: &str) -> Option<Nick> {
    let start = text.find(name_char)?;
    let rest = &text[start..];
    let end = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
    Nick::new(&rest[..end].to_ascii_lowercase()).ok()
}

/// `text` with every `<…>` replaced by a space.
fn without_tags(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        shown.push_str(&rest[..open]);
        shown.push(' ');
        rest = &rest[open + close + 1..];
    }
    shown.push_str(rest);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(uid: &str) -> Vec<String> {
        passes_for(uid)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect()
    }

    #[test]
    fn spellings_of_one_name() {
        for uid in [
            "alice",
            "Alice",
            "ALICE",
            "alice ",
            " alice",
            "alice> fake",
            "* alice",
            "** alice",
            "<alice>",
            "<b>alice</b>",
            "<span style=x>ALICE</span>",
            "alice\t",
            "alice\x1b[0m",
            "\"alice\"",
            "@alice",
            "~alice",
            "alice: hi",
        ] {
            assert!(keys(uid).contains(&"alice".to_owned()), "{uid:?}");
        }
    }

    #[test]
    fn other_names_and_no_name() {
        assert_eq!(keys("bob and alice"), ["bob"]);
        assert_eq!(keys("alice_2"), ["alice_2"]);
        assert_eq!(keys("alice.smith"), ["alice.smith"]);
        assert_eq!(keys("<b>alice</b>"), ["b", "alice"]);
        assert!(keys("***").is_empty());
        assert!(keys("a_name_far_longer_than_sixteen").is_empty());
    }

    #[test]
    fn a_lone_angle_bracket_is_not_a_tag() {
        assert_eq!(keys("<3 alice"), ["3"]);
        assert_eq!(keys("a<b"), ["a"]);
        assert_eq!(keys("<<x>alice"), ["x", "alice"]);
    }
}
