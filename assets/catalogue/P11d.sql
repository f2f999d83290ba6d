-- code: P11d
-- priority: 11
-- priority_name: TB
-- headline: false
-- name: TB cases per 100,000 person-years
-- definition: Active TB diagnoses (diagnosis events with result positive, one per notified
--    case) per 100,000 person-years, where person-years are the sum of the monthly
--    average populations divided by 12. Diagnoses count at their own prison in the month
--    of the diagnosis, linked to a reception or not.
-- numerator: Diagnosis events with result positive in the month
-- denominator: Person-years (sum of monthly average populations / 12)
-- unit: per 100,000
-- multiplier: 100000
-- polarity: low
-- target:
-- method: byar
-- denominator_kind: person_years
-- aggregation: sum
-- anchor: month of the diagnosis

SELECT
  prison_code,
  'event' AS unit_type,
  tb_event_id AS unit_id,
  person_key,
  1 AS numerator,
  0.0 AS denominator,
  'active TB diagnosed' AS reason,
  event_datetime AS anchor_datetime,
  event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM conformed.tb_screening
WHERE source_month = $month
  AND event_type = 'diagnosis'
  AND result = 'positive'
UNION ALL
SELECT
  prison_code,
  'population' AS unit_type,
  prison_code || ' ' || month AS unit_id,
  NULL::VARCHAR AS person_key,
  0 AS numerator,
  average_population / 12.0 AS denominator,
  'average population / 12' AS reason,
  $month_start AS anchor_datetime,
  NULL::TIMESTAMP AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM conformed.population
WHERE month = $month
