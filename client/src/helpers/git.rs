//! git's credential-helper protocol (`git help credential`): `key=value` lines on stdin up
//! to a blank line or the end, the answer as `key=value` lines on stdout.

use tokd_protocol::Secret;

use super::target::Target;

/// The most stdin a helper reads; git sends a few hundred bytes.
pub const MAX_INPUT: u64 = 64 * 1024;

/// Why git's input could not be read. Never holds a value from the input (it may be a
/// password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GitProtocolError {
    /// A line without `=`.
    #[error("line {0} of git's input is not key=value")]
    NotKeyValue(usize),
    /// A `url=` that is not `scheme://host/…`.
    #[error("git's `url` is not scheme://host/path")]
    BadUrl,
}

/// What git describes: the remote, and the credential it has (on `erase` and `store`).
#[derive(Debug, Default)]
pub struct GitRequest {
    /// `https`, `http`, …
    pub protocol: Option<String>,
    /// `host` or `host:port`.
    pub host: Option<String>,
    /// The repository path; git sends it only with `credential.useHttpPath`.
    pub path: Option<String>,
    /// The password, on `store` and `erase`.
    pub password: Option<Secret>,
}

impl GitRequest {
    /// Parses git's lines. Unknown keys (`capability[]`, `wwwauth[]`, …) are skipped, and so
    /// is `username`: the answer's username comes from the mapping, never from git. A later
    /// key replaces an earlier one, as in git; `url=` fills in what the other keys leave out.
    ///
    /// # Errors
    /// [`GitProtocolError`] for lines that are not `key=value`.
    pub fn parse(input: &str) -> Result<GitRequest, GitProtocolError> {
        let mut req = GitRequest::default();
        let mut url = None;
        for (i, line) in input.split('\n').enumerate() {
            if line.is_empty() {
                break;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or(GitProtocolError::NotKeyValue(i + 1))?;
            let value = value.to_owned();
            match key {
                "protocol" => req.protocol = Some(value),
                "host" => req.host = Some(value),
                "path" => req.path = Some(value),
                "password" => req.password = Some(Secret::new(value)),
                "url" => url = Some(value),
                _ => {}
            }
        }
        if let Some(url) = url {
            let (protocol, rest) = url.split_once("://").ok_or(GitProtocolError::BadUrl)?;
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            // `user[:password]@` is not part of the host.
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_user, host)| host);
            if protocol.is_empty() {
                return Err(GitProtocolError::BadUrl);
            }
            req.protocol.get_or_insert_with(|| protocol.to_owned());
            if !host.is_empty() {
                req.host.get_or_insert_with(|| host.to_owned());
            }
            if !path.is_empty() {
                req.path.get_or_insert_with(|| path.to_owned());
            }
        }
        Ok(req)
    }

    /// The remote as a [`Target`]; `None` without a host (git asks about hosts).
    pub fn target(&self) -> Option<Target> {
        let host = self.host.as_deref().filter(|h| !h.is_empty())?;
        Some(Target::new(
            self.protocol.as_deref(),
            host,
            self.path.as_deref().unwrap_or(""),
        ))
    }
}

/// The answer to `get`: username, password and when the password stops working (git ≥ 2.41
/// then asks again instead of using an expired token). `None` if a value would break the
/// line format.
pub fn answer(username: &str, password: &str, expires_at_unix: i64) -> Option<String> {
    let clean = |v: &str| !v.contains(['\n', '\0']);
    (clean(username) && clean(password)).then(|| {
        format!("username={username}\npassword={password}\npassword_expiry_utc={expires_at_unix}\n")
    })
}

/// True when `a` and `b` are the same secret; the time taken depends only on the lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_input_is_read_up_to_the_blank_line() {
        // `username=` is accepted (and not used) like any other key git may send.
        let req = GitRequest::parse(
            "capability[]=authtype\nprotocol=https\nhost=GitHub.com\npath=acme/x.git\n\
             username=bob\nwwwauth[]=Basic realm=\"x\"\n\nhost=ignored\n",
        )
        .expect("valid");
        assert_eq!(req.protocol.as_deref(), Some("https"));
        assert_eq!(req.host.as_deref(), Some("GitHub.com"));
        assert!(req.password.is_none());
        assert_eq!(
            req.target(),
            Some(Target::new(Some("https"), "github.com", "acme/x.git"))
        );
        // EOF without a blank line is fine too; values may contain '='.
        let req = GitRequest::parse("protocol=https\nhost=h:8443\npassword=a=b=").expect("ok");
        assert_eq!(req.password.as_ref().map(Secret::expose), Some("a=b="));
        assert_eq!(req.target().map(|t| t.host), Some("h:8443".to_owned()));
    }

    #[test]
    fn url_fills_in_the_rest() {
        // The url's user (and password) are not part of the host.
        let req =
            GitRequest::parse("url=https://me:pw@git.example.com:8443/a/b.git\n").expect("ok");
        assert_eq!(
            req.target(),
            Some(Target::new(
                Some("https"),
                "git.example.com:8443",
                "a/b.git"
            ))
        );
        // Explicit keys win over the url's parts.
        let req = GitRequest::parse("host=other\nurl=https://h/p\n").expect("ok");
        assert_eq!(req.host.as_deref(), Some("other"));
        assert_eq!(req.path.as_deref(), Some("p"));
    }

    #[test]
    fn malformed_input_is_an_error_that_does_not_repeat_it() {
        let err = GitRequest::parse("protocol=https\nsecret-without-equals\n").expect_err("bad");
        assert_eq!(err, GitProtocolError::NotKeyValue(2));
        assert!(!err.to_string().contains("secret"));
        assert_eq!(
            GitRequest::parse("url=nonsense\n").expect_err("bad"),
            GitProtocolError::BadUrl
        );
        assert!(
            GitRequest::parse("protocol=https\n")
                .expect("ok")
                .target()
                .is_none()
        );
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(same_secret("", ""));
    }

    #[test]
    fn the_answer_is_three_lines() {
        assert_eq!(
            answer("x-access-token", "tok", 1_700_000_000).as_deref(),
            Some("username=x-access-token\npassword=tok\npassword_expiry_utc=1700000000\n")
        );
        assert!(answer("u", "to\nk", 1).is_none());
    }
}
