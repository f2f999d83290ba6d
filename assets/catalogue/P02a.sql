-- code: P02a
-- priority: 2
-- priority_name: Information and intelligence sharing
-- headline: false
-- name: Reception record completeness
-- definition: Percentage of receptions whose record has the first screen date and time,
--    substance misuse need, self-harm risk and social care need all recorded (not null).
-- numerator: Receptions with first_screen_datetime, substance_misuse_need, self_harm_risk and social_care_need all recorded
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
  SELECT
    r.*,
    concat_ws(', ',
      CASE WHEN r.first_screen_datetime IS NULL THEN 'first screen' END,
      CASE WHEN r.substance_misuse_need IS NULL THEN 'substance misuse need' END,
      CASE WHEN r.self_harm_risk IS NULL THEN 'self-harm risk' END,
      CASE WHEN r.social_care_need IS NULL THEN 'social care need' END
    ) AS missing
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN missing = '' THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE WHEN missing = '' THEN 'complete' ELSE 'missing ' || missing END AS reason,
  reception_datetime AS anchor_datetime,
  NULL::TIMESTAMP AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM receptions
