#!/usr/bin/env python3
"""Prints the figures of a bench/run.sh run as Markdown tables (for
bench/REPORT.md): both servers side by side, per rate.

usage: bench/report.py [results dir]   (default bench/results; BENCH_RESULTS=dir also works)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))


def read(name):
    try:
        with open(os.path.join(RES, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def runs():
    out = []
    try:
        with open(os.path.join(RES, "runs.jsonl")) as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except OSError:
        pass
    return out


def ms(v):
    return "–" if v != v else f"{v:.0f}"


def mib(kib):
    try:
        return f"{int(kib) / 1024:.0f}"
    except (TypeError, ValueError):
        return "–"


def cdr(name):
    for line in read(name + ".txt").splitlines():
        if line.startswith("cdr_rows"):
            return line[len("cdr_rows "):].split(";")[0]
    return ""


def table(kind, rs, with_cdr):
    print(
        "| server | target /s | attempted | failed % | achieved /s | p50 ms | p99 ms | server CPU % of a core "
        "| sipp CPU % | server MiB before → after | load1 before/after |" + (" CDR rows (centralita) |" if with_cdr else "")
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_cdr else ""))
    for r in sorted((r for r in rs if r["name"].startswith(kind)), key=lambda r: (r["target"], r["server"])):
        row = (
            f"| {r['server']} | {r['target']} | {r['attempted']} | {r['failed_pct']:.3f} | {r['achieved']} "
            f"| {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {r['cpu_server_pct']} | {r['cpu_sipp_pct']} "
            f"| {mib(r['mem_before_kib'])} → {mib(r['mem_after_kib'])} | {r['load1_before']} / {r['load1_after']} |"
        )
        if with_cdr:
            row += f" {cdr(r['name']) if r['server'] == 'centralita' else '–'} |"
        print(row)
    print()


def main():
    rs = runs()
    print("```")
    print(read("machine.txt"))
    print(read("seed.txt"))
    print("```")
    print()
    print("### Authenticated REGISTER/s (each request a different agent)")
    print()
    table("reg_", rs, False)
    print("### Calls/s (INVITE, 407, ACK, INVITE with digest, 100, 180, 200, ACK, 1 s, BYE, 200)")
    print()
    table("call_", rs, True)
    print("Memory: centralita's VmRSS; Kamailio's PSS summed over its processes (shared memory counted once).")
    print()
    rss = read("rss_centralita.txt")
    if rss:
        print("### centralita RSS after the call runs")
        print()
        print("```")
        print(rss)
        print("```")
    prof = [r for r in rs if r["name"].startswith("profile_")]
    for r in prof:
        print()
        print(f"Profiled run ({r['name']}): {r['failed_pct']:.3f} % failed, {r['achieved']}/s, p99 {ms(r['p99_ms'])} ms, "
              f"server {r['cpu_server_pct']} % of a core (perf attached).")


if __name__ == "__main__":
    main()
