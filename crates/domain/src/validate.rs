//! Field checks shared by every entry point (REST, HR routes, CLI).

use crate::DomainError;

pub const MAX_NAME: usize = 100;
pub const MAX_LOGIN: usize = 64;
pub const MAX_EMAIL: usize = 254;
pub const MAX_PHONE: usize = 32;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;

/// Trims `v` and checks its length in characters; empty is an error.
pub fn required(field: &'static str, v: &str, max: usize) -> Result<String, DomainError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// Like [`required`] but an empty or missing value becomes `None`.
pub fn optional(
    field: &'static str,
    v: Option<&str>,
    max: usize,
) -> Result<Option<String>, DomainError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => required(field, t, max).map(Some),
    }
}

pub fn login(v: Option<&str>) -> Result<Option<String>, DomainError> {
    let l = optional("login", v, MAX_LOGIN)?;
    if let Some(l) = &l {
        if !l
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
        {
            return Err(DomainError::invalid(
                "login",
                "may contain letters, digits and . _ - @ + only",
            ));
        }
    }
    Ok(l)
}

pub fn email(v: Option<&str>) -> Result<Option<String>, DomainError> {
    let e = optional("email", v, MAX_EMAIL)?;
    if let Some(e) = &e {
        let ok = match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !e.contains(char::is_whitespace)
            }
            None => false,
        };
        if !ok {
            return Err(DomainError::invalid("email", "is not an email address"));
        }
    }
    Ok(e)
}

pub fn phone(v: Option<&str>) -> Result<Option<String>, DomainError> {
    let p = optional("phone", v, MAX_PHONE)?;
    if let Some(p) = &p {
        if !p
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        {
            return Err(DomainError::invalid(
                "phone",
                "may contain digits, spaces and + - ( ) . only",
            ));
        }
    }
    Ok(p)
}

/// Console passwords: 8 to 128 characters (not trimmed).
pub fn password(v: &str) -> Result<(), DomainError> {
    let n = v.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(DomainError::invalid(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}
