//! Import, serve, survive a restart, replace, remove.

use tokd_e2e::{TestDaemon, stderr, stdout, token_response};

#[test]
fn import_get_restart_get() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-import-1", "rt-import-1", 3600));

    // Another process (the tokd binary) fetches it: the bearer alone on stdout.
    let out = d.tokd(&["get", "work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-import-1\n");

    d.restart().expect("restarts");
    let out = d.tokd(&["get", "work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-import-1\n");

    let out = d.tokd(&["get", "work", "--header"]);
    assert_eq!(stdout(&out), "Authorization: Bearer at-import-1\n");
}

#[test]
fn backend_shape_and_jwt_expiry_are_understood() {
    let d = TestDaemon::start().expect("daemon starts");
    let in_an_hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 3_600_000) as i64;
    d.add(
        "chat",
        &format!(r#"{{"token":"at-chat","refreshToken":"rt-chat","user":{{"id":7}},"expiresAt":{in_an_hour}}}"#),
    );
    let status = d.tokd(&["status", "chat", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["sessions"][0]["expires_at"], in_an_hour);
    assert_eq!(json["sessions"][0]["has_refresh_token"], true);

    // No expiry fields: the JWT's exp claim decides.
    let exp = in_an_hour / 1000;
    let payload = base64_url(&format!(r#"{{"sub":"u","exp":{exp}}}"#));
    let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.c2ln");
    d.add("jwt", &format!(r#"{{"access_token":"{jwt}"}}"#));
    let status = d.tokd(&["status", "jwt", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["sessions"][0]["expires_at"], exp * 1000);
    assert_eq!(stdout(&d.tokd(&["get", "jwt"])), format!("{jwt}\n"));
}

#[test]
fn an_expired_token_is_never_served() {
    let d = TestDaemon::start().expect("daemon starts");
    // Expired an hour ago, by the provider's own absolute expiry.
    let past = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        - 3_600_000) as i64;
    d.add(
        "old",
        &format!(r#"{{"token":"at-expired","refreshToken":"rt-old","expiresAt":{past}}}"#),
    );
    let out = d.tokd(&["get", "old"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "nothing on stdout: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("at-expired"));

    // Without a refresh token, an expired session needs a login.
    d.add(
        "dead",
        &format!(r#"{{"token":"at-dead","expiresAt":{past}}}"#),
    );
    let out = d.tokd(&["get", "dead"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a login"), "{}", stderr(&out));

    let status = d.tokd(&["status", "--json"]);
    assert_eq!(
        status.status.code(),
        Some(1),
        "unhealthy sessions make status exit 1"
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let dead = &json["sessions"][0];
    assert_eq!(dead["name"], "dead");
    assert_eq!(dead["state"], "needs_login");
    assert_eq!(dead["token_valid"], false);
}

#[test]
fn names_grants_and_replace_rules() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add("a", &token_response("at-a", "rt-shared", 3600));

    // The same name again: already_exists (exit 2) unless --replace.
    let out = d.tokd_with_stdin(
        &["add", "a", "--provider", "corp"],
        Some(&token_response("at-a2", "rt-a2", 3600)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));

    // Another session holding the same refresh token: refused.
    let out = d.tokd_with_stdin(
        &["add", "b", "--provider", "corp"],
        Some(&token_response("at-b", "rt-shared", 3600)),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already belongs to session \"a\""),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("rt-shared"), "no secret in errors");

    let out = d.tokd_with_stdin(
        &[
            "add",
            "a",
            "--provider",
            "corp",
            "--replace",
            "--attr",
            "user_id=42",
        ],
        Some(&token_response("at-a2", "rt-a2", 3600)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("replaced session a"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&d.tokd(&["get", "a"])), "at-a2\n");
    let json: serde_json::Value =
        serde_json::from_slice(&d.tokd(&["status", "a", "--json"]).stdout).expect("json");
    assert_eq!(json["sessions"][0]["attrs"]["user_id"], "42");

    // Bad names and unknown providers are invalid input (exit 2) with a clear message.
    for (args, want) in [
        (
            vec!["add", "no/slash", "--provider", "corp"],
            "only letters",
        ),
        (
            vec!["add", "x", "--provider", "nope"],
            "no provider named \"nope\"",
        ),
    ] {
        let out = d.tokd_with_stdin(&args, Some(&token_response("at-x", "rt-x", 60)));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let out = d.tokd_with_stdin(&["add", "x", "--provider", "corp"], Some("{not json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a JSON object"),
        "{}",
        stderr(&out)
    );

    // rm, then the name is gone (exit 4) and free again.
    assert!(d.tokd(&["rm", "a"]).status.success());
    assert_eq!(d.tokd(&["get", "a"]).status.code(), Some(4));
    assert_eq!(d.tokd(&["rm", "a"]).status.code(), Some(4));
    d.add("b", &token_response("at-b", "rt-shared", 3600));
    assert_eq!(stdout(&d.tokd(&["list"])), "b\n");
}

fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
