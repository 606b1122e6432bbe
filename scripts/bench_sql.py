#!/usr/bin/env python3
"""SQL latency through adit's HTTP API beside DuckDB (in-process) on the same Parquet files,
and through adit's PostgreSQL and Flight SQL ports beside its HTTP API.

Writes a data set once (Delta tables under DIR, by the `deltalake` package: several million
energy readings over one day, shares, blocks; row groups of at most --row-group rows, 128 Ki as
adit's compaction writes them), serves it with the adit binary BIN (`adit
query` with `[query.postgres]` and `[query.flight]`, its own nats-server), and runs typical
queries RUNS times each through `POST /api/v1/sql`, through DuckDB reading the tables'
Parquet files, through psycopg on the PostgreSQL port and through the ADBC Flight SQL driver;
prints each median, adit's HTTP time over DuckDB's, and each protocol's over HTTP's; then a
10-row and a 1M-row result through HTTP's Arrow stream, Flight SQL and psycopg. Measure a
release build:

    cargo build --release && python3 scripts/bench_sql.py target/release/adit [--rows 5000000]

With --landed the data set is built the way users' tables grow instead: `adit simulate` (10
sites x 200 machines, --rate events/s, and a simulated pool of --pool-miners miners finding a
block every --block-every shares) publishes readings, shares and blocks into `adit run --roles
pipelines,query`, whose landing commits them batch by batch, compacts and vacuums, and whose
PPLNS pipeline splits each block into payouts, until energy_readings holds --rows rows; DuckDB
then reads exactly the files of each table's current Delta snapshot (not files compaction
removed), and the queries are a user's of their farm and pool:

    python3 scripts/bench_sql.py target/release/adit --landed [--rows 2000000] [--rate 100000]

With --landed each query's answer through the API is also checked against DuckDB's, value by
value (floats to 1e-9 relative, times to the second); a difference stops the run.

--keep leaves the landed tables (and adit's log, as DIR/adit.log) in place and prints where;
--reuse DIR queries tables an earlier --landed --keep run left there, without landing again
(adit then runs only its query role).
"""

import argparse
import http.client
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

# One kept-alive HTTP connection per port, as a dashboard or a driver holds one: a new TCP
# connection and urllib's request building per statement would be timed as adit's.
_connections = {}

DAY = "2026-11-20"


def need(module, package):
    try:
        return __import__(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", package])
        return __import__(module)


def free_ports(n):
    """`n` distinct free ports: each socket is held until all are chosen (a port closed at
    once can be handed out again by the next bind)."""
    held = [socket.socket() for _ in range(n)]
    for s in held:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


def generate(root, rows, row_group):
    """Energy readings (2,000 machines on 10 sites over one day), shares and blocks, in row
    groups of at most `row_group` rows."""
    pa = need("pyarrow", "pyarrow")
    need("numpy", "numpy")
    import numpy as np
    deltalake = need("deltalake", "deltalake")
    properties = deltalake.WriterProperties(max_row_group_size=row_group)
    rng = np.random.default_rng(7)
    day = np.datetime64(DAY, "D").astype(np.int32)

    def dates(n):
        return pa.array(np.full(n, day, dtype=np.int32), pa.date32())

    start = np.datetime64(f"{DAY}T00:00:00", "us").astype(np.int64)
    day_us = 86_400_000_000
    ts = np.sort(start + rng.integers(0, day_us, rows))
    machines = rng.integers(0, 2000, rows)
    readings = pa.table({
        "site": pa.array([f"site-{m % 10:02d}" for m in machines]),
        "machine": pa.array([f"m-{m:04d}" for m in machines]),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "power_w": pa.array(rng.normal(3200, 150, rows)),
        "energy_wh": pa.nulls(rows, pa.float64()),
        "source": pa.array(["meter"] * rows),
        "seq": pa.array(np.arange(1, rows + 1), pa.int64()),
        "date": dates(rows),
    })
    deltalake.write_deltalake(os.path.join(root, "energy_readings"), readings, partition_by=["date"],
                              writer_properties=properties)
    n_shares = rows // 2
    share_ts = np.sort(start + rng.integers(0, day_us, n_shares))
    miners = rng.integers(0, 1000, n_shares)
    shares = pa.table({
        "pool": pa.array(["main"] * n_shares),
        "miner": pa.array([f"4miner{m:04d}" for m in miners]),
        "worker": pa.array([f"rig{m % 7}" for m in miners]),
        "difficulty": pa.array(rng.integers(5_000, 50_000, n_shares), pa.int64()),
        "height": pa.array(1000 + (share_ts - start) // (day_us // 720), pa.int64()),
        "ts": pa.array(share_ts, pa.timestamp("us", tz="UTC")),
        "seq": pa.array(np.arange(1, n_shares + 1), pa.int64()),
        "date": dates(n_shares),
    })
    deltalake.write_deltalake(os.path.join(root, "shares"), shares, partition_by=["date"],
                              writer_properties=properties)
    heights = np.arange(1000, 1720, 3)
    blocks = pa.table({
        "pool": pa.array(["main"] * len(heights)),
        "height": pa.array(heights, pa.int64()),
        "hash": pa.array([f"{h:064x}" for h in heights]),
        "ts": pa.array(start + (heights - 1000) * (day_us // 720), pa.timestamp("us", tz="UTC")),
        "date": dates(len(heights)),
    })
    deltalake.write_deltalake(os.path.join(root, "blocks"), blocks, partition_by=["date"],
                              writer_properties=properties)


QUERIES = [
    ("count", "SELECT count(*) FROM energy_readings"),
    ("group-by site over the day",
     "SELECT site, avg(power_w) AS avg_w, max(power_w) AS max_w FROM energy_readings "
     f"WHERE date = DATE '{DAY}' GROUP BY site ORDER BY site"),
    ("per-minute bucket",
     "SELECT date_trunc('minute', ts) AS minute, sum(power_w) AS w FROM energy_readings "
     "GROUP BY 1 ORDER BY 1"),
    ("point lookup, last 100",
     "SELECT * FROM energy_readings WHERE machine = 'm-0042' ORDER BY ts DESC LIMIT 100"),
    ("join shares and blocks",
     "SELECT b.height, count(*) AS shares, sum(s.difficulty) AS work FROM shares s "
     "JOIN blocks b ON s.pool = b.pool AND s.height = b.height "
     "GROUP BY b.height ORDER BY work DESC LIMIT 10"),
]


# The farm's questions on the readings the pipelines landed (machine ids repeat per site).
LANDED_QUERIES = [
    ("count", "SELECT count(*) FROM energy_readings"),
    ("group-by site",
     "SELECT site, avg(power_w) AS avg_w, max(power_w) AS max_w FROM energy_readings "
     "GROUP BY site ORDER BY site"),
    ("per-minute bucket",
     "SELECT date_trunc('minute', ts) AS minute, sum(power_w) AS w FROM energy_readings "
     "GROUP BY 1 ORDER BY 1"),
    ("one machine, last 100",
     "SELECT * FROM energy_readings WHERE site = 'site-03' AND machine = 'm-042' "
     "ORDER BY ts DESC LIMIT 100"),
    ("top 5 machines",
     "SELECT site, machine, avg(power_w) AS w FROM energy_readings "
     "GROUP BY site, machine ORDER BY w DESC, site, machine LIMIT 5"),
    ("one site, one hour",
     "SELECT machine, avg(power_w) AS w, count(*) AS n FROM energy_readings "
     "WHERE site = 'site-03' AND ts > TIMESTAMP '{last}' - INTERVAL '1 hour' "
     "AND ts <= TIMESTAMP '{last}' GROUP BY machine ORDER BY machine"),
    ("one site's total",
     "SELECT count(*) AS n, sum(power_w) AS w, max(power_w) AS max_w FROM energy_readings "
     "WHERE site = 'site-03'"),
    # Each payout (a block, a miner) with the shares that miner submitted at the block's
    # height: the work behind what each miner was paid.
    ("shares x payouts, per miner",
     "SELECT p.miner, count(DISTINCT p.hash) AS blocks, count(*) AS shares, "
     "sum(s.difficulty) AS work FROM payouts p JOIN shares s ON s.pool = p.pool "
     "AND s.height = p.height AND s.miner = p.miner "
     "GROUP BY p.miner ORDER BY work DESC, p.miner LIMIT 10"),
]

# The landed tables the queries read, each a view of its snapshot's files in DuckDB.
LANDED_TABLES = ["energy_readings", "shares", "payouts"]

# The latest value, asked of the last-value table through adit and of the landed files by
# DuckDB (the same answer, checked value by value): (name, adit's SQL, DuckDB's SQL).
LATEST_QUERIES = [
    ("latest, one machine",
     "SELECT site, machine, ts, power_w FROM latest_energy_readings "
     "WHERE site = 'site-03' AND machine = 'm-042'",
     "SELECT site, machine, ts, power_w FROM energy_readings "
     "WHERE site = 'site-03' AND machine = 'm-042' ORDER BY ts DESC, seq DESC LIMIT 1"),
    ("latest, every machine (sum)",
     "SELECT count(*) AS machines, sum(power_w) AS w FROM latest_energy_readings",
     "SELECT count(*) AS machines, sum(power_w) AS w FROM (SELECT power_w, row_number() OVER "
     "(PARTITION BY site, machine ORDER BY ts DESC, seq DESC) AS n FROM energy_readings) "
     "WHERE n = 1"),
]


def post_sql(port, sql):
    """The body of a statement's answer through `POST /api/v1/sql` on the port's kept-alive
    connection (opened again once if the server closed it); OSError when none is answered."""
    for attempt in (0, 1):
        conn = _connections.pop(port, None) or http.client.HTTPConnection(
            "127.0.0.1", port, timeout=600)
        try:
            conn.request("POST", "/api/v1/sql", body=sql.encode(),
                         headers={"content-type": "text/plain"})
            r = conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if attempt:
                raise OSError(f"POST /api/v1/sql: {e}") from e
            continue
        _connections[port] = conn
        if r.status != 200:
            raise OSError(f"POST /api/v1/sql: HTTP {r.status}: {body[:500]!r}")
        return body


def sql_rows(port, sql):
    """The rows of a statement's answer through the HTTP API."""
    return json.loads(post_sql(port, sql))


def land(bin_path, config, tables, nats_url, port, pid, a):
    """Publishes simulated readings, shares and blocks until the running adit (process `pid`)
    has committed at least `a.rows` energy readings, then waits for the count to settle and
    adit to go quiet."""
    rows = a.rows
    count = "SELECT count(*) AS n FROM energy_readings"
    sim = subprocess.Popen([bin_path, "--config", config, "--tables", tables,
                            "--nats-url", nats_url, "simulate", "--sites", "10",
                            "--machines", str(a.machines), "--rate", str(a.rate),
                            "--pool-miners", str(a.pool_miners),
                            "--block-every", str(a.block_every)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    try:
        n = 0
        while n < rows:
            if sim.poll() is not None:
                raise SystemExit(f"adit simulate stopped ({sim.returncode}) at {n} rows")
            time.sleep(1)
            try:
                n = sql_rows(port, count)[0]["n"]
            except OSError:
                n = 0
            if int(time.time() - started) % 10 == 0:
                print(f"  landed {n} readings after {time.time() - started:.0f} s", file=sys.stderr)
    finally:
        sim.terminate()
        sim.wait()
    last, same = -1, 0
    while same < 5:
        time.sleep(1)
        n = sql_rows(port, count)[0]["n"]
        same = same + 1 if n == last else 0
        last = n
    print(f"landed {last} readings in {time.time() - started:.0f} s", file=sys.stderr)
    quiet(pid)


def cpu_seconds(pid):
    """CPU seconds (user and system) process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet(pid, limit=600):
    """Waits until process `pid` has used under 5 % of a core in each of 3 seconds running:
    the readings' count settles while the other pipelines (energy, hashrate, anomalies...)
    still work through the same stream and compactions still run, and queries timed beside
    that measure the machine's load, not the query."""
    started, calm, used = time.time(), 0, cpu_seconds(pid)
    while calm < 3:
        if time.time() - started > limit:
            raise SystemExit(f"adit still busy {limit} s after the landing settled")
        time.sleep(1)
        now = cpu_seconds(pid)
        calm = calm + 1 if now - used < 0.05 else 0
        used = now
    print(f"adit quiet after {time.time() - started:.0f} s more", file=sys.stderr)


def snapshot_files(table_dir):
    """The Parquet files of a Delta table's current snapshot."""
    deltalake = need("deltalake", "deltalake")
    return deltalake.DeltaTable(table_dir).file_uris()


def arrow_rows(relation):
    """Rows of a DuckDB query, fetched as Arrow (as adit's engine holds them)."""
    fetch = getattr(relation, "to_arrow_table", None) or getattr(relation, "arrow")
    return fetch().num_rows


def adit_time(port, sql):
    """Seconds from sending a statement to its whole answer read, and its rows."""
    t = time.perf_counter()
    body = post_sql(port, sql)
    elapsed = time.perf_counter() - t
    return elapsed, len(json.loads(body))


def same_answer(port, con, sql):
    """Whether adit's rows for `sql` (through the API) are DuckDB's, value by value: floats
    to 1e-9 relative, times to the second, the rest exactly. Returns a reason, or None."""
    return same_rows(sql_rows(port, sql), con.sql(sql))


def same_rows(ours, relation):
    """Whether adit's rows (JSON objects) are a DuckDB relation's, as `same_answer` says."""
    names = [d[0] for d in relation.description]
    theirs = relation.fetchall()
    if len(ours) != len(theirs):
        return f"{len(ours)} rows, DuckDB {len(theirs)}"
    for i, (row, expected) in enumerate(zip(ours, theirs)):
        # By position: the engines name unaliased columns differently (count(*)).
        for name, got, want in zip(names, row.values(), expected):
            if isinstance(want, float) or isinstance(got, float):
                same = got is not None and want is not None and math.isclose(
                    float(got), float(want), rel_tol=1e-9)
            elif hasattr(want, "isoformat"):
                same = str(got).replace("T", " ")[:19] == str(want)[:19]
            else:
                same = got == want
            if not same:
                return f"row {i} column {name}: {got!r}, DuckDB {want!r}"
    return None


def wire_clients(pg_port, flight_port):
    """Functions running SQL through psycopg and through ADBC's Flight SQL driver; each returns
    the number of rows, all of them read by the client."""
    psycopg = need("psycopg", "psycopg[binary]")
    need("adbc_driver_flightsql", "adbc-driver-flightsql")
    import adbc_driver_flightsql.dbapi as flight_sql
    pg = psycopg.connect(host="127.0.0.1", port=pg_port, user="bench", dbname="adit",
                         autocommit=True)
    flight = flight_sql.connect(f"grpc://127.0.0.1:{flight_port}")

    def through_pg(sql):
        return len(pg.execute(sql).fetchall())

    def through_flight(sql):
        cur = flight.cursor()
        cur.execute(sql)
        rows = cur.fetch_arrow_table().num_rows
        cur.close()
        return rows
    return through_pg, through_flight


# A small and a large result: what each client protocol costs to move rows.
RESULTS = [
    ("10 rows", "SELECT * FROM energy_readings ORDER BY ts DESC LIMIT 10"),
    ("1M rows", "SELECT site, machine, ts, power_w FROM energy_readings LIMIT 1000000"),
]


def http_arrow(port, sql):
    """Rows of `sql` through `GET /api/v1/sql?format=arrow&stream=true`, every byte read and
    decoded as Arrow IPC (as a client of HTTP's Arrow stream holds them)."""
    pa_ipc = need("pyarrow", "pyarrow").ipc
    conn = _connections.pop(port, None) or http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", "/api/v1/sql?" + urllib.parse.urlencode(
        {"q": sql, "format": "arrow", "stream": "true"}))
    r = conn.getresponse()
    body = r.read()
    _connections[port] = conn
    if r.status != 200:
        raise OSError(f"GET /api/v1/sql: HTTP {r.status}: {body[:500]!r}")
    return pa_ipc.open_stream(body).read_all().num_rows


def _varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(field, payload):
    return bytes([field << 3 | 2]) + _varint(len(payload)) + payload


def arrow_flight_client(flight_port):
    """A function running SQL through Arrow's own Flight client (pyarrow.flight, C++): the
    Flight SQL statement command built by hand (an `Any` holding `CommandStatementQuery`),
    `GetFlightInfo`, then `DoGet` of its ticket, every batch read. Beside ADBC's driver (Go,
    its rows handed over through the C data interface) it tells the server's cost from the
    driver's."""
    need("pyarrow", "pyarrow")
    import pyarrow.flight as flight
    client = flight.FlightClient(f"grpc://127.0.0.1:{flight_port}")
    kind = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"

    def through_arrow_flight(sql):
        command = _length_delimited(1, kind) + _length_delimited(2, _length_delimited(1, sql.encode()))
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        return sum(client.do_get(e.ticket).read_all().num_rows for e in info.endpoints)
    return through_arrow_flight


def results(a, port, pg, flight, arrow_flight):
    """Each result of RESULTS through HTTP's Arrow stream, Flight SQL (ADBC's driver and Arrow's
    own client) and psql (psycopg), medians of --runs, each beside HTTP's."""
    print(f"\n{'result':<28} {'http arrow ms':>14} {'adbc flight':>12} {'/http':>6} "
          f"{'arrow flight':>13} {'/http':>6} {'pg ms':>9} {'/http':>6}")
    for name, sql in RESULTS:
        runs = {"http": [], "flight": [], "arrow_flight": [], "pg": []}
        for _ in range(a.runs):
            counts = []
            for protocol, client in (("http", lambda q: http_arrow(port, q)),
                                     ("flight", flight), ("arrow_flight", arrow_flight),
                                     ("pg", pg)):
                t = time.perf_counter()
                counts.append(client(sql))
                runs[protocol].append(time.perf_counter() - t)
            if len(set(counts)) != 1:
                raise SystemExit(f"{name}: HTTP, Flight SQL (ADBC, Arrow) and psql answered {counts} rows")
        ms = {k: statistics.median(v) * 1000 for k, v in runs.items()}
        print(f"{name:<28} {ms['http']:14.1f} {ms['flight']:12.1f} {ms['flight'] / ms['http']:6.2f} "
              f"{ms['arrow_flight']:13.1f} {ms['arrow_flight'] / ms['http']:6.2f} "
              f"{ms['pg']:9.1f} {ms['pg'] / ms['http']:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--rows", type=int, help="readings (default 5000000; 2000000 --landed)")
    ap.add_argument("--dir", help="table root (default: a folder under the temp dir)")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--row-group", type=int, default=131_072,
                    help="rows per row group of the written tables (adit's compaction writes "
                         "131072; parquet's default is 1048576)")
    ap.add_argument("--landed", action="store_true",
                    help="build the tables through adit's pipelines (see the top of this file)")
    ap.add_argument("--explain", action="store_true",
                    help="print adit's EXPLAIN ANALYZE of each query (where its time went)")
    ap.add_argument("--rate", type=int, default=100_000, help="--landed: events/s simulated")
    ap.add_argument("--machines", type=int, default=200,
                    help="--landed: machines per site (10 sites; 1000 for 10 000 machines)")
    ap.add_argument("--pool-miners", type=int, default=1000,
                    help="--landed: miners of the simulated pool, a share each per tick")
    ap.add_argument("--block-every", type=int, default=10_000,
                    help="--landed: the simulated pool's shares per block")
    ap.add_argument("--keep", action="store_true",
                    help="--landed: leave the landed tables and adit's log under --dir")
    ap.add_argument("--reuse", metavar="DIR",
                    help="query the tables a --landed --keep run left in DIR; no landing")
    a = ap.parse_args()
    if a.reuse:
        a.landed, a.dir = True, a.reuse
    a.rows = a.rows or (2_000_000 if a.landed else 5_000_000)
    duckdb = need("duckdb", "duckdb")
    if a.reuse:
        if not os.path.isdir(os.path.join(a.dir, "energy_readings", "_delta_log")):
            raise SystemExit(f"--reuse {a.dir}: no energy_readings table there")
    elif a.landed:
        # Always a new root: the landing's positions belong to the nats-server started below.
        a.dir = a.dir or tempfile.mkdtemp(prefix="adit-bench-landed-")
        subprocess.run(["rm", "-rf", a.dir], check=True)
        os.makedirs(a.dir)
    else:
        a.dir = a.dir or os.path.join(tempfile.gettempdir(), "adit-bench-sql")
        marker = os.path.join(a.dir, f".rows-{a.rows}-{a.row_group}")
        if not os.path.exists(marker):
            subprocess.run(["rm", "-rf", a.dir], check=True)
            os.makedirs(a.dir)
            print(f"writing {a.rows} readings, {a.rows // 2} shares and 240 blocks under {a.dir}", file=sys.stderr)
            generate(a.dir, a.rows, a.row_group)
            open(marker, "w").close()

    nats_port, port, pg_port, flight_port = free_ports(4)
    nats_url = f"nats://127.0.0.1:{nats_port}"
    store = tempfile.mkdtemp()
    config = os.path.join(store, "adit.toml")
    with open(config, "w") as f:
        f.write(f'[query.postgres]\nlisten = "127.0.0.1:{pg_port}"\n'
                f'[query.flight]\nlisten = "127.0.0.1:{flight_port}"\n')
    nats = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = ["run", "--roles", "pipelines,query"] if a.landed and not a.reuse else ["query"]
    log = open(os.path.join(a.dir if a.keep else store, "adit.log"), "a")
    adit = subprocess.Popen([a.bin, "--config", config, "--tables", a.dir,
                             "--listen", f"127.0.0.1:{port}", "--nats-url", nats_url, *command],
                            stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                time.sleep(0.1)
        con = duckdb.connect()
        if a.landed:
            if not a.reuse:
                land(a.bin, config, a.dir, nats_url, port, adit.pid, a)
            landed = [t for t in LANDED_TABLES
                      if os.path.isdir(os.path.join(a.dir, t, "_delta_log"))]
            for table in landed[:]:
                files = snapshot_files(os.path.join(a.dir, table))
                if not files:
                    landed.remove(table)
                    continue
                sizes = [os.path.getsize(f.removeprefix("file://")) for f in files]
                listed = ", ".join(f"'{f}'" for f in files)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                            f"[{listed}], hive_partitioning = true)")
                held = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                print(f"{table}: {held} rows in {len(files)} Parquet files in its snapshot, "
                      f"{sum(sizes) / 1e6:.1f} MB", file=sys.stderr)
            # The newest reading's second, in UTC: the hour before it is the time-range scan.
            con.execute("SET TimeZone = 'UTC'")
            last = con.sql("SELECT strftime(max(ts), '%Y-%m-%d %H:%M:%S') "
                           "FROM energy_readings").fetchall()[0][0]
            queries = [(n, q.replace("{last}", last)) for n, q in LANDED_QUERIES
                       if "payouts" not in q or "payouts" in landed]
            if "payouts" not in landed:
                print("shares x payouts: NOT MEASURED, no payouts table landed (an older "
                      "--keep run, or --pool-miners 0)", file=sys.stderr)
        else:
            for table in ["energy_readings", "shares", "blocks"]:
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                            f"'{a.dir}/{table}/**/*.parquet', hive_partitioning = true)")
            queries = QUERIES
        pg, flight = wire_clients(pg_port, flight_port)
        print(f"{'query':<28} {'adit ms':>9} {'duckdb ms':>10} {'ratio':>7} "
              f"{'pg ms':>8} {'/http':>6} {'flight ms':>10} {'/http':>6}  rows")
        for name, sql in queries:
            runs = {"http": [], "duck": [], "pg": [], "flight": []}
            rows = None
            clients = [("http", lambda q: len(json.loads(post_sql(port, q)))),
                       ("duck", lambda q: arrow_rows(con.sql(q))), ("pg", pg), ("flight", flight)]
            # A statement of a few milliseconds is run several times in a row by each client
            # and the mean taken, so that what the client timed before it left behind
            # (DuckDB's threads winding down, a response still being sent) is a small part.
            t = time.perf_counter()
            clients[0][1](sql)
            reps = max(1, min(50, int(0.02 / max(time.perf_counter() - t, 1e-6))))
            for run in range(a.runs):
                # A new order each run (seeded): a statement timed always right after the same
                # other one pays what that one leaves behind, a millisecond on the fastest.
                order = clients[:]
                random.Random(run).shuffle(order)
                got = {}
                for protocol, client in order:
                    t = time.perf_counter()
                    for _ in range(reps):
                        got[protocol] = client(sql)
                    runs[protocol].append((time.perf_counter() - t) / reps)
                rows, duck_rows = got["http"], got["duck"]
                for protocol in ("pg", "flight"):
                    if got[protocol] != rows:
                        raise SystemExit(f"{name}: {protocol} answered {got[protocol]} rows, HTTP {rows}")
            if duck_rows != rows:
                raise SystemExit(f"{name}: adit answered {rows} rows, DuckDB {duck_rows}")
            if a.landed and (differs := same_answer(port, con, sql)):
                raise SystemExit(f"{name}: adit's answer is not DuckDB's: {differs}")
            ms = {k: statistics.median(v) * 1000 for k, v in runs.items()}
            print(f"{name:<28} {ms['http']:9.1f} {ms['duck']:10.1f} {ms['http'] / ms['duck']:7.2f} "
                  f"{ms['pg']:8.1f} {ms['pg'] / ms['http']:6.2f} "
                  f"{ms['flight']:10.1f} {ms['flight'] / ms['http']:6.2f}  {rows}")
        if a.explain:
            for name, sql in queries:
                print(f"\nEXPLAIN ANALYZE of {name}:", file=sys.stderr)
                for row in sql_rows(port, "EXPLAIN ANALYZE " + sql):
                    print(row.get("plan", row), file=sys.stderr)
        results(a, port, pg, flight, arrow_flight_client(flight_port))
        if a.reuse:
            print("\nlatest value: NOT MEASURED with --reuse (the last-value tables follow the "
                  "stream, and a --reuse run has none); run --landed", file=sys.stderr)
        elif a.landed:
            print(f"\n{'latest value':<28} {'adit ms':>9} {'duckdb ms':>10} {'ratio':>7}  "
                  "(adit: the last-value table; DuckDB: the newest row of the files)")
            for name, ours, theirs in LATEST_QUERIES:
                if (differs := same_rows(sql_rows(port, ours), con.sql(theirs))):
                    raise SystemExit(f"{name}: adit's answer is not DuckDB's: {differs}")
                runs = {"http": [], "duck": []}
                for _ in range(a.runs):
                    runs["http"].append(adit_time(port, ours)[0])
                    t = time.perf_counter()
                    arrow_rows(con.sql(theirs))
                    runs["duck"].append(time.perf_counter() - t)
                ms = {k: statistics.median(v) * 1000 for k, v in runs.items()}
                print(f"{name:<28} {ms['http']:9.2f} {ms['duck']:10.1f} "
                      f"{ms['http'] / ms['duck']:7.3f}")
    finally:
        # adit first: a nats-server stopped under it would fill its log with reconnects.
        adit.terminate()
        adit.wait()
        nats.terminate()
        nats.wait()
        log.close()
        subprocess.run(["rm", "-rf", store])
        if a.keep:
            print(f"landed tables and adit.log kept in {a.dir} (--reuse {a.dir})", file=sys.stderr)
        elif a.landed and not a.reuse:
            subprocess.run(["rm", "-rf", a.dir])


if __name__ == "__main__":
    main()
