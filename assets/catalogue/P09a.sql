-- code: P09a
-- priority: 9
-- priority_name: Serious risk of harm
-- headline: true
-- name: Self-harm risk referred to mental health within 24 hours
-- definition: Percentage of receptions with a risk of self-harm identified that were
--    referred to mental health services within 24 hours of the reception (reception <=
--    referral <= reception + 24h). A referral before the reception does not count. The
--    target of 90% is a local illustrative target, configurable in this file.
-- numerator: Receptions with self_harm_risk true and a mental health referral within 24h
-- denominator: Receptions with self_harm_risk true
-- unit: %
-- multiplier: 100
-- polarity: high
-- target: 90
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
  CASE WHEN self_harm_risk
        AND mental_health_referral_datetime BETWEEN reception_datetime AND window_end
       THEN 1 ELSE 0 END AS numerator,
  CASE WHEN self_harm_risk THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN self_harm_risk IS NULL THEN 'risk not recorded'
    WHEN NOT self_harm_risk THEN 'no risk'
    WHEN mental_health_referral_datetime IS NULL THEN 'not referred'
    WHEN mental_health_referral_datetime < reception_datetime THEN 'referred before reception'
    WHEN mental_health_referral_datetime <= window_end THEN 'referred within 24h'
    ELSE 'referred after 24h'
  END AS reason,
  reception_datetime AS anchor_datetime,
  mental_health_referral_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM receptions
