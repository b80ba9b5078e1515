//! What a credential is for: a scheme, a host (with its port) and a path, as git names a
//! remote or as docker names a registry, and the prefix rule that decides which `[helpers]`
//! entry answers for it.
//!
//! A bearer sent over plain http can be read by anyone on the way, so plain http is never
//! implied: a pattern without a scheme means https, and only a pattern that says `http://`
//! answers a plain-http request.
//!
//! Shared by the `tokd` and `docker-credential-tokd` binaries (included with `#[path]`).

/// Where a credential is wanted (a request), or where a `[helpers]` entry applies (a pattern).
///
/// Hosts are lowercase and keep their port (`example.com:8443`); paths have no leading or
/// trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https`, `http`, …. In a git pattern, `None` means https only. For docker, only
    /// `http` is kept (`None` otherwise): docker's addresses rarely carry a scheme.
    pub scheme: Option<String>,
    /// `host` or `host:port`, lowercase.
    pub host: String,
    /// The path, possibly empty; in a pattern, a prefix of whole segments.
    pub path: String,
}

/// Docker Hub answers under several names; they all mean this one.
pub const DOCKER_HUB: &str = "docker.io";

/// The names Docker Hub is known by (the CLI asks for `https://index.docker.io/v1/`).
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

impl Target {
    /// A target from its parts, normalised (lowercase scheme and host, path trimmed of `/`).
    pub fn new(scheme: Option<&str>, host: &str, path: &str) -> Target {
        Target {
            scheme: scheme.map(str::to_ascii_lowercase),
            host: host.to_ascii_lowercase(),
            path: path.trim_matches('/').to_owned(),
        }
    }

    /// Parses a `[helpers.git]` key: `[scheme://]host[:port][/path/prefix]`.
    ///
    /// # Errors
    /// A message saying what is wrong with the key.
    pub fn git_pattern(key: &str) -> Result<Target, String> {
        let (scheme, rest) = split_scheme(key)?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_host(host)?;
        if let Some(bad) = path.chars().find(|c| c.is_control()) {
            return Err(format!("the path contains the control character {bad:?}"));
        }
        Ok(Target::new(scheme, host, path))
    }

    /// A registry as docker names it (`https://registry.example.com/v1/`,
    /// `registry.example.com`, `http://localhost:5000`): path dropped, Docker Hub's aliases
    /// folded into [`DOCKER_HUB`], and of the scheme only an explicit `http` kept (see
    /// [`Target::registry_score`]). The second value is the path that was dropped (`v1`, or
    /// empty).
    ///
    /// # Errors
    /// A message saying why this is no registry address.
    pub fn registry(url: &str) -> Result<(Target, String), String> {
        let (scheme, rest) = split_scheme(url.trim())?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_host(host)?;
        let http = scheme.filter(|s| s.eq_ignore_ascii_case("http"));
        let mut target = Target::new(http, host, "");
        if DOCKER_HUB_ALIASES.contains(&target.host.as_str()) {
            DOCKER_HUB.clone_into(&mut target.host);
        }
        Ok((target, path.trim_matches('/').to_owned()))
    }

    /// How well this git pattern matches `request`: `None` when it does not, else a score
    /// where higher is more specific (a longer path prefix first, then a given scheme).
    ///
    /// The host (with its port) must be equal; the pattern's path must be the request's path
    /// or a prefix of it ending at a `/` (`acme` matches `acme/tools.git`, not `acmeco/x`).
    /// A pattern with a scheme matches that scheme only; one without matches `https` only,
    /// never plain `http`.
    pub fn score(&self, request: &Target) -> Option<(usize, bool)> {
        if self.host != request.host {
            return None;
        }
        let wanted = self.scheme.as_deref().unwrap_or("https");
        if request.scheme.as_deref() != Some(wanted) {
            return None;
        }
        let path_matches = self.path.is_empty()
            || request.path == self.path
            || request
                .path
                .strip_prefix(&self.path)
                .is_some_and(|rest| rest.starts_with('/'));
        path_matches.then_some((self.path.len(), self.scheme.is_some()))
    }

    /// How well this docker pattern matches the registry `request` (both from
    /// [`Target::registry`]): the host must be equal, and a request that says `http://`
    /// needs a pattern that says `http://` too. Docker usually names a registry without a
    /// scheme (it decides on its own, from its `insecure-registries`, whether to use plain
    /// http), so a request without one matches every pattern of its host.
    pub fn registry_score(&self, request: &Target) -> Option<(usize, bool)> {
        if self.host != request.host {
            return None;
        }
        if request.scheme.is_some() && self.scheme != request.scheme {
            return None;
        }
        Some((0, self.scheme.is_some()))
    }

    /// This request as it would be over https: what a plain-http request would have matched
    /// had it not been plain http (for the message that says why nothing answered). `None`
    /// for requests that are not plain http.
    pub fn as_https(&self) -> Option<Target> {
        (self.scheme.as_deref() == Some("http")).then(|| Target {
            scheme: Some("https".to_owned()),
            ..self.clone()
        })
    }

    /// The host without its port.
    pub fn hostname(&self) -> &str {
        // An IPv6 literal (`[::1]:8080`) keeps its brackets.
        match self.host.rfind(':') {
            Some(i) if !self.host[i..].contains(']') => &self.host[..i],
            _ => &self.host,
        }
    }
}

/// Splits `scheme://rest`; no `://` means no scheme.
fn split_scheme(text: &str) -> Result<(Option<&str>, &str), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok((None, text));
    };
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(format!("{scheme:?} is not a URL scheme"));
    }
    Ok((Some(scheme), rest))
}

/// A host, optionally with `:port`: letters, digits, `-`, `.`, `_`, or a bracketed IPv6
/// literal; no user info, query or whitespace.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if host.contains('@') {
        return Err("user names go in `username`, not in the host".into());
    }
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.len() > 5)
    {
        return Err(format!("{port:?} is not a port"));
    }
    let ipv6 = name.starts_with('[') && name.ends_with(']');
    let ok = !name.is_empty()
        && if ipv6 {
            name[1..name.len() - 1]
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        } else {
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        };
    if !ok {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scheme: &str, host: &str, path: &str) -> Target {
        Target::new(Some(scheme), host, path)
    }

    #[test]
    fn git_patterns_parse_and_normalise() {
        let p = Target::git_pattern("GitHub.com/acme/").expect("valid");
        assert_eq!(p, Target::new(None, "github.com", "acme"));
        let p = Target::git_pattern("https://git.example.com:8443/a/b").expect("valid");
        assert_eq!(p.scheme.as_deref(), Some("https"));
        assert_eq!(p.host, "git.example.com:8443");
        assert_eq!(p.path, "a/b");
        assert_eq!(p.hostname(), "git.example.com");
        let p = Target::git_pattern("[::1]:9000").expect("valid");
        assert_eq!(p.hostname(), "[::1]");
        for bad in [
            "",
            "/acme",
            "user@github.com",
            "github.com:http",
            "git hub.com",
            "1ttp://x",
            "example.com:123456",
        ] {
            assert!(Target::git_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_and_the_longest_scores_highest() {
        let host = Target::git_pattern("github.com").expect("valid");
        let org = Target::git_pattern("github.com/acme").expect("valid");
        let https_org = Target::git_pattern("https://github.com/acme").expect("valid");
        let repo = Target::git_pattern("github.com/acme/tools.git").expect("valid");
        let r = request("https", "github.com", "acme/tools.git");
        let scores: Vec<_> = [&host, &org, &https_org, &repo]
            .iter()
            .map(|p| p.score(&r))
            .collect();
        assert!(scores.iter().all(Option::is_some), "{scores:?}");
        assert!(scores[0] < scores[1] && scores[1] < scores[2] && scores[2] < scores[3]);
        // Segments, not characters.
        assert_eq!(org.score(&request("https", "github.com", "acmeco/x")), None);
        // Without a path (no credential.useHttpPath) only path-less patterns match.
        assert!(host.score(&request("https", "github.com", "")).is_some());
        assert_eq!(org.score(&request("https", "github.com", "")), None);
        // Host and port must be equal; a given scheme must be equal.
        assert_eq!(host.score(&request("https", "github.com:443", "")), None);
        assert_eq!(host.score(&request("https", "gitlab.com", "")), None);
        assert_eq!(
            https_org.score(&request("http", "github.com", "acme/x")),
            None
        );
        assert!(host.score(&request("https", "GitHub.COM", "")).is_some());
    }

    #[test]
    fn plain_http_needs_a_pattern_that_says_http() {
        let bare = Target::git_pattern("git.example.com").expect("valid");
        let http = Target::git_pattern("http://git.example.com").expect("valid");
        let plain = request("http", "git.example.com", "x.git");
        assert_eq!(bare.score(&plain), None, "no scheme means https only");
        assert!(http.score(&plain).is_some());
        assert!(
            bare.score(&request("https", "git.example.com", ""))
                .is_some()
        );
        assert_eq!(http.score(&request("https", "git.example.com", "")), None);
        for other in ["smtp", "ssh", "HTTP"] {
            assert_eq!(
                bare.score(&Target::new(Some(other), "git.example.com", "")),
                None,
                "{other}"
            );
        }
        assert_eq!(
            bare.score(&Target::new(None, "git.example.com", "")),
            None,
            "a request without a scheme"
        );
        assert_eq!(
            plain.as_https(),
            Some(request("https", "git.example.com", "x.git"))
        );
        assert_eq!(request("https", "h", "").as_https(), None);
    }

    #[test]
    fn a_registry_asked_for_over_plain_http_needs_an_http_pattern() {
        let registry = |url: &str| Target::registry(url).expect(url).0;
        let bare = registry("localhost:5000");
        let https = registry("https://localhost:5000/v2/");
        let http = registry("http://localhost:5000");
        assert_eq!(bare, https, "https is docker's default: the same pattern");
        let plain = registry("http://localhost:5000/v2/");
        assert_eq!(bare.registry_score(&plain), None);
        assert!(http.registry_score(&plain).is_some());
        // docker's usual request names no scheme: every pattern of the host answers it, an
        // http one included (the user allowed plain http for this registry); so does https.
        for pattern in [&bare, &http] {
            assert!(
                pattern
                    .registry_score(&registry("localhost:5000"))
                    .is_some()
            );
            assert!(
                pattern
                    .registry_score(&registry("https://localhost:5000"))
                    .is_some()
            );
        }
        // The http pattern is the more specific one.
        assert!(http.registry_score(&bare) > bare.registry_score(&bare));
        assert_eq!(bare.registry_score(&registry("localhost:5001")), None);
    }

    #[test]
    fn registry_addresses_normalise_to_the_host() {
        for url in [
            "https://registry.example.com/v1/",
            "registry.example.com",
            "HTTPS://Registry.Example.com/v2",
            "  registry.example.com/\n",
        ] {
            let (t, _) = Target::registry(url).expect(url);
            assert_eq!(t, Target::new(None, "registry.example.com", ""), "{url}");
        }
        let (t, _) = Target::registry("HTTP://Registry.Example.com/v2").expect("http");
        assert_eq!(t, Target::new(Some("http"), "registry.example.com", ""));
        let (t, path) = Target::registry("https://index.docker.io/v1/").expect("hub");
        assert_eq!(t.host, DOCKER_HUB);
        assert_eq!(path, "v1");
        let (t, _) = Target::registry("localhost:5000").expect("port");
        assert_eq!(t.host, "localhost:5000");
        assert_eq!(
            Target::registry("registry-1.docker.io")
                .expect("hub")
                .0
                .host,
            DOCKER_HUB
        );
        for bad in ["", "https://", "user:pw@registry.example.com", "a b"] {
            assert!(Target::registry(bad).is_err(), "{bad:?}");
        }
    }
}
