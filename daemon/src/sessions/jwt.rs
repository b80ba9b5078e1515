//! Reading the `exp` claim of a JWT, the fallback source of a token's expiry.
//!
//! Only the claim is read: the signature is not checked, because tokd does not trust the
//! token, it only schedules its refresh; a wrong `exp` costs an early or failed refresh.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Deserialize)]
struct Claims {
    exp: Option<serde_json::Number>,
}

/// The `exp` claim of a compact JWS/JWT in epoch seconds, if the token is one and has it.
pub fn exp_seconds(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None; // JWE or garbage
    }
    // Some issuers pad; the no-pad engine refuses padding.
    let payload = payload.trim_end_matches('=');
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(payload).ok()?);
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.exp?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

#[cfg(test)]
pub(crate) fn make_test_jwt(exp: i64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{{\"sub\":\"u\",\"exp\":{exp}}}"));
    format!("eyJhbGciOiJub25lIn0.{payload}.c2ln")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp() {
        assert_eq!(
            exp_seconds(&make_test_jwt(1_900_000_000)),
            Some(1_900_000_000)
        );
        assert_eq!(exp_seconds("opaque-token"), None);
        assert_eq!(exp_seconds("a.b.c"), None);
        assert_eq!(exp_seconds("a.b.c.d.e"), None);
        let no_exp = format!("x.{}.y", URL_SAFE_NO_PAD.encode("{\"sub\":1}"));
        assert_eq!(exp_seconds(&no_exp), None);
    }
}
