-- code: P08c
-- priority: 8
-- priority_name: Prescribing
-- headline: false
-- name: Tradable medicines supplied safely
-- definition: Percentage of items of tradable medicines (the tradable drug group) that were
--    not given in possession, or were given in possession after an in-possession risk
--    assessment. An in-possession item with the risk assessment not recorded counts as not
--    assessed. Items count at their own prison in the month issued, linked to a reception
--    or not.
-- numerator: Tradable items not in possession, or in possession with ip_risk_assessed true
-- denominator: Tradable items issued in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: month of the item

WITH tradable_items AS (
  SELECT p.*
  FROM conformed.prescribing AS p
  WHERE p.source_month = $month
    AND EXISTS (
      SELECT 1 FROM conformed.drug_groups AS g
      WHERE g."group" = 'tradable' AND starts_with(upper(p.bnf_code), upper(g.bnf_prefix))
    )
)
SELECT
  prison_code,
  'event' AS unit_type,
  item_id AS unit_id,
  person_key,
  CASE WHEN NOT in_possession OR coalesce(ip_risk_assessed, false) THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE
    WHEN NOT in_possession THEN 'not in possession'
    WHEN ip_risk_assessed THEN 'in possession, risk assessed'
    WHEN ip_risk_assessed IS NULL THEN 'in possession, assessment not recorded'
    ELSE 'in possession, not risk assessed'
  END AS reason,
  issue_datetime AS anchor_datetime,
  issue_datetime AS event_datetime,
  NULL::TIMESTAMP AS window_end,
  source_file,
  source_line
FROM tradable_items
