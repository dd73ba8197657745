#!/usr/bin/env python3
"""Inbox latency through a real Odoo 18 server (issue 12 item 8).

    python3 benchmarks/bench_inbox.py [--rate 20] [--seconds 12] [--out FILE]

Same setup as benchmarks/bench.py (tests/e2e/odoo_server.py and its environment
variables): one prefork server (``--workers 1``, one cron worker) and a fake Graph
account. Signed inbound texts are POSTed to the webhook route at ``--rate`` per
second for ``--seconds`` from 40 customers (new contacts, leads, conversations at
first), while a client polls the ``bus_bus`` table (committed rows, what Odoo's bus
dispatches to websockets; SQL, since no group may read bus.bus over RPC) every
20 ms for the ``discuss.channel/new_message`` notification that carries each
text. The latency of a message is the time its notification is first seen minus
the time its POST was sent (one machine, one clock): what an agent's open
Discuss waits, less the websocket hop, plus up to 20 ms of polling. Prints
p50/p95/max and writes benchmarks/results_inbox.json.

The inbox's cost on the processing throughput (the other half of item 8) is
measured in-process by benchmarks/bench_inbox_ab.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (  # noqa: E402
    ROOT,
    Bench,
    OdooInstance,
    OdooUnavailable,
    Profiler,
    inbound_text_value,
    machine_info,
    percentile,
    session,
    sign_body,
)

CUSTOMERS = 40
POLL_S = 0.02


def body(bench, tag, index):
    number = f"5491130{index % CUSTOMERS:06d}"
    value = inbound_text_value(
        number,
        f"wamid.BENCHLAT{tag}{index:08d}",
        f"lat{tag} {index} end",
        f"Latencia {number}",
    )
    return bench.fake.encode_webhook(
        bench.fake.build_envelope(bench.account.phone_number_id, value)
    )


def measure(bench, rate, seconds):
    tag = os.urandom(3).hex()
    total = int(rate * seconds)
    pattern = re.compile(rf"lat{tag} (\d+) end")
    pg = psycopg2.connect(dbname=bench.instance.db, **bench.instance._pg_args())
    pg.autocommit = True
    with pg.cursor() as cr:
        cr.execute("SELECT COALESCE(MAX(id), 0) FROM bus_bus")
        last_id = cr.fetchone()[0]
    sent, seen, errors = {}, {}, []
    done = threading.Event()

    def poll():
        nonlocal last_id
        with pg.cursor() as cr:
            while not done.is_set():
                cr.execute(
                    "SELECT id, message FROM bus_bus WHERE id > %s ORDER BY id",
                    (last_id,),
                )
                rows = cr.fetchall()
                now = time.time()
                for row_id, message in rows:
                    last_id = max(last_id, row_id)
                    if "discuss.channel/new_message" not in message:
                        continue
                    match = pattern.search(message)
                    if match:
                        seen.setdefault(int(match.group(1)), now)
                time.sleep(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.time()
    with session() as http:
        for index in range(total):
            delay = started + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            raw = body(bench, tag, index)
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign_body(raw, bench.account.app_secret),
            }
            sent[index] = time.time()
            response = http.post(
                bench.account.webhook_url, data=raw, headers=headers, timeout=30
            )
            if response.status_code != 200:
                errors.append(response.status_code)
    post_s = time.time() - started
    deadline = time.time() + 120
    while len(seen) < total and time.time() < deadline:
        time.sleep(0.2)
    done.set()
    poller.join(10)
    pg.close()
    latencies = [seen[i] - sent[i] for i in sent if i in seen]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "posted": total,
        "post_rate_achieved": round(total / post_s, 1),
        "post_errors": len(errors),
        "notified": len(latencies),
        "p50_ms": round(1000 * percentile(latencies, 50)) if latencies else None,
        "p95_ms": round(1000 * percentile(latencies, 95)) if latencies else None,
        "max_ms": round(1000 * max(latencies)) if latencies else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results_inbox.json")
    )
    args = parser.parse_args(argv)
    workdir = Path(__import__("tempfile").mkdtemp(prefix="wab_bench_inbox_"))
    instance = OdooInstance(workdir)
    try:
        try:
            instance.prepare()
        except OdooUnavailable as exc:
            print(f"benchmark not run: {exc}", file=sys.stderr)
            return 2
        bench = Bench(instance, "prefork", 1, Profiler(None))
        bench.setup()
        try:
            load = os.getloadavg()
            result = measure(bench, args.rate, args.seconds)
        finally:
            bench.close()
    finally:
        instance.close()
    report = {
        "machine": machine_info(),
        "odoo": instance.odoo_version,
        "load_avg_before": [round(x, 2) for x in load],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "latency": result,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0 if result["notified"] == result["posted"] else 1


if __name__ == "__main__":
    sys.exit(main())
