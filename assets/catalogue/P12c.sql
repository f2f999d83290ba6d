-- code: P12c
-- priority: 12
-- priority_name: Opt-out BBV testing
-- headline: false
-- name: HBV tested within 72 hours
-- definition: Percentage of eligible receptions tested for hepatitis B within 72 hours of the
--    reception: a linked HBV record with a sample taken (whatever its result) and
--    reception <= sample <= reception + 72h. The denominator is as P12a for HBV: a
--    reception leaves it only when it has a linked HBV not_eligible record within 72
--    hours and no accepted or declined HBV offer within 72 hours.
-- numerator: Receptions with a linked HBV sample within 72h
-- denominator: Receptions, less those with a linked HBV not_eligible record and no accepted or declined offer within 72h
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
records AS (  -- the reception's linked HBV records offered within 72 hours
  SELECT b.*, r.reception_datetime, r.window_end
  FROM receptions AS r
  JOIN conformed.bbv_testing AS b ON b.reception_id = r.reception_id
  WHERE b.source_month BETWEEN $first_source_month AND $last_source_month
    AND b.virus = 'HBV'
    AND b.offer_datetime BETWEEN r.reception_datetime AND r.window_end
),
eligibility AS (
  SELECT reception_id, bool_or(offer_outcome = 'not_eligible') AND NOT bool_or(offer_outcome IN ('accepted', 'declined')) AS not_eligible
  FROM records
  GROUP BY reception_id
),
first_sample AS (  -- a sample implies an accepted offer, so a sampled reception is eligible
  SELECT reception_id, sample_datetime, source_file, source_line
  FROM records
  WHERE sample_datetime BETWEEN reception_datetime AND window_end
  QUALIFY row_number() OVER (PARTITION BY reception_id ORDER BY sample_datetime, bbv_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN s.reception_id IS NOT NULL AND NOT coalesce(e.not_eligible, false) THEN 1 ELSE 0 END AS numerator,
  CASE WHEN coalesce(e.not_eligible, false) THEN 0.0 ELSE 1.0 END AS denominator,
  CASE
    WHEN coalesce(e.not_eligible, false) THEN 'not eligible'
    WHEN s.reception_id IS NOT NULL THEN 'tested within 72h'
    ELSE 'not tested within 72h'
  END AS reason,
  r.reception_datetime AS anchor_datetime,
  s.sample_datetime AS event_datetime,
  r.window_end,
  CASE WHEN s.reception_id IS NULL THEN r.source_file ELSE s.source_file END AS source_file,
  CASE WHEN s.reception_id IS NULL THEN r.source_line ELSE s.source_line END AS source_line
FROM receptions AS r
LEFT JOIN eligibility AS e ON e.reception_id = r.reception_id
LEFT JOIN first_sample AS s ON s.reception_id = r.reception_id
