-- The records search of services/records (store.rs `search`), one random user and term per
-- transaction: GIN (user_id, search_text gin_trgm_ops) candidates, ranked by exact field match,
-- substring, then word similarity. Needs -D users=N and the session option
-- pg_trgm.word_similarity_threshold=0.5 (perf/pgbench/run.sh sets PGOPTIONS like the service).
\set u random(1, :users)
\set w random(1, 16)
WITH t AS (
    SELECT (ARRAY['velvet', 'comets', 'midnight wolves', 'golden', 'night', 'electrique',
                  'velvat', 'commets', 'satelites', 'cafe', 'deja', 'blue note', 'ravens',
                  'summer love', 'warp', 'ocean'])[:w] AS term
), q AS (
    SELECT records.fold(t.term) AS q, records.fold(t.term) AS pattern FROM t
)
SELECT r.id, r.user_id, r.artist, r.name, r.format, r.catalog_number, r.label, r.record_grade,
       r.sleeve_grade, r.has_insert, r.has_booklet, r.has_obi_strip, r.has_factory_sleeve,
       r.is_promo, r.notes, r.purchased_at, r.price_paid, r.created_at, r.updated_at,
       (CASE WHEN q.q IN (records.fold(r.artist), records.fold(r.name),
                          records.fold(coalesce(r.label, '')), records.fold(coalesce(r.catalog_number, '')))
             THEN 2.0
             WHEN r.search_text LIKE '%' || q.pattern || '%' THEN 1.0
             ELSE 0.0 END
        + GREATEST(word_similarity(q.q, records.fold(r.artist)),
                   word_similarity(q.q, records.fold(r.name)),
                   word_similarity(q.q, records.fold(coalesce(r.label, ''))),
                   word_similarity(q.q, records.fold(coalesce(r.catalog_number, '')))))::float8 AS score
FROM records.records r, q
WHERE r.user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u), 12, '0'))::uuid
  AND (q.q <% r.search_text OR r.search_text LIKE '%' || q.pattern || '%')
ORDER BY score DESC, r.created_at DESC, r.id DESC
LIMIT 20;
