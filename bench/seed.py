#!/usr/bin/env python3
"""Benchmark `provisioner seed` against psql's \\copy and a server-side COPY.

Builds the release binary, generates N rows, loads them into a fresh database with each
method R times (order rotated every round, table truncated and CHECKPOINTed before each run)
and prints a markdown table of medians for bench/README.md. Progress goes to stderr.

    python3 bench/seed.py [--rows N] [--runs R] [--connections 4,2] [--stdin-rows M] [--keep]

The first --connections value also runs with --no-ledger, to show what the ledger costs.

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs a superuser
(server-side COPY, CHECKPOINT) and a server on this machine that can read /tmp.
"""
import argparse, datetime, json, os, shutil, statistics, subprocess, tempfile

from benchlib import BenchError, log, run, max_rss_mib, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV file (N)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; each method runs once a round")
    ap.add_argument("--connections", default="4,2", help="provisioner --connections values")
    ap.add_argument("--stdin-rows", type=int, default=3_000_000,
                    help="rows for the stdin memory check (M); 0 skips it")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    if args.rows < 1 or args.runs < 1 or args.stdin_rows < 0 or not conns:
        ap.error("--rows and --runs must be >= 1, --stdin-rows >= 0, --connections non-empty")
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
        csv = os.path.join(tmp, f"accounts-{n}.csv")
        log(f"generating {n} rows into {csv}")
        with open(csv, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f, check=True)
        os.chmod(csv, 0o644)

        run(["createdb", *maint, db])
        created = True
        sql(open(os.path.join(ROOT, "sql", "accounts.sql")).read())
        version = sql("SHOW server_version")[0].strip()

        def prov(c, ledger=True):
            def go():
                out, err, wall = run(["/usr/bin/time", "-v", BIN, "-q", "seed", csv, "--database-url",
                                      url, "--connections", str(c), "--json"]
                                     + ([] if ledger else ["--no-ledger"]))
                return wall, json.loads(out)["elapsed_s"], max_rss_mib(err)
            return go

        def psql_copy(client_side):
            verb = "\\copy" if client_side else "COPY"
            stmt = f"{verb} accounts ({COLS}) FROM '{csv}' (FORMAT csv, HEADER)"
            def go():
                _, err, wall = run(["/usr/bin/time", "-v", "psql", "-X", "-q", "-v",
                                    "ON_ERROR_STOP=1", "-d", url, "-c", stmt])
                return wall, None, max_rss_mib(err) if client_side else None
            return go

        methods = {f"provisioner ({c} conn)": prov(c) for c in conns}
        # The ledger's cost: the same run without it.
        methods[f"provisioner ({conns[0]} conn, --no-ledger)"] = prov(conns[0], ledger=False)
        methods["psql \\copy"] = psql_copy(True)
        methods["server COPY"] = psql_copy(False)
        names = list(methods)
        walls, inner, rss = ({m: [] for m in names} for _ in range(3))
        for r, m in rotating(names, args.runs):
            sql("TRUNCATE accounts RESTART IDENTITY", "CHECKPOINT")
            wall, elapsed, mib = methods[m]()
            count = int(sql("SELECT count(*) FROM accounts")[0])
            if count != n:
                raise BenchError(f"{m}: accounts holds {count} rows after the load, expected {n}")
            walls[m].append(wall)
            if elapsed is not None:
                inner[m].append(elapsed)
            if mib is not None:
                rss[m].append(mib)
            log(f"round {r + 1}/{args.runs} {m}: {wall:.2f} s"
                + (f" (elapsed_s {elapsed:.2f})" if elapsed is not None else "")
                + (f", peak RSS {mib:.1f} MiB" if mib is not None else ""))

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
        base_psql, base_server = med["psql \\copy"], med["server COPY"]
        print("| method | median wall s | rows/s | × psql \\copy | × server COPY | peak RSS MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for m in names:
            peak = f"{max(rss[m]):.1f}" if rss[m] else "—"
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {base_psql / med[m]:.2f} | "
                  f"{base_server / med[m]:.2f} | {peak} |")
        print()
        nproc = run(["nproc"])[0].strip()
        print(f"N={n} rows, R={args.runs} runs, PostgreSQL {version}, nproc {nproc}, "
              f"{datetime.date.today().isoformat()}. Wall times include process startup; "
              "× = how many times faster than the baseline (ratio of medians); peak RSS is the "
              "client process's (the server does the work in a server COPY).")
        print(per_run("Raw wall s", walls, names))
        print(per_run("provisioner elapsed_s (JSON)", inner, names))
        if stdin_line:
            print(stdin_line)
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
