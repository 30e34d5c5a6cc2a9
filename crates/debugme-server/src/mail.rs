//! Mailing a finished session's log to its user, as debug-me's server does: a MIME message with
//! the log attached, handed to the local `sendmail`. The address comes from the network (the
//! user's `InitMode`), so it is checked before it goes near a mail header or a command line, and
//! the number of mails an hour is capped so that the server cannot be made into a mail cannon.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The subject debug-me's server gives these mails.
pub const SUBJECT: &str = "Your recent debug-me session";

/// Logs larger than this are not attached; the mail says where to download them instead.
pub const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

/// Most mails sent in any hour.
const MAILS_PER_HOUR: usize = 60;

/// How long `sendmail` may take to accept a mail.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(60);

const BOUNDARY: &str = "=_kanava-debug-me-log";

/// Where mails come from and how they leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// The `From:` address.
    pub from: String,
    /// The `sendmail` program (`/usr/sbin/sendmail`).
    pub sendmail: PathBuf,
}

/// Whether `address` is a plain `local@domain` address that is safe in a header and as a
/// `sendmail` argument: printable ASCII without spaces, quotes, angle brackets, commas or
/// semicolons, one `@` with text on both sides, not starting with `-`, at most 254 bytes.
pub fn valid_address(address: &str) -> bool {
    let allowed = |c: char| c.is_ascii_graphic() && !"\"'<>(),;:\\[]`|".contains(c);
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !address.starts_with('-')
        && address.chars().all(allowed)
}

/// Bytes of the log base64-encoded at a time: whole 76-character lines.
const ATTACHMENT_CHUNK: usize = 57 * 1024;

/// Writes the mail carrying the log of session `id` (`size` bytes, read from `log` in bounded
/// chunks) to `to` into `out`.
pub async fn write_mail<R, W>(
    settings: &MailSettings,
    to: &str,
    id: &str,
    size: u64,
    mut log: R,
    out: &mut W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let name = format!("debug-me.{id}.log");
    let mut head = format!(
        "From: {from}\nTo: {to}\nSubject: {SUBJECT}\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n\
         This is a MIME message.\n--{BOUNDARY}\nContent-Type: text/plain; charset=utf-8\n\n",
        from = settings.from,
    );
    if size > MAX_ATTACHMENT as u64 {
        head.push_str(&format!(
            "The log of your debug-me session {id} is {size} bytes, too large to attach.\n\
             It stays on the server, where `debug-me --download` or `kanava download` can fetch it\n\
             until the server's retention period ends.\n--{BOUNDARY}--\n"
        ));
        return out.write_all(head.as_bytes()).await;
    }
    head.push_str(&format!(
        "Attached is the signed log of your debug-me session {id}.\n\
         Check it with `debug-me --verify {name}` or `kanava verify {name}`.\n\
         --{BOUNDARY}\nContent-Type: text/plain; charset=utf-8\n\
         Content-Disposition: attachment; filename=\"{name}\"\n\
         Content-Transfer-Encoding: base64\n\n"
    ));
    out.write_all(head.as_bytes()).await?;
    let mut chunk = vec![0u8; ATTACHMENT_CHUNK];
    let mut remaining = size;
    while remaining > 0 {
        let want = chunk
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let mut filled = 0;
        while filled < want {
            match log.read(&mut chunk[filled..want]).await? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        remaining -= filled as u64;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&chunk[..filled]);
        let mut lines = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
        for line in encoded.as_bytes().chunks(76) {
            lines.push_str(std::str::from_utf8(line).unwrap_or_default());
            lines.push('\n');
        }
        out.write_all(lines.as_bytes()).await?;
    }
    out.write_all(format!("--{BOUNDARY}--\n").as_bytes()).await
}

/// Sends logs by mail, at most [`MAILS_PER_HOUR`] an hour.
#[derive(Debug)]
pub(crate) struct Mailer {
    settings: MailSettings,
    sent: Mutex<VecDeque<Instant>>,
}

impl Mailer {
    pub(crate) fn new(settings: MailSettings) -> Self {
        if !settings.sendmail.exists() {
            tracing::warn!(
                sendmail = %settings.sendmail.display(),
                "debug-me logs will not be mailed: there is no sendmail"
            );
        }
        Self {
            settings,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one mail from this hour's allowance, if any is left.
    fn allowed(&self) -> bool {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
        {
            sent.pop_front();
        }
        if sent.len() >= MAILS_PER_HOUR {
            return false;
        }
        sent.push_back(now);
        true
    }

    /// Mails the log at `log` of session `id` to `to`, when `to` is a mail address (debug-me
    /// users who want no mail give anything without `@`). Failures are logged, never fatal.
    pub(crate) async fn mail(&self, to: &str, id: &str, log: &Path) {
        if !to.contains('@') {
            return;
        }
        if !valid_address(to) {
            tracing::info!(session = %id, to = %to.escape_debug(), "not mailing the log: not a plain mail address");
            return;
        }
        if !self.settings.sendmail.exists() {
            return;
        }
        if !self.allowed() {
            tracing::warn!(session = %id, "not mailing the log: {MAILS_PER_HOUR} mails sent in the last hour");
            return;
        }
        let opened = match tokio::fs::File::open(log).await {
            Ok(file) => file.metadata().await.map(|m| (file, m.len())),
            Err(error) => Err(error),
        };
        let (file, size) = match opened {
            Ok(opened) => opened,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(session = %id, "not mailing the log: nothing was said");
                return;
            }
            Err(error) => {
                tracing::error!(session = %id, %error, "cannot read the log to mail it");
                return;
            }
        };
        let sent = self.sendmail(to, id, size, file);
        match tokio::time::timeout(SENDMAIL_TIMEOUT, sent).await {
            Ok(Ok(())) => tracing::info!(session = %id, %to, "mailed the log"),
            Ok(Err(error)) => tracing::warn!(session = %id, %to, %error, "mailing the log failed"),
            Err(_) => tracing::warn!(session = %id, %to, "mailing the log timed out"),
        }
    }

    /// Runs `sendmail` for `to` with the mail carrying `log` (of `size` bytes) on its standard
    /// input.
    async fn sendmail(
        &self,
        to: &str,
        id: &str,
        size: u64,
        log: tokio::fs::File,
    ) -> std::io::Result<()> {
        let mut child = tokio::process::Command::new(&self.settings.sendmail)
            .args(["-i", "--", to])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            write_mail(&self.settings, to, id, size, log, &mut stdin).await?;
            stdin.shutdown().await?;
        }
        let output = child.wait_with_output().await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{} exited with {}: {}",
                self.settings.sendmail.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MailSettings {
        MailSettings {
            from: "debug-me@example.org".into(),
            sendmail: PathBuf::from("/usr/sbin/sendmail"),
        }
    }

    #[test]
    fn only_plain_addresses_are_used() {
        assert!(valid_address("alice@example.org"));
        assert!(valid_address("a.b+tag@sub.example.org"));
        for bad in [
            "nobody",
            "@example.org",
            "alice@",
            "a@b@c",
            "alice@example.org\nBcc: x@y",
            "alice @example.org",
            "-oQ/tmp@x",
            "<alice@example.org>",
            "alice@example.org, bob@example.org",
            "ålice@example.org",
        ] {
            assert!(!valid_address(bad), "{bad:?}");
        }
        assert!(!valid_address(&format!("{}@x.org", "a".repeat(250))));
    }

    /// The mail for `log`, written as the mailer writes it.
    fn compose(log: &[u8]) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut mail = Vec::new();
        runtime
            .block_on(write_mail(
                &settings(),
                "u@x.org",
                "abc",
                log.len() as u64,
                log,
                &mut mail,
            ))
            .unwrap();
        String::from_utf8(mail).unwrap()
    }

    #[test]
    fn the_log_is_attached_in_base64_lines() {
        // Longer than one chunk, and not a whole number of them.
        let log = b"{\"loggedMessage\":1}\n".repeat(6000);
        let mail = compose(&log);
        assert!(mail.starts_with("From: debug-me@example.org\nTo: u@x.org\n"));
        assert!(mail.contains(&format!("Subject: {SUBJECT}\n")));
        assert!(mail.contains("filename=\"debug-me.abc.log\""));
        let body = mail
            .split("Content-Transfer-Encoding: base64\n\n")
            .nth(1)
            .unwrap();
        let encoded: String = body
            .lines()
            .take_while(|l| !l.starts_with("--"))
            .inspect(|l| assert!(l.len() <= 76))
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, log);
        assert!(mail.ends_with(&format!("--{BOUNDARY}--\n")));
    }

    #[test]
    fn a_huge_log_is_described_not_attached() {
        let log = vec![b'x'; MAX_ATTACHMENT + 1];
        let mail = compose(&log);
        assert!(!mail.contains("Content-Disposition"));
        assert!(mail.contains("too large to attach"));
    }

    #[test]
    fn mails_an_hour_are_capped() {
        let mailer = Mailer::new(settings());
        assert!((0..MAILS_PER_HOUR).all(|_| mailer.allowed()));
        assert!(!mailer.allowed());
    }
}
