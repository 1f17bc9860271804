-- records schema: the collection, trigram search and per-user cache versions.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
-- btree_gin lets one GIN index hold both user_id and the trigrams, so a per-user search is a
-- single index scan instead of a trigram scan across every user's records.
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

CREATE SCHEMA IF NOT EXISTS records;

-- unaccent() is only STABLE (its dictionary could be swapped at run time), so it cannot appear
-- in an index or a generated column. Naming the dictionary explicitly pins the behaviour, which
-- makes declaring this wrapper IMMUTABLE honest. Every schema-qualified name keeps it independent
-- of search_path.
CREATE FUNCTION records.fold(input text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN pg_catalog.lower(public.unaccent('public.unaccent'::regdictionary, input));

CREATE TABLE records.records (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL,
    artist             text NOT NULL CHECK (char_length(artist) BETWEEN 1 AND 500),
    name               text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 500),
    format             text NOT NULL CHECK (char_length(format) BETWEEN 1 AND 50),
    catalog_number     text CHECK (char_length(catalog_number) <= 100),
    label              text CHECK (char_length(label) <= 200),
    record_grade       text CHECK (record_grade IN ('M', 'NM', 'VG+', 'VG', 'G+', 'G', 'F', 'P')),
    sleeve_grade       text CHECK (sleeve_grade IN ('M', 'NM', 'VG+', 'VG', 'G+', 'G', 'F', 'P')),
    has_insert         boolean NOT NULL DEFAULT false,
    has_booklet        boolean NOT NULL DEFAULT false,
    has_obi_strip      boolean NOT NULL DEFAULT false,
    has_factory_sleeve boolean NOT NULL DEFAULT false,
    is_promo           boolean NOT NULL DEFAULT false,
    notes              text CHECK (char_length(notes) <= 5000),
    purchased_at       date,
    price_paid         numeric(10, 2) CHECK (price_paid >= 0),
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The four searchable fields, folded (lower case, accents removed), for the trigram index.
    search_text        text GENERATED ALWAYS AS (
        records.fold(artist || ' ' || name || ' ' || coalesce(label, '') || ' '
                     || coalesce(catalog_number, ''))
    ) STORED
);

-- Keyset pagination: newest first, id breaks ties between rows created in the same microsecond.
CREATE INDEX records_user_created_idx ON records.records (user_id, created_at DESC, id DESC);
-- Search: `user_id = $1 AND (fold(q) <% search_text OR search_text LIKE '%q%')`.
CREATE INDEX records_user_search_trgm_idx ON records.records
    USING gin (user_id, search_text public.gin_trgm_ops);

-- Bumped in the same transaction as every mutation of a user's records; cache keys embed it,
-- so a committed change can never be hidden by a cached search or stats answer.
CREATE TABLE records.cache_versions (
    user_id uuid PRIMARY KEY,
    version bigint NOT NULL
);
