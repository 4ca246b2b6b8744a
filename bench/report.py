"""The results: one line per step while running, a table at the end."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from typing import Any

from bench import procstats
from bench.config import BenchConfig


def describe(cfg: BenchConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out.pop("database_url")
    out.pop("broker_url")
    out["only"] = sorted(cfg.only)
    return out


def machine() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"cpus": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release()}


def peak(pid: int) -> float:
    return procstats.peak_rss_mb(pid)


def one_line(r: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in r.items() if not isinstance(v, dict | list))


def _fmt(rows: list[list[object]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  " + "  ".join(cells))
    return lines


def _refresh(results: dict[str, Any]) -> list[str]:
    r = results["refresh_all"]
    cfg = results["config"]
    lines = [
        f"1. refresh-all: {cfg['n']} integrations due, workers {cfg['worker_processes']} processes x "
        f"{cfg['worker_threads']} threads, token endpoint latency {cfg['latency_ms']} ms"
    ]
    head = [
        "run",
        "n",
        "wall s",
        "refresh/s",
        "provider calls",
        "CPU s per 1000 refreshes: workers",
        "fake",
        "postgres",
        "rabbitmq",
        "other",
        "machine busy",
    ]
    rows: list[list[object]] = [head]
    for key in ("main", "zero_latency"):
        x = r[key]
        c = x["cpu_seconds_per_1000"]
        rows.append(
            [
                x["label"],
                x["n"],
                x["wall_seconds"],
                x["refreshes_per_second"],
                x["provider_calls"],
                c["workers"],
                c["fake_google"],
                c["postgresql"],
                c["rabbitmq"],
                c["everything_else"],
                f"{x['machine_cpu_busy_pct']}%",
            ]
        )
    b = r["baseline"]
    rows.append(
        [
            f"{b['label']} (sample)",
            b["n"],
            b["seconds"],
            b["per_second"],
            b["refreshed"],
            round(1000 * b["cpu_seconds"] / max(1, b["n"]), 2),
            "",
            "",
            "",
            "",
            "",
        ]
    )
    lines += _fmt(rows)
    speedup = r["main"]["refreshes_per_second"] / b["per_second"] if b["per_second"] else 0
    rss = ", ".join(f"{k} {v}" for k, v in r["main"]["peak_rss_mb"].items())
    lines.append(f"  {speedup:.1f}x the sequential loop; exactly one provider call per due integration in both runs")
    lines.append(f"  peak RSS MB: {rss}, baseline loop {b['peak_rss_mb']}")
    return lines


def _fanout(results: dict[str, Any]) -> list[str]:
    lines = [
        "2. fan-out: refresh_all's keyset pagination (1000 ids a page) + bulk publish (streamed publisher "
        "confirms, at most 10,000 unconfirmed), nothing consuming"
    ]
    rows: list[list[object]] = [
        [
            "rows",
            "seconds",
            "messages/s",
            "publisher RSS MB: ready",
            "peak",
            "CPU s: publisher",
            "rabbitmq",
            "postgres",
            "machine busy",
        ]
    ]
    for x in results["fanout"]:
        c = x["cpu_seconds"]
        rows.append(
            [
                x["rows"],
                x["seconds"],
                x["messages_per_second"],
                x["rss_before_mb"],
                x["peak_rss_mb"],
                c["publisher"],
                c["rabbitmq"],
                c["postgresql"],
                f"{x['machine_cpu_busy_pct']}%",
            ]
        )
    return lines + _fmt(rows)


def _api(results: dict[str, Any]) -> list[str]:
    a = results["api_accept"]
    lines = [
        "3. API accept: POST /integrations/{id}/refresh (auth, ownership check, confirmed publish) vs a bare "
        "Starlette endpoint; uvicorn, 1 process each; load generator in its own process"
    ]
    rows: list[list[object]] = [
        [
            "connections",
            "API req/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "bare req/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "API/bare",
        ]
    ]
    for x in a["closed_loop"]:
        api, bare = x["api"], x["bare"]
        rows.append(
            [
                x["concurrency"],
                api["rps"],
                api["p50_ms"],
                api["p99_ms"],
                api["server_cpu_ms_per_request"],
                bare["rps"],
                bare["p50_ms"],
                bare["p99_ms"],
                bare["server_cpu_ms_per_request"],
                x["ratio"],
            ]
        )
    o = a["open_loop"]
    api, bare = o["api"], o["bare"]
    rows.append(
        [
            f"open loop {o['rate']}/s",
            api["rps"],
            api["p50_ms"],
            api["p99_ms"],
            api["server_cpu_ms_per_request"],
            bare["rps"],
            bare["p50_ms"],
            bare["p99_ms"],
            bare["server_cpu_ms_per_request"],
            "",
        ]
    )
    lines += _fmt(rows)
    backends = [
        f"{x['concurrency']}: PostgreSQL {x['api'].get('postgresql_cpu_ms_per_accepted')} ms, "
        f"RabbitMQ {x['api'].get('rabbitmq_cpu_ms_per_accepted')} ms"
        for x in a["closed_loop"]
    ]
    lines.append(f"  CPU per accepted request, by connections: {'; '.join(backends)}")
    loadgen = [f"{x['concurrency']}: {x['api'].get('loadgen_cpu_ms_per_request')} ms" for x in a["closed_loop"]]
    lines.append(f"  load generator CPU per API request (same cores), by connections: {'; '.join(loadgen)}")
    if "overload" in a:
        o = a["overload"]
        lines.append(
            f"  open loop at 2x the maximum ({o['rate']}/s): answers {o['statuses']}, p99 {o['p99_ms']} ms, "
            f"max {o['max_ms']} ms; {o['queued']} messages in RabbitMQ for {o['accepted']} answered 202"
        )
    lines.append(f"  peak RSS MB: API {a['peak_rss_mb']['api']}, bare {a['peak_rss_mb']['bare']}")
    return lines


def _sync(results: dict[str, Any]) -> list[str]:
    s = results["sync_latency"]
    lines = [
        f"4. sync latency: POST /sync to insights stored, {s['syncs']} syncs one at a time, "
        f"{results['config']['latency_ms']} ms per provider call (accounts, locations, 2 x metrics)"
    ]
    rows: list[list[object]] = [["sync", "p50 ms", "p99 ms", "max ms"]]
    f, r = s["first_sync"], s["resync"]
    rows.append([f"first sync (90-day backfill, {f['values_stored']} values)", f["p50_ms"], f["p99_ms"], f["max_ms"]])
    rows.append(["re-sync (30 days)", r["p50_ms"], r["p99_ms"], r["max_ms"]])
    return lines + _fmt(rows)


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    if "refresh_all" in results:
        main, zero = results["refresh_all"]["main"], results["refresh_all"]["zero_latency"]
        rate = main["refreshes_per_second"]
        out.append(("refresh-all >= 700 refreshes/s at 50 ms", f"{rate}/s", rate >= 700))
        ratio = rate / max(zero["refreshes_per_second"], 0.1)
        out.append(("refresh-all at 50 ms >= 0.85 of the zero-latency rate", f"{ratio:.3f}", ratio >= 0.85))
        cpu = max(main["cpu_seconds_per_1000"]["workers"], zero["cpu_seconds_per_1000"]["workers"])
        out.append(("worker CPU <= 0.9 ms per refresh (worse run)", f"{cpu} ms", cpu <= 0.9))
        rss = max(v for k, v in results["refresh_all"]["main"]["peak_rss_mb"].items() if k.startswith("worker"))
        out.append(("worker RSS < 200 MB per process", f"{rss} MB", rss < 200))
    if results.get("fanout"):
        big = max(results["fanout"], key=lambda x: x["rows"])
        out.append(
            (
                f"fan-out >= 10000 messages/s at {big['rows']} rows",
                f"{big['messages_per_second']}/s",
                big["messages_per_second"] >= 10_000,
            )
        )
        out.append(
            (f"publisher RSS < 150 MB at {big['rows']} rows", f"{big['peak_rss_mb']} MB", big["peak_rss_mb"] < 150)
        )
    if "api_accept" in results:
        a = results["api_accept"]
        at50 = [x for x in a["closed_loop"] if x["concurrency"] == 50]
        if at50:
            rps = at50[0]["api"]["rps"]
            out.append(("API accept >= 2500 requests/s at 50 connections", f"{rps}/s", rps >= 2500))
        cpu = max(x["api"]["server_cpu_ms_per_request"] for x in a["closed_loop"])
        out.append(("API CPU <= 0.5 ms per request (worst concurrency)", f"{cpu} ms", cpu <= 0.5))
        p99, rate = a["open_loop"]["api"]["p99_ms"], a["open_loop"]["rate"]
        out.append((f"API p99 < 25 ms at an open-loop {rate}/s (target at 1000/s)", f"{p99} ms", p99 < 25))
        if "overload" in a:
            o = a["overload"]
            out.append((f"every answer < 1 s at 2x ({o['rate']}/s)", f"{o['max_ms']} ms", o["max_ms"] < 1000))
            out.append(
                (
                    "no accepted request lost (queued = 202s)",
                    f"{o['queued']}/{o['accepted']}",
                    o["queued"] == o["accepted"],
                )
            )
    return out


def scrape_line(r: dict[str, Any]) -> str:
    rates = ", ".join(f"{x['label']} {x['refreshes_per_second']}/s" for x in r["runs"])
    per = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_scrape"].items())
    return (
        f"{rates}; {r['scrapes']} scrapes of ~{r['bytes_per_scrape']} bytes; CPU ms per scrape: {per}; "
        f"cost {r['cost_pct_of_rate']}% of the refresh rate (rate measured {r['rate_change_pct']:+}% while scraped)"
    )


def _fleet_sync(results: dict[str, Any]) -> list[str]:
    r = results["fleet_sync"]
    return [
        f"5. fleet sync: {r['integrations']} integrations (1-3 locations), GBP_QPM={r['gbp_qpm']}, "
        "the fake at the same quota",
        *_fmt(
            [
                ["integrations/min", "quota's max/min", "ratio", "calls/sync", "429 share", "wall s", "minimum s"],
                [
                    r["integrations_per_minute"],
                    r["max_per_minute"],
                    r["ratio"],
                    r["calls_per_sync"],
                    f"{r['share_429']:.2%}",
                    r["seconds"],
                    r["minimum_seconds"],
                ],
            ]
        ),
    ]


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"integrations benchmarks: {m['cpus']} CPUs, {m['memory_gb']} GB; the fake Google, PostgreSQL, "
        "RabbitMQ, the load generator and the services share these CPUs",
        "",
    ]
    sections = (
        ("refresh_all", _refresh),
        ("fanout", _fanout),
        ("api_accept", _api),
        ("sync_latency", _sync),
        ("fleet_sync", _fleet_sync),
    )
    for key, section in sections:
        if results.get(key):
            lines += [*section(results), ""]
    if results.get("scrape_cost"):
        lines += [
            "6. scrape cost: every /metrics endpoint scraped every second during refresh-all",
            scrape_line(results["scrape_cost"]),
            "",
        ]
        cost = results["scrape_cost"]["cost_pct_of_rate"]
    checks = targets(results)
    if results.get("scrape_cost"):
        checks.append(("scraping every endpoint each second < 3% of refresh rate", f"{cost}%", cost < 3))
    if checks:
        lines.append("targets")
        lines += _fmt([["target", "measured", ""]] + [[t, v, "met" if ok else "MISSED"] for t, v, ok in checks])
    lines.append(f"total {results.get('total_seconds', 0)} s")
    return "\n".join(lines)
