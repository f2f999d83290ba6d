-- code: P07a
-- priority: 7
-- priority_name: Smoking
-- headline: false
-- name: Smoking prevalence at reception
-- definition: Percentage of receptions with a smoking status recorded within 7 days whose
--    status is current smoker. The earliest status_recorded event linked to the reception
--    within 7 days (reception <= event <= reception + 7 x 24h; ties broken by the smaller
--    smoking_event_id) decides; later records are ignored.
-- numerator: Receptions whose first status_recorded within 7 days is current
-- denominator: Receptions with a status recorded within 7 days
-- unit: %
-- multiplier: 100
-- polarity: low
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 7 DAY AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
),
first_status AS (
  SELECT s.reception_id, s.smoking_status, s.event_datetime, s.source_file, s.source_line
  FROM receptions AS r
  JOIN conformed.smoking AS s ON s.reception_id = r.reception_id
  WHERE s.source_month BETWEEN $first_source_month AND $last_source_month
    AND s.event_type = 'status_recorded'
    AND s.event_datetime BETWEEN r.reception_datetime AND r.window_end
  QUALIFY row_number() OVER (PARTITION BY s.reception_id ORDER BY s.event_datetime, s.smoking_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN f.smoking_status = 'current' THEN 1 ELSE 0 END AS numerator,
  CASE WHEN f.reception_id IS NOT NULL THEN 1.0 ELSE 0.0 END AS denominator,
  CASE WHEN f.reception_id IS NULL THEN 'no status within 7 days' ELSE 'status ' || f.smoking_status END AS reason,
  r.reception_datetime AS anchor_datetime,
  f.event_datetime,
  r.window_end,
  CASE WHEN f.reception_id IS NULL THEN r.source_file ELSE f.source_file END AS source_file,
  CASE WHEN f.reception_id IS NULL THEN r.source_line ELSE f.source_line END AS source_line
FROM receptions AS r
LEFT JOIN first_status AS f ON f.reception_id = r.reception_id
