-- code: P03a
-- priority: 3
-- priority_name: Continuity of care
-- headline: true
-- name: Medicines reconciliation before second screen
-- definition: Percentage of receptions with a second health assessment whose medicines
--    reconciliation was done at or after the reception and at or before the second
--    screen (reception <= reconciliation <= second screen).
-- numerator: Receptions with meds_reconciliation at or before second_screen (and not before reception)
-- denominator: Receptions with a second screen
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN second_screen_datetime IS NOT NULL
        AND meds_reconciliation_datetime BETWEEN reception_datetime AND second_screen_datetime
       THEN 1 ELSE 0 END AS numerator,
  CASE WHEN second_screen_datetime IS NOT NULL THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN second_screen_datetime IS NULL THEN 'no second screen'
    WHEN meds_reconciliation_datetime IS NULL THEN 'not reconciled'
    WHEN meds_reconciliation_datetime < reception_datetime THEN 'reconciled before reception'
    WHEN meds_reconciliation_datetime <= second_screen_datetime THEN 'reconciled by second screen'
    ELSE 'reconciled after second screen'
  END AS reason,
  reception_datetime AS anchor_datetime,
  meds_reconciliation_datetime AS event_datetime,
  second_screen_datetime AS window_end,
  source_file,
  source_line
FROM receptions
