-- auth schema: accounts, the tokens we issued (so logout knows each token's expiry) and an
-- append-only audit trail. Extensions go to `public` so both services' schemas can use them.
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id            uuid PRIMARY KEY,
    -- citext: uniqueness and lookup ignore case, the address keeps the case the user typed.
    email         public.citext NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_length CHECK (char_length(email) BETWEEN 3 AND 254)
);

-- One row per issued JWT. Logout reads `expires_at` to give the revocation key the right TTL
-- (the edge's identity headers carry the jti but not the expiry).
CREATE TABLE auth.issued_tokens (
    jti        uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    kid        text NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX issued_tokens_user_idx ON auth.issued_tokens (user_id);
CREATE INDEX issued_tokens_expires_idx ON auth.issued_tokens (expires_at);

CREATE TABLE auth.audit_events (
    id         bigserial PRIMARY KEY,
    user_id    uuid,
    event      text NOT NULL CHECK (event IN ('register', 'login', 'logout')),
    jti        uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_user_idx ON auth.audit_events (user_id, created_at);
