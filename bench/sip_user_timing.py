#!/usr/bin/env python3
"""Does a wrong-password REGISTER take longer for an existing SIP user than
for an unknown one? (issue 8: one probe per name must not tell which exist.)

Starts `centralita serve` on a fresh data directory (127.0.0.1 only),
creates USERS agents through the API, then for each round sends, for every
existing and every unknown name, a REGISTER, reads the 401, answers it with
a wrong password and times that answer (UDP round trip). Rounds are 2.1 s
apart, so every name is probed after the 2 s the server reloads a known
account after a failed check (the path that used to set existing users
apart: 382 vs 192 us in the attack report). Every probe comes
from its own loopback address so the per-address ban never starts, and a
round stays below the per-account guard's 20 failures per name. Prints the
median and quartiles of both groups.

    python3 bench/sip_user_timing.py target/release/centralita [USERS=5] [ROUNDS=15]
"""
import hashlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else 'target/release/centralita'
USERS = min(int(sys.argv[2]) if len(sys.argv) > 2 else 5, 50)
ROUNDS = min(int(sys.argv[3]) if len(sys.argv) > 3 else 15, 19)
ADMIN_PW = 'admin-password-1'
DOMAIN = 'centralita.local'


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


http_port, sip_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
data = tempfile.mkdtemp(prefix='sip-timing-')
env = dict(os.environ, CENTRALITA_DATA_DIR=data, CENTRALITA_HTTP_LISTEN=f'127.0.0.1:{http_port}',
           CENTRALITA_SIP_LISTEN=f'127.0.0.1:{sip_port}', CENTRALITA_ADMIN_PASSWORD=ADMIN_PW,
           CENTRALITA_SIP_AUTH_FAIL_LIMIT='1000000', RUST_LOG='warn')
proc = subprocess.Popen([BIN, 'serve'], env=env, stdout=open(os.path.join(data, 'log'), 'w'),
                        stderr=subprocess.STDOUT)


def api(method, path, body=None, cookie=None):
    c = http.client.HTTPConnection('127.0.0.1', http_port, timeout=30)
    h = {'Content-Type': 'application/json'}
    if cookie:
        h['Cookie'] = cookie
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse()
    text = r.read()
    c.close()
    return r.status, r.getheader('Set-Cookie'), text


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def register(user, call_id, cseq, src_port, auth=None):
    msg = (f'REGISTER sip:{DOMAIN} SIP/2.0\r\n'
           f'Via: SIP/2.0/UDP 127.0.0.1:{src_port};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n'
           f'Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=t{cseq}\r\nTo: <sip:{user}@{DOMAIN}>\r\n'
           f'Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{src_port}>\r\n')
    if auth:
        msg += f'Authorization: {auth}\r\n'
    return (msg + 'Content-Length: 0\r\n\r\n').encode()


def probe(user, n):
    src = f'127.{1 + n // 60000}.{(n // 250) % 240 + 1}.{n % 250 + 1}'
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(5)
    port = s.getsockname()[1]
    call_id = f'timing-{n}'
    s.sendto(register(user, call_id, 1, port), ('127.0.0.1', sip_port))
    ch = s.recv(65535).decode(errors='replace')
    nonce = ch.split('nonce="', 1)[1].split('"', 1)[0]
    uri = f'sip:{DOMAIN}'
    ha1 = md5(f'{user}:{DOMAIN}:wrong-password')
    resp = md5(f'{ha1}:{nonce}:00000001:cn:auth:' + md5(f'REGISTER:{uri}'))
    auth = (f'Digest username="{user}", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn"')
    pkt = register(user, call_id, 2, port, auth)
    t = time.perf_counter()
    s.sendto(pkt, ('127.0.0.1', sip_port))
    answer = s.recv(65535).decode(errors='replace')
    took = time.perf_counter() - t
    s.close()
    return took, answer.split('\r\n', 1)[0]


try:
    for _ in range(100):
        try:
            if api('GET', '/api/health')[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    _, cookie, _ = api('POST', '/api/auth/login', {'login': 'admin', 'password': ADMIN_PW})
    cookie = cookie.split(';', 1)[0]
    known = []
    for i in range(USERS):
        st, _, body = api('POST', '/api/agents', {'name': f'Timing Agent {i}', 'login': f'timing{i}',
                                                 'password': f'timing-pass-{i}', 'role': 'agent'}, cookie)
        known.append(json.loads(body)['sipCredentials']['username'])
    unknown = [f'{u}x' for u in known]
    times = {'existing': [], 'unknown': []}
    lines = set()
    n = 0
    for rnd in range(ROUNDS):
        if rnd:
            time.sleep(2.1)
        pairs = [('existing', u) for u in known] + [('unknown', u) for u in unknown]
        random.shuffle(pairs)
        for group, user in pairs:
            took, line = probe(user, n)
            n += 1
            times[group].append(took * 1e6)
            lines.add((group, line))
    for group, v in times.items():
        q = statistics.quantiles(v, n=4)
        print(f'{group:9s} n={len(v)}  median {statistics.median(v):7.0f} us  '
              f'quartiles {q[0]:.0f}-{q[2]:.0f} us')
    print('answers:', sorted(lines))
finally:
    proc.terminate()
    proc.wait(timeout=10)
