//! How a refused login is told over SSH: a banner the client shows before it gives up
//! (OpenSSH prints it on stderr). The rules and limits themselves are the hub's
//! ([`kanava_hub::Logins`]), shared with every transport; SSH adds its own hints where the user
//! fixes the refusal by choosing a key (`-i KEY`) or the name in `NAME@host`.

use kanava_core::NickError;
use kanava_hub::LoginRefusal;

/// What the client is told, one line ending in CRLF.
pub(crate) fn banner(refusal: &LoginRefusal) -> String {
    let text = match refusal {
        LoginRefusal::BadName => format!("kanava: {NickError}; log in as NAME@host"),
        LoginRefusal::BoundToOther(nick) => {
            format!("kanava: {nick} is bound to another key; use -i KEY or another name")
        }
        other => format!("kanava: {}", other.reason()),
    };
    text + "\r\n"
}

#[cfg(test)]
mod tests {
    use kanava_core::Nick;

    use super::*;

    #[test]
    fn banners_never_name_the_holder_of_a_key() {
        assert!(!banner(&LoginRefusal::KeyHoldsName).contains("alice"));
        let bound = banner(&LoginRefusal::BoundToOther(Nick::new("alice").unwrap()));
        assert!(bound.contains("alice is bound to another key"), "{bound}");
        assert!(banner(&LoginRefusal::BadName).contains("1 to 16 characters"));
        assert_eq!(
            banner(&LoginRefusal::Banned),
            "kanava: this key is banned\r\n"
        );
    }
}
