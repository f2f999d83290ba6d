-- code: P06b
-- priority: 6
-- priority_name: Substance misuse
-- headline: true
-- name: Treatment started within 7 days
-- definition: Percentage of receptions with a substance misuse need whose treatment started
--    within 7 days of the reception (reception <= treatment start <= reception + 7 x 24h).
--    A start recorded before the reception does not count.
-- numerator: Receptions with need whose substance treatment started within 7 days
-- denominator: Receptions with substance_misuse_need true
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 7 DAY AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN substance_misuse_need
        AND substance_treatment_start_datetime BETWEEN reception_datetime AND window_end
       THEN 1 ELSE 0 END AS numerator,
  CASE WHEN substance_misuse_need THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN substance_misuse_need IS NULL THEN 'need not recorded'
    WHEN NOT substance_misuse_need THEN 'no need'
    WHEN substance_treatment_start_datetime IS NULL THEN 'no treatment start'
    WHEN substance_treatment_start_datetime < reception_datetime THEN 'started before reception'
    WHEN substance_treatment_start_datetime <= window_end THEN 'started within 7 days'
    ELSE 'started after 7 days'
  END AS reason,
  reception_datetime AS anchor_datetime,
  substance_treatment_start_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM receptions
