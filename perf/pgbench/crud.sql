-- The records CRUD of services/records (store.rs), one of each per pgbench transaction: get
-- by id, first page of the list, update (a PATCH), create and delete. Each mutation is one
-- statement, its cache version bump a data-modifying CTE (store.rs `with_bump`). Rows
-- created here are deleted in the same script, so the dataset keeps its size. Needs
-- -D users=N -D records=M (perf-dataset ids). Run with -M prepared, as the service prepares
-- its statements (the casts make the parameters' types unambiguous).
\set j random(1, :records)
\set u (:j % :users) + 1

-- read
SELECT id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade,
       has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at,
       price_paid, created_at, updated_at
FROM records.records
WHERE id = ('10000000-0000-4000-8000-' || lpad(to_hex(:j::int), 12, '0'))::uuid
  AND user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid;

-- list (first page of 50, +1 to know whether there is a next page)
SELECT id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade,
       has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at,
       price_paid, created_at, updated_at
FROM records.records
WHERE user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid
ORDER BY created_at DESC, id DESC
LIMIT 51;

-- update: a PATCH of notes, in store.rs `PATCH_SQL`'s shape (every column CASE-assigned)
WITH changed AS (
  UPDATE records.records
  SET
      artist = CASE WHEN false THEN NULL::text ELSE artist END,
      name = CASE WHEN false THEN NULL::text ELSE name END,
      format = CASE WHEN false THEN NULL::text ELSE format END,
      catalog_number = CASE WHEN false THEN NULL::text ELSE catalog_number END,
      label = CASE WHEN false THEN NULL::text ELSE label END,
      record_grade = CASE WHEN false THEN NULL::text ELSE record_grade END,
      sleeve_grade = CASE WHEN false THEN NULL::text ELSE sleeve_grade END,
      has_insert = CASE WHEN false THEN NULL::boolean ELSE has_insert END,
      has_booklet = CASE WHEN false THEN NULL::boolean ELSE has_booklet END,
      has_obi_strip = CASE WHEN false THEN NULL::boolean ELSE has_obi_strip END,
      has_factory_sleeve = CASE WHEN false THEN NULL::boolean ELSE has_factory_sleeve END,
      is_promo = CASE WHEN false THEN NULL::boolean ELSE is_promo END,
      notes = CASE WHEN true THEN 'pgbench ' || :j::text ELSE notes END,
      purchased_at = CASE WHEN false THEN NULL::date ELSE purchased_at END,
      price_paid = CASE WHEN false THEN NULL::numeric ELSE price_paid END,
      updated_at = clock_timestamp()
  WHERE id = ('10000000-0000-4000-8000-' || lpad(to_hex(:j::int), 12, '0'))::uuid
    AND user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid
  RETURNING id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade,
            has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at,
            price_paid, created_at, updated_at
), bumped AS (
  INSERT INTO records.cache_versions (user_id, version)
  SELECT user_id, 1 FROM changed
  ON CONFLICT (user_id) DO UPDATE SET version = records.cache_versions.version + 1
)
SELECT * FROM changed;

-- create
WITH changed AS (
  INSERT INTO records.records (id, user_id, artist, name, format, catalog_number, label,
                               record_grade, sleeve_grade, price_paid)
  VALUES (gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid,
          'Pgbench Comets', 'Transaction ' || :j::text, 'LP', 'PG-' || :j::text, 'Warp', 'VG+', 'VG', 12.50)
  RETURNING id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade,
            has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at,
            price_paid, created_at, updated_at
), bumped AS (
  INSERT INTO records.cache_versions (user_id, version)
  SELECT user_id, 1 FROM changed
  ON CONFLICT (user_id) DO UPDATE SET version = records.cache_versions.version + 1
)
SELECT id AS new_id FROM changed \gset

-- delete
WITH changed AS (
  DELETE FROM records.records
  WHERE id = :new_id::uuid
    AND user_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:u::int), 12, '0'))::uuid
  RETURNING user_id
), bumped AS (
  INSERT INTO records.cache_versions (user_id, version)
  SELECT user_id, 1 FROM changed
  ON CONFLICT (user_id) DO UPDATE SET version = records.cache_versions.version + 1
)
SELECT user_id FROM changed;
