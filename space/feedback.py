"""좋아요 / 싫어요 / 의학적 오류: kept only when the operator sets `KO_RADIOLOGY_FEEDBACK_DIR`, and then only the rated
exchange (report, question, answer, rating), one JSON line per click. No IP, no session id, no analytics."""

import json
import threading
import time
from pathlib import Path

FEEDBACK_OPTIONS = ("좋아요", "싫어요", "의학적 오류")
FEEDBACK_FILE = "feedback.jsonl"


class FeedbackStore:
    """Appends to `<folder>/feedback.jsonl`; one lock, so concurrent clicks never interleave lines."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FEEDBACK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def record(self, rating: str, report: str, question: str, answer: str) -> None:
        if rating not in FEEDBACK_OPTIONS:
            raise ValueError(f"Unknown rating {rating!r}; expected one of {FEEDBACK_OPTIONS}.")
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rating": rating}
        line |= {"report": report, "question": question, "answer": answer}
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
