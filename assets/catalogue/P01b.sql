-- code: P01b
-- priority: 1
-- priority_name: Core service specifications
-- headline: false
-- name: Second health assessment within 7 days
-- definition: Percentage of receptions staying over 7 days whose second health assessment
--    was done within 7 days of the reception (reception <= second screen <= reception +
--    7 x 24h). A stay is over 7 days when no departure is recorded or the departure is
--    later than reception + 7 x 24h; shorter stays are in neither numerator nor denominator.
-- numerator: Receptions staying over 7 days with a second screen within 7 days
-- denominator: Receptions whose stay lasted over 7 days (departure null or after reception + 7 days)
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: reception month

WITH receptions AS (
  SELECT
    r.*,
    r.reception_datetime + INTERVAL 7 DAY AS window_end,
    (r.departure_datetime IS NULL OR r.departure_datetime > r.reception_datetime + INTERVAL 7 DAY)
      AS stayed_over_7_days
  FROM conformed.reception_screening AS r
  WHERE r.source_month = $month
)
SELECT
  prison_code,
  'reception' AS unit_type,
  reception_id AS unit_id,
  person_key,
  CASE WHEN stayed_over_7_days AND second_screen_datetime BETWEEN reception_datetime AND window_end
       THEN 1 ELSE 0 END AS numerator,
  CASE WHEN stayed_over_7_days THEN 1.0 ELSE 0.0 END AS denominator,
  CASE
    WHEN NOT stayed_over_7_days THEN 'left within 7 days'
    WHEN second_screen_datetime IS NULL THEN 'no second screen'
    WHEN second_screen_datetime <= window_end THEN 'second screen within 7 days'
    ELSE 'second screen after 7 days'
  END AS reason,
  reception_datetime AS anchor_datetime,
  CASE WHEN stayed_over_7_days THEN second_screen_datetime ELSE departure_datetime END AS event_datetime,
  window_end,
  source_file,
  source_line
FROM receptions
