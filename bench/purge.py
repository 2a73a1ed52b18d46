#!/usr/bin/env python3
"""Benchmark `provisioner purge` against one DELETE … USING statement and ctid-range batches.

Builds the release binary, generates N rows, and deletes them from a fresh database with each
method R times (order rotated every round; before each run the table is truncated, reloaded
with a server-side COPY, VACUUM ANALYZEd and CHECKPOINTed, none of it timed). Prints a
markdown table of medians for bench/README.md. Progress goes to stderr.

    python3 bench/purge.py [--rows N] [--runs R] [--connections 4,2] [--keep]

provisioner purges by the CSV used to seed (its default key, external_id); the baseline
\\copies the external_id column into a temp table, ANALYZEs it and runs one
`DELETE FROM accounts a USING k WHERE a.external_id = k.external_id`.

`provisioner purge --where` deletes the rows a predicate selects (here one that every seeded
row meets, so it deletes N too); its baseline is one psql session running a DO block that
deletes the rows meeting the same predicate in ctid ranges of ~5,000 rows (pages per range
from relpages and reltuples, as provisioner cuts them), committing after each range.

"longest txn s" is the longest batch transaction in the ledger for provisioner, the DELETE
statement's own time (psql \\timing) for DELETE … USING, whose one transaction holds every
row lock, and the longest range's DELETE and COMMIT for the ctid batches.

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs a superuser
(server-side COPY, CHECKPOINT) and a server on this machine that can read /tmp.
"""
import argparse, csv, datetime, json, os, re, shutil, statistics, subprocess, tempfile

from benchlib import BenchError, log, run, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry, parse_connections, conn_label

BASELINE = "DELETE … USING (one statement)"
CTID_BASELINE = "ctid-range batches of 5k (one psql session)"
# What the --where methods delete: every seeded row.
PREDICATE = "external_id IS NOT NULL"
# The ctid baseline: ranges of pages holding ~5,000 rows each, one transaction a range.
CTID_BATCHES = """DO $$
DECLARE
  pages bigint;
  step bigint;
  p bigint := 0;
  deleted bigint;
  total bigint := 0;
  t0 timestamptz;
  longest interval := '0';
BEGIN
  SELECT pg_relation_size(c.oid) / current_setting('block_size')::int,
         greatest(floor(5000 / greatest(c.reltuples / greatest(c.relpages, 1), 1)), 1)
    INTO pages, step FROM pg_class c WHERE c.oid = 'accounts'::regclass;
  WHILE p < pages LOOP
    t0 := clock_timestamp();
    EXECUTE format('DELETE FROM accounts WHERE ctid >= %L::tid AND ctid < %L::tid AND (%s)',
                   format('(%s,0)', p), format('(%s,0)', p + step), $pred$PREDICATE$pred$);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    COMMIT;
    longest := greatest(longest, clock_timestamp() - t0);
    total := total + deleted;
    p := p + step;
  END LOOP;
  RAISE NOTICE 'ctid batches: % rows, % pages a range, longest txn % s',
    total, step, extract(epoch FROM longest);
END $$""".replace("PREDICATE", PREDICATE)


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
    ap.add_argument("--connections", default="4,2",
                    help="provisioner --connections values: auto or numbers")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    try:
        conns = parse_connections(args.connections)
    except ValueError as e:
        ap.error(str(e))
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be >= 1")
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

        def prov(c, where=False):
            name = f"purge {'--where ' if where else ''}({conn_label(c)})"
            by = ["--where", PREDICATE, "--table", "accounts"] if where else [data]
            def go():
                out, _, wall = run([BIN, "-q", "purge", *by, "--database-url", url,
                                    "--connections", str(c), "--yes", "--json"])
                summary = json.loads(out)
                if summary.get("status") != "completed":
                    raise BenchError(f"{name} status {summary.get('status')!r}: "
                                     f"{summary.get('error')}")
                if summary["rows_deleted"] != n:
                    raise BenchError(f"{name} deleted {summary['rows_deleted']} rows, "
                                     f"expected {n} (missing {summary.get('rows_missing')})")
                run_id = summary["run_id"]
                if not isinstance(run_id, int):
                    raise BenchError(f"{name}: no run_id in its JSON: {out.strip()}")
                longest = sql("SELECT extract(epoch FROM max(committed_at - started_at)) "
                              f"FROM provisioner.batches WHERE run_id = {run_id}")[0].strip()
                if not longest:
                    raise BenchError(f"{name}: no batches of run {run_id} in the ledger")
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

        def ctid_batches():
            _, err, wall = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                "-c", CTID_BATCHES])
            m = re.search(r"ctid batches: (\d+) rows, (\d+) pages a range, longest txn ([\d.]+) s",
                          err)
            if not m:
                raise BenchError("no 'ctid batches:' notice from the DO block, got:\n"
                                 + err.strip())
            if int(m.group(1)) != n:
                raise BenchError(f"{CTID_BASELINE} deleted {m.group(1)} rows, expected {n}")
            return wall, None, float(m.group(3))

        methods = {f"provisioner purge ({conn_label(c)})": prov(c) for c in conns}
        methods[BASELINE] = delete_using
        where_names = [f"provisioner purge --where ({conn_label(c)})" for c in conns]
        for name, c in zip(where_names, conns):
            methods[name] = prov(c, where=True)
        methods[CTID_BASELINE] = ctid_batches
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
        base, ctid = med[BASELINE], med[CTID_BASELINE]
        print("| method | median wall s | rows/s | × one DELETE USING | × ctid batches | "
              "longest txn s |")
        print("|---|---:|---:|---:|---:|---:|")
        for m in names:
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {base / med[m]:.2f} | "
                  f"{ctid / med[m]:.2f} | {statistics.median(longest[m]):.3f} |")
        print()
        nproc = run(["nproc"])[0].strip()
        print(f"N={n} rows, R={args.runs} runs, PostgreSQL {version}, nproc {nproc}, "
              f"{datetime.date.today().isoformat()}. Wall times include process startup "
              "(and, for DELETE … USING, loading the keys into a temp table); before each run the "
              "table was reloaded, VACUUM ANALYZEd and CHECKPOINTed, untimed. × = how many times "
              "faster than the baseline (ratio of medians). --where and the ctid batches delete "
              f"the rows `{PREDICATE}` selects, all N. Longest txn = a run's longest batch "
              "transaction in the ledger for provisioner, the DELETE statement's \\timing for "
              "DELETE … USING, the longest range's DELETE and COMMIT for the ctid batches "
              "(medians over runs).")
        print("provisioner purge --where ÷ ctid batches (speed, ratio of medians): "
              + ", ".join(f"{conn_label(c)} {ctid / med[m]:.2f}"
                          for m, c in zip(where_names, conns)))
        print(per_run("Raw wall s", walls, names))
        print(per_run("Longest txn s", longest, names, "{:.3f}"))
        print(per_run("provisioner elapsed_s (JSON)", inner, names))
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
