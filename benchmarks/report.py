"""Refresh the tables of docs/benchmarks.md from the JSON files under benchmarks/results/.

Each table in docs/benchmarks.md sits between `<!-- table: NAME -->` and `<!-- end: NAME -->`;
this rewrites what is between the markers from the JSON file the table names, and leaves the
prose around the tables as it is (the prose discusses the figures of the run it was written
for; each JSON file carries its date). A table whose JSON file is missing is left unchanged.

    python benchmarks/report.py [--results benchmarks/results] [--doc docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Table = list[list[str]]

LABELS = {
    "gputui": "gputui (monitor, health rules, history, snapshots)",
    "floor": "floor (bare asyncssh stream + json.loads)",
    "exec": "exec per poll (gpustat-web)",
    "connect": "connection per refresh (nvidia-smi-remote)",
    "floor-gcm": "floor, AES-GCM as gputui",
    "floor-lean": "lean floor (callback session + msgspec, AES-GCM as gputui)",
    "exec-gcm": "exec per poll, AES-GCM as gputui",
    "connect-gcm": "connection per refresh, AES-GCM as gputui",
}

BEFORE_AFTER = {"gputui-baseline": "gputui before", "gputui": "gputui after"}


def label(r: dict[str, Any]) -> str:
    """A strategy's name in the tables; gputui's says how many collector processes it ran."""
    if r["strategy"] == "gputui" and r.get("workers"):
        return f"gputui over {r['workers']} collector worker processes (all its processes' CPU)"
    if r["strategy"] == "gputui-in-process":
        return "gputui in one process"
    if r["strategy"] == "gputui-baseline":
        if r.get("workers"):
            return f"gputui before, over {r['workers']} collector worker processes"
        return "gputui before (one process)"
    return LABELS.get(r["strategy"], r["strategy"])


# Ratio columns: (key in the JSON, header); a column shows when a run measured it.
RATIO_COLUMNS = (
    ("gputui_over_floor", "gputui / floor"),
    ("gputui_over_floor-gcm", "gputui / floor (AES-GCM)"),
    ("gputui_over_floor-lean", "gputui / lean floor"),
    ("in_process_over_floor-lean", "gputui in one process / lean floor"),
    ("gputui_over_baseline", "gputui / before"),
    ("in_process_over_gputui-baseline", "gputui in one process / before"),
    ("exec_over_gputui", "exec-per-poll / gputui"),
    ("exec-gcm_over_gputui", "exec-per-poll (AES-GCM) / gputui"),
    ("connect_over_gputui", "connect-per-refresh / gputui"),
    ("connect-gcm_over_gputui", "connect-per-refresh (AES-GCM) / gputui"),
)


def md(header: list[str], rows: Table) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,} ms"
    return f"{value:,.0f} ms" if value >= 1000 else f"{value:.1f} ms"


def n(value: float) -> str:
    return f"{value:,.0f}"


def memory_200(d: dict[str, Any]) -> str:
    rows = [
        [f"{p['minute']:g} min", f"{p['rss_mib']:.1f} MiB", n(p["samples"])] for p in d["points"]
    ]
    return md(["after", "RSS", "host-samples received"], rows)


def ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}" if key in row else "-"


def ingest(d: dict[str, Any]) -> str:
    rows = []
    for r in d["results"]:
        rate = n(r["samples_per_s"])
        if r["samples_per_s"] < 0.9 * r["expected_samples_per_s"]:
            rate = f"**{rate}** (cannot keep up)"
        rows.append(
            [
                n(r["hosts"]),
                label(r),
                f"{r['cpu_pct_of_one_core']:.1f}%",
                f"{r['us_per_host_sample']:,.0f} us",
                rate,
                f"{r['rss_mib']:.0f} MiB",
                f"{r['all_streaming_s']:.1f} s"
                if r["all_streaming_s"] is not None
                else f"never: {r['hosts_seen']:,} of {r['hosts']:,} hosts",
            ]
        )
    header = [
        "hosts",
        "strategy",
        "CPU (% of one core)",
        "per host-sample",
        "samples/s",
        "RSS",
        "all streaming after",
    ]
    return md(header, rows) + "\n\nRatios from the same run:\n\n" + ratio_table(d)


def ratio_table(d: dict[str, Any]) -> str:
    """The ratios of an ingest run, one row per host count, a column per ratio it measured."""
    short = {
        (r["hosts"], r["strategy"])
        for r in d["results"]
        if r["samples_per_s"] < 0.9 * r["expected_samples_per_s"]
    }
    columns = [(k, h) for k, h in RATIO_COLUMNS if any(k in r for r in d["ratios"])]
    ratios = []
    for r in d["ratios"]:
        row = [n(r["hosts"])]
        for key, _ in columns:
            cell = ratio(r, key)
            if (r["hosts"], key.split("_over_")[0]) in short:
                cell += " (and fewer samples: it cannot keep up)"
            row.append(cell)
        ratios.append(row)
    return md(["hosts", *(h for _, h in columns)], ratios)


def floors(d: dict[str, Any]) -> str:
    """gputui against the floors, each strategy possibly run more than once (numbered in run
    order, since the machine's noise shows between repeats); ratios from each one's last run."""
    seen: dict[tuple[int, str], int] = {}
    rows = []
    for r in d["results"]:
        k = (r["hosts"], r["strategy"])
        seen[k] = seen.get(k, 0) + 1
        rows.append(
            [
                n(r["hosts"]),
                f"{label(r)} ({seen[k]})",
                f"{r['us_per_host_sample']:,.0f} us",
                f"{r['cpu_pct_of_one_core']:.1f}%",
                n(r["samples_per_s"]),
                f"{r['rss_mib']:.0f} MiB",
            ]
        )
    header = ["hosts", "run", "per host-sample", "CPU (% of one core)", "samples/s", "RSS"]
    return (
        md(header, rows)
        + "\n\nRatios from the same run (each strategy's last run):\n\n"
        + ratio_table(d)
    )


def tui_cost(d: dict[str, Any]) -> str:
    names = {
        "table": "fleet table, sorted by state",
        "table sorted by util": "fleet table, sorted by utilisation",
        "grid": "GPU grid (8,000 cells)",
    }
    ticks = [
        [names.get(k, k), str(v["n"]), ms(v["p50_ms"]), ms(v["p95_ms"]), ms(v["max_ms"])]
        for k, v in d["tick_work_ms"].items()
    ]
    first, last = d["key_to_first_update_ms"], d["key_to_last_update_ms"]
    keys = []
    for k, v in last.items():
        f = first.get(k, {}).get("p50_ms")
        keys.append([k, str(v["n"]), ms(f), ms(v["p50_ms"]), ms(v["p95_ms"]), ms(v["max_ms"])])
    gc = d.get("gc_full_collections", {"n": 0})
    pauses = "none"
    if gc.get("n"):
        pauses = f"{gc['n']}, p50 {ms(gc['p50_ms'])}, longest {ms(gc['max_ms'])}"
    facts = [
        ["full garbage collections in the run", pauses],
        ["app process CPU (% of one core)", f"{100 * d['process_cpu_share']:.0f}%"],
    ]
    if "rss_mib_by_third" in d:
        thirds = ", ".join(f"{x:.0f}" for x in d["rss_mib_by_third"])
        facts.append(["RSS after the first tick and each third of the run", f"{thirds} MiB"])
    return (
        "Per-tick UI work (snapshot handler plus the screen refresh it causes, terminal bytes "
        "included):\n\n"
        + md(["view", "ticks", "p50", "p95", "max"], ticks)
        + "\n\nKey press to screen (first update after the key / last update before the app is "
        "idle):\n\n"
        + md(["key", "presses", "first, p50", "complete, p50", "complete, p95", "max"], keys)
        + "\n\n"
        + md(["over the run", ""], facts)
    )


def before_after(d: dict[str, Any]) -> str:
    seen: dict[str, int] = {}
    rows = []
    for r in d["results"]:
        seen[r["strategy"]] = seen.get(r["strategy"], 0) + 1
        label = BEFORE_AFTER.get(r["strategy"], LABELS.get(r["strategy"], r["strategy"]))
        rows.append(
            [
                f"{label} ({seen[r['strategy']]})",
                f"{r['us_per_host_sample']:,.0f} us",
                f"{r['cpu_pct_of_one_core']:.1f}%",
            ]
        )
    return md(["run", "per host-sample", "CPU (% of one core)"], rows)


def app_ingest(d: dict[str, Any]) -> str:
    def row(label: str, v: dict[str, Any]) -> list[str]:
        return [label, str(v["n"]), ms(v["p50_ms"]), ms(v["p95_ms"]), ms(v["max_ms"])]

    timings = [
        row("UI tick: snapshot handler + the refresh that shows it", d["tick_work_ms"]),
        row("UI tick: snapshot handed to the app to on screen", d["snapshot_to_screen_ms"]),
        row("key press to first screen update, every key", d["key_to_screen_ms"]),
        *(row(f"... {k}", v) for k, v in d["key_to_screen_ms_by_key"].items()),
    ]
    gc = d.get("gc_full_collections", {"n": 0})
    pauses = f"{gc['n']}, longest {ms(gc['max_ms'])}" if gc.get("n") else "none"
    rate = f"{n(d['samples_per_s'])} of {n(d['expected_samples_per_s'])}"
    facts = [
        ["collector samples/s in the window", rate],
        [
            "process CPU (app + collector, % of one core)",
            f"{d['process_cpu_pct_of_one_core']:.1f}%",
        ],
        ["RSS at the end", f"{d['rss_mib']:.0f} MiB"],
        [
            "all hosts streaming after",
            "never" if d["all_streaming_s"] is None else f"{d['all_streaming_s']:.1f} s",
        ],
        ["full garbage collections in the window", pauses],
        ["key presses left out (a tick came between)", str(d["keys_with_a_tick_between"])],
    ]
    return (
        md(["over the window", "n", "p50", "p95", "max"], timings)
        + "\n\n"
        + md([f"{d['window_s']:.0f} s window, {n(d['hosts'])} hosts", ""], facts)
    )


def detection(d: dict[str, Any]) -> str:
    rows = []
    for s in d["summary"]:
        if not s.get("detected"):
            rows.append([s["kind"], s["how"], str(s["injections"]), "-", "-", "-", "-"])
            continue
        rows.append(
            [
                s["kind"],
                s["how"],
                f"{s['detected']}/{s['injections']}",
                ms(s["monitor_p50_ms"]),
                ms(s["monitor_p99_ms"]),
                ms(s["subscriber_p50_ms"]),
                ms(s["subscriber_p99_ms"]),
            ]
        )
    header = [
        "fault",
        "reaches the monitor as",
        "detected",
        "monitor p50",
        "monitor p99",
        "subscriber p50",
        "subscriber p99",
    ]
    return md(header, rows)


def memory_ff(d: dict[str, Any]) -> str:
    rows = [
        [
            f"{p['minute']:g} min",
            f"{p['rss_mib']:.1f} MiB",
            n(p["host_samples"]),
            n(p["events_logged"]),
            f"{p['wall_s']:.0f} s",
        ]
        for p in d["points"]
    ]
    return md(["simulated time", "RSS", "host-samples fed", "event log entries", "wall time"], rows)


def detect_screen(d: dict[str, Any]) -> str:
    kinds = {"xid": "XID 79 pushed by the agent (failed)", "hot": "GPU at 110 C (critical)"}

    def row(what: str, v: dict[str, Any]) -> list[str]:
        cells = [ms(v["p50_ms"]), ms(v["p95_ms"]), ms(v["p99_ms"]), ms(v["max_ms"])]
        return [what, str(v["n"]), *cells]

    rows = [row(kinds.get(k, k), v) for k, v in d["fault_to_screen_ms_by_kind"].items()]
    rows.append(row("every fault", d["fault_to_screen_ms"]))
    missed = len(d["missed_within_10_intervals"])
    workers = d.get("collector_workers") or 0
    facts = [
        ["collector", f"{workers} worker processes" if workers else "in the app's process"],
        ["target p99", ms(d["target_p99_ms"])],
        ["faults not on screen within 10 intervals", str(missed)],
        ["hosts streaming at the end", f"{n(d['hosts_streaming_at_end'])} of {n(d['hosts'])}"],
    ]
    return (
        md(["fault injected on the host, to its STATE cell on screen", "n", "p50", "p95", "p99",
            "max"], rows)
        + "\n\n"
        + md([f"{n(d['hosts'])} hosts, {d['terminal']}", ""], facts)
    )  # fmt: skip


def prom_source(d: dict[str, Any]) -> str:
    wall = f"{d['tick_wall_s_median']:.2f} s ({d['tick_wall_s_max']:.2f} s)"
    rss = f"{d['rss_mib_before']:.0f} / {d['rss_mib_after']:.0f} MiB"
    seen = "not seen" if d["detection_s"] is None else f"{d['detection_s']:.1f} s"
    rows = [
        ["hosts x GPUs", f"{n(d['hosts'])} x 8 ({n(d['gpus'])} GPUs)"],
        ["scrape targets (simulated dcgm-exporter endpoints)", str(d["endpoints"])],
        ["scrape / query interval", f"{d['scrape_s']:g} s / {d['query_s']:g} s"],
        ["queries per tick", str(d["queries_per_tick"])],
        ["tick wall time, median (max)", wall],
        [
            "... queries, decoding and mapping, median",
            f"{d['tick_query_decode_map_s_median']:.2f} s",
        ],
        ["... feeding and judging every host, median", f"{d['tick_feed_judge_s_median']:.2f} s"],
        ["CPU per tick, median", f"{d['tick_cpu_s_median']:.2f} s"],
        ["CPU per GPU per tick", f"{d['tick_cpu_us_per_gpu']:.1f} us"],
        [
            "RSS before the source / after the ticks",
            f"{rss} ({d['rss_kib_per_host']:.1f} KiB/host)",
        ],
        ["XID 79 at the exporter to the host judged failed", seen],
    ]
    ssh = d.get("ssh_path")
    if ssh:
        what = f"SSH path, same run: {n(ssh['hosts'])} hosts at {ssh['interval_s']:g} s"
        cpu = f"{ssh['cpu_us_per_gpu_sample']:.1f} us ({ssh['cpu_pct_of_one_core']:.1f}% of a core)"
        rows += [
            [f"{what}, CPU per GPU per sample", cpu],
            [f"{what}, RSS", f"{ssh['rss_mib']:.0f} MiB ({ssh['rss_kib_per_host']:.1f} KiB/host)"],
        ]
    return md(["Prometheus source", ""], rows)


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "memory-200": ("memory-200.json", memory_200),
    "ingest": ("ingest.json", ingest),
    "tui-cost": ("tui_cost-1000.json", tui_cost),
    "tui-cost-before": ("tui_cost-before-1000.json", tui_cost),
    "detection": ("detection.json", detection),
    "memory-ff-1000": ("memory-ff-1000.json", memory_ff),
    "ingest-before-after": ("ingest-before-after-1000.json", before_after),
    "ingest-watchdog-before-after": ("ingest-watchdog-before-after.json", before_after),
    "ingest-floors-1000": ("ingest-floors-1000.json", floors),
    "ingest-floors-3000": ("ingest-floors-3000.json", floors),
    "app-ingest-1000": ("app_ingest-1000.json", app_ingest),
    "ingest-targets-1000": ("ingest-targets-1000.json", floors),
    "ingest-targets-3000": ("ingest-targets-3000.json", floors),
    "ingest-targets-10000": ("ingest-targets-10000.json", ingest),
    "app-ingest-3000-workers": ("app_ingest-3000-workers2.json", app_ingest),
    "app-ingest-3000-final": ("app_ingest-3000-workers2-final.json", app_ingest),
    "detect-screen-1000": ("detect_screen-1000.json", detect_screen),
    "prom-source-10000": ("prom_source-10000.json", prom_source),
}


def refresh(doc: str, results: Path) -> tuple[str, list[str]]:
    done = []
    for name, (file, render) in TABLES.items():
        path = results / file
        pattern = re.compile(
            rf"(<!-- table: {re.escape(name)} -->\n)(?:.*?\n)?(<!-- end: {re.escape(name)} -->)",
            re.S,
        )
        if not path.exists() or not pattern.search(doc):
            continue
        table = render(json.loads(path.read_text()))
        doc = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), doc)  # type: ignore[misc]
        done.append(name)
    return doc, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    doc, done = refresh(args.doc.read_text(), args.results)
    args.doc.write_text(doc)
    print(f"{args.doc}: refreshed {', '.join(done) or 'nothing'}")


if __name__ == "__main__":
    main()
