#!/usr/bin/env python3
"""Sends every surface of a running adit its worst input, as a stranger would (issue 22).

While the target runs (best: `adit demo` from a release build, with its demo miner mining),
this script, standard library only:
  - SQL: deep chains, long UNIONs, value bombs through operators and functions, huge
    literals, and every scalar function the engine lists called with extreme arguments;
  - HTTP: every route of the OpenAPI document with every method, hostile path segments,
    query strings, headers and bodies (random bytes, deep and huge JSON);
  - ingest: every event kind with control characters and oversized fields;
  - Stratum: junk and over-long lines, control characters and oversized fields in every
    method's parameters, and getjob floods;
  - PostgreSQL (with --pg): every SQL attack again through Debian's psql, and 64 connections
    held open from one address (silent or mid-startup): the per-address cap refuses a client
    while they are held, and lets it in once they close;
and checks between rounds that the process is the same (same pid), `/health` answers and SQL
still answers. At the end it checks that every share the pool accepted landed in the `shares`
table, and reports the peak RSS against the budget. Exits non-zero if anything failed.

  python3 scripts/hostile.py --http http://127.0.0.1:8080 --stratum 127.0.0.1:3333 \
      --pid "$(pgrep -f 'adit.*demo')" --seconds 300 --rss-budget-mib 3072
"""

import argparse
import json
import os
import random
import select
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

CONTROL = "\r\n\x00\x1b[31m\x7f\u0085\u2028"
HOSTILE_TEXT = [
    CONTROL,
    "x" * 70_000,
    "../../../../etc/passwd",
    "%0d%0aX-Injected: 1",
    "'; DROP TABLE shares; --",
    "é" * 5000,
    "*",
    ">",
    "a.b.c",
    "",
    " ",
    "\ud7ff\ue000\uffff",
]


def http(base, method, path, body=None, headers=None, token=None, timeout=60):
    """Status and body of one request; status 0 when the connection failed."""
    if body is not None and len(body) > 65536:
        return http_large(base, method, path, body, headers, token, timeout)
    req = urllib.request.Request(base + path, data=body, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, ValueError) as e:
        return 0, str(e).encode()


def http_large(base, method, path, body, headers, token, timeout):
    """One request with a large body, sent the way curl sends it: the body goes out while the
    answer is watched for, and sending stops when the server has answered. A server may
    answer before it reads the body (a route that takes none, a refused token, a body over
    its limit) and then close the connection; urllib would keep writing into the closed
    socket and report a broken pipe instead of the answer."""
    url = urllib.parse.urlsplit(base)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if token:
        lines.append("Authorization: Bearer " + token)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    answer = b""
    try:
        with socket.create_connection((url.hostname, url.port or 80), timeout=timeout) as s:
            s.sendall(head)
            sent = 0
            while sent < len(body):
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    break
                try:
                    sent += s.send(body[sent:sent + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except (ConnectionResetError, socket.timeout, TimeoutError):
                pass
    except (OSError, socket.timeout) as e:
        return 0, str(e).encode()
    status_line, _, rest = answer.partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return 0, b"no answer to a request with a body of %d bytes" % len(body)
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


def sql(base, statement, token):
    return http(
        base,
        "POST",
        "/api/v1/sql?format=json",
        statement.encode("utf-8", "surrogatepass"),
        {"Content-Type": "text/plain"},
        token,
    )


def psql_run(pg, token, statement):
    """Runs `statement` through Debian's psql on the PostgreSQL port `pg` (host:port); returns
    (exit code, stderr). Exit 0, 1 or 3 is an answer (rows, psql's own error, or the server's
    error under ON_ERROR_STOP); 2 is a lost connection."""
    import subprocess
    host, port = pg.rsplit(":", 1)
    out = subprocess.run(
        ["psql", f"host={host} port={port} user=hostile dbname=adit sslmode=prefer", "-X", "-A",
         "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=statement.encode("utf-8", "surrogatepass").replace(b"\x00", b""),
        env={**os.environ, "PGPASSWORD": token or "", "PGCONNECT_TIMEOUT": "10"},
        capture_output=True, timeout=120)
    return out.returncode, out.stderr


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Run:
    def __init__(self, args):
        self.args = args
        self.failures = []
        self.counts = {}
        self.peak_rss_kib = 0
        self.stop = threading.Event()

    def count(self, surface, status, what="", answer=b""):
        key = f"{surface} {status // 100}xx" if status else f"{surface} no answer"
        self.counts[key] = self.counts.get(key, 0) + 1
        # 5xx is our fault unless it says a dependency is unavailable; no answer at all is a
        # crash or a hang.
        if status == 0 or (status >= 500 and status not in (502, 503)):
            said = answer[:200].decode(errors="replace")
            self.failures.append(f"{surface}: status {status} for {what[:160]!r}: {said}")

    def psql(self, statement):
        try:
            code, err = psql_run(self.args.pg, self.args.token, statement)
        except Exception as e:  # a hang past the timeout is a failure like a lost connection
            code, err = 2, str(e).encode()
        self.count("pgwire", 200 if code in (0, 1, 3) else 0, statement, err)

    def sample_rss(self):
        while not self.stop.is_set():
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(self.args.pid))
            time.sleep(0.2)

    def alive(self, where):
        if not os.path.exists(f"/proc/{self.args.pid}"):
            self.failures.append(f"process {self.args.pid} gone after {where}")
            return False
        status, _ = http(self.args.http, "GET", "/health")
        if status != 200:
            self.failures.append(f"/health {status} after {where}")
        status, body = sql(self.args.http, "SELECT 1 AS one", self.args.token)
        if status != 200:
            self.failures.append(f"SELECT 1 answered {status} after {where}: {body[:200]!r}")
        return True

    # --- SQL ---------------------------------------------------------------------------
    def sql_attacks(self):
        doubling = "WITH a0 AS (SELECT repeat('x', 1000) s)" + "".join(
            f", a{i} AS (SELECT s || s s FROM a{i-1})" for i in range(1, 25)
        ) + " SELECT length(s) FROM a24"
        statements = [
            "select 1" + "+1" * 250,
            "select 1" + "+1" * 100_000,
            "select 1" + " OR 1=1" * 5000,
            "select 1" + " UNION ALL select 1" * 3000,
            "select " + "(" * 5000 + "1" + ")" * 5000,
            "select " + "abs(" * 3000 + "1" + ")" * 3000,
            "select 1::int" + "::bigint::int" * 3000,
            doubling,
            "WITH a AS (SELECT repeat('x', 1000000) s) SELECT concat_ws(',', s, s, s, s, s, s, s, s) FROM a",
            "WITH a AS (SELECT repeat('x', 1000000) s) SELECT make_array(s, s, s, s, s, s, s, s) FROM a",
            "WITH a AS (SELECT [repeat('x', 1000000)] s) SELECT array_concat(s, s, s, s, s, s, s, s) FROM a",
            "SELECT repeat('x', 2147483647)",
            "SELECT lpad('x', 2147483647)",
            "SELECT range(1, 9223372036854775807)",
            "SELECT array_repeat(array_repeat(repeat('x', 1000), 10000), 10000)",
            "SELECT '" + "x" * 900_000 + "'",
            "SELECT * FROM generate_series(1, 9223372036854775807)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            "SELECT * FROM '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'",
            "SELECT 1; SELECT 2",
            "\x00" * 1000,
            CONTROL,
            # Issue 56: a type nested by a loop of the parser, COPY's query, keyword constructs
            # whose parsing doubled per level, ARRAY<…> recursed on uncounted, CTEs whose
            # planning doubled per level, a constant repeated over a batch, a type of 3^40.
            "SELECT NULL::int" + "[]" * 1000,
            "COPY (SELECT 1" + "+1" * 1000 + ") TO '/dev/null'",
            "SELECT " + "CAST(" * 24 + "1 +" + " AS INT)" * 24,
            "SELECT " + "ARRAY[" * 24 + "1 +" + "]" * 24,
            "SELECT CAST(NULL AS " + "ARRAY<" * 30000 + "INT" + ">" * 30000 + ")",
            "WITH c AS (" * 40 + "SELECT 1" + ") SELECT * FROM c" * 40,
            "SELECT string_agg(repeat('y', 100000), ',') FROM generate_series(1, 100000)",
            "SELECT CAST(NULL AS TIMESTAMP" + "[3]" * 40 + ")",
            # Each reference to a CTE plans it again: 40 doublings, a trillion plan nodes.
            "WITH a0 AS (SELECT 1 AS x UNION ALL SELECT 2)" + "".join(
                f", a{i} AS (SELECT x FROM a{i-1} UNION ALL SELECT x FROM a{i-1})"
                for i in range(1, 41)) + " SELECT count(*) FROM a40",
        ]
        for statement in statements:
            status, answer = sql(self.args.http, statement, self.args.token)
            self.count("sql", status, statement, answer)
            if self.args.pg:
                self.psql(statement)
        status, body = sql(
            self.args.http,
            "SELECT DISTINCT routine_name FROM information_schema.routines "
            "WHERE function_type = 'SCALAR' ORDER BY 1",
            self.args.token,
        )
        functions = [r["routine_name"] for r in json.loads(body)] if status == 200 else []
        if not functions:
            self.failures.append(f"listing functions: {status} {body[:200]!r}")
        extreme = [
            "repeat('x', 100000)",
            "2147483647",
            "-9223372036854775808",
            "9223372036854775807",
            "1e308",
            "'NaN'",
            "NULL",
            "[repeat('y', 100000), repeat('y', 100000)]",
            "TIMESTAMP '2262-04-11T23:47:16'",
            "INTERVAL '1000000 years'",
            "'" + CONTROL + "'",
        ]
        calls = 0
        for name in functions:
            for arity in range(0, 4):
                args = ", ".join(random.choice(extreme) for _ in range(arity))
                call = f'SELECT "{name}"({args})'
                status, answer = sql(self.args.http, call, self.args.token)
                self.count("sql function", status, call, answer)
                calls += 1
        self.counts["sql function calls"] = calls

    # --- HTTP --------------------------------------------------------------------------
    def http_attacks(self):
        status, body = http(self.args.http, "GET", "/api/v1/openapi.json")
        paths = list(json.loads(body).get("paths", {})) if status == 200 else []
        if not paths:
            self.failures.append(f"openapi: {status}")
        bodies = [
            b"",
            os.urandom(4096),
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
            json.dumps({"x": "y" * 2_000_000}).encode(),
            json.dumps([{"site": CONTROL, "machine": "m" * 5000, "ts": "9999-99-99"}]).encode(),
        ]
        for path in paths:
            if path.startswith("/api/v1/live"):
                continue  # an endless stream; covered with a short read below
            for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                segment = urllib.parse.quote(random.choice(HOSTILE_TEXT)[:2000], safe="")
                concrete = "/".join(
                    segment if part.startswith("{") else part for part in path.split("/")
                )
                query = "?" + urllib.parse.urlencode(
                    {"q": random.choice(HOSTILE_TEXT)[:5000], "format": CONTROL, "limit": "-1",
                     "from": "9999-99-99", "stream": "maybe"}
                )
                headers = {
                    "Content-Type": random.choice(
                        ["application/json", "text/plain", "application/x-ndjson", "x/\x7f"]
                    ),
                    "X-Long": "h" * 6000,
                    "Accept": random.choice(["*/*", "text/csv", "application/vnd.apache.arrow.stream"]),
                }
                body = random.choice(bodies) if method != "GET" else None
                status, answer = http(self.args.http, method, concrete + query, body, headers,
                                      self.args.token)
                what = f"{method} {concrete} body={len(body) if body else 0}B"
                self.count("http", status, what, answer)
        status, _ = http(self.args.http, "GET", "/api/v1/live?subjects=" +
                         urllib.parse.quote(CONTROL), timeout=3)
        self.count("http live", status if status else 200)  # a stream that stays open is fine

    # --- ingest --------------------------------------------------------------------------
    def ingest_attacks(self):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kinds = ["energy", "sensor", "hashrate", "grid", "share", "block", "nope", CONTROL]
        for kind in kinds:
            for text in HOSTILE_TEXT:
                event = {
                    "site": text, "machine": text, "sensor": text, "pool": text, "miner": text,
                    "worker": text, "job_id": text, "nonce": text, "event_id": text,
                    "cluster": text, "hash": text, "ts": now, "power_w": 1e308,
                    "difficulty": 18446744073709551615, "value": 1e308,
                }
                body = json.dumps([event]).encode()
                status, answer = http(self.args.http, "POST",
                                      "/api/v1/ingest/" + urllib.parse.quote(kind, safe=""), body,
                                      {"Content-Type": "application/json"}, self.args.token)
                self.count("ingest", status, f"{kind} {text[:40]}", answer)

    # --- Stratum -------------------------------------------------------------------------
    def stratum_attacks(self):
        host, port = self.args.stratum.rsplit(":", 1)
        lines = [
            os.urandom(512),
            b"x" * 200_000 + b"\n",
            b"{" * 10_000 + b"\n",
            b'{"id":1,"method":"login","params":{"login":"' + CONTROL.encode() + b'","pass":"'
            + b"p" * 100_000 + b'","agent":"\x00"}}\n',
        ]
        # Issue 56: a getjob flood (each cuts a job; bounded per address).
        lines.append(b"".join(
            (json.dumps({"id": i, "method": "getjob", "params": {"id": "x"}}) + "\n").encode()
            for i in range(1000)))
        for text in HOSTILE_TEXT:
            t = text[:100_000]
            for method, params in [
                ("login", {"login": t, "pass": t, "agent": t, "algo": [t], "rigid": t}),
                ("submit", {"id": t, "job_id": t, "nonce": t, "result": t, "algo": t}),
                ("getjob", {"id": t}),
                ("keepalived", {"id": t}),
                (t, {}),
            ]:
                lines.append((json.dumps({"id": 1, "method": method, "params": params}) + "\n").encode())
        wallet = ("44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7"
                  "f2wfn3RVGQBEP3A")
        for i in range(0, len(lines), 6):
            try:
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    login = {"id": 0, "method": "login", "params": {"login": wallet, "pass": "x"}}
                    s.sendall((json.dumps(login) + "\n").encode())
                    for line in lines[i:i + 6]:
                        s.sendall(line)
                    s.settimeout(2)
                    try:
                        while s.recv(65536):
                            pass
                    except (socket.timeout, OSError):
                        pass
                self.count("stratum", 200)
            except OSError as e:
                # A ban or a refused connection is an answer; a refused port is not.
                if isinstance(e, ConnectionRefusedError):
                    self.count("stratum", 0)
                else:
                    self.count("stratum", 200)

    # --- PostgreSQL connections (issue 56) ------------------------------------------------
    def pg_connection_attacks(self):
        """Holds the port's connections open from one address (some silent, some mid-startup):
        the per-address cap must refuse the rest, and once they close, a client gets in."""
        if not self.args.pg:
            return
        host, port = self.args.pg.rsplit(":", 1)
        held = []
        for i in range(64):
            try:
                s = socket.create_connection((host, int(port)), timeout=5)
                if i % 2:
                    s.sendall(b"\x00\x00\x00\x08")  # half a startup packet
                held.append(s)
            except OSError:
                break
        code, err = psql_run(self.args.pg, self.args.token, "SELECT 1")
        refused = b"53300" in err or b"too many clients" in err
        self.count("pgwire-flood", 200 if code in (0, 1, 2, 3) else 0, "a client among 64 held", err)
        for s in held:
            s.close()
        time.sleep(1)
        code, err = psql_run(self.args.pg, self.args.token, "SELECT 1")
        if code != 0:
            self.failures.append(f"after the held connections closed, psql failed: {err[:200]!r}")
        self.counts["pgwire-flood refused while held"] = \
            self.counts.get("pgwire-flood refused while held", 0) + int(refused)

    def metric(self, name, label=None):
        status, body = http(self.args.http, "GET", "/metrics")
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name) and (label is None or label in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def honest_shares_landed(self):
        accepted = self.metric("adit_pool_shares_total", 'result="accepted"')
        deadline = time.time() + 60
        landed = -1
        while time.time() < deadline:
            status, body = sql(self.args.http, "SELECT count(*) AS n FROM shares WHERE accepted",
                               self.args.token)
            if status == 200:
                landed = json.loads(body)[0]["n"]
                if landed >= accepted:
                    break
            time.sleep(1)
        lost = self.metric("adit_pool_events_lost_total")
        if landed < accepted or lost > 0:
            self.failures.append(f"accepted {accepted} shares, {landed} landed, {lost} lost")
        return accepted, landed, lost

    def run(self):
        sampler = threading.Thread(target=self.sample_rss, daemon=True)
        sampler.start()
        start_rss = rss_kib(self.args.pid)
        rounds = 0
        deadline = time.time() + self.args.seconds
        while time.time() < deadline or rounds == 0:
            for name, attack in [("sql", self.sql_attacks), ("http", self.http_attacks),
                                 ("ingest", self.ingest_attacks), ("stratum", self.stratum_attacks),
                                 ("pgwire connections", self.pg_connection_attacks)]:
                attack()
                if not self.alive(f"round {rounds} {name}"):
                    break
            rounds += 1
            if self.failures and not os.path.exists(f"/proc/{self.args.pid}"):
                break
        accepted, landed, lost = self.honest_shares_landed()
        self.stop.set()
        budget = self.args.rss_budget_mib * 1024
        if self.peak_rss_kib > budget:
            self.failures.append(f"peak RSS {self.peak_rss_kib} KiB over {budget} KiB")
        report = {
            "rounds": rounds,
            "answers": dict(sorted(self.counts.items())),
            "same_pid": os.path.exists(f"/proc/{self.args.pid}"),
            "rss_mib": {"start": start_rss // 1024, "peak": self.peak_rss_kib // 1024,
                        "budget": self.args.rss_budget_mib},
            "shares": {"accepted": accepted, "landed": landed, "lost": lost},
            "failures": self.failures[:50],
        }
        print(json.dumps(report, indent=2))
        return 0 if not self.failures else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--http", required=True)
    p.add_argument("--stratum", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--token")
    p.add_argument("--pg", help="host:port of the PostgreSQL port: every SQL attack through psql too")
    p.add_argument("--seconds", type=int, default=300)
    p.add_argument("--rss-budget-mib", type=int, default=3072)
    p.add_argument("--seed", type=int, default=22)
    args = p.parse_args()
    random.seed(args.seed)
    sys.exit(Run(args).run())


if __name__ == "__main__":
    main()
