-- code: P12a
-- priority: 12
-- priority_name: Opt-out BBV testing
-- headline: false
-- name: HCV test offered within 72 hours
-- definition: Percentage of eligible receptions offered a hepatitis C test within 72 hours
--    of the reception: a linked HCV offer accepted or declined with reception <= offer <=
--    reception + 72h. A reception leaves the denominator only when it has a linked HCV
--    not_eligible record within 72 hours and no accepted or declined HCV offer within 72
--    hours.
-- numerator: Receptions with a linked HCV offer (accepted or declined) within 72h
-- denominator: Receptions, less those with a linked HCV not_eligible record and no accepted or declined offer within 72h
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 72 HOUR AS window_end
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
),
records AS (  -- the reception's linked HCV records offered within 72 hours
  SELECT b.*
  FROM receptions AS r
  JOIN conformed.bbv_testing AS b ON b.reception_id = r.reception_id
  WHERE b.source_month BETWEEN $first_source_month AND $last_source_month
    AND b.virus = 'HCV'
    AND b.offer_datetime BETWEEN r.reception_datetime AND r.window_end
),
eligibility AS (
  SELECT reception_id, bool_or(offer_outcome = 'not_eligible') AND NOT bool_or(offer_outcome IN ('accepted', 'declined')) AS not_eligible
  FROM records
  GROUP BY reception_id
),
first_offer AS (
  SELECT reception_id, offer_datetime, offer_outcome, source_file, source_line
  FROM records
  WHERE offer_outcome IN ('accepted', 'declined')
  QUALIFY row_number() OVER (PARTITION BY reception_id ORDER BY offer_datetime, bbv_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN o.reception_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  CASE WHEN coalesce(e.not_eligible, false) THEN 0.0 ELSE 1.0 END AS denominator,
  CASE
    WHEN coalesce(e.not_eligible, false) THEN 'not eligible'
    WHEN o.reception_id IS NOT NULL THEN 'offered within 72h (' || o.offer_outcome || ')'
    ELSE 'not offered within 72h'
  END AS reason,
  r.reception_datetime AS anchor_datetime,
  o.offer_datetime AS event_datetime,
  r.window_end,
  CASE WHEN o.reception_id IS NULL THEN r.source_file ELSE o.source_file END AS source_file,
  CASE WHEN o.reception_id IS NULL THEN r.source_line ELSE o.source_line END AS source_line
FROM receptions AS r
LEFT JOIN eligibility AS e ON e.reception_id = r.reception_id
LEFT JOIN first_offer AS o ON o.reception_id = r.reception_id
