-- code: P08b
-- priority: 8
-- priority_name: Prescribing
-- headline: false
-- name: Gabapentinoid and opioid co-prescribing per 1,000
-- definition: Distinct persons issued both a gabapentinoid item and an opioid analgesic
--    item (BNF 4.7.2) at the same prison in the period, per 1,000 of the mean monthly
--    average population over the period. The two items need not be in the same month of a
--    quarter or year. Each month's member rows hold one row per person and drug group
--    present that month; the month's numerator is on the gabapentinoid row of persons with
--    both.
-- numerator: Distinct persons with both a gabapentinoid and an opioid_analgesic item at the prison in the period
-- denominator: Mean monthly average population over the period
-- unit: per 1,000
-- multiplier: 1000
-- polarity: low
-- target:
-- method: byar
-- denominator_kind: mean_population
-- aggregation: distinct_persons
-- components: gabapentinoid, opioid_analgesic
-- anchor: month of the item

WITH items AS (
  SELECT p.item_id, p.prison_code, p.person_key, upper(p.bnf_code) AS bnf_code, p.issue_datetime,
         p.source_file, p.source_line
  FROM conformed.prescribing AS p
  WHERE p.source_month = $month
),
prefixes AS (
  SELECT upper(bnf_prefix) AS bnf_prefix, "group" AS drug_group
  FROM conformed.drug_groups
  WHERE "group" IN ('gabapentinoid', 'opioid_analgesic')
),
person_groups AS (  -- each person's first item of each group at each prison this month
  SELECT i.prison_code, i.person_key, g.drug_group, i.issue_datetime, i.source_file, i.source_line
  FROM items AS i
  JOIN prefixes AS g ON starts_with(i.bnf_code, g.bnf_prefix)
  QUALIFY row_number() OVER (
    PARTITION BY i.prison_code, i.person_key, g.drug_group ORDER BY i.issue_datetime, i.item_id) = 1
),
both_groups AS (
  SELECT prison_code, person_key, count(*) = 2 AS has_both
  FROM person_groups
  GROUP BY prison_code, person_key
)
SELECT
  pg.prison_code,
  'person' AS unit_type,
  pg.person_key AS unit_id,
  pg.person_key,
  CASE WHEN b.has_both AND pg.drug_group = 'gabapentinoid' THEN 1 ELSE 0 END AS numerator,
  0.0 AS denominator,
  CASE WHEN b.has_both THEN 'both groups this month' ELSE pg.drug_group || ' only this month' END AS reason,
  pg.issue_datetime AS anchor_datetime,
  pg.issue_datetime AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  pg.source_file,
  pg.source_line,
  pg.drug_group AS component
FROM person_groups AS pg
JOIN both_groups AS b ON b.prison_code = pg.prison_code AND b.person_key = pg.person_key
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
