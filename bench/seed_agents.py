#!/usr/bin/env python3
"""Seeds N agents into a running `centralita serve` through its HTTP API
(POST /api/agents as admin, bounded concurrency) and writes the sipp
injection file with each agent's SIP username, password and extension.

usage: seed_agents.py http://127.0.0.1:PORT admin-password N users.csv [concurrency]

There is no bulk endpoint: one request per agent, the path an administrator
uses. Every request has a timeout and the whole run a deadline.
"""
import concurrent.futures
import json
import sys
import time
import urllib.request

DEADLINE_S = 1800


def main():
    base, admin_pw, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    req = urllib.request.Request(
        f"{base}/api/auth/login",
        data=json.dumps({"login": "admin", "password": admin_pw}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        cookie = r.headers["Set-Cookie"].split(";", 1)[0]
    t0 = time.time()

    def create(i):
        if time.time() - t0 > DEADLINE_S:
            raise RuntimeError("seeding deadline passed")
        body = {
            "name": f"Bench {i:05d}",
            "login": f"bench{i:05d}",
            "password": f"bench-console-{i:05d}",
            "role": "agent",
        }
        req = urllib.request.Request(
            f"{base}/api/agents",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Cookie": cookie},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            c = json.load(r)["sipCredentials"]
        return i, c["username"], c["password"], c["extension"], c["domain"]

    rows = [None] * n
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done, (i, user, pw, ext, domain) in enumerate(pool.map(create, range(n)), 1):
            rows[i] = (user, pw, ext, domain)
            if done % 1000 == 0:
                print(f"  {done} agents, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    with open(out, "w") as f:
        f.write("SEQUENTIAL\n")
        for user, pw, ext, _ in rows:
            f.write(f"{user};[authentication username={user} password={pw}];{ext}\n")
    print(f"seeded {n} agents through POST /api/agents in {time.time() - t0:.1f}s "
          f"({workers} concurrent requests), realm {rows[0][3]}")
    # The realm, for Kamailio's HA1s.
    with open(out + ".realm", "w") as f:
        f.write(rows[0][3])


if __name__ == "__main__":
    main()
