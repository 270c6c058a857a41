"""Read a gocolytics export back as a user would, and compare it with the
database row by row.

    python3 readback.py csv|pandas|ndjson EXPORT DATABASE

csv reads it with Python's csv module, pandas with pandas.read_csv, ndjson
with json, one object a line. Every exported row must equal the database's
row of the same id, column for column (value compared as parsed JSON), and
the exported ids must be every id of the database up to the last one
exported, each once, in order. pandas is checked twice: with its python
engine on every row, with its default C engine on the rows without a NUL
character (which that engine cuts strings at). Prints "ok N" (N rows) or
what differs, and exits 1 on a difference; prints "no pandas" and exits 3
when pandas is not installed.
"""
import csv
import json
import math
import sqlite3
import sys

COLUMNS = ["id", "event_type", "application", "version", "platform",
           "user_id", "session_id", "value", "time"]


def canon(v):
    # json.loads reads 1e99999 as inf; inf != inf is not an issue, nan is.
    return json.dumps(v, sort_keys=True, allow_nan=True)


def read_export(kind, path):
    rows = []
    if kind == "ndjson":
        with open(path, encoding="utf-8") as f:
            for line in f:
                o = json.loads(line)
                if list(o.keys()) != COLUMNS:
                    raise SystemExit("ndjson keys: %r" % list(o.keys()))
                o["value"] = canon(o["value"])
                rows.append(o)
    elif kind == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            r = csv.reader(f)
            header = next(r)
            if header != COLUMNS:
                raise SystemExit("csv header: %r" % header)
            for rec in r:
                o = dict(zip(COLUMNS, rec))
                o["id"] = int(o["id"])
                o["value"] = canon(json.loads(o["value"]))
                rows.append(o)
    elif kind in ("pandas", "pandas-python"):
        # pandas' default (C) parser ends a string at a NUL character; its
        # python engine keeps it. main checks the default on rows without
        # NUL and the python engine on every row.
        import pandas as pd
        engine = "python" if kind == "pandas-python" else "c"
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", engine=engine)
        if list(df.columns) != COLUMNS:
            raise SystemExit("pandas columns: %r" % list(df.columns))
        for rec in df.to_dict("records"):
            rec["id"] = int(rec["id"])
            rec["value"] = canon(json.loads(rec["value"]))
            rows.append(rec)
    else:
        raise SystemExit("unknown reader " + kind)
    return rows


def main():
    kind, export, database = sys.argv[1:4]
    if kind == "pandas":
        try:
            import pandas  # noqa: F401
        except ImportError:
            print("no pandas")
            sys.exit(3)
        compare(read_export("pandas-python", export), database, True)
    compare(read_export(kind, export), database, kind != "pandas")


def compare(rows, database, exact_nul):
    db = sqlite3.connect("file:%s?mode=ro" % database, uri=True)
    db.text_factory = lambda b: b.decode("utf-8", "replace")
    last = rows[-1]["id"] if rows else 0
    # Exports hold the events still in gocolytics' staging table too: the
    # view event_all shows both.
    table = "event_all" if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_all'").fetchone() else "event"
    ids = [r[0] for r in db.execute("SELECT id FROM %s WHERE id <= ? ORDER BY id" % table, (last,))]
    got = [r["id"] for r in rows]
    if got != ids:
        print("ids differ: exported %d, database has %d up to %d" % (len(got), len(ids), last))
        sys.exit(1)
    q = "SELECT id, event_type, application, version, platform, user_id, session_id, value, CAST(time AS TEXT) FROM %s WHERE id = ?" % table
    for r in rows:
        want = dict(zip(COLUMNS, db.execute(q, (r["id"],)).fetchone()))
        want["value"] = canon(json.loads(want["value"]))
        if not exact_nul and any("\0" in str(v) for v in want.values()):
            continue
        if r != want:
            print("row %d differs:\n got  %r\n want %r" % (r["id"], r, want))
            sys.exit(1)
    print("ok %d" % len(rows))


main()
