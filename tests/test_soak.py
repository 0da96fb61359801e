"""A short soak in CI (the long one is bench/soak.py): 8 clients train the seed's neuron in
sessions they open and close, for 10 seconds, against a server subprocess. No errors, every
session closed, the server's RSS flat between warm-up and the end."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import soak  # noqa: E402

from tests.server_process import MiB  # noqa: E402


def test_short_soak():
    r = soak.soak(clients=8, seconds=10, steps=5, warmup=3)
    print("\nsoak:", soak.report(r))
    assert not r["errors"], sorted(set(r["errors"]))[:5]
    assert r["server_alive"]
    assert r["sessions"] >= 8 and r["sessions_after_warmup"] > 0
    assert r["live_sessions_after"] == 0
    assert r["end_rss"] - r["warm_rss"] < 24 * MiB, soak.report(r)
