-- code: P04a
-- priority: 4
-- priority_name: PFI commissioning
-- headline: true
-- name: PFI vs public gap in second assessment within 7 days
-- definition: P01b (second health assessment within 7 days) in PFI prisons minus P01b in
--    public-sector prisons, in percentage points, for England only. Each group's value
--    comes from its summed numerators and denominators; contracted prisons are in neither
--    group. There is no value when either group's denominator is zero. Numerator and
--    denominator are left empty in the output; the groups' figures are kept for the
--    interval.
-- numerator: P01b in PFI prisons (numerator and denominator summed over the PFI prisons)
-- denominator: P01b in public prisons (England only; Newcombe hybrid score interval)
-- unit: percentage points
-- multiplier: 100
-- polarity: neutral
-- target:
-- method: newcombe
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month (as P01b)
-- derived: gap P01b operator pfi - public

-- The engine derives P04a for every period from P01b's aggregates (the `derived` rule
-- above), so this query is not run to compute it: it shows the same figure for one month
-- from the prison-month table, for analysts to check.
WITH groups AS (
  SELECT p.operator, sum(pm.numerator) AS numerator, sum(pm.denominator) AS denominator
  FROM indicators.prison_month AS pm
  JOIN conformed.prisons AS p ON p.prison_code = pm.prison_code
  WHERE pm.indicator_id = 'P01b'
    AND pm.month = CAST($month_start AS DATE)
    AND p.operator IN ('pfi', 'public')
  GROUP BY p.operator
),
pivoted AS (
  SELECT
    coalesce(max(numerator) FILTER (WHERE operator = 'pfi'), 0) AS numerator_pfi,
    coalesce(max(denominator) FILTER (WHERE operator = 'pfi'), 0) AS denominator_pfi,
    coalesce(max(numerator) FILTER (WHERE operator = 'public'), 0) AS numerator_public,
    coalesce(max(denominator) FILTER (WHERE operator = 'public'), 0) AS denominator_public
  FROM groups
)
SELECT
  *,
  CASE WHEN denominator_pfi > 0 AND denominator_public > 0
       THEN 100 * (numerator_pfi / denominator_pfi - numerator_public / denominator_public)
  END AS value
FROM pivoted
