//! Client authentication shared by both daemons (rtcd and calls-offloader `service/auth`).
//!
//! - Clients register a `clientID` with an `authKey` of at least 32 characters; the store keeps a
//!   bcrypt hash (cost 10, `$2a$`, as Go's `bcrypt.DefaultCost`).
//! - Requests authenticate with HTTP Basic (`clientID:authKey`, or `:admin_secret_key` for the
//!   admin) or with a bearer token from `/login`. Tokens live in memory, one per client.
//! - Every bcrypt operation passes one token bucket of 12 × CPUs per second (burst 1); a caller
//!   that would wait more than 10 s fails at once. After an rtcd restart every plugin node
//!   reconnects and re-registers together, and unthrottled bcrypt would starve the process.
//!
//! Error texts are the Go services' own: the plugin and admins see them in response bodies.

use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MIN_KEY_LEN: usize = 32;
/// Go's bcrypt refuses longer passwords when hashing.
pub const MAX_KEY_LEN: usize = 72;
pub const BCRYPT_COST: u32 = 10;
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
const OPS_PER_SECOND_PER_CPU: u32 = 12;
const CLIENTS_TABLE: &str = "clients";

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Basic auth with the admin secret; Go represents it as an empty clientID.
    Admin,
    Client(String),
}

impl Identity {
    /// The Go representation: "" for the admin.
    pub fn client_id(&self) -> &str {
        match self {
            Identity::Admin => "",
            Identity::Client(id) => id,
        }
    }
}

/// An auth failure: the HTTP status and the Go error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: u16,
    pub message: String,
}

impl AuthError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `api.security` section, identical in both daemons.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
#[derive(Default)]
pub struct SecurityConfig {
    pub enable_admin: bool,
    pub admin_secret_key: String,
    pub allow_self_registration: bool,
    pub session_cache: SessionCacheConfig,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SessionCacheConfig {
    pub expiration_minutes: i64,
}

impl Default for SessionCacheConfig {
    fn default() -> Self {
        Self {
            expiration_minutes: 1440,
        }
    }
}

impl SecurityConfig {
    pub fn validate(&self, section: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        if self.enable_admin && self.admin_secret_key.is_empty() {
            return Err(ConfigError::new(
                format!("{section}.admin_secret_key"),
                "should not be empty when enable_admin is true",
            ));
        }
        if self.session_cache.expiration_minutes <= 0 {
            return Err(ConfigError::new(
                format!("{section}.session_cache.expiration_minutes"),
                format!(
                    "should be a positive number, got {}",
                    self.session_cache.expiration_minutes
                ),
            ));
        }
        Ok(())
    }
}

/// The limiter refused: the wait would exceed the caller's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldExceedDeadline;

/// A token bucket with burst 1 (Go's `rate.NewLimiter(r, 1)` used through `Wait`), kept free of
/// clocks: callers pass `now` and sleep for the returned delay.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// When the next operation may start.
    next_free: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next_free: None,
        }
    }

    /// Reserves the next slot and returns how long to wait for it, or refuses (reserving
    /// nothing) if that wait would exceed `max_wait`, as `Wait` does with a context deadline.
    pub fn reserve(
        &mut self,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Duration, WouldExceedDeadline> {
        let start = self.next_free.map_or(now, |t| t.max(now));
        let wait = start - now;
        if wait > max_wait {
            return Err(WouldExceedDeadline);
        }
        self.next_free = Some(start + self.interval);
        Ok(wait)
    }
}

/// Bearer sessions: token → (client, expiry), at most one token per client. Memory only, as in
/// Go. Expired entries are dropped when looked up, and also when the client logs in again, so the
/// map stays bounded by the number of clients.
#[derive(Debug, Default)]
pub struct SessionCache {
    by_token: HashMap<String, (String, Instant)>,
    by_client: HashMap<String, String>,
}

impl SessionCache {
    pub fn get(&mut self, token: &str, now: Instant) -> Result<String, &'static str> {
        let Some((client, expires)) = self.by_token.get(token) else {
            return Err("token is invalid");
        };
        if now > *expires {
            let client = client.clone();
            self.by_token.remove(token);
            self.by_client.remove(&client);
            return Err("session is expired");
        }
        Ok(client.clone())
    }

    pub fn put(&mut self, client: &str, token: &str, expires: Instant) -> Result<(), &'static str> {
        if client.is_empty() {
            return Err("can not cache: invalid client id");
        }
        if token.is_empty() {
            return Err("can not cache: invalid token");
        }
        if self.by_token.contains_key(token) {
            return Err("can not cache: token in use");
        }
        self.delete(client);
        self.by_token
            .insert(token.to_owned(), (client.to_owned(), expires));
        self.by_client.insert(client.to_owned(), token.to_owned());
        Ok(())
    }

    pub fn delete(&mut self, client: &str) {
        if let Some(old) = self.by_client.remove(client) {
            self.by_token.remove(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// How Basic auth treats unknown clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicPolicy {
    /// rtcd: the client must already be registered.
    Strict,
    /// calls-offloader with self-registration on (except on `/unregister`): the first request
    /// from a new client registers it with the key it presents.
    AutoRegister,
}

pub struct AuthService {
    store: Arc<Store>,
    cfg: SecurityConfig,
    cache: Mutex<SessionCache>,
    limiter: Mutex<RateLimiter>,
}

impl AuthService {
    pub fn new(store: Arc<Store>, cfg: SecurityConfig) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self::with_rate(store, cfg, OPS_PER_SECOND_PER_CPU * cpus)
    }

    pub fn with_rate(store: Arc<Store>, cfg: SecurityConfig, ops_per_second: u32) -> Self {
        Self {
            store,
            cfg,
            cache: Mutex::new(SessionCache::default()),
            limiter: Mutex::new(RateLimiter::new(ops_per_second)),
        }
    }

    pub fn config(&self) -> &SecurityConfig {
        &self.cfg
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SessionCache> {
        // A panic while holding this lock cannot leave the maps inconsistent in a harmful way.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a bcrypt slot; Go's error text if the wait would exceed the 10 s limit.
    async fn throttle(&self) -> Result<(), String> {
        let wait = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(Instant::now(), AUTH_TIMEOUT)
            .map_err(|_| "rate: Wait(n=1) would exceed context deadline".to_string())?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| format!("internal error: {e}"))
    }

    async fn store_get(&self, id: &str) -> Result<String, StoreError> {
        let (store, id) = (self.store.clone(), id.to_owned());
        Self::blocking(move || store.get(CLIENTS_TABLE, &id))
            .await
            .map_err(StoreError::Backend)?
    }

    /// Verifies a client's key: "authentication failed[: reason]".
    pub async fn authenticate(&self, id: &str, key: &str) -> Result<(), String> {
        let hash = self
            .store_get(id)
            .await
            .map_err(|e| format!("authentication failed: {e}"))?;
        self.throttle()
            .await
            .map_err(|e| format!("authentication failed: {e}"))?;
        let key = key.to_owned();
        let ok = Self::blocking(move || {
            !hash.is_empty() && !key.is_empty() && bcrypt::verify(key, &hash).unwrap_or(false)
        })
        .await
        .map_err(|e| format!("authentication failed: {e}"))?;
        if ok {
            Ok(())
        } else {
            Err("authentication failed".into())
        }
    }

    /// Registers a client: "registration failed: …" on any error.
    pub async fn register(&self, id: &str, key: &str) -> Result<(), String> {
        if key.len() < MIN_KEY_LEN {
            return Err("registration failed: key not long enough".into());
        }
        match self.store_get(id).await {
            Ok(_) => return Err("registration failed: already registered".into()),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(format!("registration failed: {e}")),
        }
        if key.len() > MAX_KEY_LEN {
            return Err("registration failed: bcrypt: password length exceeds 72 bytes".into());
        }
        self.throttle()
            .await
            .map_err(|e| format!("registration failed: {e}"))?;
        let (store, id, key) = (self.store.clone(), id.to_owned(), key.to_owned());
        Self::blocking(move || {
            let hash = bcrypt::hash_with_result(&key, BCRYPT_COST)
                .map_err(|e| format!("registration failed: {e}"))?
                .format_for_version(bcrypt::Version::TwoA);
            match store.put(CLIENTS_TABLE, &id, &hash) {
                Ok(()) => Ok(()),
                Err(StoreError::Conflict) => {
                    Err("registration failed: already registered".to_string())
                }
                Err(e) => Err(format!("registration failed: {e}")),
            }
        })
        .await?
    }

    /// Removes a client and its bearer token: "unregister failed: …".
    pub async fn unregister(&self, id: &str) -> Result<(), String> {
        let (store, owned) = (self.store.clone(), id.to_owned());
        Self::blocking(move || store.delete(CLIENTS_TABLE, &owned))
            .await?
            .map_err(|e| format!("unregister failed: {e}"))?;
        self.cache().delete(id);
        Ok(())
    }

    /// Issues a bearer token (replacing the client's previous one): "login failed: …".
    pub async fn login(&self, id: &str, key: &str) -> Result<String, String> {
        self.authenticate(id, key)
            .await
            .map_err(|e| format!("login failed: {e}"))?;
        let token = crate::ids::secure_string(MIN_KEY_LEN);
        let ttl = Duration::from_secs(self.cfg.session_cache.expiration_minutes.max(1) as u64 * 60);
        self.cache()
            .put(id, &token, Instant::now() + ttl)
            .map_err(|e| format!("login failed: {e}"))?;
        Ok(token)
    }

    /// The Go `authHandler`: Bearer if the header starts with `Bearer ` (case-sensitive), else Basic.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        policy: BasicPolicy,
    ) -> Result<Identity, AuthError> {
        let header = authorization.unwrap_or("");
        if let Some(token) = header.strip_prefix("Bearer ") {
            return match self.cache().get(token, Instant::now()) {
                Ok(client) => Ok(Identity::Client(client)),
                Err(e) => Err(AuthError::new(401, format!("authentication failed: {e}"))),
            };
        }
        let Some((id, key)) = parse_basic(header) else {
            return Err(AuthError::new(
                401,
                "authentication failed: invalid auth header",
            ));
        };
        if self.cfg.enable_admin && key == self.cfg.admin_secret_key {
            return Ok(Identity::Admin);
        }
        if id.is_empty() {
            return Err(AuthError::new(401, "authentication failed: unauthorized"));
        }
        if policy == BasicPolicy::AutoRegister {
            match self.register(&id, &key).await {
                Ok(()) => {}
                Err(e) if e == "registration failed: already registered" => {}
                Err(e) => {
                    tracing::info!(client_id = %id, error = %e, "auto-registration refused");
                    return Err(AuthError::new(401, "unauthorized"));
                }
            }
        }
        if let Err(e) = self.authenticate(&id, &key).await {
            tracing::warn!(client_id = %id, error = %e, "authentication failed");
            return Err(AuthError::new(401, "authentication failed"));
        }
        Ok(Identity::Client(id))
    }
}

/// Go's `Request.BasicAuth`: scheme matched case-insensitively, standard base64, split at the
/// first `:`. `None` for anything else.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    const PREFIX: &str = "Basic ";
    if header.len() < PREFIX.len()
        || !header.is_char_boundary(PREFIX.len())
        || !header[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
    {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&header[PREFIX.len()..])
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, key) = text.split_once(':')?;
    Some((id.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_spaces_operations_and_gives_up_beyond_max_wait() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10); // one per 100 ms
        let max = Duration::from_millis(250);
        assert_eq!(l.reserve(t0, max), Ok(Duration::ZERO));
        assert_eq!(l.reserve(t0, max), Ok(Duration::from_millis(100)));
        assert_eq!(l.reserve(t0, max), Ok(Duration::from_millis(200)));
        assert_eq!(
            l.reserve(t0, max),
            Err(WouldExceedDeadline),
            "a 300 ms wait exceeds the limit"
        );
        assert_eq!(
            l.reserve(t0 + Duration::from_millis(60), max),
            Ok(Duration::from_millis(240)),
            "refusal reserved nothing"
        );
        // Idle time does not bank more than one token (burst 1).
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve(later, max), Ok(Duration::ZERO));
        assert_eq!(l.reserve(later, max), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn session_cache_one_token_per_client_and_expiry() {
        let t0 = Instant::now();
        let mut c = SessionCache::default();
        c.put("a", "t1", t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(c.get("t1", t0), Ok("a".to_string()));
        c.put("a", "t2", t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(
            c.get("t1", t0),
            Err("token is invalid"),
            "new login replaces the old token"
        );
        assert_eq!(c.put("b", "t2", t0), Err("can not cache: token in use"));
        assert_eq!(
            c.get("t2", t0 + Duration::from_secs(61)),
            Err("session is expired")
        );
        assert_eq!(
            c.get("t2", t0),
            Err("token is invalid"),
            "expired entries are removed"
        );
        assert!(c.is_empty());
        c.put("b", "t3", t0 + Duration::from_secs(60)).unwrap();
        c.delete("b");
        assert_eq!(c.get("t3", t0), Err("token is invalid"));
        assert_eq!(c.put("", "x", t0), Err("can not cache: invalid client id"));
    }

    #[test]
    fn basic_header_parsing_matches_go() {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            parse_basic(&format!("Basic {}", enc("a:b:c"))),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(
            parse_basic(&format!("bAsIc {}", enc(":k"))),
            Some(("".into(), "k".into()))
        );
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            &format!("Basic {}", enc("nocolon")),
            "Bearer x",
            "Basicé",
            "é",
        ] {
            assert_eq!(parse_basic(bad), None, "{bad:?}");
        }
    }

    fn svc(cfg: SecurityConfig) -> (tempfile::TempDir, AuthService) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        (dir, AuthService::with_rate(store, cfg, 1000))
    }

    #[tokio::test]
    async fn register_authenticate_login_unregister() {
        let (_d, s) = svc(SecurityConfig {
            enable_admin: true,
            admin_secret_key: "secret".into(),
            ..Default::default()
        });
        let key = "k".repeat(32);
        assert_eq!(
            s.register("a", "short").await,
            Err("registration failed: key not long enough".into())
        );
        assert_eq!(
            s.register("", &key).await,
            Err("registration failed: error: empty key".into())
        );
        assert_eq!(
            s.register("a", &"k".repeat(73)).await,
            Err("registration failed: bcrypt: password length exceeds 72 bytes".into())
        );
        s.register("a", &key).await.unwrap();
        assert_eq!(
            s.register("a", &key).await,
            Err("registration failed: already registered".into())
        );
        let hash = s.store.get(CLIENTS_TABLE, "a").unwrap();
        assert!(hash.starts_with("$2a$10$"), "{hash}");
        s.authenticate("a", &key).await.unwrap();
        assert_eq!(
            s.authenticate("a", &"x".repeat(32)).await,
            Err("authentication failed".into())
        );
        assert_eq!(
            s.authenticate("zz", &key).await,
            Err("authentication failed: error: not found".into())
        );
        let token = s.login("a", &key).await.unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(
            s.check(Some(&format!("Bearer {token}")), BasicPolicy::Strict)
                .await,
            Ok(Identity::Client("a".into()))
        );
        assert_eq!(
            s.login("zz", &key).await,
            Err("login failed: authentication failed: error: not found".into())
        );
        s.unregister("a").await.unwrap();
        assert_eq!(
            s.check(Some(&format!("Bearer {token}")), BasicPolicy::Strict)
                .await,
            Err(AuthError::new(
                401,
                "authentication failed: token is invalid"
            ))
        );
        assert_eq!(
            s.unregister("a").await,
            Err("unregister failed: error: not found".into())
        );
    }

    #[tokio::test]
    async fn basic_auth_admin_and_auto_registration() {
        use base64::Engine;
        let b = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let (_d, s) = svc(SecurityConfig {
            enable_admin: true,
            admin_secret_key: "secret".into(),
            ..Default::default()
        });
        assert_eq!(
            s.check(Some(&b("anyone:secret")), BasicPolicy::Strict)
                .await,
            Ok(Identity::Admin)
        );
        assert_eq!(
            s.check(None, BasicPolicy::Strict)
                .await
                .unwrap_err()
                .message,
            "authentication failed: invalid auth header"
        );
        assert_eq!(
            s.check(Some(&b(":nope")), BasicPolicy::Strict)
                .await
                .unwrap_err()
                .message,
            "authentication failed: unauthorized"
        );
        let key = "q".repeat(40);
        let creds = b(&format!("c1:{key}"));
        assert_eq!(
            s.check(Some(&creds), BasicPolicy::Strict)
                .await
                .unwrap_err()
                .message,
            "authentication failed"
        );
        assert_eq!(
            s.check(Some(&creds), BasicPolicy::AutoRegister).await,
            Ok(Identity::Client("c1".into()))
        );
        assert_eq!(
            s.check(Some(&creds), BasicPolicy::Strict).await,
            Ok(Identity::Client("c1".into()))
        );
        let other = b(&format!("c1:{}", "z".repeat(40)));
        assert_eq!(
            s.check(Some(&other), BasicPolicy::AutoRegister)
                .await
                .unwrap_err()
                .message,
            "authentication failed"
        );
        let short = b("c2:short");
        assert_eq!(
            s.check(Some(&short), BasicPolicy::AutoRegister)
                .await
                .unwrap_err()
                .message,
            "unauthorized"
        );
        // "Bearer" detection is case-sensitive: a lower-case scheme falls through to Basic parsing.
        assert_eq!(
            s.check(Some("bearer abc"), BasicPolicy::Strict)
                .await
                .unwrap_err()
                .message,
            "authentication failed: invalid auth header"
        );
    }
}
