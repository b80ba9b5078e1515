//! The name rule, shared by every side: session names, provider names and attribute keys
//! are all `[A-Za-z0-9._-]`, because they become associated data, file names, config keys
//! and log fields.

/// The longest session name.
pub const MAX_SESSION_NAME: usize = 64;

/// Whether `c` may appear in a name: an ASCII letter or digit, `.`, `_` or `-`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Whether `name` is 1 to `max` bytes of [`is_name_char`] characters.
pub fn is_valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.chars().all(is_name_char)
}

/// Checks a session name against `[A-Za-z0-9._-]{1,64}`.
///
/// Names become associated data, file names and config keys, so nothing else is allowed.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn validate_session_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a session name must not be empty".into());
    }
    if name.len() > MAX_SESSION_NAME {
        return Err(format!(
            "session name is {} bytes long; at most {MAX_SESSION_NAME} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "session name {name:?} contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_session_name;

    #[test]
    fn the_rule() {
        for ok in ["a", "work", "corp.prod_1-x", &"x".repeat(64)] {
            assert!(validate_session_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "../x", &"x".repeat(65), "a\0"] {
            assert!(validate_session_name(bad).is_err(), "{bad:?}");
        }
    }
}
