-- code: P07c
-- priority: 7
-- priority_name: Smoking
-- headline: false
-- name: Four-week quit rate
-- definition: Percentage of quit dates set whose person reported or was CO-verified as quit
--    at four weeks: any quit_4wk event of the same person (at any prison) with outcome
--    quit_self_reported or quit_co_verified, 25 x 24h <= outcome - quit date <= 42 x 24h.
--    Quit dates count at their own prison in the month of the quit date, linked to a
--    reception or not.
-- numerator: Quit dates set whose person has a quit_4wk quit_self_reported or quit_co_verified 25 to 42 days later
-- denominator: Quit dates set (quit_date_set events) in the month
-- unit: %
-- multiplier: 100
-- polarity: high
-- target:
-- method: wilson
-- denominator_kind: units
-- aggregation: sum
-- anchor: quit date month

WITH quit_dates AS (
  SELECT
    s.*,
    s.event_datetime + INTERVAL 25 DAY AS follow_up_start,
    s.event_datetime + INTERVAL 42 DAY AS window_end
  FROM conformed.smoking AS s
  WHERE s.source_month = $month
    AND s.event_type = 'quit_date_set'
),
quit_at_4_weeks AS (
  SELECT q.smoking_event_id, o.event_datetime, o.outcome, o.source_file, o.source_line
  FROM quit_dates AS q
  JOIN conformed.smoking AS o ON o.person_key = q.person_key
  WHERE o.source_month BETWEEN $first_source_month AND $last_source_month
    AND o.event_type = 'quit_4wk'
    AND o.outcome IN ('quit_self_reported', 'quit_co_verified')
    AND o.event_datetime BETWEEN q.follow_up_start AND q.window_end
  QUALIFY row_number() OVER (PARTITION BY q.smoking_event_id ORDER BY o.event_datetime, o.smoking_event_id) = 1
)
SELECT
  q.prison_code,
  'event' AS unit_type,
  q.smoking_event_id AS unit_id,
  q.person_key,
  CASE WHEN o.smoking_event_id IS NOT NULL THEN 1 ELSE 0 END AS numerator,
  1.0 AS denominator,
  CASE WHEN o.smoking_event_id IS NOT NULL THEN o.outcome ELSE 'no quit recorded 25 to 42 days later' END AS reason,
  q.event_datetime AS anchor_datetime,
  o.event_datetime,
  q.window_end,
  CASE WHEN o.smoking_event_id IS NULL THEN q.source_file ELSE o.source_file END AS source_file,
  CASE WHEN o.smoking_event_id IS NULL THEN q.source_line ELSE o.source_line END AS source_line
FROM quit_dates AS q
LEFT JOIN quit_at_4_weeks AS o ON o.smoking_event_id = q.smoking_event_id
