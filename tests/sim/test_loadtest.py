"""``cea loadtest`` against a real server for a few seconds: every order answered, latency
recorded from scheduled send times, JSON and plots written; bad options refused."""

from __future__ import annotations

import json

from ..test_cli import invoke


def test_loadtest_single_rate_and_sweep(tmp_path):
    out = tmp_path / "lt"
    result = invoke("loadtest", "--rates", "200,400", "--duration", "1", "--fsync", "off",
                    "--p99-bound-us", "1000000", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "loadtest.json").read_text())
    assert [r["offered_per_s"] for r in report["runs"]] == [200, 400]
    for run in report["runs"]:
        n = run["offered_per_s"] * run["seconds"]
        assert run["sent"] == run["acked"] == n and run["rejected"] == 0
        assert run["filled"] > 0.4 * n  # the IOC sells trade against resting buys
        assert 0 < run["ack"]["p50_us"] <= run["ack"]["p99_us"] <= run["ack"]["max_us"]
        assert run["ack"]["count"] == n
    assert report["highest_rate_held"] == 400  # under a bound of one second
    for plot in ("latency.png", "sweep.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"


def test_loadtest_bad_options(tmp_path):
    for args in (["--rates", "ten"], ["--fsync", "maybe"], ["--rates", "2m"]):
        result = invoke("loadtest", *args, "--out", tmp_path)
        assert result.exit_code == 2 and "cea: error:" in result.output, (args, result.output)
