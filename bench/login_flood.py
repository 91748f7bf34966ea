#!/usr/bin/env python3
"""Console login flood against the real binary (issue 8), on 127.0.0.1 only.

Starts `centralita serve` on a fresh data directory, logs the admin in once
(its address becomes trusted), then sends ROUNDS bursts of N concurrent wrong
logins, each from its own loopback address (127.0.x.y, so the per-address
limit does not stop them before the password check), while the admin logs in
again from its address. Reports answers by status, latencies, the admin's
login time during the flood, the server's RSS before, at peak and after, and
whether jemalloc's background thread (which hands freed memory back) runs.

    python3 bench/login_flood.py target/release/centralita [N=200] [ROUNDS=2]
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else 'target/release/centralita'
N = min(int(sys.argv[2]) if len(sys.argv) > 2 else 200, 2000)
ROUNDS = min(int(sys.argv[3]) if len(sys.argv) > 3 else 2, 10)
ADMIN_PW = 'admin-password-1'
ADMIN_SRC = '127.0.0.250'

data = tempfile.mkdtemp(prefix='login-flood-')
s = socket.socket()
s.bind(('127.0.0.1', 0))
port = s.getsockname()[1]
s.close()
env = dict(os.environ, CENTRALITA_DATA_DIR=data, CENTRALITA_HTTP_LISTEN=f'127.0.0.1:{port}',
           CENTRALITA_SIP_LISTEN='127.0.0.1:0', CENTRALITA_ADMIN_PASSWORD=ADMIN_PW, RUST_LOG='warn')
proc = subprocess.Popen([BIN, 'serve'], env=env, stdout=open(os.path.join(data, 'log'), 'w'),
                        stderr=subprocess.STDOUT)


def rss_mb():
    with open(f'/proc/{proc.pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) // 1024
    return 0


def request(path, body=None, src='127.0.0.1'):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30, source_address=(src, 0))
    c.request('POST' if body else 'GET', path, json.dumps(body) if body else None,
              {'Content-Type': 'application/json'})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


try:
    for _ in range(100):
        try:
            if request('/api/health') == 200:
                break
        except OSError:
            time.sleep(0.1)
    names = set()
    for t in os.listdir(f'/proc/{proc.pid}/task'):
        with open(f'/proc/{proc.pid}/task/{t}/comm') as f:
            names.add(f.read().strip())
    print('jemalloc background thread:', 'jemalloc_bg_thd' in names)
    t0 = time.time()
    print('admin login, idle:', request('/api/auth/login', {'login': 'admin', 'password': ADMIN_PW}, ADMIN_SRC),
          f'{time.time() - t0:.3f} s')
    print('RSS before:', rss_mb(), 'MB')
    peak, stop = [0], [False]

    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    for rnd in range(ROUNDS):
        statuses, latencies = {}, []
        lock = threading.Lock()

        def one(i):
            t = time.time()
            try:
                st = request('/api/auth/login', {'login': f'user{i}-{rnd}', 'password': 'wrong-password'},
                             f'127.0.{1 + i // 250}.{1 + i % 250}')
            except OSError as e:
                st = type(e).__name__
            with lock:
                latencies.append(time.time() - t)
                statuses[st] = statuses.get(st, 0) + 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
        t0 = time.time()
        for t in threads:
            t.start()
        t1 = time.time()
        admin = request('/api/auth/login', {'login': 'admin', 'password': ADMIN_PW}, ADMIN_SRC)
        admin_s = time.time() - t1
        for t in threads:
            t.join()
        latencies.sort()
        print(f'round {rnd}: {statuses} in {time.time() - t0:.2f} s; latency median '
              f'{latencies[len(latencies) // 2]:.3f} s, max {latencies[-1]:.3f} s; '
              f'admin login during the flood: {admin} in {admin_s:.3f} s')
    print('RSS peak:', peak[0], 'MB')
    for after in (2, 10, 20):
        time.sleep(after - {2: 0, 10: 2, 20: 10}[after])
        print(f'RSS {after} s after:', rss_mb(), 'MB')
    stop[0] = True
finally:
    proc.terminate()
    proc.wait(timeout=10)
