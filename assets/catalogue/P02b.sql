-- code: P02b
-- priority: 2
-- priority_name: Information and intelligence sharing
-- headline: true
-- name: Valid record rate
-- definition: Percentage of the rows read from the five monthly event extracts that passed
--    validation and were loaded, counted in the month of the file and at the prison each
--    row names. Rows of rejected files are reported separately and not counted here;
--    quarantined rows without a valid prison count at England level only.
-- numerator: Rows loaded, all five event extracts
-- denominator: Rows read (loaded + quarantined), all five event extracts
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: file month

-- One member row per extract and prison (prison_code null: quarantined rows with no valid prison).
WITH loaded_files AS (
  SELECT source, month, max(file) AS file
  FROM quality.file_loads
  WHERE status IN ('loaded', 'unchanged')
  GROUP BY source, month
)
SELECT
  s.prison_code,
  'rows' AS unit_type,
  s.source AS unit_id,
  NULL::VARCHAR AS person_key,
  s.rows_loaded AS numerator,
  s.rows_read::DOUBLE AS denominator,
  s.rows_loaded || ' of ' || s.rows_read || ' rows loaded' AS reason,
  $month_start AS anchor_datetime,
  NULL::TIMESTAMP AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  f.file AS source_file,
  NULL::INTEGER AS source_line
FROM quality.summary AS s
LEFT JOIN loaded_files AS f ON f.source = s.source AND f.month = s.month
WHERE s.month = $month
  AND s.source IN ('reception_screening', 'bbv_testing', 'tb_screening', 'smoking', 'prescribing')
