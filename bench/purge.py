#!/usr/bin/env python3
"""Benchmark `provisioner purge` against one DELETE … USING statement in psql.

Builds the release binary, generates N rows, and deletes them from a fresh database with each
method R times (order rotated every round; before each run the table is truncated, reloaded
with a server-side COPY, VACUUM ANALYZEd and CHECKPOINTed, none of it timed). Prints a
markdown table of medians for bench/README.md. Progress goes to stderr.

    python3 bench/purge.py [--rows N] [--runs R] [--connections 4,2] [--keep]

provisioner purges by the CSV used to seed (its default key, external_id); the baseline
\\copies the external_id column into a temp table, ANALYZEs it and runs one
`DELETE FROM accounts a USING k WHERE a.external_id = k.external_id`. "longest txn s" is
the longest batch transaction in the ledger for provisioner, and the DELETE statement's own
time (psql \\timing) for the baseline, whose one transaction holds every row lock.

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs a superuser
(server-side COPY, CHECKPOINT) and a server on this machine that can read /tmp.
"""
import argparse, csv, datetime, json, os, re, shutil, statistics, subprocess, tempfile

from benchlib import BenchError, log, run, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry

BASELINE = "DELETE … USING (one statement)"


def write_keys(src, dst):
    """Writes the external_id column of CSV `src` to `dst` (header `external_id`); returns
    how many keys. Streams: a full CSV parse, since other fields hold quotes and commas."""
    n = 0
    with open(src, newline="") as f, open(dst, "w") as out:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or "external_id" not in header:
            raise BenchError(f"{src}: no external_id column in header {header!r}")
        i = header.index("external_id")
        out.write("external_id\n")
        for row in rows:
            out.write(row[i] + "\n")
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to seed and purge (N)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; each method runs once a round")
    ap.add_argument("--connections", default="4,2", help="provisioner --connections values")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    if args.rows < 1 or args.runs < 1 or not conns or min(conns) < 1:
        ap.error("--rows and --runs must be >= 1, --connections non-empty and >= 1")
    require("cargo", "psql", "createdb", "dropdb", "nproc")

    maint, db, url = bench_database("provisioner_bench_purge")
    n = args.rows

    def sql(*stmts):
        return psql(url, *stmts)

    def count_rows():
        return int(sql("SELECT count(*) FROM accounts")[0])

    build_release()
    tmp = tempfile.mkdtemp(prefix="provisioner-bench-purge-", dir="/tmp")
    created = False
    try:
        os.chmod(tmp, 0o755)  # server-side COPY reads the file as the postgres user
        data = os.path.join(tmp, f"accounts-{n}.csv")
        keys = os.path.join(tmp, f"keys-{n}.csv")
        log(f"generating {n} rows into {data}")
        with open(data, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f,
                           check=True)
        nkeys = write_keys(data, keys)
        if nkeys != n:
            raise BenchError(f"{data} holds {nkeys} rows, expected {n}")
        os.chmod(data, 0o644)
        os.chmod(keys, 0o644)

        run(["createdb", *maint, db])
        created = True
        sql(open(os.path.join(ROOT, "sql", "accounts.sql")).read())
        version = sql("SHOW server_version")[0].strip()

        def reload():
            sql("TRUNCATE accounts RESTART IDENTITY",
                f"COPY accounts ({COLS}) FROM '{data}' (FORMAT csv, HEADER)")
            count = count_rows()
            if count != n:
                raise BenchError(f"reload: accounts holds {count} rows after COPY, expected {n}")
            sql("VACUUM ANALYZE accounts", "CHECKPOINT")

        def prov(c):
            def go():
                out, _, wall = run([BIN, "-q", "purge", data, "--database-url", url,
                                    "--connections", str(c), "--yes", "--json"])
                summary = json.loads(out)
                if summary.get("status") != "completed":
                    raise BenchError(f"purge ({c} conn) status {summary.get('status')!r}: "
                                     f"{summary.get('error')}")
                if summary["rows_deleted"] != n:
                    raise BenchError(f"purge ({c} conn) deleted {summary['rows_deleted']} rows, "
                                     f"expected {n} (missing {summary.get('rows_missing')})")
                run_id = summary["run_id"]
                if not isinstance(run_id, int):
                    raise BenchError(f"purge ({c} conn): no run_id in its JSON: {out.strip()}")
                longest = sql("SELECT extract(epoch FROM max(committed_at - started_at)) "
                              f"FROM provisioner.batches WHERE run_id = {run_id}")[0].strip()
                if not longest:
                    raise BenchError(f"purge ({c} conn): no batches of run {run_id} in the ledger")
                return wall, summary["elapsed_s"], float(longest)
            return go

        def delete_using():
            out, _, wall = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                "-c", "\\timing on",
                                "-c", "CREATE TEMP TABLE k (external_id uuid)",
                                "-c", f"\\copy k FROM '{keys}' (FORMAT csv, HEADER)",
                                "-c", "ANALYZE k",
                                "-c", "DELETE FROM accounts a USING k "
                                      "WHERE a.external_id = k.external_id"])
            times = re.findall(r"^Time: ([\d.]+) ms", out, re.M)
            if len(times) != 4:
                raise BenchError(f"expected 4 \\timing lines from psql, got:\n{out.strip()}")
            return wall, None, float(times[-1]) / 1000  # the last one is the DELETE's

        methods = {f"provisioner purge ({c} conn)": prov(c) for c in conns}
        methods[BASELINE] = delete_using
        names = list(methods)
        walls, inner, longest = ({m: [] for m in names} for _ in range(3))
        for r, m in rotating(names, args.runs):
            reload()
            wall, elapsed, txn = methods[m]()
            count = count_rows()
            if count != 0:
                raise BenchError(f"{m}: accounts still holds {count} rows after the purge")
            walls[m].append(wall)
            longest[m].append(txn)
            if elapsed is not None:
                inner[m].append(elapsed)
            log(f"round {r + 1}/{args.runs} {m}: {wall:.2f} s"
                + (f" (elapsed_s {elapsed:.2f})" if elapsed is not None else "")
                + f", longest txn {txn:.3f} s")

        med = {m: statistics.median(walls[m]) for m in names}
        base = med[BASELINE]
        print("| method | median wall s | rows/s | × one DELETE USING | longest txn s |")
        print("|---|---:|---:|---:|---:|")
        for m in names:
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {base / med[m]:.2f} | "
                  f"{statistics.median(longest[m]):.3f} |")
        print()
        nproc = run(["nproc"])[0].strip()
        print(f"N={n} rows, R={args.runs} runs, PostgreSQL {version}, nproc {nproc}, "
              f"{datetime.date.today().isoformat()}. Wall times include process startup "
              "(and, for the baseline, loading the keys into a temp table); before each run the "
              "table was reloaded, VACUUM ANALYZEd and CHECKPOINTed, untimed. × = how many times "
              "faster than one DELETE … USING (ratio of medians). Longest txn = a run's longest "
              "batch transaction in the ledger for provisioner, the DELETE statement's \\timing "
              "for the baseline (medians over runs).")
        print(per_run("Raw wall s", walls, names))
        print(per_run("Longest txn s", longest, names, "{:.3f}"))
        print(per_run("provisioner elapsed_s (JSON)", inner, names))
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
