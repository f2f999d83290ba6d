-- code: P01a
-- priority: 1
-- priority_name: Core service specifications
-- headline: true
-- name: First reception screen within 24 hours
-- definition: Percentage of receptions whose first reception health screen was done
--    within 24 hours of the reception (reception <= first screen <= reception + 24h).
--    The target of 95% is a local illustrative target, configurable in this file.
-- numerator: Receptions with a first screen within 24 hours of reception
-- denominator: Receptions (new and transfers) in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target: 95
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 24 HOUR AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN first_screen_datetime BETWEEN reception_datetime AND window_end THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE
    WHEN first_screen_datetime IS NULL THEN 'not screened'
    WHEN first_screen_datetime <= window_end THEN 'screened within 24h'
    ELSE 'screened after 24h'
  END AS reason,
  reception_datetime AS anchor_datetime,
  first_screen_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM receptions
