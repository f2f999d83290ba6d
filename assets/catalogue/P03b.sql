-- code: P03b
-- priority: 3
-- priority_name: Continuity of care
-- headline: false
-- name: Prescribing continuity on transfer
-- definition: Percentage of transfers in who had an item issued at another prison in the
--    28 days before the reception (reception - 28 days <= issue <= reception, same person)
--    and had an item issued at the receiving prison, linked to the reception, within 24
--    hours of it (reception <= issue <= reception + 24h).
-- numerator: Transfers in with an item issued at the receiving prison within 24h of reception
-- denominator: Transfers in with an item issued at another prison in the 28 days before reception
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 24 HOUR AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
),
items AS (
  SELECT p.item_id, p.person_key, p.prison_code, p.issue_datetime, p.reception_id, p.source_file, p.source_line
  FROM conformed.prescribing AS p
  WHERE p.source_month BETWEEN $first_source_month AND $last_source_month
),
supplied_elsewhere AS (  -- transfers in with an item at another prison in the 28 days before
  SELECT DISTINCT r.reception_id
  FROM receptions AS r
  JOIN items AS i
    ON i.person_key = r.person_key
   AND i.prison_code <> r.prison_code
   AND i.issue_datetime BETWEEN r.reception_datetime - INTERVAL 28 DAY AND r.reception_datetime
  WHERE r.reception_type = 'transfer'
),
continued AS (  -- the first item issued at the receiving prison within 24 hours (linked)
  SELECT r.reception_id, i.issue_datetime, i.source_file, i.source_line
  FROM receptions AS r
  JOIN items AS i ON i.reception_id = r.reception_id
  WHERE i.issue_datetime BETWEEN r.reception_datetime AND r.window_end
  QUALIFY row_number() OVER (PARTITION BY r.reception_id ORDER BY i.issue_datetime, i.item_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN e.reception_id IS NOT NULL AND c.reception_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  CASE WHEN e.reception_id IS NOT NULL THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN r.reception_type <> 'transfer' THEN 'not a transfer'
    WHEN e.reception_id IS NULL THEN 'no item at another prison in the 28 days before'
    WHEN c.reception_id IS NOT NULL THEN 'item issued within 24h'
    ELSE 'no item issued within 24h'
  END AS reason,
  r.reception_datetime AS anchor_datetime,
  c.issue_datetime AS event_datetime,
  r.window_end,
  CASE WHEN c.reception_id IS NULL THEN r.source_file ELSE c.source_file END AS source_file,
  CASE WHEN c.reception_id IS NULL THEN r.source_line ELSE c.source_line END AS source_line
FROM receptions AS r
LEFT JOIN supplied_elsewhere AS e ON e.reception_id = r.reception_id
LEFT JOIN continued AS c ON c.reception_id = r.reception_id
