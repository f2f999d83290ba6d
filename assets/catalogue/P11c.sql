-- code: P11c
-- priority: 11
-- priority_name: TB
-- headline: false
-- name: Symptomatic screens referred within 24 hours
-- definition: Percentage of positive TB symptom screens (symptoms present) referred to the
--    NHS TB service within 24 hours of the screen (screen <= referral <= screen + 24h).
--    Screens count at their own prison in the month of the screen, linked to a reception
--    or not.
-- numerator: Positive symptom_screen events with a referral within 24h of the event
-- denominator: Positive symptom_screen events in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: month of the screen

WITH positive_screens AS (
  SELECT t.*, t.event_datetime + INTERVAL 24 HOUR AS window_end
  FROM conformed.tb_screening AS t
  WHERE t.source_month = $month
    AND t.event_type = 'symptom_screen'
    AND t.result = 'positive'
)
SELECT
  prison_code,
  'event' AS unit_type,
  tb_event_id AS unit_id,
  person_key,
  CASE WHEN referral_datetime BETWEEN event_datetime AND window_end THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE
    WHEN referral_datetime IS NULL THEN 'not referred'
    WHEN referral_datetime < event_datetime THEN 'referred before screen'
    WHEN referral_datetime <= window_end THEN 'referred within 24h'
    ELSE 'referred after 24h'
  END AS reason,
  event_datetime AS anchor_datetime,
  referral_datetime AS event_datetime,
  window_end,
  source_file,
  source_line
FROM positive_screens
