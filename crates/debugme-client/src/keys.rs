//! Where the keys typed at the sharing user's terminal go. Normally straight to the shared
//! program; while a developer waits for consent, the typed line is the answer; after the chat
//! key (Ctrl-]) the typed line is a chat message, and `/quit` there ends the session. Pure, so
//! that the rules are tested without a terminal.

/// The key that starts a chat line: Ctrl-] (typed twice, it reaches the program).
pub const CHAT_KEY: u8 = 0x1d;

/// What a line typed at the terminal asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The answer to the pending consent question.
    Answer(bool),
    /// A chat line (the bytes typed: UTF-8 as the terminal sends it).
    Chat(Vec<u8>),
    /// End the session.
    Quit,
}

/// The keys' effects, to carry out in order: bytes for the program, bytes to show locally,
/// and what was submitted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Routed {
    /// For the shared program.
    pub to_program: Vec<u8>,
    /// To show on the local terminal (the line being typed, prompts).
    pub echo: Vec<u8>,
    /// Lines submitted.
    pub submitted: Vec<Submitted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Program,
    Chat(Vec<u8>),
    Answer(Vec<u8>),
}

/// The router's state.
#[derive(Debug)]
pub struct KeyRouter {
    mode: Mode,
    /// Whether a consent question is pending.
    asking: bool,
}

/// The question the user answers.
pub const QUESTION: &str = "Let them connect to the debug-me session and run commands? [y/n] ";

impl Default for KeyRouter {
    fn default() -> Self {
        Self {
            mode: Mode::Program,
            asking: false,
        }
    }
}

impl KeyRouter {
    /// A consent question is now shown: the next line typed answers it.
    pub fn ask(&mut self) -> Vec<u8> {
        self.asking = true;
        if matches!(self.mode, Mode::Program) {
            self.mode = Mode::Answer(Vec::new());
        }
        format!("\r\n{QUESTION}").into_bytes()
    }

    /// The question was answered elsewhere (in the control window): keys go to the program
    /// again, unless a chat line is being typed.
    pub fn answered(&mut self) {
        self.asking = false;
        if matches!(self.mode, Mode::Answer(_)) {
            self.mode = Mode::Program;
        }
    }

    /// Whether a question is waiting for its answer.
    pub fn asking(&self) -> bool {
        self.asking
    }

    /// Routes `keys`.
    pub fn route(&mut self, keys: &[u8]) -> Routed {
        let mut routed = Routed::default();
        for &key in keys {
            self.key(key, &mut routed);
        }
        routed
    }

    fn key(&mut self, key: u8, routed: &mut Routed) {
        let chat = matches!(self.mode, Mode::Chat(_));
        match &mut self.mode {
            Mode::Program if key == CHAT_KEY => {
                self.mode = Mode::Chat(Vec::new());
                routed.echo.extend(b"\r\n[chat] ");
            }
            Mode::Answer(line) if key == CHAT_KEY && line.is_empty() => {
                self.mode = Mode::Chat(Vec::new());
                routed.echo.extend(b"\r\n[chat] ");
            }
            Mode::Program => routed.to_program.push(key),
            Mode::Chat(line) if key == CHAT_KEY && line.is_empty() => {
                routed.to_program.push(CHAT_KEY);
                routed.echo.extend(b"\r\n");
                self.after_line();
            }
            Mode::Chat(line) | Mode::Answer(line) => match key {
                b'\r' | b'\n' => {
                    let line = std::mem::take(line);
                    routed.echo.extend(b"\r\n");
                    self.submit(chat, line.trim_ascii(), routed);
                }
                // Esc or Ctrl-C leaves a chat line (an answer must be given).
                0x1b | 0x03 if chat => {
                    routed.echo.extend(b" (cancelled)\r\n");
                    self.after_line();
                }
                0x7f | 0x08 => {
                    // One character: its UTF-8 continuation bytes, then its first byte.
                    while line.last().is_some_and(|b| b & 0xc0 == 0x80) {
                        line.pop();
                    }
                    if line.pop().is_some() {
                        routed.echo.extend(b"\x08 \x08");
                    }
                }
                key if key.is_ascii_graphic() || key == b' ' || key >= 0x80 => {
                    line.push(key);
                    routed.echo.push(key);
                }
                _ => {}
            },
        }
    }

    fn submit(&mut self, chat: bool, line: &[u8], routed: &mut Routed) {
        if chat {
            match line {
                b"" => {}
                b"/quit" => routed.submitted.push(Submitted::Quit),
                text => routed.submitted.push(Submitted::Chat(text.to_vec())),
            }
            self.after_line();
            return;
        }
        match line.to_ascii_lowercase().as_slice() {
            b"y" | b"yes" => {
                routed.submitted.push(Submitted::Answer(true));
                self.asking = false;
                self.mode = Mode::Program;
            }
            b"n" | b"no" => {
                routed.submitted.push(Submitted::Answer(false));
                self.asking = false;
                self.mode = Mode::Program;
            }
            _ => routed.echo.extend(QUESTION.as_bytes()),
        }
    }

    /// After a chat line: back to the pending question, else to the program.
    fn after_line(&mut self) {
        self.mode = if self.asking {
            Mode::Answer(Vec::new())
        } else {
            Mode::Program
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_program_until_the_chat_key() {
        let mut router = KeyRouter::default();
        let routed = router.route(b"ls\r\x1dhello there\r");
        assert_eq!(routed.to_program, b"ls\r");
        assert_eq!(
            routed.submitted,
            vec![Submitted::Chat(b"hello there".to_vec())]
        );
        assert_eq!(router.route(b"x").to_program, b"x");
        // Twice: the key itself reaches the program.
        assert_eq!(router.route(b"\x1d\x1d").to_program, b"\x1d");
        assert_eq!(
            router.route(b"\x1d/quit\r").submitted,
            vec![Submitted::Quit]
        );
        let cancelled = router.route(b"\x1dabc\x1bls");
        assert!(cancelled.submitted.is_empty());
        assert_eq!(cancelled.to_program, b"ls");
    }

    #[test]
    fn a_question_takes_the_next_line_and_asks_again_until_yes_or_no() {
        let mut router = KeyRouter::default();
        assert!(router.ask().ends_with(QUESTION.as_bytes()));
        let routed = router.route(b"maybe\r");
        assert!(routed.submitted.is_empty());
        assert!(routed.to_program.is_empty());
        assert!(routed.echo.ends_with(QUESTION.as_bytes()));
        let routed = router.route(b"Yes\rls\r");
        assert_eq!(routed.submitted, vec![Submitted::Answer(true)]);
        assert_eq!(routed.to_program, b"ls\r");
        assert!(!router.asking());
        router.ask();
        assert_eq!(
            router.route(b"nx\x7f\r").submitted,
            vec![Submitted::Answer(false)]
        );
    }

    #[test]
    fn a_chat_line_can_be_sent_while_a_question_waits() {
        let mut router = KeyRouter::default();
        router.ask();
        let routed = router.route(b"\x1dwho are you?\ry\r");
        assert_eq!(
            routed.submitted,
            vec![
                Submitted::Chat(b"who are you?".to_vec()),
                Submitted::Answer(true)
            ]
        );
    }

    #[test]
    fn typed_utf8_survives_and_backspace_removes_a_whole_character() {
        let mut router = KeyRouter::default();
        let routed = router.route("\x1dhyvää\x7f\r".as_bytes());
        assert_eq!(
            routed.submitted,
            vec![Submitted::Chat("hyvä".as_bytes().to_vec())]
        );
    }
}
