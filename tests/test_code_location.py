"""The whole code location loads: every asset, check, job, schedule and sensor resolves."""

from pipelines.definitions import defs


def test_code_location_loads():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for source in ("reception_screening", "bbv_testing", "tb_screening", "smoking", "prescribing"):
        assert f"raw/{source}" in keys and f"conformed/{source}" in keys
    checks = {key.name for key in graph.asset_check_keys}
    assert "reception_screening_rows_are_valid" in checks and len(checks) >= 5
    for job in defs.resolve_all_job_defs():
        assert job.name
    for schedule in defs.schedules or []:
        defs.resolve_schedule_def(schedule.name)
    for sensor in defs.sensors or []:
        defs.resolve_sensor_def(sensor.name)
