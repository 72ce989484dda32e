"""The soak (bench/soak.py) at a short duration: typing, background indexing and branch switches
against the real server and model; no failed request, no error in the log, RSS and descriptors
within the bounds. ``make bench`` runs it for five minutes."""

from __future__ import annotations

import json

import pytest

from bench import soak

pytestmark = pytest.mark.timeout(900)

DURATION_S = "40"


def test_a_short_soak_stays_within_bounds(
    capsys: pytest.CaptureFixture[str], gemma_path: object, lsp_server: object
) -> None:
    code = soak.main(["--duration", DURATION_S, "--switch-every", "12", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["failures"] == [], report
    assert code == 0
    assert report["requests"] > 0 and report["branch_switches"] >= 2
    assert report["error_rate"] == 0
    # The other modules were looked at: their prompts warmed, their KV state kept in bounds.
    assert report["warmups"]["runs"] > 0
    assert report["snapshots"]["count"] and report["snapshots"]["peak_mib"] > 0
    assert report["snapshots"]["peak_mib"] <= report["snapshots"]["limit_mib"]


def test_the_judge_catches_what_it_bounds() -> None:
    run = soak.Soak(requests=10, failed=1)
    run.samples = [soak.Sample(float(i), 500.0 + 50 * i, 10 + 10 * i) for i in range(10)]
    report = soak.judge(run, "2026-01-01 00:00:00,000 ERROR lsp.server.language_server: boom\n")
    failures = " | ".join(report["failures"])
    assert "1 request(s) failed" in failures
    assert "error line" in failures
    assert "RSS grew" in failures and "descriptors grew" in failures
    # Growth that is the KV snapshots filling up to their own bound is not a leak.
    filling = soak.Soak(requests=10)
    filling.samples = [soak.Sample(float(i), 700.0 + 20 * i, 12, 18.0 * i) for i in range(10)]
    filling.snapshots = {"limit_bytes": 256 * 2**20}
    assert soak.judge(filling, "")["failures"] == []
    hoarding = soak.Soak(requests=10, peak_snapshot_mib=300.0)
    hoarding.snapshots = {"limit_bytes": 256 * 2**20}
    assert "KV snapshots held 300 MiB" in " | ".join(soak.judge(hoarding, "")["failures"])
    calm = soak.Soak(requests=10)
    calm.samples = [soak.Sample(float(i), 500.0, 12) for i in range(10)]
    assert (
        soak.judge(calm, "2026-01-01 00:00:00,000 INFO lsp.server.language_server: fine\n")[
            "failures"
        ]
        == []
    )
