-- code: P12f
-- priority: 12
-- priority_name: Opt-out BBV testing
-- headline: false
-- name: Positives referred within 28 days
-- definition: Percentage of positive blood-borne virus samples referred to specialist
--    treatment within 28 days of the sample (sample <= referral <= sample + 28 x 24h).
--    An HCV sample is positive when its RNA result is positive; HBV and HIV samples when
--    their result is positive. Samples count at their own prison in the month the sample
--    was taken, linked to a reception or not.
-- numerator: HCV RNA positive, HBV positive and HIV positive samples referred within 28 days of the sample
-- denominator: HCV RNA positive, HBV positive and HIV positive samples taken in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: sample month

WITH positive_samples AS (
  SELECT b.*, b.sample_datetime + INTERVAL 28 DAY AS window_end
  FROM conformed.bbv_testing AS b
  WHERE b.source_month BETWEEN $first_source_month AND $last_source_month
    AND b.sample_datetime >= $month_start AND b.sample_datetime < $month_end
    AND ((b.virus = 'HCV' AND b.hcv_rna_result = 'positive')
      OR (b.virus IN ('HBV', 'HIV') AND b.result = 'positive'))
)
SELECT
  prison_code,
  'event' AS unit_type,
  bbv_event_id AS unit_id,
  person_key,
  CASE WHEN referral_datetime BETWEEN sample_datetime AND window_end THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  virus || ' positive, ' || CASE
    WHEN referral_datetime IS NULL THEN 'not referred'
    WHEN referral_datetime < sample_datetime THEN 'referred before sample'
    WHEN referral_datetime <= window_end THEN 'referred within 28 days'
    ELSE 'referred after 28 days'
  END AS reason,
  sample_datetime AS anchor_datetime,
  referral_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM positive_samples
