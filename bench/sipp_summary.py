#!/usr/bin/env python3
"""One line of figures from a sipp run: achieved rate, failures, response-time percentiles.

usage: sipp_summary.py name target_rate count start end stat.csv rtt.csv
"""
import csv
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


def main():
    name, rate, count, start, end, stat, rtt = sys.argv[1:8]
    elapsed = float(end) - float(start)
    head, last = last_row(stat)
    ok = failed = 0
    if head:
        col = {h: i for i, h in enumerate(head)}
        ok = int(last[col["SuccessfulCall(C)"]])
        failed = int(last[col["FailedCall(C)"]])
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
    print(
        f"{name}: target {rate}/s, {total} attempted of {count}, ok {ok}, failed {failed} ({fail_pct:.3f} %), "
        f"wall {elapsed:.1f} s, achieved {ok / elapsed if elapsed else 0:.0f}/s, "
        f"response ms p50 {pct(50):.2f} p90 {pct(90):.2f} p99 {pct(99):.2f} max {samples[-1] if samples else float('nan'):.2f}"
    )


if __name__ == "__main__":
    main()
