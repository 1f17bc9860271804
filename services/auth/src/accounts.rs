//! The auth operations. HTTP handlers and gRPC methods both call these and only translate
//! their inputs and outputs.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use service_common::redis::RedisHandle;
use service_common::{ApiError, ApiResult, Caller};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::keys::KeySet;
use crate::login_throttle::LoginThrottle;
use crate::password::{PasswordError, PasswordHasher};
use crate::validate;

/// Token settings (`iss`, `aud`, lifetime).
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: i64,
}

/// JWT claims, docs/contracts.md "JWT".
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: String,
    email: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
    iss: &'a str,
    aud: &'a str,
}

pub struct Accounts {
    pool: Pool,
    redis: RedisHandle,
    hasher: Arc<PasswordHasher>,
    throttle: LoginThrottle,
    keys: ArcSwap<KeySet>,
    policy: TokenPolicy,
}

impl Accounts {
    pub fn new(
        pool: Pool,
        redis: RedisHandle,
        hasher: Arc<PasswordHasher>,
        throttle: LoginThrottle,
        keys: KeySet,
        policy: TokenPolicy,
    ) -> Self {
        Self {
            pool,
            redis,
            hasher,
            throttle,
            keys: ArcSwap::from_pointee(keys),
            policy,
        }
    }

    /// Swaps in a reloaded key set (SIGHUP after `auth rotate-key`).
    pub fn replace_keys(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.load().jwks()
    }
    pub async fn register(&self, email: &str, password: &str) -> ApiResult<User> {
        let email = validate::email(email)?;
        validate::new_password(password)?;
        let hash = self
            .hasher
            .hash(password.to_string())
            .await
            .map_err(|e| hashing_failed(&e, "could not store the password"))?;
        let id = Uuid::now_v7();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .query_opt(
                "INSERT INTO auth.users (id, email, password_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (email) DO NOTHING RETURNING created_at",
                &[&id, &email, &hash],
            )
            .await?;
        let Some(row) = inserted else {
            return Err(email_taken());
        };
        tx.execute(
            "INSERT INTO auth.audit_events (user_id, event) VALUES ($1, 'register')",
            &[&id],
        )
        .await?;
        tx.commit().await.map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                email_taken()
            } else {
                e.into()
            }
        })?;
        tracing::info!(user_id = %id, "registered");
        Ok(User {
            id,
            email,
            created_at: row.try_get(0)?,
        })
    }

    /// Wrong password and unknown email both answer the same 401 after the same work, and
    /// both count toward the email's failed-login throttle (429 once it is in back-off).
    pub async fn login(&self, email: &str, password: &str) -> ApiResult<IssuedToken> {
        let email = email.trim();
        if email.is_empty() {
            return Err(ApiError::invalid(
                "email",
                "missing_field",
                "email is required",
            ));
        }
        if email.chars().count() > 254 {
            return Err(ApiError::invalid(
                "email",
                "invalid_email",
                "email must be at most 254 characters",
            ));
        }
        validate::login_password(password)?;
        // Before any lookup or hashing: a throttled attempt costs nothing and reveals nothing.
        self.throttle.check(email).await?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, email::text, password_hash FROM auth.users WHERE email = $1::text::citext",
                &[&email],
            )
            .await?;
        drop(client);
        let (user, stored) = match row {
            Some(row) => {
                let id: Uuid = row.try_get(0)?;
                let email: String = row.try_get(1)?;
                (Some((id, email)), Some(row.try_get::<_, String>(2)?))
            }
            None => (None, None),
        };
        let matches = self
            .hasher
            .verify(password.to_string(), stored)
            .await
            .map_err(|e| hashing_failed(&e, "could not verify the password"))?;
        let Some((user_id, user_email)) = user.filter(|_| matches) else {
            tracing::info!("login refused");
            self.throttle.record_failure(email).await;
            return Err(ApiError::new(
                service_common::error::ErrorKind::Unauthenticated,
                "invalid_credentials",
                "invalid email or password",
            ));
        };
        self.throttle.record_success(email).await;
        self.issue(user_id, &user_email).await
    }

    async fn issue(&self, user_id: Uuid, email: &str) -> ApiResult<IssuedToken> {
        let keys = self.keys.load_full();
        let now = Utc::now();
        let ttl = i64::try_from(self.policy.ttl.as_secs())
            .unwrap_or(900)
            .max(1);
        let expires = now + chrono::Duration::seconds(ttl);
        let jti = Uuid::new_v4();
        let claims = Claims {
            sub: user_id.to_string(),
            email,
            jti: jti.to_string(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
            iss: &self.policy.issuer,
            aud: &self.policy.audience,
        };
        let token = keys.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            ApiError::internal("could not sign the token")
        })?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO auth.issued_tokens (jti, user_id, kid, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[&jti, &user_id, &keys.current.kid, &now, &expires],
        )
        .await?;
        tx.execute(
            "INSERT INTO auth.audit_events (user_id, event, jti) VALUES ($1, 'login', $2)",
            &[&user_id, &jti],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user_id, jti = %jti, kid = %keys.current.kid, "token issued");
        Ok(IssuedToken {
            token,
            expires_in: ttl,
        })
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "me"))]
    pub async fn me(&self, caller: &Caller) -> ApiResult<User> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, email::text, created_at FROM auth.users WHERE id = $1",
                &[&caller.user_id],
            )
            .await?
            .ok_or_else(|| {
                ApiError::not_found("user_not_found", "this account no longer exists")
            })?;
        Ok(User {
            id: row.try_get(0)?,
            email: row.try_get(1)?,
            created_at: row.try_get(2)?,
        })
    }

    /// Revokes the caller's token: `SET <ns>revoked:<jti> 1 EX <left>`, `PUBLISH
    /// <ns>revocations`, then an audit row. Without Redis the revocation cannot be enforced,
    /// so the answer is 503 rather than a logout that only looks successful.
    pub async fn logout(&self, caller: &Caller) -> ApiResult<()> {
        if caller.jti.is_empty() {
            return Err(ApiError::unauthenticated("the token has no jti to revoke"));
        }
        let jti_uuid = Uuid::parse_str(&caller.jti).ok();
        let now = Utc::now();
        let expires_at = match jti_uuid {
            Some(jti) => self.token_expiry(jti, caller.user_id).await,
            None => None,
        }
        // Unknown to us (or the database is down): the longest a token of ours can live.
        .unwrap_or_else(|| {
            now + chrono::Duration::seconds(i64::try_from(self.policy.ttl.as_secs()).unwrap_or(900))
        });
        let seconds_left = (expires_at - now).num_seconds().max(1);
        let key = self.redis.key(&format!("revoked:{}", caller.jti));
        let channel = self.redis.key("revocations");
        let message =
            serde_json::json!({"jti": caller.jti, "exp": expires_at.timestamp()}).to_string();
        self.redis
            .run(|mut conn| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("EX")
                    .arg(seconds_left)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&message)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, jti = %caller.jti, "revocation not written");
                ApiError::unavailable(
                    "revocation_unavailable",
                    "logout cannot be guaranteed right now (revocation store unreachable); the token is still valid, retry shortly",
                )
            })?;
        if let Err(err) = self.record_logout(caller.user_id, jti_uuid).await {
            // The revocation is in force; only the audit trail missed a row.
            tracing::error!(error = %err, jti = %caller.jti, "logout audit row not written");
        }
        tracing::info!(user_id = %caller.user_id, jti = %caller.jti, "token revoked");
        Ok(())
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "token_expiry"))]
    async fn token_expiry(&self, jti: Uuid, user_id: Uuid) -> Option<DateTime<Utc>> {
        let lookup = async {
            let client = self.pool.get().await.map_err(ApiError::from)?;
            let row = client
                .query_opt(
                    "SELECT expires_at FROM auth.issued_tokens WHERE jti = $1 AND user_id = $2",
                    &[&jti, &user_id],
                )
                .await?;
            row.map(|r| r.try_get(0))
                .transpose()
                .map_err(ApiError::from)
        };
        match lookup.await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "token expiry unknown; revoking for the maximum lifetime");
                None
            }
        }
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "record_logout"))]
    async fn record_logout(&self, user_id: Uuid, jti: Option<Uuid>) -> ApiResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(jti) = jti {
            tx.execute(
                "UPDATE auth.issued_tokens SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL",
                &[&jti],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO auth.audit_events (user_id, event, jti) VALUES ($1, 'logout', $2)",
            &[&user_id, &jti],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets tokens that expired more than a day ago (their revocations expired in Redis).
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "prune_expired_tokens"))]
    pub async fn prune_expired_tokens(&self) -> ApiResult<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM auth.issued_tokens WHERE expires_at < now() - interval '1 day'",
                &[],
            )
            .await?)
    }
}

/// Saturation is the client's cue to come back shortly (503 + Retry-After); anything else
/// is our fault.
fn hashing_failed(err: &PasswordError, internal_message: &'static str) -> ApiError {
    match err {
        PasswordError::Busy => ApiError::unavailable(
            "overloaded",
            "too many logins and registrations are in progress; retry shortly",
        )
        .with_retry_after(1),
        other => {
            tracing::error!(error = %other, "password hashing failed to run");
            ApiError::internal(internal_message)
        }
    }
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with this email already exists")
        .with_field("email")
}
