#!/usr/bin/env python3
"""Prints the figures section of bench/REPORT.md from bench/results/*.txt."""
import glob
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
# BENCH_RESULTS=dir reads a partial re-run kept apart (bench/run.sh OUT=dir).
RES = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))


def read(name):
    try:
        with open(os.path.join(RES, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def runs(prefix):
    out = []
    for path in glob.glob(os.path.join(RES, prefix + "_*.txt")):
        m = re.search(r"_(\d+)\.txt$", path)
        if m:
            out.append((int(m.group(1)), open(path).read().strip()))
    return sorted(out)


LINE = re.compile(
    r"target (\d+)/s, (\d+) attempted of (\d+), ok (\d+), failed (\d+) \(([\d.]+) %\), wall ([\d.]+) s, "
    r"achieved (\d+)/s, response ms p50 ([\d.na]+) p90 ([\d.na]+) p99 ([\d.na]+) max ([\d.na]+)"
)


def table(rows, with_cdr=False):
    head = "| target /s | attempted | ok | failed | failed % | achieved /s | p50 ms | p90 ms | p99 ms | max ms | server CPU | sipp CPU |"
    if with_cdr:
        head += " CDR rows |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, text in rows:
        m = LINE.search(text)
        if not m:
            continue
        g = m.groups()
        cells = [g[0], g[1], g[3], g[4], g[5], g[7], g[8], g[9], g[10], g[11]]
        cpu = re.search(r"cpu: server (\d+) % of a core, this sipp (\d+) %", text)
        cells += [cpu.group(1) + " %", cpu.group(2) + " %"] if cpu else ["", ""]
        if with_cdr:
            cdr = re.search(r"cdr_rows (.*)", text)
            cells.append(cdr.group(1) if cdr else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


print("### Machine\n")
print("```\n" + read("machine.txt") + "\n" + read("seed.txt") + "\n```\n")
print("### Authenticated REGISTER/s (each request a different agent of 10,000)\n")
print(table(runs("reg")) + "\n")
print("### Calls/s through the B2BUA (INVITE, 407, INVITE, 100, 180, 200, ACK, BYE; SDP relayed; CDRs written)\n")
print(table(runs("call"), with_cdr=True) + "\n")
print("### RSS with 10,000 registered contacts\n")
print("```\n" + read("rss.txt") + "\n```")
