#!/usr/bin/env python3
"""db_text tables for Kamailio's auth_db from the sipp users CSV that
bench/seed_agents.py wrote (the same agents and passwords as centralita).

usage: subscribers.py users.csv realm dbdir

Stores HA1s (MD5 of user:realm:password), as centralita does, so Kamailio
runs with calculate_ha1=0 and neither server hashes a password per request.
"""
import hashlib
import os
import sys


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def main():
    csv, realm, dbdir = sys.argv[1:4]
    os.makedirs(dbdir, exist_ok=True)
    rows = []
    with open(csv) as f:
        for line in f:
            line = line.strip()
            if not line or line == "SEQUENTIAL":
                continue
            user, auth = line.split(";")[:2]
            password = auth.split("password=", 1)[1].rstrip("]")
            rows.append((user, password))
    with open(os.path.join(dbdir, "version"), "w") as f:
        f.write("id(int,auto) table_name(string) table_version(int) \n")
        f.write("0:version:1\n0:subscriber:7\n0:location:9\n0:location_attrs:1\n")
    with open(os.path.join(dbdir, "subscriber"), "w") as f:
        f.write("id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) \n")
        for i, (user, password) in enumerate(rows, 1):
            f.write(f"{i}:{user}:{realm}:-:{md5(f'{user}:{realm}:{password}')}:{md5(f'{user}@{realm}:{realm}:{password}')}\n")
    print(f"{len(rows)} subscribers for realm {realm} in {dbdir}")


if __name__ == "__main__":
    main()
