-- records, partitioned by user: every search, list and lookup names one user, and a user's
-- slice of the trigram index is what a search should read.
--
-- Why: with one table, the GIN (user_id, search_text) index keeps one posting list per trigram
-- across ALL users. A search for "night" by one user (1k of 1M rows) still decodes the global
-- posting lists of its six trigrams (~600 index pages, 8-20 ms) before intersecting them with
-- the user's 1k rows. Hash partitions by user_id divide every posting list by the partition
-- count; the planner prunes to the caller's partition before planning the scan (perf/README.md,
-- "Records search at 1M rows", has the plans). A GiST (user_id, search_text) index via
-- btree_gist was measured too and read 3.5k-14k pages per scan: its tree is not ordered by
-- user, so it cannot serve as the per-user slice.
--
-- 32 partitions: at 1M records / 1k users each holds ~31k rows, so a trigram's posting list in
-- it is a few pages. Many more partitions (128 was measured) make the user's own rows a large
-- share of a partition; the planner then reads all of them and filters with the trigram
-- operators, which it prices far below their real cost (half the searches per second).
--
-- The four folded fields are stored (generated columns): ranking compares the query with each
-- of them, and folding (unaccent + lower) at query time was half of the per-hit cost.
--
-- The table is rebuilt in this migration's transaction: reads and writes of records wait until
-- it commits (28 s for 1M records on the shared 2-core dev machine, indexes included).

ALTER TABLE records.records RENAME TO records_unpartitioned;
ALTER INDEX records.records_pkey RENAME TO records_unpartitioned_pkey;
ALTER INDEX records.records_user_created_idx RENAME TO records_unpartitioned_user_created_idx;
ALTER INDEX records.records_user_search_trgm_idx RENAME TO records_unpartitioned_user_search_trgm_idx;

-- The same columns, defaults, CHECK constraints (same names) and search_text as V1, plus the
-- folded fields.
CREATE TABLE records.records (
    LIKE records.records_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED,
    artist_folded      text GENERATED ALWAYS AS (records.fold(artist)) STORED,
    name_folded        text GENERATED ALWAYS AS (records.fold(name)) STORED,
    label_folded       text GENERATED ALWAYS AS (records.fold(coalesce(label, ''))) STORED,
    catalog_folded     text GENERATED ALWAYS AS (records.fold(coalesce(catalog_number, ''))) STORED,
    -- A partitioned table's unique keys must hold the partition key. Ids are minted by the
    -- service (UUIDv7), and every statement names the owner anyway.
    PRIMARY KEY (id, user_id)
) PARTITION BY HASH (user_id);

DO $$
BEGIN
    FOR remainder IN 0..31 LOOP
        EXECUTE format(
            'CREATE TABLE records.%I PARTITION OF records.records FOR VALUES WITH (MODULUS 32, REMAINDER %s)',
            'records_p' || lpad(remainder::text, 2, '0'), remainder);
    END LOOP;
END
$$;

INSERT INTO records.records (id, user_id, artist, name, format, catalog_number, label, record_grade,
                             sleeve_grade, has_insert, has_booklet, has_obi_strip, has_factory_sleeve,
                             is_promo, notes, purchased_at, price_paid, created_at, updated_at)
SELECT id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade,
       has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at,
       price_paid, created_at, updated_at
FROM records.records_unpartitioned;

DROP TABLE records.records_unpartitioned;

-- Built after the copy (one sort per partition instead of row-by-row maintenance).
-- Keyset pagination: newest first, id breaks ties between rows created in the same microsecond.
CREATE INDEX records_user_created_idx ON records.records (user_id, created_at DESC, id DESC);
-- Search: `user_id = $1 AND (search_text LIKE '%q%' OR fold(q) <% search_text)`, per partition.
-- New entries wait in GIN's pending list, which every search of the partition reads in full
-- until it is merged. At the 4 MB default, a CRUD load grew the lists to 100-230 pages per
-- partition and searches 4x slower (the planner then preferred scanning the user's rows);
-- 64 kB keeps a list to a few pages and merges it every ~100 written rows.
CREATE INDEX records_user_search_trgm_idx ON records.records
    USING gin (user_id, search_text public.gin_trgm_ops) WITH (gin_pending_list_limit = 64);

ANALYZE records.records;
