#!/usr/bin/env python3
"""Benchmark what reject mode costs: `provisioner seed --rejects` on a clean file and on one
with 1% bad rows, next to a plain seed and psql's \\copy of the clean file; then on files where
1% and 50% of the rows break a foreign key.

In the 1% file half the bad rows are refused by the client-side checks (an impossible uuid),
half by the server (a CHECK violation, which COPY names, so each costs one more try of the rest
of its batch). In the foreign-key files every K-th row names a plan missing from the `plans`
table that accounts.plan references (only for those methods): COPY names none of them, so each
is found by bisection, or by a try of its row alone. Every run is checked: the table holds
exactly the good rows and the rejects file exactly the bad ones. Prints a markdown table of
medians; progress goes to stderr.

    python3 bench/rejects.py [--rows N] [--runs R] [--connections C] [--every K]
                             [--fk-every 100,2] [--keep]

Connects like psql (local socket, OS user) unless DATABASE_URL is set.
"""
import argparse, csv, datetime, json, os, shutil, statistics, subprocess, tempfile, time

from benchlib import BenchError, log, run, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry

EXIT_REJECTED = 3


def corrupt(clean, dirty, every):
    """Writes `clean` to `dirty` with every `every`-th record made bad, alternately for the
    client (external_id) and for the server (role); returns how many of each."""
    csv.field_size_limit(1 << 30)
    bad = {"client": 0, "server": 0}
    with open(clean, newline="") as src, open(dirty, "w", newline="") as out:
        reader, writer = csv.reader(src), csv.writer(out, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        ext, role = header.index("external_id"), header.index("role")
        for i, row in enumerate(reader, 1):
            if i % every == 0:
                if (i // every) % 2:
                    row[ext], kind = f"not-a-uuid-{i}", "client"
                else:
                    row[role], kind = "wizard", "server"
                bad[kind] += 1
            writer.writerow(row)
    return bad


def break_plans(clean, dirty, every):
    """Writes `clean` to `dirty` with every `every`-th record's plan one that `plans` lacks;
    returns how many."""
    csv.field_size_limit(1 << 30)
    bad = 0
    with open(clean, newline="") as src, open(dirty, "w", newline="") as out:
        reader, writer = csv.reader(src), csv.writer(out, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        plan = header.index("plan")
        for i, row in enumerate(reader, 1):
            if i % every == 0:
                row[plan] = "no-such-plan"
                bad += 1
            writer.writerow(row)
    return bad


# The plans `provisioner generate` writes, and the foreign key the foreign-key methods load
# through (added on the empty table before each of their runs, dropped before the others).
PLANS = ("free", "pro", "team", "enterprise")
ADD_FK = "ALTER TABLE accounts ADD CONSTRAINT accounts_plan_fkey FOREIGN KEY (plan) REFERENCES plans"
DROP_FK = "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_plan_fkey"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV file (N)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; each method runs once a round")
    ap.add_argument("--connections", type=int, default=2, help="provisioner --connections")
    ap.add_argument("--every", type=int, default=100, help="every K-th row is bad (K)")
    ap.add_argument("--fk-every", default="100,2",
                    help="a foreign-key file for each K: every K-th row breaks the key ('' for none)")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    fk_every = [int(k) for k in args.fk_every.split(",") if k.strip()]
    if args.rows < 1 or args.runs < 1 or args.connections < 1 or args.every < 2 \
            or any(k < 1 for k in fk_every):
        ap.error("--rows, --runs, --connections and --fk-every must be >= 1, --every >= 2")
    require("cargo", "psql", "createdb", "dropdb")

    maint, db, url = bench_database("provisioner_bench_rejects")
    n = args.rows
    build_release()
    tmp = tempfile.mkdtemp(prefix="provisioner-bench-", dir="/tmp")
    created = False
    try:
        clean, dirty = os.path.join(tmp, "clean.csv"), os.path.join(tmp, "dirty.csv")
        rejects = os.path.join(tmp, "rejects.csv")
        log(f"generating {n} rows, every {args.every}th made bad in a copy")
        with open(clean, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f, check=True)
        bad = corrupt(clean, dirty, args.every)
        n_bad = bad["client"] + bad["server"]
        fk_files = {}
        for k in fk_every:
            path = os.path.join(tmp, f"fk_{k}.csv")
            fk_files[k] = (path, break_plans(clean, path, k))

        run(["createdb", *maint, db])
        created = True
        psql(url, open(os.path.join(ROOT, "sql", "accounts.sql")).read(),
             "CREATE TABLE plans (code text PRIMARY KEY)",
             "INSERT INTO plans VALUES " + ", ".join(f"('{p}')" for p in PLANS))
        version = psql(url, "SHOW server_version")[0].strip()

        def prov(path, reject_mode, n_bad=0):
            cmd = [BIN, "-q", "seed", path, "--database-url", url, "--connections",
                   str(args.connections), "--json"] + (["--rejects", rejects] if reject_mode else [])
            want_rows = n - n_bad
            want_code = EXIT_REJECTED if n_bad else 0

            def go():
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if p.returncode != want_code:
                    raise BenchError(f"seed exited {p.returncode}, expected {want_code}:\n{p.stderr}")
                summary = json.loads(p.stdout)
                if summary["rows_rejected"] != n - want_rows:
                    raise BenchError(f"rows_rejected {summary['rows_rejected']}, expected {n - want_rows}")
                if reject_mode:
                    with open(rejects, newline="") as f:
                        got = sum(1 for _ in csv.reader(f)) - 1
                    if got != n - want_rows:
                        raise BenchError(f"the rejects file holds {got} records, expected {n - want_rows}")
                return wall, want_rows
            return go

        def psql_copy():
            stmt = f"\\copy accounts ({COLS}) FROM '{clean}' (FORMAT csv, HEADER)"
            _, _, wall = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", stmt])
            return wall, n

        methods = {
            "psql \\copy, clean file": psql_copy,
            "provisioner, clean file": prov(clean, False),
            "provisioner --rejects, clean file": prov(clean, True),
            f"provisioner --rejects, {100 / args.every:g}% bad rows": prov(dirty, True, n_bad),
        }
        fk_methods = set()
        for k, (path, k_bad) in fk_files.items():
            name = f"provisioner --rejects, {100 / k:g}% rows break a foreign key"
            methods[name] = prov(path, True, k_bad)
            fk_methods.add(name)
        names = list(methods)
        walls = {m: [] for m in names}
        for r, m in rotating(names, args.runs):
            psql(url, "TRUNCATE accounts RESTART IDENTITY", "DROP SCHEMA IF EXISTS provisioner CASCADE",
                 DROP_FK, *([ADD_FK] if m in fk_methods else []), "CHECKPOINT")
            if os.path.exists(rejects):
                os.remove(rejects)
            wall, want_rows = methods[m]()
            count = int(psql(url, "SELECT count(*) FROM accounts")[0])
            if count != want_rows:
                raise BenchError(f"{m}: accounts holds {count} rows, expected {want_rows}")
            walls[m].append(wall)
            log(f"round {r + 1}/{args.runs} {m}: {wall:.2f} s")

        med = {m: statistics.median(walls[m]) for m in names}
        base = med["psql \\copy, clean file"]
        print("| method | median wall s | rows/s | × psql \\copy |")
        print("|---|---:|---:|---:|")
        for m in names:
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {base / med[m]:.2f} |")
        print()
        nproc = run(["nproc"])[0].strip()
        fk = "".join(f", {k_bad} breaking the foreign key in the {100 / k:g}% file"
                     for k, (_, k_bad) in fk_files.items())
        print(f"N={n} rows ({bad['client']} refused by the checks, {bad['server']} by the server "
              f"in the bad file{fk}), R={args.runs} runs, --connections {args.connections}, "
              f"PostgreSQL {version}, nproc {nproc}, {datetime.date.today().isoformat()}.")
        print(per_run("Raw wall s", walls, names))
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
