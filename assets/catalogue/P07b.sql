-- code: P07b
-- priority: 7
-- priority_name: Smoking
-- headline: true
-- name: Smokers offered NRT or vape within 24 hours
-- definition: Percentage of smokers at reception (the P07a numerator) offered nicotine
--    replacement therapy or a vape within 24 hours of the reception (a linked nrt_offered
--    or vape_offered event with reception <= offer <= reception + 24h).
-- numerator: Smokers at reception with a linked nrt_offered or vape_offered event within 24h of reception
-- denominator: Smokers at reception (first status within 7 days is current)
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
linked AS (
  SELECT s.*
  FROM receptions AS r
  JOIN conformed.smoking AS s ON s.reception_id = r.reception_id
  WHERE s.source_month BETWEEN $first_source_month AND $last_source_month
    AND s.event_datetime BETWEEN r.reception_datetime AND r.reception_datetime + INTERVAL 7 DAY
),
first_status AS (  -- as P07a: the earliest status within 7 days decides
  SELECT reception_id, smoking_status
  FROM linked
  WHERE event_type = 'status_recorded'
  QUALIFY row_number() OVER (PARTITION BY reception_id ORDER BY event_datetime, smoking_event_id) = 1
),
first_offer AS (
  SELECT l.reception_id, l.event_datetime, l.source_file, l.source_line
  FROM linked AS l
  JOIN receptions AS r ON r.reception_id = l.reception_id
  WHERE l.event_type IN ('nrt_offered', 'vape_offered')
    AND l.event_datetime <= r.window_end
  QUALIFY row_number() OVER (PARTITION BY l.reception_id ORDER BY l.event_datetime, l.smoking_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN f.smoking_status = 'current' AND o.reception_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  CASE WHEN f.smoking_status = 'current' THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN f.reception_id IS NULL THEN 'no status within 7 days'
    WHEN f.smoking_status <> 'current' THEN 'status ' || f.smoking_status
    WHEN o.reception_id IS NOT NULL THEN 'offered within 24h'
    ELSE 'not offered within 24h'
  END AS reason,
  r.reception_datetime AS anchor_datetime,
  o.event_datetime,
  r.window_end,
  CASE WHEN o.reception_id IS NULL THEN r.source_file ELSE o.source_file END AS source_file,
  CASE WHEN o.reception_id IS NULL THEN r.source_line ELSE o.source_line END AS source_line
FROM receptions AS r
LEFT JOIN first_status AS f ON f.reception_id = r.reception_id
LEFT JOIN first_offer AS o ON o.reception_id = r.reception_id
