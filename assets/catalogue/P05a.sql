-- code: P05a
-- priority: 5
-- priority_name: Future funding
-- headline: true
-- name: Healthcare activity per 1,000 prisoners
-- definition: Healthcare activities per 1,000 population-months: first and second
--    reception screens done, BBV samples taken, TB events, smoking events and prescription
--    items, each counted in the month of its own date and time at the prison where it
--    happened (screens by the screen, BBV by the sample), linked to a reception or not.
--    The denominator is the sum of the monthly average populations. A screen or sample
--    more than a calendar month after its reception or offer is not read (month M reads
--    source months M-1 to M+2 only).
-- numerator: First and second screens done + BBV samples + TB events + smoking events + prescription items in the month, at their prison
-- denominator: Population-months (sum of monthly average populations)
-- unit: per 1,000 per month
-- multiplier: 1000
-- polarity: neutral
-- target:
-- method: byar
-- denominator_kind: population_months
-- aggregation: sum
-- anchor: month of each activity

WITH activity AS (
  SELECT prison_code, 'first_screen:' || reception_id AS unit_id, person_key, 'first screen' AS reason,
         first_screen_datetime AS activity_datetime, source_file, source_line
  FROM conformed.reception_screening
  WHERE source_month BETWEEN $first_source_month AND $last_source_month
    AND first_screen_datetime >= $month_start AND first_screen_datetime < $month_end
  UNION ALL
  SELECT prison_code, 'second_screen:' || reception_id, person_key, 'second screen',
         second_screen_datetime, source_file, source_line
  FROM conformed.reception_screening
  WHERE source_month BETWEEN $first_source_month AND $last_source_month
    AND second_screen_datetime >= $month_start AND second_screen_datetime < $month_end
  UNION ALL
  SELECT prison_code, 'bbv_sample:' || bbv_event_id, person_key, virus || ' sample',
         sample_datetime, source_file, source_line
  FROM conformed.bbv_testing
  WHERE source_month BETWEEN $first_source_month AND $last_source_month
    AND sample_datetime >= $month_start AND sample_datetime < $month_end
  UNION ALL
  SELECT prison_code, 'tb:' || tb_event_id, person_key, 'TB ' || event_type,
         event_datetime, source_file, source_line
  FROM conformed.tb_screening
  WHERE source_month = $month
  UNION ALL
  SELECT prison_code, 'smoking:' || smoking_event_id, person_key, 'smoking ' || event_type,
         event_datetime, source_file, source_line
  FROM conformed.smoking
  WHERE source_month = $month
  UNION ALL
  SELECT prison_code, 'item:' || item_id, person_key, 'prescription item',
         issue_datetime, source_file, source_line
  FROM conformed.prescribing
  WHERE source_month = $month
)
SELECT
  prison_code,
  'activity' AS unit_type,
  unit_id,
  person_key,
  1 AS numerator,
  0.0 AS denominator,
  reason,
  activity_datetime AS anchor_datetime,
  activity_datetime AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM activity
UNION ALL
SELECT
  prison_code,
  'population' AS unit_type,
  prison_code || ' ' || month AS unit_id,
  NULL::VARCHAR AS person_key,
  0 AS numerator,
  average_population::DOUBLE AS denominator,
  'average population' AS reason,
  $month_start AS anchor_datetime,
  NULL::TIMESTAMP AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM conformed.population
WHERE month = $month
