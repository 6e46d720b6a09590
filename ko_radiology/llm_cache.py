"""The SQLite file behind every model call: cached responses keyed by request content, and the cost ledger.

Every completed call is written here before it is returned, so a re-run, or a resume after `kill -9`, never pays
for a completed call twice; the ledger counts what each model was sent, served from cache, batched or discarded.
"""

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    """Per model: `sent` live calls, `batch` calls ingested from the Batch API, `cached` hits (free), `discarded`
    calls that were billed but rejected (invalid JSON). Tokens and cost count everything billed."""

    model: str
    sent: int
    batch: int
    cached: int
    discarded: int
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
        header = ("model", "sent", "batch", "cached", "discarded", "input tok", "output tok", "cost USD")
        return format_table(header, [list(vars(row).values()) for row in [*self.rows, self.total()]])


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, source TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'batch', 'cached', 'discarded')),
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_run ON ledger (run_id);
CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, request TEXT NOT NULL);
"""


class ResponseStore:
    """One SQLite file in WAL mode. A response and its ledger row commit in one transaction, so a crash leaves
    either both or neither; a committed row survives `kill -9` (WAL with synchronous=NORMAL loses at most the last
    commits on power loss, which are then sent again rather than lost)."""

    def __init__(self, path: str | Path, run_id: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self.run_id = run_id
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

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

    def _ledger_row(self, key: str, model: str, outcome: str, tokens: tuple[int, int], cost: float) -> None:
        self.db.execute(
            "INSERT INTO ledger (run_id, key, model, outcome, input_tokens, output_tokens, cost_usd, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.run_id, key, model, outcome, *tokens, cost, time.time()),
        )

    def save(self, key: str, body: dict, completion: Completion, outcome: str, cost: float) -> bool:
        """Store a paid response and its ledger row atomically; False if another process stored the key first."""
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
            self._ledger_row(key, body["model"], outcome, tokens, cost)
        return bool(inserted)

    def record(self, key: str, model: str, outcome: str, tokens: tuple[int, int] = (0, 0), cost: float = 0.0) -> None:
        """A ledger row without a response: a cache hit (free) or a billed but discarded answer."""
        with self._transaction():
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
        rows = self.db.execute(
            "SELECT model, "
            + ", ".join(f"SUM(outcome = '{o}')" for o in ("sent", "batch", "cached", "discarded"))
            + f", SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) FROM ledger {where} "
            "GROUP BY model ORDER BY model",
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
