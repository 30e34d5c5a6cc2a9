//! The cluster credentials file (`--cluster-credentials FILE`) and how it becomes NATS
//! authentication. One file serves every scheme nats-server offers kanava, told apart by its
//! content; the content is never logged.

use std::path::Path;

use async_nats::ConnectOptions;

use crate::ClusterError;

/// The first line of a NATS `.creds` file.
const CREDS_MARKER: &str = "-----BEGIN NATS USER JWT-----";

/// What a credentials file holds.
#[derive(PartialEq, Eq)]
pub(crate) enum Credentials {
    /// A `.creds` file: a user JWT and its nkey seed (operator mode).
    CredsFile,
    /// An nkey user seed (`SU...`).
    Nkey(String),
    /// `user:password` on one line.
    UserPassword(String, String),
    /// Anything else: a token.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug log.
        f.write_str(match self {
            Credentials::CredsFile => "CredsFile",
            Credentials::Nkey(_) => "Nkey",
            Credentials::UserPassword(..) => "UserPassword",
            Credentials::Token(_) => "Token",
        })
    }
}

impl Credentials {
    /// Tells the schemes apart by the file's content.
    pub(crate) fn parse(content: &str) -> Self {
        let trimmed = content.trim();
        if trimmed.contains(CREDS_MARKER) {
            Credentials::CredsFile
        } else if trimmed.starts_with("SU") && !trimmed.contains(char::is_whitespace) {
            Credentials::Nkey(trimmed.to_owned())
        } else if let Some((user, password)) =
            trimmed.split_once(':').filter(|_| !trimmed.contains('\n'))
        {
            Credentials::UserPassword(user.to_owned(), password.to_owned())
        } else {
            Credentials::Token(trimmed.to_owned())
        }
    }
}

/// Adds the credentials in `path` to `options`.
pub(crate) async fn apply(
    options: ConnectOptions,
    path: &Path,
) -> Result<ConnectOptions, ClusterError> {
    let read_error = |source| ClusterError::Credentials {
        path: path.to_owned(),
        source,
    };
    let content = tokio::fs::read_to_string(path).await.map_err(read_error)?;
    let credentials = Credentials::parse(&content);
    tracing::debug!(path = %path.display(), scheme = ?credentials, "cluster credentials");
    Ok(match credentials {
        Credentials::CredsFile => options.credentials(&content).map_err(read_error)?,
        Credentials::Nkey(seed) => options.nkey(seed),
        Credentials::UserPassword(user, password) => options.user_and_password(user, password),
        Credentials::Token(token) => options.token(token),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_the_content() {
        let creds = "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n";
        assert_eq!(Credentials::parse(creds), Credentials::CredsFile);
        assert_eq!(
            Credentials::parse("SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"),
            Credentials::Nkey("SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4".into())
        );
        assert_eq!(
            Credentials::parse("kanava:s3:cret\n"),
            Credentials::UserPassword("kanava".into(), "s3:cret".into())
        );
        assert_eq!(
            Credentials::parse("  t0ken \n"),
            Credentials::Token("t0ken".into())
        );
        assert_eq!(format!("{:?}", Credentials::Token("x".into())), "Token");
    }
}
