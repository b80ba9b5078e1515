//! `tokd kubectl NAME [--id-token] [--min-valid DUR]`: a kubectl (client-go) exec credential
//! plugin. It prints an `ExecCredential` with the session's bearer and its expiry; client-go
//! caches it until `expirationTimestamp` and runs the plugin again after that.

use base64::Engine;
use tokd_protocol::paths::SocketPath;

use crate::cli::KubectlArgs;
use crate::helpers::session::{explain, fetch};
use crate::output::{now_ms, rfc3339_utc};
use crate::{CmdResult, Outcome};

/// The current ExecCredential version.
const V1: &str = "client.authentication.k8s.io/v1";
/// The version clusters configured before Kubernetes 1.24 may still ask for.
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The prefix of every message (kubectl shows the plugin's stderr).
const ME: &str = "tokd kubectl";

/// Runs `tokd kubectl`.
pub fn run(socket: &SocketPath, args: &KubectlArgs) -> CmdResult {
    let info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let api_version = match api_version(info.as_deref()) {
        Ok(v) => v,
        Err(message) => {
            crate::errln!("{ME}: {message}");
            return Ok(Outcome::Exit(2));
        }
    };
    let token = match fetch(socket, &args.name, args.min_valid, args.id_token) {
        Ok(token) => token,
        Err(e) => {
            crate::errln!("{ME}: {}", explain(&e, &args.name));
            return Ok(Outcome::Exit(e.exit_code()));
        }
    };
    let (bearer, expires_at_ms) = if args.id_token {
        let Some(id_token) = &token.id_token else {
            crate::errln!(
                "{ME}: session {:?} has no id_token (log in with the `openid` scope)",
                args.name
            );
            return Ok(Outcome::Exit(1));
        };
        let expiry = jwt_exp_ms(id_token.expose()).unwrap_or(token.expires_at_ms);
        if expiry <= now_ms() {
            crate::errln!(
                "{ME}: the id_token of session {:?} expired at {}; `tokd refresh {}` may get a \
                 new one",
                args.name,
                rfc3339_utc(expiry),
                args.name
            );
            return Ok(Outcome::Exit(1));
        }
        (id_token.expose(), expiry)
    } else {
        (token.access_token.expose(), token.expires_at_ms)
    };
    if !token.meets_min_valid {
        crate::errln!(
            "{ME}: warning: the token of {:?} has less than the requested --min-valid left",
            args.name
        );
    }
    let text = format!("{}\n", exec_credential(api_version, bearer, expires_at_ms));
    crate::output::out(&text)?;
    Ok(Outcome::Exit(0))
}

/// The ExecCredential version to answer with: the one `KUBERNETES_EXEC_INFO` names, `v1`
/// when it is not set.
fn api_version(exec_info: Option<&str>) -> Result<&'static str, String> {
    let Some(info) = exec_info.filter(|i| !i.trim().is_empty()) else {
        return Ok(V1);
    };
    let info: serde_json::Value =
        serde_json::from_str(info).map_err(|e| format!("KUBERNETES_EXEC_INFO is not JSON: {e}"))?;
    match info.get("apiVersion").and_then(serde_json::Value::as_str) {
        None | Some(V1) => Ok(V1),
        Some(V1BETA1) => Ok(V1BETA1),
        Some(other) => Err(format!(
            "kubectl asks for an ExecCredential of {other:?}; tokd speaks {V1} and {V1BETA1}"
        )),
    }
}

/// The `ExecCredential` object client-go reads from the plugin's stdout.
fn exec_credential(api_version: &str, token: &str, expires_at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": {
            "token": token,
            "expirationTimestamp": rfc3339_utc(expires_at_ms),
        },
    })
}

/// The `exp` claim of a JWT in epoch ms, read without verifying anything (the API server
/// verifies; this only says when to ask again). `None` for anything that is not a JWT with a
/// numeric `exp`.
fn jwt_exp_ms(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let secs = exp
        .as_i64()
        // Some issuers write `exp` as a float; whole seconds are enough here.
        .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    secs.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn the_exec_credential_has_kubernetes_shape() {
        let json = exec_credential(V1, "tok", 1_700_000_000_000);
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": "tok", "expirationTimestamp": "2023-11-14T22:13:20Z"},
            })
        );
    }

    #[test]
    fn the_version_follows_kubernetes_exec_info() {
        assert_eq!(api_version(None), Ok(V1));
        assert_eq!(api_version(Some("")), Ok(V1));
        let info = |v: &str| {
            format!(
                r#"{{"kind":"ExecCredential","apiVersion":"{v}","spec":{{"interactive":false}}}}"#
            )
        };
        assert_eq!(api_version(Some(&info(V1))), Ok(V1));
        assert_eq!(api_version(Some(&info(V1BETA1))), Ok(V1BETA1));
        let err = api_version(Some(&info("client.authentication.k8s.io/v1alpha1")))
            .expect_err("unsupported");
        assert!(err.contains("v1alpha1"), "{err}");
        assert!(api_version(Some("{not json")).is_err());
    }

    #[test]
    fn jwt_expiry_is_read_without_verification() {
        assert_eq!(
            jwt_exp_ms(&jwt(r#"{"exp":1700000000}"#)),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            jwt_exp_ms(&jwt(r#"{"exp":1700000000.5}"#)),
            Some(1_700_000_000_000)
        );
        assert_eq!(jwt_exp_ms(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_exp_ms(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_exp_ms("opaque-token"), None);
        assert_eq!(jwt_exp_ms("a.!!!.c"), None);
    }
}
