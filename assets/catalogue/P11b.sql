-- code: P11b
-- priority: 11
-- priority_name: TB
-- headline: false
-- name: Chest X-ray within 48 hours
-- definition: Percentage of receptions at prisons with a digital chest X-ray on site that
--    had a chest X-ray, linked to the reception, within 48 hours of it (reception <= X-ray
--    <= reception + 48h). Receptions at prisons without an X-ray are in neither numerator
--    nor denominator.
-- numerator: Receptions at X-ray prisons with a linked chest_xray within 48h
-- denominator: Receptions at prisons with has_xray
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT r.*, r.reception_datetime + INTERVAL 48 HOUR AS window_end, coalesce(p.has_xray, false) AS has_xray
  FROM conformed.reception_screening AS r
  LEFT JOIN conformed.prisons AS p ON p.prison_code = r.prison_code
  WHERE r.source_month = $month
),
first_xray AS (
  SELECT t.reception_id, t.event_datetime, t.source_file, t.source_line
  FROM receptions AS r
  JOIN conformed.tb_screening AS t ON t.reception_id = r.reception_id
  WHERE t.source_month BETWEEN $first_source_month AND $last_source_month
    AND t.event_type = 'chest_xray'
    AND t.event_datetime BETWEEN r.reception_datetime AND r.window_end
  QUALIFY row_number() OVER (PARTITION BY t.reception_id ORDER BY t.event_datetime, t.tb_event_id) = 1
)
SELECT
  r.prison_code,
  'reception' AS unit_type,
  r.reception_id AS unit_id,
  r.person_key,
  CASE WHEN r.has_xray AND x.reception_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  CASE WHEN r.has_xray THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN NOT r.has_xray THEN 'no X-ray at this prison'
    WHEN x.reception_id IS NOT NULL THEN 'X-ray within 48h'
    ELSE 'no X-ray within 48h'
  END AS reason,
  r.reception_datetime AS anchor_datetime,
  x.event_datetime,
  r.window_end,
  CASE WHEN x.reception_id IS NULL THEN r.source_file ELSE x.source_file END AS source_file,
  CASE WHEN x.reception_id IS NULL THEN r.source_line ELSE x.source_line END AS source_line
FROM receptions AS r
LEFT JOIN first_xray AS x ON x.reception_id = r.reception_id
