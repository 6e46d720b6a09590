"""The SQLite file behind `LLMClient`'s calls (a stream is not cached): responses keyed by request content, and the
cost ledger.

Every call is written to the ledger as in flight before it is sent, and its answer is stored before it is returned.
So a re-run, or a resume after `kill -9`, never pays again for an answered call; the calls that were in flight at the
kill (at most `max_concurrency`) may have been answered and billed by the endpoint, and are sent again: the resume
reports how many. The ledger counts what each model was sent, served from cache, batched, discarded or lost.
"""

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def cache_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body: same model, messages and params, same key, on any machine."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Completion:
    """What one successful HTTP response said."""

    text: str
    finish_reason: str | None
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class LLMResult:
    """One answer. Usage is what the original call reported, also when `cached` (then this call cost nothing)."""

    key: str
    text: str
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    cached: bool


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width table; numbers right-aligned, thousands separated."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.4f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    cells = [list(header)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class LedgerRow:
    """Per model: `sent` live calls answered, `batch` calls ingested from the Batch API, `cached` hits (free),
    `discarded` calls that were billed but rejected (invalid JSON), `failed` attempts that got an error or no answer,
    and `unanswered` calls sent with no outcome recorded: in flight now, or cut off by a crash or kill (the endpoint
    may have answered and billed them). Tokens and cost count everything known to be billed."""

    model: str
    sent: int
    batch: int
    cached: int
    discarded: int
    failed: int
    unanswered: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class LedgerSummary:
    rows: list[LedgerRow]

    def total(self) -> LedgerRow:
        sums = [
            sum(getattr(row, name) for row in self.rows) for name in LedgerRow.__dataclass_fields__ if name != "model"
        ]
        return LedgerRow("total", *sums)

    def table(self) -> str:
        header = ("model", "sent", "batch", "cached", "discarded", "failed", "unanswered", "input tok", "output tok")
        header += ("cost USD",)
        return format_table(header, [list(vars(row).values()) for row in [*self.rows, self.total()]])


OUTCOMES = ("sent", "batch", "cached", "discarded", "failed", "in_flight", "interrupted")
"""`in_flight` is written before a call is sent and replaced by its outcome; a new store marks the `in_flight` rows
of other runs `interrupted`, since a finished run leaves none."""

LEDGER_TABLE = f"""CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ({", ".join(f"'{outcome}'" for outcome in OUTCOMES)})),
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, created_at REAL NOT NULL
)"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, source TEXT NOT NULL, created_at REAL NOT NULL
);
{LEDGER_TABLE};
CREATE INDEX IF NOT EXISTS ledger_run ON ledger (run_id);
CREATE INDEX IF NOT EXISTS ledger_outcome ON ledger (outcome);
CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, request TEXT NOT NULL);
"""


OPEN_WAIT_S = 5.0
"""How long opening waits for a lock another process holds. This project's writes hold it for milliseconds, so a
longer hold is a process inside a long transaction: say so now, rather than after `BUSY_WAIT_S` of silence."""
BUSY_WAIT_S = 30.0
"""How long a write waits for a lock once the file is open (two runs sharing one cache take turns)."""


class CacheError(ValueError):
    """The cache file cannot be used; the message names the file and the fix. A ValueError, so CLIs print one line."""


def create_private(path: Path) -> None:
    """Create the cache file 0600 in a 0700 folder: it holds report text, like the dataset folders. SQLite's
    `:memory:` (a cache that never touches the disk, as the Space uses) has no file to create."""
    if str(path) == ":memory:":
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class ResponseStore:
    """One SQLite file in WAL mode. A response and its ledger row commit in one transaction, so a crash leaves
    either both or neither; a committed row survives `kill -9` (WAL with synchronous=NORMAL loses at most the last
    commits on power loss, which are then sent again rather than lost).

    Opening checks the file is a readable, writable SQLite cache (cheap: `PRAGMA quick_check` reads it once), so a
    build fails before doing any work rather than midway; `interrupted` is how many calls of earlier runs were in
    flight when they stopped.

    Raises:
        CacheError: If the file is not a valid SQLite cache, cannot be written, or another process holds it locked
            for over `OPEN_WAIT_S`.
    """

    def __init__(self, path: str | Path, run_id: str):
        self.path = Path(path)
        self.run_id = run_id
        try:
            create_private(self.path)
            self.db = sqlite3.connect(self.path, timeout=OPEN_WAIT_S, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._check()
            self._upgrade_ledger()
            with self._transaction():  # also proves the file writable before any work
                self.interrupted = self.db.execute(
                    "UPDATE ledger SET outcome = 'interrupted' WHERE outcome = 'in_flight' AND run_id != ?", (run_id,)
                ).rowcount
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_WAIT_S * 1000)}")
        except PermissionError as exc:
            raise CacheError(f"{self.path} cannot be created ({exc}); pass a writable --cache-path.") from None
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise self._locked() from None
            if "readonly" not in str(exc) and "read-only" not in str(exc) and "unable to open" not in str(exc):
                raise self._invalid(exc) from None
            raise CacheError(
                f"{self.path} cannot be written ({exc}); make it and its folder writable, or pass --cache-path "
                "with a writable copy (cache hits write ledger rows too)."
            ) from None
        except sqlite3.DatabaseError as exc:
            raise self._invalid(exc) from None
        if self.interrupted:
            logger.warning(
                "%s: %d calls of an earlier run were in flight when it stopped (crash or kill); the endpoint may have "
                "answered and billed them. Those still needed are sent again now.",
                self.path,
                self.interrupted,
            )

    def _invalid(self, exc: Exception) -> CacheError:
        cause = " ".join(str(exc).split())  # SQLite's page report spans lines; an error is one
        return CacheError(
            f"{self.path} is not a valid SQLite cache ({cause}); move it away or delete it to start over "
            "(its answers would then be paid for again)."
        )

    def _locked(self) -> CacheError:
        return CacheError(
            f"{self.path} is in use: another process has held it locked for over {OPEN_WAIT_S:g} s (inside a "
            f"transaction). Its answers are intact; wait for that process to finish, or stop it (`fuser -v "
            f"{self.path}` names it), then run again."
        )

    def _upgrade_ledger(self) -> None:
        """A cache written before calls were recorded in flight has a ledger whose CHECK refuses the new outcomes;
        SQLite cannot alter a CHECK, so its rows move into a current table (once)."""
        (sql,) = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger'").fetchone()
        if "'in_flight'" in sql:
            return
        with self._transaction():
            self.db.execute("ALTER TABLE ledger RENAME TO ledger_before_upgrade")
            self.db.execute(LEDGER_TABLE)
            self.db.execute("INSERT INTO ledger SELECT * FROM ledger_before_upgrade")
            self.db.execute("DROP TABLE ledger_before_upgrade")  # and its indexes, which SCHEMA now recreates
        self.db.executescript(SCHEMA)

    def _check(self) -> None:
        (result,) = self.db.execute("PRAGMA quick_check(1)").fetchone()
        if result != "ok":
            raise sqlite3.DatabaseError(result)

    def close(self) -> None:
        self.db.close()

    def get(self, key: str) -> LLMResult | None:
        row = self.db.execute(
            "SELECT key, text, finish_reason, input_tokens, output_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        return LLMResult(*row, cached=True) if row else None

    def cached_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self.db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk))
        return found

    def _ledger_row(self, key: str, model: str, outcome: str, tokens: tuple[int, int], cost: float) -> int:
        return self.db.execute(
            "INSERT INTO ledger (run_id, key, model, outcome, input_tokens, output_tokens, cost_usd, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.run_id, key, model, outcome, *tokens, cost, time.time()),
        ).lastrowid

    def _set_outcome(self, row_id: int, outcome: str, tokens: tuple[int, int], cost: float) -> None:
        self.db.execute(
            "UPDATE ledger SET outcome = ?, input_tokens = ?, output_tokens = ?, cost_usd = ? WHERE id = ?",
            (outcome, *tokens, cost, row_id),
        )

    def begin(self, key: str, model: str) -> int:
        """Record a call as in flight, committed before it is sent; returns the ledger row its outcome replaces.
        (One statement commits on its own on this autocommit connection: no BEGIN/COMMIT round trips.)"""
        return self._ledger_row(key, model, "in_flight", (0, 0), 0.0)

    def finish(self, row_id: int, outcome: str, tokens: tuple[int, int] = (0, 0), cost: float = 0.0) -> None:
        """Replace an in-flight row by an outcome without a stored response: `failed`, or billed but `discarded`."""
        self._set_outcome(row_id, outcome, tokens, cost)

    def save(
        self, key: str, body: dict, completion: Completion, outcome: str, cost: float, row_id: int | None = None
    ) -> bool:
        """Store a paid response and its ledger row (replacing in-flight row `row_id`, if given) atomically;
        False if another process stored the key first."""
        tokens = (completion.input_tokens, completion.output_tokens)
        with self._transaction():
            inserted = self.db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    body["model"],
                    json.dumps(body, ensure_ascii=False),
                    completion.text,
                    completion.finish_reason,
                    *tokens,
                    outcome,
                    time.time(),
                ),
            ).rowcount
            if row_id is None:
                self._ledger_row(key, body["model"], outcome, tokens, cost)
            else:
                self._set_outcome(row_id, outcome, tokens, cost)
        return bool(inserted)

    def record(self, key: str, model: str, outcome: str, tokens: tuple[int, int] = (0, 0), cost: float = 0.0) -> None:
        """A ledger row without a response or a call: a cache hit (free)."""
        self._ledger_row(key, model, outcome, tokens, cost)

    def remember_batch_requests(self, bodies: dict[str, dict]) -> None:
        """Keep the bodies written to Batch files, so ingested answers are stored with the request they answer."""
        rows = [(key, json.dumps(body, ensure_ascii=False)) for key, body in bodies.items()]
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO batch_requests VALUES (?, ?)", rows)

    def batch_request(self, key: str) -> dict | None:
        row = self.db.execute("SELECT request FROM batch_requests WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _transaction(self):
        return _Transaction(self.db)

    def ledger(self, run_only: bool = False) -> LedgerSummary:
        where, args = ("WHERE run_id = ?", (self.run_id,)) if run_only else ("", ())
        counts = [f"SUM(outcome = '{o}')" for o in ("sent", "batch", "cached", "discarded", "failed")]
        counts.append("SUM(outcome IN ('in_flight', 'interrupted'))")
        rows = self.db.execute(
            f"SELECT model, {', '.join(counts)}, SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) FROM ledger "
            f"{where} GROUP BY model ORDER BY model",
            args,
        ).fetchall()
        return LedgerSummary([LedgerRow(*row) for row in rows])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connections need it spelled out)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
