-- code: P10a
-- priority: 10
-- priority_name: Health and social care
-- headline: true
-- name: Social care need referred within 28 days
-- definition: Percentage of receptions with a social care need identified that were
--    referred to social care within 28 days of the reception (reception <= referral <=
--    reception + 28 x 24h). A referral before the reception does not count.
-- numerator: Receptions with social_care_need true and a social care referral within 28 days
-- denominator: Receptions with social_care_need true
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 28 DAY AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN social_care_need
        AND social_care_referral_datetime BETWEEN reception_datetime AND window_end
       THEN 1 ELSE 0 END AS numerator,
  CASE WHEN social_care_need THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN social_care_need IS NULL THEN 'need not recorded'
    WHEN NOT social_care_need THEN 'no need'
    WHEN social_care_referral_datetime IS NULL THEN 'not referred'
    WHEN social_care_referral_datetime < reception_datetime THEN 'referred before reception'
    WHEN social_care_referral_datetime <= window_end THEN 'referred within 28 days'
    ELSE 'referred after 28 days'
  END AS reason,
  reception_datetime AS anchor_datetime,
  social_care_referral_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM receptions
