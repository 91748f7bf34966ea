#!/usr/bin/env python3
"""Figures of one sipp run: achieved rate, failures, response-time percentiles.

usage: sipp_summary.py name target_rate count start end stat.csv rtt.csv [key=value ...]

Prints one line for people and appends the same figures, with the extra
key=value pairs (server, CPU, RSS, load...), as a JSON object to
$RUNS_JSONL when it is set (bench/report.py reads that file).
"""
import csv
import json
import os
import sys


def last_row(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return None, None
    if len(rows) < 2:
        return None, None
    return rows[0], rows[-1]


def seconds(hms):
    try:
        h, m, sec = hms.split(":")[:3]
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return float("nan")


def active_seconds(path):
    """Seconds from sipp's start until its count of successful calls stopped
    growing (from the per-second -fd rows). The wall time is no use for the
    rate: sipp waits for the last stuck call (up to -timeout) before exiting."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return float("nan")
    if len(rows) < 2:
        return float("nan")
    col = {h: i for i, h in enumerate(rows[0])}
    final = int(rows[-1][col["SuccessfulCall(C)"]])
    for r in rows[1:]:
        if int(r[col["SuccessfulCall(C)"]]) >= final:
            return seconds(r[col["ElapsedTime(C)"]])
    return float("nan")


def main():
    name, rate, count, start, end, stat, rtt = sys.argv[1:8]
    extra = dict(a.split("=", 1) for a in sys.argv[8:])
    elapsed = float(end) - float(start)
    head, last = last_row(stat)
    ok = failed = retrans = 0
    if head:
        col = {h: i for i, h in enumerate(head)}
        ok = int(last[col["SuccessfulCall(C)"]])
        failed = int(last[col["FailedCall(C)"]])
        retrans = int(last[col["Retransmissions(C)"]]) if "Retransmissions(C)" in col else 0
    total = ok + failed
    samples = []
    try:
        with open(rtt) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        samples.append(float(parts[1]))
                    except ValueError:
                        pass
    except (OSError, TypeError):
        pass
    samples.sort()

    def pct(p):
        if not samples:
            return float("nan")
        return samples[min(len(samples) - 1, int(len(samples) * p / 100))]

    fail_pct = 100.0 * failed / total if total else 100.0
    # A run that never started (sipp died) has no calls: count every one as failed.
    if total == 0:
        failed = int(count)
    active = active_seconds(stat)
    fig = {
        "name": name, "target": int(rate), "count": int(count), "attempted": total, "ok": ok,
        "failed": failed, "failed_pct": round(fail_pct, 3), "wall_s": round(elapsed, 1),
        "achieved": round(ok / active) if active == active and active > 0 else 0,
        "active_s": active, "retransmissions": retrans,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
        "max_ms": samples[-1] if samples else float("nan"),
    }
    fig.update(extra)
    print(
        f"{name}: target {rate}/s, {total} attempted of {count}, ok {ok}, failed {failed} ({fail_pct:.3f} %), "
        f"wall {elapsed:.1f} s, last success at {active:.0f} s, achieved {fig['achieved']}/s, retransmissions {retrans}, "
        f"response ms p50 {pct(50):.2f} p90 {pct(90):.2f} p99 {pct(99):.2f} max {fig['max_ms']:.2f}"
        + "".join(f", {k} {v}" for k, v in extra.items())
    )
    out = os.environ.get("RUNS_JSONL")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(fig) + "\n")


if __name__ == "__main__":
    main()
