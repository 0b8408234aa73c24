//! HTTP basic auth against argon2 password hashes. A successful check is remembered (as a SHA-256 of the user
//! and password, never the password itself) so that a call does not cost an argon2 hash each time.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};

/// Most distinct successful credentials remembered; beyond it the cache starts again, bounded memory.
const CACHE_LIMIT: usize = 1024;

/// The users (each with its role, of the process's own role type) and the cache of verified credentials.
#[derive(Debug)]
pub struct Authenticator<R> {
    users: HashMap<String, (String, R)>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller<R> {
    /// The user name.
    pub name: String,
    /// The user's role.
    pub role: R,
}

impl<R: Copy> Authenticator<R> {
    /// From the configured users: name, argon2 PHC string, role.
    pub fn new(users: impl IntoIterator<Item = (String, String, R)>) -> Self {
        Authenticator {
            users: users.into_iter().map(|(name, hash, role)| (name, (hash, role))).collect(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `name` is a configured user.
    pub fn knows(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The caller when these exact credentials were verified before; no argon2, cheap enough for the async
    /// workers. `None` says nothing about whether they are wrong.
    pub fn cached(&self, credentials: &Credentials) -> Option<Caller<R>> {
        let (hash, role) = self.users.get(&credentials.name)?;
        let key = cache_key(credentials, hash);
        self.verified
            .lock()
            .is_ok_and(|cache| cache.contains(&key))
            .then(|| Caller { name: credentials.name.clone(), role: *role })
    }

    /// Verifies the credentials against the argon2 hash and remembers a success. This costs tens of
    /// milliseconds of CPU: run it off the async workers (`spawn_blocking`), behind a bound on how many run at
    /// once.
    pub fn verify(&self, credentials: &Credentials) -> Option<Caller<R>> {
        if let Some(caller) = self.cached(credentials) {
            return Some(caller);
        }
        let (hash, role) = self.users.get(&credentials.name)?;
        let parsed = PasswordHash::new(hash).ok()?;
        Argon2::default().verify_password(credentials.password.as_bytes(), &parsed).ok()?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(cache_key(credentials, hash));
        }
        Some(Caller { name: credentials.name.clone(), role: *role })
    }

    /// Checks an `Authorization` header value at once (argon2 included, on the calling thread); `None` when
    /// missing, malformed or wrong.
    pub fn check(&self, header: Option<&str>) -> Option<Caller<R>> {
        self.verify(&Credentials::from_header(header)?)
    }
}

/// A user name and password as sent in a basic-auth header; not yet checked.
pub struct Credentials {
    name: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug log.
        f.debug_struct("Credentials").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads an `Authorization: Basic …` header value; `None` when missing or malformed.
    pub fn from_header(header: Option<&str>) -> Option<Credentials> {
        let encoded = header?.strip_prefix("Basic ").or_else(|| header?.strip_prefix("basic "))?;
        let decoded = decode_base64(encoded.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (name, password) = text.split_once(':')?;
        Some(Credentials { name: name.to_string(), password: password.to_string() })
    }

    /// The user name claimed.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the success cache remembers of a verified login: a SHA-256 of user, password and the hash checked.
fn cache_key(credentials: &Credentials, hash: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(&credentials.name)
        .chain_update([0u8])
        .chain_update(&credentials.password)
        .chain_update(hash)
        .finalize()
        .into()
}

/// Checks that `hash` is a PHC string argon2 can verify against; the error says what is wrong with it.
pub fn check_hash(hash: &str) -> Result<(), argon2::password_hash::Error> {
    PasswordHash::new(hash).map(|_| ())
}

/// Hashes a password into an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// What `hash-password` of both binaries does: reads one password from `input` (a trailing newline is not part
/// of it) and returns its argon2 PHC string, or what went wrong in words for the operator.
pub fn hash_from(mut input: impl std::io::Read, program: &str) -> Result<String, String> {
    let mut password = String::new();
    input.read_to_string(&mut password).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("no password on stdin, pipe one in: echo -n 'secret' | {program} hash-password"));
    }
    hash_password(password).map_err(|e| format!("cannot hash the password: {e}"))
}

/// Standard base64 (with or without padding) as basic auth uses it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for group in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        match group.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8]),
            2 => out.push((acc >> 16) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Role {
        Office,
    }

    #[test]
    fn checks_and_caches_credentials() {
        let hash = hash_password("s3cret").unwrap();
        let auth = Authenticator::new([("office".to_string(), hash, Role::Office)]);
        // "office:s3cret"
        let good = "Basic b2ZmaWNlOnMzY3JldA==";
        let credentials = Credentials::from_header(Some(good)).unwrap();
        assert!(auth.cached(&credentials).is_none(), "nothing is cached before a verification");
        assert_eq!(auth.check(Some(good)).map(|c| c.role), Some(Role::Office));
        assert!(auth.cached(&credentials).is_some(), "a success is cached");
        assert_eq!(auth.check(Some(good)).map(|c| c.role), Some(Role::Office));
        // "office:wrong"
        assert!(auth.check(Some("Basic b2ZmaWNlOndyb25n")).is_none());
        assert!(auth.cached(&Credentials::from_header(Some("Basic b2ZmaWNlOndyb25n")).unwrap()).is_none());
        assert!(auth.check(Some("Basic !!!")).is_none());
        assert!(auth.check(Some("Bearer x")).is_none());
        assert!(auth.check(None).is_none());
    }
}
