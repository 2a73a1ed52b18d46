"""What the benchmark scripts share: paths, running commands loudly, connection strings."""
import csv, os, re, resource, shutil, subprocess, sys, time
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "provisioner")
COLS = ("external_id,email,username,display_name,password_hash,role,plan,country,is_active,"
        "balance,birth_date,created_at,metadata")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def hide_passwords(text):
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)\S+", r"\1***", text)


def run(cmd, **kw):
    """Runs cmd, returns (stdout, stderr, wall seconds); raises BenchError on a non-zero exit."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{hide_passwords(' '.join(cmd))!r} exited {p.returncode}:\n"
                         f"{hide_passwords(p.stderr.strip())}")
    return p.stdout, p.stderr, wall


def raw_records(f):
    """Yields each record of the CSV file `f` (opened with newline="") as (fields, text): the
    csv module frames it (a field may hold quotes, commas, line ends), and `text` is the
    record exactly as the file holds it, which a csv.writer would not give back (it turns the
    quoted empty strings into NULLs). The header is the first."""
    csv.field_size_limit(1 << 30)
    raw = []

    def lines():
        for line in f:
            raw.append(line)
            yield line

    for fields in csv.reader(lines()):
        text = "".join(raw)
        raw.clear()
        yield fields, text


def max_rss_mib(time_v_stderr):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_stderr)
    if not m:
        raise BenchError("no 'Maximum resident set size' in /usr/bin/time -v output")
    return int(m.group(1)) / 1024


def children_cpu_s():
    """User + system CPU seconds of every child process reaped so far (and of their reaped
    children): the difference around one run() is that command's CPU time."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def parse_connections(text):
    """The values of a --connections list: `auto` or numbers >= 1, comma-separated."""
    values = []
    for c in (c.strip() for c in text.split(",")):
        if c == "auto":
            values.append(c)
        elif c.isdigit() and int(c) >= 1:
            values.append(int(c))
        elif c:
            raise ValueError(f"--connections: {c!r} is neither auto nor a number >= 1")
    if not values:
        raise ValueError("--connections: no values")
    return values


def conn_label(c):
    """How a method name shows a --connections value: `auto` or `4 conn`."""
    return "auto" if c == "auto" else f"{c} conn"


def with_dbname(url, db):
    """`url` (a postgres:// URL, a conninfo string or None) pointed at database `db`."""
    if not url:
        return f"dbname={db}"
    if url.startswith(("postgres://", "postgresql://")):
        # Not urlunsplit: it drops the empty host of postgres:///db, leaving postgres:/db.
        u = urlsplit(url)
        return f"{u.scheme}://{u.netloc}/{db}" + (f"?{u.query}" if u.query else "")
    return f"{url} dbname={db}"  # conninfo: the last dbname= wins


def require(*tools):
    for tool in tools:
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found")


def bench_database(prefix):
    """(createdb/dropdb maintenance args, database name, connection string) of a fresh
    benchmark database, beside DATABASE_URL's when it is set."""
    admin_url = os.environ.get("DATABASE_URL") or None
    maint = [f"--maintenance-db={admin_url}"] if admin_url else []
    db = f"{prefix}_{os.getpid()}"
    return maint, db, with_dbname(admin_url, db)


def psql(url, *stmts):
    """Runs each statement with psql against `url`; returns run()'s result."""
    cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url]
    for s in stmts:
        cmd += ["-c", s]
    return run(cmd)


def build_release():
    log("building: cargo build --release --quiet")
    run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)


def drop_or_keep(maint, db, url, keep):
    """At the end of a run: drop the benchmark database, or say where the kept one is."""
    if keep:
        log(f"kept database {db} ({hide_passwords(url)})")
        return
    try:
        run(["dropdb", *maint, "--if-exists", "--force", db])
    except BenchError as e:
        log(f"warning: could not drop database {db}: {e}")


def rotating(names, runs):
    """(round, method) for `runs` rounds of every method, the order rotated each round so
    that no method always runs first (on a cold cache) or last."""
    for r in range(runs):
        k = r % len(names)
        for m in names[k:] + names[:k]:
            yield r, m


def per_run(label, values, names, fmt="{:.2f}"):
    """One line of every method's raw figures: `label per run: m: 1.00, 2.00; …`."""
    return f"{label} per run: " + "; ".join(
        f"{m}: {', '.join(fmt.format(v) for v in values[m])}" for m in names if values[m])


def entry(main):
    """Runs a script's `main`; an expected failure ends it with one line and exit 1."""
    try:
        main()
    except (BenchError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
        sys.exit(f"bench/{os.path.basename(sys.argv[0])}: error: {e}")
