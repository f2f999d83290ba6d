-- code: P06a
-- priority: 6
-- priority_name: Substance misuse
-- headline: false
-- name: Substance misuse need at reception
-- definition: Percentage of receptions with substance misuse need recorded whose need was
--    recorded as present. Receptions where it was not recorded are excluded.
-- numerator: Receptions with substance_misuse_need true
-- denominator: Receptions with substance_misuse_need recorded (true or false)
-- unit: %
-- multiplier: 100
-- polarity: neutral
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN substance_misuse_need THEN 1 ELSE 0 END AS numerator,
  CASE WHEN substance_misuse_need IS NOT NULL THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN substance_misuse_need IS NULL THEN 'need not recorded'
    WHEN substance_misuse_need THEN 'need'
    ELSE 'no need'
  END AS reason,
  reception_datetime AS anchor_datetime,
  NULL::TIMESTAMP AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM conformed.reception_screening
WHERE source_month = $month
