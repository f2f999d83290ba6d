-- code: P08a
-- priority: 8
-- priority_name: Prescribing
-- headline: true
-- name: Gabapentinoid prescribing per 1,000
-- definition: Distinct persons issued a gabapentinoid item (gabapentin or pregabalin, by
--    the BNF prefixes of the gabapentinoid drug group) at the prison in the period, per
--    1,000 of the mean monthly average population over the period. Over a quarter or year
--    a person counts once per prison however many months they had an item; higher levels
--    add up the prison counts and the prison mean populations.
-- numerator: Distinct persons with a gabapentinoid item in the period at the prison
-- denominator: Mean monthly average population over the period
-- unit: per 1,000
-- multiplier: 1000
-- polarity: low
-- target:
-- method: byar
-- denominator_kind: mean_population
-- aggregation: distinct_persons
-- components: gabapentinoid
-- anchor: month of the item

WITH gabapentinoid_items AS (
  SELECT p.*
  FROM conformed.prescribing AS p
  WHERE p.source_month = $month
    AND EXISTS (
      SELECT 1 FROM conformed.drug_groups AS g
      WHERE g."group" = 'gabapentinoid' AND starts_with(upper(p.bnf_code), upper(g.bnf_prefix))
    )
  QUALIFY row_number() OVER (PARTITION BY p.prison_code, p.person_key ORDER BY p.issue_datetime, p.item_id) = 1
)
SELECT
  prison_code,
  'person' AS unit_type,
  person_key AS unit_id,
  person_key,
  1 AS numerator,
  0.0 AS denominator,
  'gabapentinoid item' AS reason,
  issue_datetime AS anchor_datetime,
  issue_datetime AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line,
  'gabapentinoid' AS component
FROM gabapentinoid_items
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
  source_line,
  NULL::VARCHAR AS component
FROM conformed.population
WHERE month = $month
