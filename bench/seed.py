#!/usr/bin/env python3
"""Benchmark `provisioner seed` against psql's \\copy, server-side COPY and the server's limit.

Builds the release binary, generates N rows, loads them into a fresh database with each
method R times (order rotated every round, table truncated and CHECKPOINTed before each run)
and prints a markdown table of medians for bench/README.md. Progress goes to stderr.

    python3 bench/seed.py [--rows N] [--runs R] [--connections auto,4,2]
                          [--shape random|sequential] [--stdin-rows M] [--keep]

One command reproduces each table (add --shape sequential for the in-order keys):

    python3 bench/seed.py --rows 1000000 --runs 3
    python3 bench/seed.py --rows 10000000 --runs 1 --connections auto --stdin-rows 0

The first --connections value also runs with --no-ledger, to show what the ledger costs.

The server's ingest limit: after the first server COPY, the loaded rows are exported once with
server-side `COPY (SELECT …) TO 'file' (FORMAT binary)` into K = 2 and K = 4 files (blocks of
5,000 rows, provisioner's batch, dealt round-robin in load order), and each "server limit"
method loads its K files with K concurrent psql `COPY … FROM 'file' (FORMAT binary)`, timed
from the first start to the last exit: no CSV parsing, no client, the server's work alone. The
limit is the faster median of the two; `× limit` is a method's speed as a fraction of it.

--shape random loads `provisioner generate --seed 1` as it is: the unique keys (external_id,
email, username) arrive in random order. --shape sequential rewrites the same file with those
three increasing in row order, so each unique index is appended to in order.

Client CPU is the user + system time of the client process (getrusage of reaped children),
median over runs, per row. Nothing holds the rows in memory and no command has a timeout, so
10M rows only need the disk: the CSV file, and the binary parts (about as big, twice).

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs a superuser
(server-side COPY, CHECKPOINT) and a server on this machine that can read and write /tmp.
"""
import argparse, datetime, json, os, re, shutil, statistics, subprocess, tempfile, time

from benchlib import BenchError, raw_records, log, run, max_rss_mib, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry, children_cpu_s, parse_connections, conn_label

SERVER_COPY = "server COPY"
LIMIT_KS = (2, 4)
BLOCK = 5000  # rows per block of the binary parts: provisioner's default --batch-size
KEYS = ("external_id", "email", "username")
# One CSV field as the file holds it: quoted (with "" inside) or not.
FIELD = re.compile(r'"(?:[^"]|"")*"|[^,"\r\n]*')


def limit_name(k):
    return f"server limit: {k} parallel binary COPY"


def sequential(src, dst):
    """Writes CSV `src` to `dst` with external_id, email and username of row i replaced by
    values that increase with i; returns how many rows. Streams; each record is written back
    as it was read (benchlib.raw_records) but for those three fields."""
    with open(src, newline="") as f, open(dst, "w", newline="") as out:
        records = raw_records(f)
        header, text = next(records, (None, ""))
        if not header or any(k not in header for k in KEYS):
            raise BenchError(f"{src}: header {header!r} lacks one of {', '.join(KEYS)}")
        if max(header.index(k) for k in KEYS) == len(header) - 1:
            raise BenchError(f"{src}: a key column is the last one; the rewrite needs it not to be")
        out.write(text)
        at = {header.index(k): k for k in KEYS}
        n = 0
        for n, (_, text) in enumerate(records, 1):
            pos, fields = 0, []
            for i in range(max(at) + 1):
                end = FIELD.match(text, pos).end()
                if text[end:end + 1] != ",":
                    raise BenchError(f"{src}: record {n} has no field {i + 2}: {text!r}")
                fields.append(text[pos:end])
                pos = end + 1
            new = {"external_id": f"00000000-0000-4000-8000-{n:012x}",
                   "email": f"user{n:09d}@example.test", "username": f"user_{n:09d}"}
            for i, k in at.items():
                fields[i] = new[k]
            out.write(",".join(fields) + "," + text[pos:])
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV file (N)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; each method runs once a round")
    ap.add_argument("--connections", default="auto,4,2",
                    help="provisioner --connections values: auto or numbers")
    ap.add_argument("--shape", choices=("random", "sequential"), default="random",
                    help="order of the unique keys in the file")
    ap.add_argument("--stdin-rows", type=int, default=3_000_000,
                    help="rows for the stdin memory check (M); 0 skips it")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    try:
        conns = parse_connections(args.connections)
    except ValueError as e:
        ap.error(str(e))
    if args.rows < 1 or args.runs < 1 or args.stdin_rows < 0:
        ap.error("--rows and --runs must be >= 1, --stdin-rows >= 0")
    require("cargo", "psql", "createdb", "dropdb", "/usr/bin/time")

    maint, db, url = bench_database("provisioner_bench")
    n = args.rows

    def sql(*stmts):
        return psql(url, *stmts)

    build_release()
    tmp = tempfile.mkdtemp(prefix="provisioner-bench-", dir="/tmp")
    created = False
    try:
        os.chmod(tmp, 0o755)  # server-side COPY reads the file as the postgres user
        data = os.path.join(tmp, f"accounts-{n}-{args.shape}.csv")
        generated = (data if args.shape == "random"
                     else os.path.join(tmp, f"accounts-{n}-random.csv"))
        log(f"generating {n} rows into {generated}")
        with open(generated, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f, check=True)
        if args.shape == "sequential":
            log(f"rewriting the keys in row order into {data}")
            rows = sequential(generated, data)
            os.remove(generated)
            if rows != n:
                raise BenchError(f"{data}: {rows} rows written, expected {n}")
        os.chmod(data, 0o644)
        # The binary parts of the limit methods: written and read by the server's OS user.
        parts_dir = os.path.join(tmp, "parts")
        os.mkdir(parts_dir)
        os.chmod(parts_dir, 0o777)
        parts = {}

        run(["createdb", *maint, db])
        created = True
        sql(open(os.path.join(ROOT, "sql", "accounts.sql")).read())
        version = sql("SHOW server_version")[0].strip()

        def timed(cmd):
            """run() under /usr/bin/time -v: (stdout, wall s, peak RSS MiB, CPU s)."""
            cpu0 = children_cpu_s()
            out, err, wall = run(["/usr/bin/time", "-v", *cmd])
            return out, wall, max_rss_mib(err), children_cpu_s() - cpu0

        def prov(c, ledger=True):
            def go():
                out, wall, mib, cpu = timed([BIN, "-q", "seed", data, "--database-url", url,
                                             "--connections", str(c), "--json"]
                                            + ([] if ledger else ["--no-ledger"]))
                return wall, json.loads(out)["elapsed_s"], mib, cpu
            return go

        def psql_copy(client_side):
            verb = "\\copy" if client_side else "COPY"
            stmt = f"{verb} accounts ({COLS}) FROM '{data}' (FORMAT csv, HEADER)"
            def go():
                _, wall, mib, cpu = timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                           "-c", stmt])
                # A server COPY's psql only waits: its RSS and CPU say nothing.
                return (wall, None) + ((mib, cpu) if client_side else (None, None))
            return go

        def export_parts():
            """Splits the rows one COPY loaded (ids 1..n in file order) into the binary parts."""
            lo, hi = (int(v) for v in sql("SELECT min(id), max(id) FROM accounts")[0].split("|"))
            if (lo, hi) != (1, n):
                raise BenchError(f"export: ids run {lo}..{hi}, expected 1..{n}")
            for k in LIMIT_KS:
                block = max(1, min(BLOCK, n // k))
                parts[k] = [os.path.join(parts_dir, f"part-{k}-{i}.bin") for i in range(k)]
                for i, path in enumerate(parts[k]):
                    sql(f"COPY (SELECT {COLS} FROM accounts WHERE (id - 1) / {block} % {k} = {i} "
                        f"ORDER BY id) TO '{path}' (FORMAT binary)")
            size = sum(os.path.getsize(p) for p in parts[LIMIT_KS[0]]) / 2**20
            log(f"exported the rows into {' and '.join(str(k) for k in LIMIT_KS)} binary parts "
                f"({size:,.0f} MiB a set) in {parts_dir}")

        def server_limit(k):
            def go():
                if k not in parts:
                    raise BenchError(f"{limit_name(k)}: ran before a server COPY exported the "
                                     "parts")
                stmts = [f"COPY accounts ({COLS}) FROM '{p}' (FORMAT binary)" for p in parts[k]]
                t0 = time.perf_counter()
                procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                           "-c", stmt], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True) for stmt in stmts]
                errs = [p.communicate()[1] for p in procs]
                wall = time.perf_counter() - t0
                for p, err in zip(procs, errs):
                    if p.returncode != 0:
                        raise BenchError(f"{limit_name(k)}: a psql exited {p.returncode}:\n"
                                         f"{err.strip()}")
                return wall, None, None, None
            return go

        methods = {f"provisioner ({conn_label(c)})": prov(c) for c in conns}
        # The ledger's cost: the same run without it.
        methods[f"provisioner ({conn_label(conns[0])}, --no-ledger)"] = prov(conns[0], ledger=False)
        methods["psql \\copy"] = psql_copy(True)
        # Before the limit methods: the first round runs in this order, and the first server
        # COPY's rows are what the parts are exported from.
        methods[SERVER_COPY] = psql_copy(False)
        for k in LIMIT_KS:
            methods[limit_name(k)] = server_limit(k)
        names = list(methods)
        walls, inner, rss, cpu = ({m: [] for m in names} for _ in range(4))
        for r, m in rotating(names, args.runs):
            sql("TRUNCATE accounts RESTART IDENTITY", "CHECKPOINT")
            wall, elapsed, mib, cpu_s = methods[m]()
            count = int(sql("SELECT count(*) FROM accounts")[0])
            if count != n:
                raise BenchError(f"{m}: accounts holds {count} rows after the load, expected {n}")
            walls[m].append(wall)
            if elapsed is not None:
                inner[m].append(elapsed)
            if mib is not None:
                rss[m].append(mib)
            if cpu_s is not None:
                cpu[m].append(cpu_s)
            log(f"round {r + 1}/{args.runs} {m}: {wall:.2f} s"
                + (f" (elapsed_s {elapsed:.2f})" if elapsed is not None else "")
                + (f", peak RSS {mib:.1f} MiB" if mib is not None else "")
                + (f", client CPU {cpu_s:.2f} s" if cpu_s is not None else ""))
            if m == SERVER_COPY and not parts:
                export_parts()

        stdin_line = None
        if args.stdin_rows:
            m_rows = args.stdin_rows
            log(f"stdin check: {m_rows} rows piped from generate")
            sql("TRUNCATE accounts RESTART IDENTITY", "CHECKPOINT")
            gen = subprocess.Popen([BIN, "generate", "--count", str(m_rows), "--seed", "2"],
                                   stdout=subprocess.PIPE)
            seed = subprocess.run(["/usr/bin/time", "-v", BIN, "-q", "seed", "-", "--database-url",
                                   url, "--json"], stdin=gen.stdout, capture_output=True, text=True)
            gen.stdout.close()
            if gen.wait() != 0 or seed.returncode != 0:
                raise BenchError(f"stdin check failed: generate exited {gen.returncode}, "
                                 f"seed exited {seed.returncode}:\n{seed.stderr.strip()}")
            count = int(sql("SELECT count(*) FROM accounts")[0])
            if count != m_rows:
                raise BenchError(f"stdin check: accounts holds {count} rows, expected {m_rows}")
            summary = json.loads(seed.stdout)
            file_rss = max(v for m in names if m.startswith("provisioner") for v in rss[m])
            stdin_line = (f"{m_rows} rows via stdin: {summary['rows_per_s']:,.0f} rows/s, peak RSS "
                          f"{max_rss_mib(seed.stderr):.1f} MiB (file {n} rows: {file_rss:.1f} MiB)")

        med = {m: statistics.median(walls[m]) for m in names}
        base_psql, base_server = med["psql \\copy"], med[SERVER_COPY]
        limit_k = min(LIMIT_KS, key=lambda k: med[limit_name(k)])
        limit = med[limit_name(limit_k)]
        print("| method | median wall s | rows/s | × psql \\copy | × server COPY | × limit | "
              "client CPU µs/row | peak RSS MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m in names:
            peak = f"{max(rss[m]):.1f}" if rss[m] else "—"
            us = f"{statistics.median(cpu[m]) / n * 1e6:.2f}" if cpu[m] else "—"
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {base_psql / med[m]:.2f} | "
                  f"{base_server / med[m]:.2f} | {limit / med[m]:.2f} | {us} | {peak} |")
        print()
        nproc = run(["nproc"])[0].strip()
        print(f"N={n} rows, R={args.runs} runs, shape {args.shape} (unique keys "
              + ("in random order" if args.shape == "random" else "increasing in row order")
              + f"), PostgreSQL {version}, nproc {nproc}, {datetime.date.today().isoformat()}. "
              "Wall times include process startup; × = how many times faster than the baseline "
              "(ratio of medians). The limit is the server's own ingest rate: the faster of "
              f"{' and '.join(map(str, LIMIT_KS))} concurrent server-side binary COPYs of the "
              f"rows pre-split into files (here {limit_k}, {n / limit:,.0f} rows/s); × limit = "
              "the fraction of it a method reaches. Client CPU = user + system time of the client "
              "process per row (median over runs); peak RSS is the client process's (the server "
              "does the work in a server COPY).")
        print(per_run("Raw wall s", walls, names))
        print(per_run("Client CPU s", cpu, names, "{:.3f}"))
        print(per_run("provisioner elapsed_s (JSON)", inner, names))
        if stdin_line:
            print(stdin_line)
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
