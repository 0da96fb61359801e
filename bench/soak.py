#!/usr/bin/env python3
"""Load and soak: N concurrent clients train the seed's neuron against a server subprocess.

    python bench/soak.py [--clients 32] [--seconds 60] [--steps 5] [--warmup 5]

Each client (a thread with its own connection) loops for the duration: create a session, train
the seed's one-neuron model (sigmoid, clamped binary cross-entropy) for `--steps` gradient
steps, check the loss went down, close the session. Reports sessions and steps completed, errors
(must be 0), the server's RSS after warm-up and at the end, its peak RSS, and its live sessions
after the run (must be 0). Exits 1 on any error, leftover session, or RSS growth past --max-growth
MiB between warm-up and the end.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradserve.client as gc  # noqa: E402
from tests.server_process import MiB, ServerProcess  # noqa: E402

XS = [0.5, 1.5, -1.0, 2.0, 6.7]
YS = [0.0, 1.0, 0.0, 1.0, 1.0]


def train_once(client: gc.Client, steps: int) -> int:
    """One session: the seed's neuron trained for `steps` steps. Returns steps done."""
    with client.session() as torch:
        xs, ys = torch.tensor(XS), torch.tensor(YS)
        w = torch.tensor(1.0, requires_grad=True)
        b = torch.tensor(0.0, requires_grad=True)
        first = last = None
        for _ in range(steps):
            y_pred = torch.clamp(torch.sigmoid(w * xs + b), 1e-8, 1 - 1e-8)
            loss = -(ys * torch.log(y_pred) + (1 - ys) * torch.log(1 - y_pred)).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.5 * w.grad
                b -= 0.5 * b.grad
            w.grad.zero_()
            b.grad.zero_()
            last = loss.item()
            first = last if first is None else first
        if steps > 1 and not last < first:
            raise AssertionError(f"loss did not decrease: {first} -> {last}")
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_sessions(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("gradserve_live_sessions"):
                return float(line.split()[-1])
    raise RuntimeError("no gradserve_live_sessions metric")


def soak(clients: int, seconds: float, steps: int, warmup: float,
         server_args: list[str] | None = None) -> dict[str, Any]:
    """Run the soak; returns the figures (see the module doc)."""
    metrics = free_port()
    # every client may be in a call at once: --max-calls (workers minus an eighth) must hold them
    server = ServerProcess(["--workers", str(clients + 8), "--metrics-port",
                            str(metrics), "--log-level", "WARNING", *(server_args or [])]).start()
    lock = threading.Lock()
    counts = {"sessions": 0, "steps": 0}
    errors: list[str] = []
    stop = threading.Event()
    start_rss = server.rss()

    def worker() -> None:
        with gc.connect(server.target, timeout=60) as client:
            while not stop.is_set():
                try:
                    done = train_once(client, steps)
                except Exception as exc:  # noqa: BLE001 - every error is counted and reported
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    counts["sessions"] += 1
                    counts["steps"] += done

    try:
        threads = [threading.Thread(target=worker, name=f"soak-{i}") for i in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(min(warmup, seconds))
        warm_rss = server.rss()
        warm_sessions = counts["sessions"]
        time.sleep(max(0.0, seconds - warmup))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - t0
        end_rss = server.rss()
        left = live_sessions(metrics)
        alive = server.alive()
        peak = server.peak_rss()
    finally:
        server.close()
    return {"clients": clients, "seconds": elapsed, "sessions": counts["sessions"],
            "steps": counts["steps"], "errors": errors, "start_rss": start_rss,
            "warm_rss": warm_rss, "end_rss": end_rss, "peak_rss": peak,
            "sessions_after_warmup": counts["sessions"] - warm_sessions,
            "live_sessions_after": left, "server_alive": alive}


def report(r: dict[str, Any]) -> str:
    return (f"{r['clients']} clients for {r['seconds']:.1f}s: {r['sessions']} sessions, "
            f"{r['steps']} training steps ({r['sessions'] / r['seconds']:.1f} sessions/s, "
            f"{r['steps'] / r['seconds']:.0f} steps/s), {len(r['errors'])} errors; server RSS "
            f"{r['start_rss'] / MiB:.1f} MiB at start, {r['warm_rss'] / MiB:.1f} MiB after "
            f"warm-up, {r['end_rss'] / MiB:.1f} MiB at the end (peak {r['peak_rss'] / MiB:.1f} "
            f"MiB); live sessions after: {r['live_sessions_after']:.0f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=5, help="training steps per session")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before RSS baseline")
    parser.add_argument("--max-growth", type=float, default=32.0,
                        help="MiB the RSS may grow between warm-up and the end")
    args = parser.parse_args(argv)
    r = soak(args.clients, args.seconds, args.steps, args.warmup)
    print(report(r))
    for e in sorted(set(r["errors"]))[:10]:
        print("  error:", e)
    growth = (r["end_rss"] - r["warm_rss"]) / MiB
    ok = (not r["errors"] and r["live_sessions_after"] == 0 and r["server_alive"]
          and growth <= args.max_growth)
    print("OK" if ok else f"FAILED (RSS growth {growth:.1f} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
