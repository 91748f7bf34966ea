//! Console password hashing with argon2 (PHC strings). Hashing is CPU
//! bound, so it runs on the blocking pool.

use std::sync::OnceLock;

use argon2::{
    password_hash::{PasswordHasher, PasswordVerifier},
    Argon2, Params,
};

use crate::{DomainError, PasswordCost};

/// Argon2 with the default parameters needs 19 MiB per hash. Running at
/// most one per CPU (queueing the rest) keeps a login flood from spawning
/// hundreds of blocking threads and exhausting memory.
fn permits() -> &'static tokio::sync::Semaphore {
    static SEM: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SEM.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(n.clamp(1, 16))
    })
}

fn hasher(cost: PasswordCost) -> Argon2<'static> {
    match cost {
        PasswordCost::Argon2Default => Argon2::default(),
        PasswordCost::TestOnlyCheap => match Params::new(8, 1, 1, None) {
            Ok(p) => Argon2::from(p),
            Err(_) => Argon2::default(),
        },
    }
}

/// Hashes `password` into a PHC string.
pub async fn hash(cost: PasswordCost, password: &str) -> Result<String, DomainError> {
    let pw = password.to_owned();
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| DomainError::Internal(format!("hash permits: {e}")))?;
    tokio::task::spawn_blocking(move || {
        hasher(cost)
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| DomainError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| DomainError::Internal(format!("hash task: {e}")))?
}

/// Checks `password` against a PHC string (its own parameters apply).
pub async fn verify(password: &str, phc: &str) -> bool {
    let pw = password.to_owned();
    let phc = phc.to_owned();
    let Ok(_permit) = permits().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(pw.as_bytes(), phc.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password with the configured cost, verified against
/// when the login is unknown so that unknown and known logins take the
/// same time.
pub async fn dummy_hash(cost: PasswordCost) -> &'static str {
    static DEFAULT: OnceLock<String> = OnceLock::new();
    static CHEAP: OnceLock<String> = OnceLock::new();
    let cell = match cost {
        PasswordCost::Argon2Default => &DEFAULT,
        PasswordCost::TestOnlyCheap => &CHEAP,
    };
    if let Some(h) = cell.get() {
        return h;
    }
    let h = hash(cost, &crate::sip_credentials::random_hex(16))
        .await
        .unwrap_or_default();
    cell.get_or_init(|| h)
}
