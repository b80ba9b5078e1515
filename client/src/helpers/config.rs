//! The `[helpers]` table of the tokd config file: which session answers for which git remote
//! (`[helpers.git."HOST[/PATH]"]`) and which container registry
//! (`[helpers.docker."HOST"]`).
//!
//! The file is the daemon's own (`--config` > `$TOKD_CONFIG` >
//! `$XDG_CONFIG_HOME/tokd/config.toml` > `~/.config/tokd/config.toml`). Everything outside
//! `[helpers]` belongs to the daemon and is not looked at; `[helpers]` itself is checked
//! strictly, and every error names the file.
//!
//! Shared by the `tokd` and `docker-credential-tokd` binaries (included with `#[path]`).

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::target::Target;

/// Why the helper configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file exists (or was named explicitly) but cannot be read.
    #[error("cannot read the tokd config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line).
        message: String,
    },
    /// `[helpers]` has a key or value that does not fit the schema.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the table and key.
        message: String,
    },
}

/// Which adapter a rule is for; each has its own table under `[helpers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[helpers.git."HOST[/PATH]"]`: `tokd git-credential`.
    Git,
    /// `[helpers.docker."HOST"]`: `docker-credential-tokd`.
    Docker,
}

impl Kind {
    /// Every kind, in the order their tables are checked.
    const ALL: [Kind; 2] = [Kind::Git, Kind::Docker];

    /// The table's name under `[helpers]`.
    fn table(self) -> &'static str {
        match self {
            Kind::Git => "git",
            Kind::Docker => "docker",
        }
    }

    /// The username to present when the entry names none: what the well-known forges and
    /// registries expect next to an OAuth token, else `oauth2`.
    pub fn default_username(self, target: &Target) -> &'static str {
        let host = target.hostname();
        match self {
            Kind::Git if host == "github.com" => "x-access-token",
            Kind::Git if host == "bitbucket.org" => "x-token-auth",
            Kind::Docker
                if host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with(".pkg.dev") =>
            {
                "oauth2accesstoken"
            }
            Kind::Docker if host.ends_with(".azurecr.io") => "00000000-0000-0000-0000-000000000000",
            // gitlab.com and GitLab instances take `oauth2`, like most others.
            _ => "oauth2",
        }
    }
}

/// One `[helpers.KIND."KEY"]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Git or docker.
    pub kind: Kind,
    /// Where the rule comes from, for messages: `[helpers.git."github.com"]`.
    pub origin: String,
    /// What the key matches.
    pub pattern: Target,
    /// The tokd session whose token is the password.
    pub session: String,
    /// The username presented with it (the entry's, or the default for the host).
    pub username: String,
}

/// The `[helpers]` table of one config file, checked.
#[derive(Debug, Clone, Default)]
pub struct HelperConfig {
    rules: Vec<Rule>,
}

impl HelperConfig {
    /// Loads the `[helpers]` table of the config file `flag`, else `$TOKD_CONFIG`, else
    /// `$XDG_CONFIG_HOME/tokd/config.toml` (`~/.config/tokd/config.toml`). A default file
    /// that does not exist means no rules; a named one that does not exist is an error.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file.
    pub fn load(flag: Option<&Path>) -> Result<HelperConfig, ConfigError> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        Self::load_with(flag, &env)
    }

    fn load_with(
        flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HelperConfig, ConfigError> {
        let (path, explicit) = match tokd_protocol::paths::config_file(flag, env) {
            Some(found) => found,
            None => return Ok(HelperConfig::default()),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(HelperConfig::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses a whole config file's text, reading only its `[helpers]` table.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for bad TOML, [`ConfigError::Invalid`] for a bad `[helpers]`.
    pub fn parse(text: &str, path: &Path) -> Result<HelperConfig, ConfigError> {
        let file: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_error_without_source(text, &e),
        })?;
        let rules = match file.get("helpers") {
            None => Vec::new(),
            Some(helpers) => parse_helpers(helpers).map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?,
        };
        Ok(HelperConfig { rules })
    }

    /// The rules of one kind, in table order.
    pub fn rules(&self, kind: Kind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.kind == kind)
    }

    /// The rule of `kind` that answers for `request`: the most specific match (longest path
    /// prefix, then a given scheme), or `None`. Plain http is answered only by a rule whose
    /// key says `http://` ([`Target::score`], [`Target::registry_score`]).
    pub fn find(&self, kind: Kind, request: &Target) -> Option<&Rule> {
        self.rules(kind)
            .filter_map(|r| r.score(request).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r)
    }

    /// The rule that would answer a plain-http `request` over https: when [`Self::find`]
    /// has nothing for it, this says that the reason is plain http (for the message).
    pub fn https_only(&self, kind: Kind, request: &Target) -> Option<&Rule> {
        let https = request.as_https()?;
        let https = match kind {
            Kind::Git => https,
            // A docker request over https carries no scheme (see `Target::registry`).
            Kind::Docker => Target {
                scheme: None,
                ..https
            },
        };
        self.find(kind, &https)
    }
}

impl Rule {
    /// How well this rule matches `request`, by the rules of its kind.
    fn score(&self, request: &Target) -> Option<(usize, bool)> {
        match self.kind {
            Kind::Git => self.pattern.score(request),
            Kind::Docker => self.pattern.registry_score(request),
        }
    }

    /// Whether two rules of one kind name the same place (docker: the same registry,
    /// whether or not the key allows plain http).
    fn same_place(&self, other: &Rule) -> bool {
        self.kind == other.kind
            && match self.kind {
                Kind::Git => self.pattern == other.pattern,
                Kind::Docker => self.pattern.host == other.pattern.host,
            }
    }
}

/// The rules of the `[helpers]` table, per helper kind.
fn parse_helpers(helpers: &toml::Value) -> Result<Vec<Rule>, String> {
    let helpers = helpers
        .as_table()
        .ok_or("`helpers` must be a table ([helpers.git.\"HOST\"], [helpers.docker.\"HOST\"])")?;
    if let Some(unknown) = helpers
        .keys()
        .find(|k| !Kind::ALL.iter().any(|kind| kind.table() == k.as_str()))
    {
        return Err(format!(
            "[helpers]: unknown helper {unknown:?} (known: git, docker)"
        ));
    }
    let mut rules = Vec::new();
    for kind in Kind::ALL {
        let Some(table) = helpers.get(kind.table()) else {
            continue;
        };
        let name = kind.table();
        let table = table
            .as_table()
            .ok_or_else(|| format!("[helpers.{name}] must be a table of entries"))?;
        for (key, entry) in table {
            let rule = parse_rule(kind, key, entry)
                .map_err(|e| format!("[helpers.{name}.{key:?}]: {e}"))?;
            if let Some(other) = rules.iter().find(|r: &&Rule| r.same_place(&rule)) {
                return Err(format!(
                    "[helpers.{name}.{key:?}] and {} name the same place",
                    other.origin
                ));
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn parse_rule(kind: Kind, key: &str, entry: &toml::Value) -> Result<Rule, String> {
    let pattern = match kind {
        Kind::Git => Target::git_pattern(key)?,
        Kind::Docker => {
            let (target, path) = Target::registry(key)?;
            if !matches!(path.as_str(), "" | "v1" | "v2") {
                return Err(format!(
                    "a registry is a host[:port]; drop the path {path:?}"
                ));
            }
            target
        }
    };
    let entry = entry.as_table().ok_or(
        "must be a table with `session` (and optionally `username`); quote keys with dots",
    )?;
    let mut session = None;
    let mut username = None;
    for (field, value) in entry {
        let text = || {
            value
                .as_str()
                .ok_or_else(|| format!("`{field}` must be a string"))
        };
        match field.as_str() {
            "session" => {
                let name = text()?;
                tokd_protocol::name::validate_session_name(name)?;
                session = Some(name.to_owned());
            }
            "username" => {
                let name = text()?;
                if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                    return Err(
                        "`username` must be non-empty, without ':' or control characters".into(),
                    );
                }
                username = Some(name.to_owned());
            }
            other if value.is_table() => {
                return Err(format!(
                    "unknown key {other:?}; a host with dots must be quoted, as in \
                     [helpers.{}.\"github.com\"]",
                    kind.table()
                ));
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (expected `session`, `username`)"
                ));
            }
        }
    }
    let session = session.ok_or("`session` is missing")?;
    let username = username.unwrap_or_else(|| kind.default_username(&pattern).to_owned());
    Ok(Rule {
        kind,
        origin: format!("[helpers.{}.{key:?}]", kind.table()),
        pattern,
        session,
        username,
    })
}

/// A TOML error as "line L, column C: message", without the source line the parser quotes:
/// that line may hold a `client_secret`.
fn toml_error_without_source(text: &str, e: &toml::de::Error) -> String {
    tokd_protocol::paths::config_error_at(text, e.span().map(|span| span.start), e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HelperConfig, String> {
        HelperConfig::parse(text, Path::new("/cfg/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_syntax_error_next_to_a_client_secret_does_not_print_it() {
        let err =
            parse("[providers.corp]\nclient_secret = \"s3cr3t-probe\" x\n").expect_err("bad TOML");
        assert!(!err.contains("s3cr3t-probe"), "{err}");
        assert!(err.contains("line 2, column 32"), "{err}");
    }

    #[test]
    fn the_documented_schema_parses_and_other_tables_are_ignored() {
        let cfg = parse(
            r#"
            [daemon]
            whatever = { the = "daemon's business" }
            [providers.corp]
            issuer = "https://id.example.com"

            [helpers.git."github.com/acme"]
            session = "gh"
            [helpers.git."https://git.example.com:8443"]
            session = "corp"
            username = "me"
            [helpers.git."bitbucket.org"]
            session = "bb"
            [helpers.docker."registry.example.com"]
            session = "registry"
            username = "oauth2accesstoken"
            [helpers.docker."https://index.docker.io/v1/"]
            session = "hub"
            "#,
        )
        .expect("valid");
        let git: Vec<_> = cfg.rules(Kind::Git).collect();
        assert_eq!(git.len(), 3);
        let gh = cfg
            .find(
                Kind::Git,
                &Target::new(Some("https"), "github.com", "acme/x.git"),
            )
            .expect("mapped");
        assert_eq!(
            (gh.session.as_str(), gh.username.as_str()),
            ("gh", "x-access-token")
        );
        let corp = cfg
            .find(
                Kind::Git,
                &Target::new(Some("https"), "git.example.com:8443", ""),
            )
            .expect("mapped");
        assert_eq!(corp.username, "me");
        assert!(
            cfg.find(
                Kind::Git,
                &Target::new(Some("http"), "git.example.com:8443", "")
            )
            .is_none()
        );
        let bb = cfg
            .find(Kind::Git, &Target::new(Some("https"), "bitbucket.org", ""))
            .expect("mapped");
        assert_eq!(bb.username, "x-token-auth");
        let (hub, _) = Target::registry("docker.io").expect("hub");
        let hub = cfg.find(Kind::Docker, &hub).expect("hub");
        assert_eq!(
            (hub.session.as_str(), hub.username.as_str()),
            ("hub", "oauth2")
        );
        // Git rules never answer docker and the other way round.
        assert!(
            cfg.find(
                Kind::Git,
                &Target::new(Some("https"), "registry.example.com", "")
            )
            .is_none()
        );
    }

    #[test]
    fn plain_http_is_answered_only_by_keys_that_say_http() {
        let cfg = parse(
            r#"
            [helpers.git."git.example.com"]
            session = "bare"
            [helpers.git."http://plain.example.com"]
            session = "plain"
            [helpers.docker."registry.example.com"]
            session = "reg"
            [helpers.docker."http://localhost:5000"]
            session = "local"
            "#,
        )
        .expect("valid");
        let git = |scheme: &str, host: &str| Target::new(Some(scheme), host, "");
        let found = |kind, t: &Target| cfg.find(kind, t).map(|r| r.session.as_str());
        assert_eq!(
            found(Kind::Git, &git("https", "git.example.com")),
            Some("bare")
        );
        assert_eq!(found(Kind::Git, &git("http", "git.example.com")), None);
        let why = cfg
            .https_only(Kind::Git, &git("http", "git.example.com"))
            .expect("the https rule");
        assert_eq!(why.origin, "[helpers.git.\"git.example.com\"]");
        assert_eq!(
            found(Kind::Git, &git("http", "plain.example.com")),
            Some("plain")
        );
        assert!(
            cfg.https_only(Kind::Git, &git("http", "other.example.com"))
                .is_none()
        );
        let registry = |url: &str| Target::registry(url).expect(url).0;
        assert_eq!(
            found(Kind::Docker, &registry("registry.example.com")),
            Some("reg")
        );
        assert_eq!(
            found(Kind::Docker, &registry("http://registry.example.com")),
            None
        );
        assert_eq!(
            cfg.https_only(Kind::Docker, &registry("http://registry.example.com"))
                .map(|r| r.session.as_str()),
            Some("reg")
        );
        for url in [
            "http://localhost:5000",
            "localhost:5000",
            "https://localhost:5000",
        ] {
            assert_eq!(found(Kind::Docker, &registry(url)), Some("local"), "{url}");
        }
        // For docker, `http://r` and `r` are one registry.
        let err = parse(
            "[helpers.docker.\"r.example.com\"]\nsession = \"a\"\n\
             [helpers.docker.\"http://r.example.com\"]\nsession = \"b\"\n",
        )
        .expect_err("same registry");
        assert!(err.contains("name the same place"), "{err}");
    }

    #[test]
    fn the_longest_prefix_wins() {
        let cfg = parse(
            r#"
            [helpers.git."github.com"]
            session = "personal"
            [helpers.git."github.com/acme/tools"]
            session = "tools"
            [helpers.git."github.com/acme"]
            session = "acme"
            "#,
        )
        .expect("valid");
        let session = |path: &str| {
            cfg.find(Kind::Git, &Target::new(Some("https"), "github.com", path))
                .map(|r| r.session.clone())
        };
        assert_eq!(session("acme/tools").as_deref(), Some("tools"));
        assert_eq!(session("acme/tools/x.git").as_deref(), Some("tools"));
        assert_eq!(session("acme/other.git").as_deref(), Some("acme"));
        assert_eq!(session("acme").as_deref(), Some("acme"));
        assert_eq!(session("someone/else").as_deref(), Some("personal"));
        assert_eq!(session("").as_deref(), Some("personal"));
    }

    #[test]
    fn default_usernames_per_forge_and_registry() {
        let cfg = parse(
            r#"
            [helpers.git."gitlab.com"]
            session = "a"
            [helpers.git."git.example.com"]
            session = "a"
            [helpers.docker."europe-docker.pkg.dev"]
            session = "a"
            [helpers.docker."acme.azurecr.io"]
            session = "a"
            [helpers.docker."ghcr.io"]
            session = "a"
            "#,
        )
        .expect("valid");
        let mut names: Vec<(&str, &str)> = cfg
            .rules
            .iter()
            .map(|r| (r.pattern.host.as_str(), r.username.as_str()))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                ("acme.azurecr.io", "00000000-0000-0000-0000-000000000000"),
                ("europe-docker.pkg.dev", "oauth2accesstoken"),
                ("ghcr.io", "oauth2"),
                ("git.example.com", "oauth2"),
                ("gitlab.com", "oauth2"),
            ]
        );
    }

    #[test]
    fn mistakes_are_errors_naming_the_file_and_the_entry() {
        for (text, expected) in [
            ("helpers = 3", "`helpers` must be a table"),
            (
                "[helpers.svn.\"x\"]\nsession = \"a\"",
                "unknown helper \"svn\"",
            ),
            (
                "[helpers.git.\"x\"]\nsesion = \"a\"",
                "unknown key \"sesion\"",
            ),
            (
                "[helpers.git.\"x\"]\nusername = \"u\"",
                "`session` is missing",
            ),
            ("[helpers.git.\"x\"]\nsession = \"a b\"", "contains ' '"),
            (
                "[helpers.git.\"x\"]\nsession = 3",
                "`session` must be a string",
            ),
            (
                "[helpers.git.\"x\"]\nsession = \"a\"\nusername = \"a:b\"",
                "without ':'",
            ),
            (
                "[helpers.git.github.com]\nsession = \"a\"",
                "must be quoted",
            ),
            (
                "[helpers.git.\"a@x\"]\nsession = \"a\"",
                "[helpers.git.\"a@x\"]",
            ),
            (
                "[helpers.git.\"x/a\"]\nsession = \"a\"\n[helpers.git.\"x/a/\"]\nsession = \"b\"",
                "name the same place",
            ),
            (
                "[helpers.docker.\"r.example.com/team\"]\nsession = \"a\"",
                "drop the path",
            ),
            ("[helpers.git]\nx = 1", "must be a table with `session`"),
            ("[helpers\n", "/cfg/config.toml"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.starts_with("/cfg/config.toml: "), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_file_is_found_where_the_daemon_looks() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                vars.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        // A missing default file means no rules; a missing named file is an error.
        let nowhere = env(&[("XDG_CONFIG_HOME", "/nonexistent-tokd-test")]);
        let cfg = HelperConfig::load_with(None, &nowhere).expect("no file, no rules");
        assert_eq!(cfg.rules(Kind::Git).count(), 0);
        let err = HelperConfig::load_with(Some(Path::new("/nonexistent-tokd-test.toml")), &nowhere)
            .expect_err("named file missing");
        assert!(
            err.to_string().contains("/nonexistent-tokd-test.toml"),
            "{err}"
        );
    }
}
