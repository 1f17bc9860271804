-- The records search of services/records (store.rs `SEARCH_SQL`), one random user and term per
-- transaction: the user's partition of the GIN (user_id, search_text gin_trgm_ops) index gives
-- the candidates (substring, then word similarity), ranked by exact field match, substring,
-- then the best per-field word similarity. LIMIT 100 like the service, which caches the
-- largest page. Needs -D users=N and the session option pg_trgm.word_similarity_threshold=0.4
-- (perf/pgbench/run.sh sets PGOPTIONS like the service).
\set u random(1, :users)
\set w random(1, 16)
SELECT r.id, r.user_id, r.artist, r.name, r.format, r.catalog_number, r.label, r.record_grade,
       r.sleeve_grade, r.has_insert, r.has_booklet, r.has_obi_strip, r.has_factory_sleeve,
       r.is_promo, r.notes, r.purchased_at, r.price_paid, r.created_at, r.updated_at,
       (CASE WHEN q.q IN (r.artist_folded, r.name_folded, r.label_folded, r.catalog_folded) THEN 2.0
             WHEN r.search_text LIKE q.pattern THEN 1.0
             ELSE 0.0 END
        + GREATEST(word_similarity(q.q, r.artist_folded), word_similarity(q.q, r.name_folded),
                   word_similarity(q.q, r.label_folded), word_similarity(q.q, r.catalog_folded)))::float8 AS score
FROM records.records r,
     (SELECT f.q, '%' || replace(replace(replace(f.q, '\', '\\'), '%', '\%'), '_', '\_') || '%' AS pattern
      FROM (SELECT records.fold(t.term) AS q
            FROM (SELECT (ARRAY['velvet', 'comets', 'midnight wolves', 'golden', 'night', 'electrique',
                                'velvat', 'commets', 'satelites', 'cafe', 'deja', 'blue note', 'ravens',
                                'summer love', 'warp', 'ocean'])[:w::int] AS term) AS t) AS f) AS q
WHERE r.user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid
  AND (r.search_text LIKE q.pattern OR q.q <% r.search_text)
ORDER BY score DESC, r.created_at DESC, r.id DESC
LIMIT 100;
