//! Input rules for accounts. Errors name the JSON field they concern.

use service_common::ApiError;

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long enough for any passphrase, short enough that nobody makes us hash a megabyte.
pub const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_LOCAL_PART_CHARS: usize = 64;

/// A syntactically valid address (RFC 5321 length limits, one `@`, a dotted domain of
/// letter/digit/hyphen labels). Returned trimmed; case is kept (the column is citext).
pub fn email(raw: &str) -> Result<String, ApiError> {
    let invalid = |message: &str| ApiError::invalid("email", "invalid_email", message.to_string());
    let email = raw.trim();
    if email.is_empty() {
        return Err(ApiError::invalid(
            "email",
            "missing_field",
            "email is required",
        ));
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid("email must be at most 254 characters"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "email must not contain spaces or control characters",
        ));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("email must look like name@example.com"));
    };
    if local.is_empty() || local.contains('@') || local.chars().count() > MAX_LOCAL_PART_CHARS {
        return Err(invalid("email must look like name@example.com"));
    }
    if local.chars().any(|c| "<>()[]\\,;:\"".contains(c))
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(invalid(
            "the part before @ contains characters that are not allowed",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.chars().count() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(invalid("the domain after @ is not valid"));
    }
    Ok(email.to_string())
}

/// Registration password: at least 8 characters (Unicode scalar values), at most 1024 bytes.
pub fn new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            "password_too_short",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    login_password(password)
}

/// Login password: only the bounds that protect us; its strength is not our business here.
pub fn login_password(password: &str) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::invalid(
            "password",
            "missing_field",
            "password is required",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            "password_too_long",
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_trimmed() {
        assert_eq!(
            email("  Alice.Smith+tag@Example.co.uk ").expect("valid"),
            "Alice.Smith+tag@Example.co.uk"
        );
        assert!(email("x@münchen.de").is_ok());
    }

    #[test]
    fn rejects_malformed_addresses_naming_the_field() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            "a@b-.com",
            ".a@b.com",
            "a..b@c.com",
            "a\u{0}@b.com",
            "<a>@b.com",
        ] {
            let err = email(bad).expect_err(bad);
            assert_eq!(err.field.as_deref(), Some("email"), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(email(&long).is_err());
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(email(&long_local).is_err());
    }

    #[test]
    fn password_length_rules() {
        assert_eq!(
            new_password("1234567").expect_err("short").code,
            "password_too_short"
        );
        assert!(new_password("12345678").is_ok());
        // Eight characters, more than eight bytes: characters count, not bytes.
        assert!(new_password("pässwörd").is_ok());
        assert!(new_password("ÿÿÿÿÿÿÿ").is_err());
        assert_eq!(
            new_password(&"x".repeat(1025)).expect_err("long").code,
            "password_too_long"
        );
        assert_eq!(login_password("").expect_err("empty").code, "missing_field");
    }
}
