"""The bench's pytest hooks: what a run left out untimed (bench_peers.left_out, quick mode's
budget) goes into the benchmark JSON as `not_timed`, for report.py to list beside the
figures."""

_not_timed: list[dict] = []


def pytest_runtest_logreport(report):
    _not_timed.extend(value for key, value in report.user_properties if key == "not_timed"
                      and report.when == "call")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["not_timed"] = list(_not_timed)
