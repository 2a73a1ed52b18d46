#!/usr/bin/env python3
"""Benchmark which `provisioner seed --rate` a database can afford next to live traffic.

Builds the release binary, initialises pgbench in a fresh database (`pgbench -i -s SCALE`),
creates the example accounts table and generates N rows. Then, for each scenario (accounts
truncated and the server CHECKPOINTed first), runs `pgbench -c C -j J -T D -l` as the live
traffic:

  (a) pgbench alone;
  (b) pgbench while `provisioner seed FILE --connections K` runs at full speed;
  (c) pgbench while the same seed runs with `--rate R`, for each R in --rates.

The seed starts the moment pgbench has finished its vacuum and begins its transactions; if
it is still running when pgbench ends it is stopped with SIGINT, so every scenario loads the
server for the same time at most. Prints a markdown table; progress goes to stderr.

    python3 bench/throttle.py [--rows N] [-T D] [--rates 50000,20000] [--scale S]
                              [--clients C] [--jobs J] [--connections K] [--keep]

How the figures are measured: pgbench writes a per-transaction log (-l: completion time and
latency of every transaction); TPS and p95 latency are computed from it over the WINDOW in
which the seed was running (from its start to its exit, or to the end of pgbench), so a seed
that finishes early is not diluted by idle seconds. For "pgbench alone" the window is the
whole run from the same starting point. Seed rows/s is `rows_per_s` from the seed's --json
summary (rows inserted over its own elapsed time).

Connects like psql (local socket, OS user) unless DATABASE_URL is set. Needs the right to
create databases and to CHECKPOINT (a superuser, or pg_checkpoint on PostgreSQL 15+).
"""
import argparse, datetime, glob, json, math, os, re, shutil, signal, subprocess, tempfile
import threading, time

from benchlib import BenchError, log, hide_passwords, run, ROOT, BIN, require, bench_database, psql, build_release, drop_or_keep, entry

# How long a seed may take to stop after SIGINT (it lets its in-flight batches commit).
STOP_TIMEOUT_S = 120
# How long pgbench may take to finish its vacuum and start.
START_TIMEOUT_S = 120


def p95(values):
    """The 95th percentile, nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def read_pgbench_logs(directory):
    """Every transaction in pgbench's per-transaction logs (-l) under `directory`, as
    (completion time in epoch seconds, latency in ms); raises on failed or skipped ones."""
    files = glob.glob(os.path.join(directory, "pgbench_log.*"))
    if not files:
        raise BenchError(f"pgbench wrote no per-transaction log in {directory}")
    txns, bad = [], 0
    for path in files:
        with open(path) as f:
            for line in f:
                # client_id transaction_no time script_no time_epoch time_us [...]
                fields = line.split()
                if len(fields) < 6:
                    raise BenchError(f"{path}: unexpected log line {line!r}")
                if not fields[2].isdigit():  # "failed" or "skipped"
                    bad += 1
                    continue
                done = int(fields[4]) + int(fields[5]) / 1e6
                txns.append((done, int(fields[2]) / 1000.0))
    if bad:
        raise BenchError(f"pgbench logged {bad} failed or skipped transactions in {directory}")
    if not txns:
        raise BenchError(f"pgbench logged no transaction in {directory}")
    return txns


def window_figures(txns, start, end):
    """TPS and p95 latency (ms) of the transactions that completed within [start, end],
    the window clipped to the transactions' own span."""
    start = max(start, min(t for t, _ in txns))
    end = min(end, max(t for t, _ in txns))
    inside = [lat for t, lat in txns if start <= t <= end]
    if end - start < 0.5 or not inside:
        raise BenchError(f"measurement window of {end - start:.2f} s holds {len(inside)} "
                         "transactions: too short to measure (more --rows, or a longer -T)")
    return len(inside) / (end - start), p95(inside), end - start


class Pgbench:
    """`pgbench -l` in the background; `started` is set when it has vacuumed and begins."""

    def __init__(self, url, clients, jobs, duration, log_dir):
        cmd = ["pgbench", "-c", str(clients), "-j", str(jobs), "-T", str(duration), "-l", url]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=log_dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.started = threading.Event()
        self.stderr_lines = []
        self.stdout = ""
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._err.start()
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._out.start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if "starting vacuum" in line and "end." in line:
                self.started.set()

    def _read_stdout(self):
        self.stdout = self.proc.stdout.read()

    def wait_started(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self._err.join()
                raise BenchError(f"pgbench did not start:\n{hide_passwords(''.join(self.stderr_lines))}")
        return time.time()

    def finish(self):
        """Waits for the end; returns pgbench's own whole-run TPS."""
        rc = self.proc.wait()
        self._err.join()
        self._out.join()
        if rc != 0:
            raise BenchError(f"{hide_passwords(' '.join(self.cmd))!r} exited {rc}:\n"
                             f"{hide_passwords(''.join(self.stderr_lines))}")
        m = re.search(r"^tps = ([0-9.]+)", self.stdout, re.M)
        if not m:
            raise BenchError(f"no 'tps = ' in pgbench's output:\n{self.stdout}")
        return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV file (N)")
    ap.add_argument("-T", "--duration", type=int, default=20,
                    help="seconds each pgbench run lasts (D)")
    ap.add_argument("--rates", default="50000,20000", help="provisioner --rate values, rows/s")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i scale factor")
    ap.add_argument("--clients", type=int, default=4, help="pgbench -c")
    ap.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    ap.add_argument("--connections", type=int, default=2, help="provisioner --connections")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    try:
        rates = [int(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error(f"--rates must be comma-separated integers, got {args.rates!r}")
    if (args.rows < 1 or args.duration < 2 or args.scale < 1 or args.clients < 1
            or args.jobs < 1 or args.connections < 1 or any(r < 1 for r in rates)):
        ap.error("--rows, --scale, --clients, --jobs, --connections and every rate must be >= 1,"
                 " -T >= 2")
    require("cargo", "psql", "createdb", "dropdb", "pgbench")

    maint, db, url = bench_database("provisioner_throttle")
    n, d = args.rows, args.duration

    def sql(*stmts):
        return psql(url, *stmts)

    build_release()
    tmp = tempfile.mkdtemp(prefix="provisioner-throttle-", dir="/tmp")
    created = False
    background = []  # processes to kill if the benchmark fails half-way
    try:
        csv = os.path.join(tmp, f"accounts-{n}.csv")
        log(f"generating {n} rows into {csv}")
        with open(csv, "w") as f:
            subprocess.run([BIN, "generate", "--count", str(n), "--seed", "1"], stdout=f,
                           check=True)

        run(["createdb", *maint, db])
        created = True
        log(f"pgbench -i -s {args.scale} in {db}")
        run(["pgbench", "-i", "-q", "-s", str(args.scale), url])
        sql(open(os.path.join(ROOT, "sql", "accounts.sql")).read())
        version = sql("SHOW server_version")[0].strip()

        scenarios = [("pgbench alone", None),
                     (f"+ seed, full speed ({args.connections} conn)", [])]
        scenarios += [(f"+ seed --rate {r} ({args.connections} conn)", ["--rate", str(r)])
                      for r in rates]
        results = []
        for i, (name, seed_flags) in enumerate(scenarios):
            sql("TRUNCATE accounts RESTART IDENTITY", "CHECKPOINT")
            log_dir = os.path.join(tmp, f"scenario-{i}")
            os.mkdir(log_dir)
            log(f"{name}: pgbench -c {args.clients} -j {args.jobs} -T {d} -l")
            bench = Pgbench(url, args.clients, args.jobs, d, log_dir)
            background.append(bench)
            start = bench.wait_started()
            seed = stopped = None
            if seed_flags is not None:
                seed_cmd = [BIN, "-q", "seed", csv, "--database-url", url, "--connections",
                            str(args.connections), "--json", *seed_flags]
                # Files, not pipes: nobody reads the seed's output while it runs.
                seed_out = open(os.path.join(log_dir, "seed.out"), "w+")
                seed_err = open(os.path.join(log_dir, "seed.err"), "w+")
                seed = subprocess.Popen(seed_cmd, stdout=seed_out, stderr=seed_err)
                background.append(seed)
            # pgbench ends after D seconds; a seed still running then is stopped.
            while bench.proc.poll() is None:
                if seed is not None and seed.poll() is not None and stopped is None:
                    stopped = time.time()  # the seed finished on its own
                time.sleep(0.05)
            pgbench_tps = bench.finish()
            seed_end = stopped if stopped is not None else time.time()
            seed_row = None
            if seed is not None:
                interrupted = seed.poll() is None
                if interrupted:
                    seed.send_signal(signal.SIGINT)
                try:
                    seed.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    seed.kill()
                    seed.wait()
                    raise BenchError(f"{name}: the seed did not stop within {STOP_TIMEOUT_S} s "
                                     "of SIGINT")
                seed_out.seek(0)
                seed_err.seek(0)
                out, err = seed_out.read(), seed_err.read()
                seed_out.close()
                seed_err.close()
                expected = 130 if interrupted else 0
                if seed.returncode != expected:
                    raise BenchError(f"{name}: the seed exited {seed.returncode} (expected "
                                     f"{expected}):\n{hide_passwords(err.strip())}")
                if not out.strip():
                    raise BenchError(f"{name}: the seed printed no JSON summary:\n"
                                     f"{hide_passwords(err.strip())}")
                summary = json.loads(out.strip().splitlines()[-1])
                inserted = summary["rows_inserted"]
                count = int(sql("SELECT count(*) FROM accounts")[0])
                if count != inserted:
                    raise BenchError(f"{name}: accounts holds {count} rows, the seed reports "
                                     f"{inserted} inserted")
                if not interrupted and inserted != n:
                    raise BenchError(f"{name}: the seed completed with {inserted} of {n} rows")
                rate = summary["rows_per_s"]
                if len(seed_flags) == 2 and rate > int(seed_flags[1]) * 1.1:
                    raise BenchError(f"{name}: the seed achieved {rate:,.0f} rows/s, above "
                                     f"its cap: {summary}")
                seed_row = (rate, inserted, summary["status"], summary["elapsed_s"])
            tps, lat95, window = window_figures(read_pgbench_logs(log_dir), start, seed_end)
            results.append((name, tps, lat95, window, pgbench_tps, seed_row))
            log(f"{name}: {tps:,.0f} TPS, p95 {lat95:.2f} ms over {window:.1f} s"
                + (f"; seed {seed_row[0]:,.0f} rows/s, {seed_row[1]} rows, {seed_row[2]}"
                   if seed_row else ""))

        print("| scenario | pgbench TPS | p95 latency ms | seed rows/s | window s |")
        print("|---|---:|---:|---:|---:|")
        for name, tps, lat95, window, _, seed_row in results:
            seed_rate = f"{seed_row[0]:,.0f}" if seed_row else "—"
            print(f"| {name} | {tps:,.0f} | {lat95:.2f} | {seed_rate} | {window:.1f} |")
        print()
        nproc = run(["nproc"])[0].strip()
        print(f"pgbench -i -s {args.scale}; pgbench -c {args.clients} -j {args.jobs} -T {d} "
              f"(TPC-B-like) as the live traffic; seed of N={n} rows with --connections "
              f"{args.connections}; PostgreSQL {version}, nproc {nproc}, "
              f"{datetime.date.today().isoformat()}.")
        print("TPS and p95 latency come from pgbench's per-transaction log (-l), over the "
              "window the seed was running (pgbench alone: the whole run); seed rows/s is "
              "rows_per_s from the seed's --json summary. A seed still running when pgbench "
              "ends is stopped with SIGINT.")
        print("pgbench's own whole-run TPS: " + "; ".join(
            f"{name}: {whole:,.0f}" for name, _, _, _, whole, _ in results))
        print("Seeds: " + "; ".join(
            f"{name}: {s[1]} rows, {s[2]} after {s[3]:.1f} s"
            for name, _, _, _, _, s in results if s))
    finally:
        for p in background:
            proc = p.proc if isinstance(p, Pgbench) else p
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if created:
            drop_or_keep(maint, db, url, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    entry(main)
