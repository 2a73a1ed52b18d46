#!/usr/bin/env python3
"""Benchmark `provisioner seed` over a run of many inputs against one input and the server's limit.

Builds the release binary, generates K × M rows with one `provisioner generate` (keys unique
across the set), keeps them as one file and splits them record by record into K files of M rows
(each with the header) in one directory. Loads them into a fresh database with each method R
times (order rotated every round; table and ledger truncated, CHECKPOINT, before each run) and
prints a markdown table of medians for bench/README.md. Progress goes to stderr.

    python3 bench/inputs.py [--inputs K] [--rows-per-input M] [--runs R]
                            [--connections auto|N] [--keep]
    python3 bench/inputs.py --inputs 8 --rows-per-input 250000 --runs 3    # the table

Methods: `seed all.csv` (one input: the baseline of the ledger's cost for many inputs),
`seed DIR`, `seed DIR --parallel-inputs 2`, two processes (`seed DIR`, and `seed --join ID` as
soon as the run's row is in the ledger; first start to later exit), the server's limit as in
bench/seed.py (the rows, loaded once untimed by server COPY, exported into 2 binary files in
blocks of 5,000 dealt round-robin, loaded back by 2 concurrent psql `COPY … (FORMAT binary)`;
first start to last exit), and psql's `\\copy` of the single file. Each run is checked: the
table holds K × M rows, every ledger run is completed. "Processes with inputs" is
count(DISTINCT pid) of the two-process run's inputs (1: the joiner got none); "last input
done" is the ledger's time from the run's start to its last input's completion.

Every provisioner process gets provisioner's default --connections (auto), or --connections
if given. Client CPU is user + system time per row (getrusage of the reaped child; for two
processes both summed, from /usr/bin/time), peak RSS the process's (the larger of two).
Needs the disk for the rows three times (the file, its parts, the binary parts).

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs a superuser
(server-side COPY, CHECKPOINT) and a server on this machine that can read and write /tmp.
"""
import argparse, datetime, os, re, shutil, statistics, subprocess, tempfile, threading, time

from benchlib import BenchError, raw_records, log, run, max_rss_mib, ROOT, BIN, COLS, require, bench_database, psql, build_release, drop_or_keep, rotating, per_run, entry, children_cpu_s, parse_connections
from seed import BLOCK, limit_name

K = 2  # concurrent binary COPYs of the server's limit (the faster of 2 and 4 in bench/seed.py)
SINGLE, ONE, PAR, TWO, COPY = ("single input", "{n} inputs, 1 process",
                               "{n} inputs, --parallel-inputs 2", "{n} inputs, 2 processes",
                               "psql \\copy")
LIMIT = limit_name(K)
GONE = "every input is completed; nothing to do"  # --join of a run that already ended


def split(src, out_dir, per):
    """Writes the records of CSV `src` into files of `per` records each (the header on top of
    each) in `out_dir`; returns how many records, each written back exactly as read
    (benchlib.raw_records)."""
    with open(src, newline="") as f:
        records = raw_records(f)
        first = next(records, None)
        if first is None:
            raise BenchError(f"{src}: empty")
        header, out, n = first[1], None, 0
        for n, (_, text) in enumerate(records, 1):
            if (n - 1) % per == 0:
                if out:
                    out.close()
                out = open(os.path.join(out_dir, f"input-{(n - 1) // per:03d}.csv"), "w",
                           newline="")
                out.write(header)
            out.write(text)
        if out:
            out.close()
    return n


def cpu_of(time_v_stderr):
    """User + system seconds from /usr/bin/time -v output."""
    return sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", time_v_stderr).group(1))
               for k in ("User", "System"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=8, help="input files (K)")
    ap.add_argument("--rows-per-input", type=int, default=250_000, help="rows per input (M)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; each method runs once a round")
    ap.add_argument("--connections", help="provisioner --connections for every process: auto or "
                    "a number [default: provisioner's, auto]")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    if args.inputs < 2 or args.rows_per_input < 1 or args.runs < 1:
        ap.error("--inputs must be >= 2, --rows-per-input and --runs >= 1")
    conn = []
    if args.connections is not None:
        try:
            (c,) = parse_connections(args.connections)
        except ValueError as e:
            ap.error(str(e) if "," not in args.connections else "--connections: one value")
        conn = ["--connections", str(c)]
    require("cargo", "psql", "createdb", "dropdb", "/usr/bin/time")

    maint, db, url = bench_database("provisioner_bench_inputs")
    k, n = args.inputs, args.inputs * args.rows_per_input
    names = [m.format(n=k) for m in (SINGLE, ONE, PAR, TWO, LIMIT, COPY)]
    single, one, par, two = names[:4]

    def sql(*stmts):
        return psql(url, *stmts)

    build_release()
    tmp = tempfile.mkdtemp(prefix="provisioner-bench-inputs-", dir="/tmp")
    created = False
    try:
        os.chmod(tmp, 0o755)  # server-side COPY reads the file as the postgres user
        data, in_dir, parts_dir = (os.path.join(tmp, p) for p in ("all.csv", "inputs", "parts"))
        log(f"generating {n} rows into {data}")
        with open(data, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f, check=True)
        os.chmod(data, 0o644)
        os.mkdir(in_dir)
        log(f"splitting them into {k} files of {args.rows_per_input} rows in {in_dir}")
        if split(data, in_dir, args.rows_per_input) != n:
            raise BenchError(f"{data}: not {n} records")
        tiny = os.path.join(tmp, "tiny.csv")  # one row whose seed creates the ledger, untimed
        with open(tiny, "w") as f:
            subprocess.run([BIN, "generate", "--count", "1", "--seed", "2"], stdout=f, check=True)

        run(["createdb", *maint, db])
        created = True
        sql(open(os.path.join(ROOT, "sql", "accounts.sql")).read())
        version = sql("SHOW server_version")[0].strip()
        run([BIN, "-q", "seed", tiny, "--database-url", url])
        # The limit's binary parts, from the rows one server COPY loaded (ids 1..n in file order).
        log("loading the file once with server COPY to export the binary parts")
        sql("TRUNCATE accounts RESTART IDENTITY",
            f"COPY accounts ({COLS}) FROM '{data}' (FORMAT csv, HEADER)")
        os.mkdir(parts_dir)
        os.chmod(parts_dir, 0o777)
        block = max(1, min(BLOCK, n // K))
        parts = [os.path.join(parts_dir, f"part-{i}.bin") for i in range(K)]
        for i, path in enumerate(parts):
            sql(f"COPY (SELECT {COLS} FROM accounts WHERE (id - 1) / {block} % {K} = {i} "
                f"ORDER BY id) TO '{path}' (FORMAT binary)")

        def timed(cmd):
            """run() under /usr/bin/time -v: a result of one client process."""
            cpu0 = children_cpu_s()
            _, err, wall = run(["/usr/bin/time", "-v", *cmd])
            return dict(wall=wall, rss=max_rss_mib(err), cpu=children_cpu_s() - cpu0)

        def prov(*inputs):
            return lambda: timed([BIN, "-q", "seed", *inputs, "--database-url", url, *conn])

        def spawn(cmd):
            """Starts cmd, its stderr into a file; p.end becomes the perf_counter of its exit."""
            err = tempfile.TemporaryFile("w+")
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)

            def wait():
                p.wait()
                p.end = time.perf_counter()
            p.err, p.end, p.waiter = err, None, threading.Thread(target=wait)
            p.waiter.start()
            return p

        def finish(p):
            p.waiter.join()
            p.err.seek(0)
            return p.returncode, p.err.read()

        def seed(*seed_args):
            return spawn(["/usr/bin/time", "-v", BIN, "-q", "seed", *seed_args,
                          "--database-url", url, *conn])

        def two_processes():
            t0 = time.perf_counter()
            a = seed(in_dir)
            while not (run_id := sql("SELECT max(id) FROM provisioner.runs "
                                     "WHERE parent_id IS NULL")[0].strip()):
                if a.end is not None:
                    raise BenchError(f"{two}: the first process exited {a.returncode} before "
                                     f"its run was in the ledger:\n{finish(a)[1].strip()}")
                time.sleep(0.01)
            joined = time.perf_counter() - t0
            b = seed("--join", run_id)
            results = [finish(a), finish(b)]
            for who, (rc, err) in zip("AB", results):
                if rc != 0 and not (who == "B" and rc == 2 and GONE in err):
                    raise BenchError(f"{two}: process {who} exited {rc}:\n{err.strip()}")
            by_pid = sql(f"SELECT count(*) FROM provisioner.runs WHERE parent_id = {run_id} "
                         f"GROUP BY pid ORDER BY min(id)")[0].split()
            return dict(wall=max(a.end, b.end) - t0,
                        rss=max(max_rss_mib(e) for _, e in results),
                        cpu=sum(cpu_of(e) for _, e in results), procs=len(by_pid),
                        note=f"B joined at {joined:.2f} s, A exited at {a.end - t0:.2f} s, B at "
                             f"{b.end - t0:.2f} s, inputs completed A/B {'/'.join(by_pid)}")

        def server_limit():
            t0 = time.perf_counter()
            procs = [spawn(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", f"COPY "
                            f"accounts ({COLS}) FROM '{p}' (FORMAT binary)"]) for p in parts]
            for rc, err in map(finish, procs):
                if rc != 0:
                    raise BenchError(f"{LIMIT}: a psql exited {rc}:\n{err.strip()}")
            return dict(wall=max(p.end for p in procs) - t0)

        def psql_copy():
            return timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c",
                          f"\\copy accounts ({COLS}) FROM '{data}' (FORMAT csv, HEADER)"])

        methods = dict(zip(names, (prov(data), prov(in_dir), prov(in_dir, "--parallel-inputs", "2"),
                                   two_processes, server_limit, psql_copy)))
        res = {m: [] for m in names}
        for r, m in rotating(names, args.runs):
            sql("TRUNCATE accounts RESTART IDENTITY",
                "TRUNCATE provisioner.runs RESTART IDENTITY CASCADE", "CHECKPOINT")
            got = methods[m]()
            count = int(sql("SELECT count(*) FROM accounts")[0])
            if count != n:
                raise BenchError(f"{m}: accounts holds {count} rows after the load, expected {n}")
            if m in (single, one, par, two):
                left, runs, last = sql(
                    "SELECT count(*) FILTER (WHERE status <> 'completed'), count(*), extract(epoch "
                    "FROM max(finished_at) FILTER (WHERE parent_id IS NOT NULL) - min(started_at)) "
                    "FROM provisioner.runs")[0].strip().split("|")
                if left != "0" or runs != ("1" if m == single else str(k + 1)):
                    raise BenchError(f"{m}: {left} of the {runs} ledger runs not completed")
                if last:
                    got["last"] = float(last)
            res[m].append(got)
            log(f"round {r + 1}/{args.runs} {m}: {got['wall']:.2f} s"
                + (f", peak RSS {got['rss']:.1f} MiB, client CPU {got['cpu']:.2f} s"
                   if "rss" in got else "") + (f", last input done at {got['last']:.2f} s"
                   if "last" in got else "") + (f"; {got['note']}" if "note" in got else ""))

        def col(m, key):
            return [g[key] for g in res[m] if key in g]
        med = {m: statistics.median(col(m, "wall")) for m in names}
        limit, base = med[LIMIT], med[single]
        print("| method | median wall s | rows/s | × limit | × single input | client CPU µs/row "
              "| peak RSS MiB | last input done s | processes with inputs |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in names:
            us = f"{statistics.median(col(m, 'cpu')) / n * 1e6:.2f}" if col(m, "cpu") else "—"
            peak = f"{max(col(m, 'rss')):.1f}" if col(m, "rss") else "—"
            last = f"{statistics.median(col(m, 'last')):.2f}" if col(m, "last") else "—"
            procs = ", ".join(map(str, col(m, "procs"))) or "—"
            print(f"| {m} | {med[m]:.2f} | {n / med[m]:,.0f} | {limit / med[m]:.2f} | "
                  f"{base / med[m]:.2f} | {us} | {peak} | {last} | {procs} |")
        print()
        nproc = run(["nproc"])[0].strip()
        commit = run(["git", "-C", ROOT, "describe", "--always", "--dirty"])[0].strip()
        print(f"{k} inputs × {args.rows_per_input} rows = {n} rows, R={args.runs} runs, "
              f"--connections {conn[1] if conn else 'auto (default)'}, PostgreSQL {version}, "
              f"nproc {nproc}, commit {commit}, {datetime.date.today().isoformat()}. Wall times "
              "include process startup; × = ratio of medians (times faster than the baseline). "
              f"The limit: {K} concurrent server-side binary COPYs of the rows pre-split into "
              f"files ({n / limit:,.0f} rows/s). × single input of `{one}` is what the ledger's "
              "bookkeeping of many inputs costs. Client CPU = user + system per row (median; for "
              "2 processes both summed), peak RSS the larger. Last input done = the run's start "
              "to its last input's completion by the ledger's clock (median).")
        print(per_run("Raw wall s", {m: col(m, "wall") for m in names}, names))
        print(per_run("Client CPU s", {m: col(m, "cpu") for m in names}, names, "{:.3f}"))
        print(f"{two} per run: " + "; ".join(col(two, "note")))
    finally:
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
