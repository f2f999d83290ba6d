-- code: P12e
-- priority: 12
-- priority_name: Opt-out BBV testing
-- headline: false
-- name: HCV RNA positivity
-- definition: Of the hepatitis C samples taken in the month with an antibody result
--    (positive or negative), the percentage with a positive HCV RNA result. A sample
--    whose result is invalid or not yet known is not in the denominator. Samples count at
--    their own prison in the month the sample was taken (an offer of the previous month
--    may have its sample this month), linked to a reception or not.
-- numerator: HCV samples in the denominator with hcv_rna_result positive
-- denominator: HCV samples whose (antibody) result is positive or negative
-- unit: %
-- multiplier: 100
-- polarity: neutral
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: sample month

WITH samples AS (
  SELECT b.*
  FROM conformed.bbv_testing AS b
  WHERE b.source_month BETWEEN $first_source_month AND $last_source_month
    AND b.virus = 'HCV'
    AND b.sample_datetime >= $month_start AND b.sample_datetime < $month_end
)
SELECT
  prison_code,
  'event' AS unit_type,
  bbv_event_id AS unit_id,
  person_key,
  CASE WHEN result IN ('positive', 'negative') AND hcv_rna_result = 'positive' THEN 1 ELSE 0 END AS numerator,
  CASE WHEN result IN ('positive', 'negative') THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN result IS NULL THEN 'no result'
    WHEN result = 'invalid' THEN 'invalid result'
    WHEN hcv_rna_result IS NULL THEN 'antibody ' || result || ', no RNA result'
    ELSE 'antibody ' || result || ', RNA ' || hcv_rna_result
  END AS reason,
  sample_datetime AS anchor_datetime,
  sample_datetime AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM samples
