-- code: P11a
-- priority: 11
-- priority_name: TB
-- headline: true
-- name: TB symptom screen within 24 hours
-- definition: Percentage of receptions with a TB symptom screen, linked to the reception,
--    within 24 hours of it (reception <= screen <= reception + 24h), whatever its result.
-- numerator: Receptions with a linked symptom_screen within 24h
-- denominator: Receptions in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 24 HOUR AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
),
first_screen AS (
  SELECT t.reception_id, t.event_datetime, t.source_file, t.source_line
  FROM receptions AS r
  JOIN conformed.tb_screening AS t ON t.reception_id = r.reception_id
  WHERE t.source_month BETWEEN $first_source_month AND $last_source_month
    AND t.event_type = 'symptom_screen'
    AND t.event_datetime BETWEEN r.reception_datetime AND r.window_end
  QUALIFY row_number() OVER (PARTITION BY t.reception_id ORDER BY t.event_datetime, t.tb_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN s.reception_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE WHEN s.reception_id IS NOT NULL THEN 'screened within 24h' ELSE 'no symptom screen within 24h' END AS reason,
  r.reception_datetime AS anchor_datetime,
  s.event_datetime,
  r.window_end,
  CASE WHEN s.reception_id IS NULL THEN r.source_file ELSE s.source_file END AS source_file,
  CASE WHEN s.reception_id IS NULL THEN r.source_line ELSE s.source_line END AS source_line
FROM receptions AS r
LEFT JOIN first_screen AS s ON s.reception_id = r.reception_id
