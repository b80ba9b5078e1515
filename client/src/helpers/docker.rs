//! docker's credential-helper protocol (docker-credential-helpers): the verb is the argument,
//! the server URL (or a JSON credential, for `store`) comes on stdin, answers are JSON on
//! stdout, and errors are text on stdout with a non-zero status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Rule;
use super::target::{DOCKER_HUB, Target};

/// The message docker reads as "no credentials for this registry" (and then goes on without).
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// The most stdin the helper reads.
pub const MAX_INPUT: u64 = 64 * 1024;

/// The answer to `get`.
#[derive(Serialize)]
struct Credential<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// What `store` receives; only the registry is read (the secret is docker's, not ours).
#[derive(Deserialize)]
struct StoreInput {
    #[serde(rename = "ServerURL")]
    server_url: String,
}

/// The answer to `get`: the server URL as docker sent it, the username and the token.
pub fn credential_json(server_url: &str, username: &str, secret: &str) -> String {
    let credential = Credential {
        server_url,
        username,
        secret,
    };
    // Serialising three strings cannot fail; an empty object would read as "no secret".
    serde_json::to_string(&credential).unwrap_or_else(|_| "{}".to_owned())
}

/// The registry named by `store`'s JSON input.
///
/// # Errors
/// A message that repeats nothing of the input (it holds a secret).
pub fn store_server_url(input: &str) -> Result<String, String> {
    serde_json::from_str::<StoreInput>(input)
        .map(|s| s.server_url)
        .map_err(|_| "expected a JSON object with ServerURL, Username and Secret on stdin".into())
}

/// The answer to `list`: every mapped registry's server URL and username.
pub fn list_json<'a>(rules: impl Iterator<Item = &'a Rule>) -> String {
    let map: BTreeMap<String, &str> = rules
        .map(|r| (server_url(&r.pattern), r.username.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
}

/// How docker names a registry: Docker Hub by its historic index URL, others by host.
fn server_url(registry: &Target) -> String {
    if registry.host == DOCKER_HUB {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.host.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpers::config::HelperConfig;

    #[test]
    fn get_answers_docker_json() {
        let json: serde_json::Value = serde_json::from_str(&credential_json(
            "https://r.example.com/v1/",
            "oauth2",
            "t\"k",
        ))
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"ServerURL": "https://r.example.com/v1/", "Username": "oauth2", "Secret": "t\"k"})
        );
    }

    #[test]
    fn store_reads_the_registry_and_never_repeats_the_input() {
        assert_eq!(
            store_server_url(r#"{"ServerURL":"r.example.com","Username":"u","Secret":"s3cret"}"#)
                .as_deref(),
            Ok("r.example.com")
        );
        for bad in [
            r#"{"Secret":"s3cret"}"#,
            "s3cret",
            r#"{"ServerURL":7,"Secret":"s3cret"}"#,
        ] {
            let err = store_server_url(bad).expect_err(bad);
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn list_names_every_registry() {
        let cfg = HelperConfig::parse(
            r#"
            [helpers.docker."https://registry.example.com/v2/"]
            session = "r"
            username = "robot"
            [helpers.docker."docker.io"]
            session = "hub"
            [helpers.git."github.com"]
            session = "gh"
            "#,
            std::path::Path::new("/cfg.toml"),
        )
        .expect("valid");
        let json: serde_json::Value =
            serde_json::from_str(&list_json(cfg.rules(crate::helpers::config::Kind::Docker)))
                .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"https://index.docker.io/v1/": "oauth2", "registry.example.com": "robot"})
        );
    }
}
