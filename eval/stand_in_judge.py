"""A local stand-in judge: an OpenAI-compatible server that reads the judge prompt and scores by simple text rules.

    python -m eval.stand_in_judge --port 8123 --latency 0.05      # then --judge-base-url http://127.0.0.1:8123/v1

It is no radiologist and no LLM: it scores an answer by the share of its content morphemes (Kiwi) that the report
(or the reference) also contains, its length (conciseness) and its share of Latin letters (understandability). It
exists so that the runners,
`eval.calibrate`, the bench and the tests run offline against a real HTTP judge whose behaviour is known: fixed
latency, a chosen reply format (`json`, `fenced`, `prose`, `no_score`, `refusal`) and an optional bonus for the
first shown answer (a position bias to detect). Its calibration table in the README is labelled as the stand-in's.
"""

import argparse
import asyncio
import json
import re
import threading
from functools import lru_cache

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ko_radiology.judge.prompt import ANSWER_MARKER
from ko_radiology.judge.rubrics import SCORE_MAX, SCORE_MIN
from ko_radiology.llm import estimate_tokens
from ko_radiology.loopback import LoopbackServer
from ko_radiology.reference_metrics import kiwi

REPLY_FORMATS = ("json", "fenced", "prose", "no_score", "refusal")
REFUSAL = "평가 불가 (1~4점 중 어느 것도 아님)"
"""A judge declining to score, naming the scale: no score (a lax reader once took the scale's 4 for one)."""
_ANSWER_HEADER = re.compile(re.escape(ANSWER_MARKER.format(number=0)).replace("0", r"\d+"))
_BLOCK = re.compile(r"(\[[^\]\n]+\])\n(.*)", re.DOTALL)


CONTENT_TAGS = ("NN", "NR", "SL", "SN", "XR", "VV", "VA", "MAG")
"""Kiwi tags of content morphemes: nouns, numbers, foreign words, verb and adjective stems (있/없), adverbs (안)."""


@lru_cache(maxsize=4096)
def content_morphemes(text: str) -> frozenset[str]:
    """Cached: a report is scored once per answer shown with it, and benches repeat the same prompts."""
    return frozenset(token.form for token in kiwi().tokenize(text) if token.tag.startswith(CONTENT_TAGS))


def _band(value: float, thresholds: tuple[float, float, float]) -> int:
    """4 at or above the first threshold, 3 above the second, 2 above the third, else 1."""
    return SCORE_MAX - sum(value < threshold for threshold in thresholds)


def score_answer(criterion_title: str, answer: str, report: str, reference: str | None) -> tuple[int, str]:
    """The stand-in's rule for one answer: (score, one-line rationale)."""
    if criterion_title == "간결성":
        return _band(-len(answer), (-150, -250, -400)), f"답변 길이 {len(answer)}자"
    if criterion_title == "이해 용이성":
        letters = [char for char in answer if char.isalpha()]
        latin = sum(char.isascii() for char in letters) / max(1, len(letters))
        return _band(-latin, (-0.05, -0.15, -0.3)), f"영문자 비율 {latin:.2f}"
    source = reference if criterion_title == "유사성" and reference else report
    words = content_morphemes(answer)
    support = len(words & content_morphemes(source)) / max(1, len(words))
    return _band(support, (0.9, 0.75, 0.5)), f"근거 있는 내용 형태소 비율 {support:.2f}"


def parse_prompt(prompt: str) -> tuple[dict[str, str], list[str]]:
    """The judge prompt's `[header]` blocks by name (판독문, 질문, 평가 기준: X, ...) and its answers in order."""
    sections, answers = {}, []
    for block in re.split(r"\n\n(?=\[)", prompt):
        if match := _BLOCK.match(block):
            header, body = match.groups()
            if _ANSWER_HEADER.fullmatch(header):
                answers.append(body.strip())
            else:
                sections[header[1:-1]] = body.strip()
    return sections, answers


def judge_reply(prompt: str, reply_format: str, first_bonus: int) -> str:
    sections, answers = parse_prompt(prompt)
    title = next((name.split(": ", 1)[1] for name in sections if name.startswith("평가 기준")), "정확성")
    judgements = []
    for number, answer in enumerate(answers, start=1):
        score, rationale = score_answer(title, answer, sections.get("판독문", ""), sections.get("참조 답변"))
        score = min(SCORE_MAX, max(SCORE_MIN, score + (first_bonus if number == 1 else 0)))
        judgements.append({"answer": number, "rationale": rationale, "score": score})
    if reply_format == "json":
        return json.dumps({"judgements": judgements}, ensure_ascii=False)
    if reply_format == "fenced":
        return "평가 결과입니다.\n```json\n" + json.dumps({"judgements": judgements}, ensure_ascii=False) + "\n```"
    if reply_format == "prose":
        return "\n".join(f"답변 {j['answer']}: {j['rationale']}. 점수: {j['score']}" for j in judgements)
    if reply_format == "refusal":
        return REFUSAL
    return "답변들을 검토했습니다. 전반적으로 판독문과 관련된 내용입니다."


class StandInJudge(LoopbackServer):
    """The server in a background thread; use as a context manager, point a client at `base_url`."""

    def __init__(
        self, port: int = 0, latency_s: float = 0.0, reply_format: str = "json", first_bonus: int = 0
    ) -> None:
        if reply_format not in REPLY_FORMATS:
            raise ValueError(f"reply_format {reply_format!r} is not one of {', '.join(REPLY_FORMATS)}.")
        self.latency_s, self.reply_format, self.first_bonus = latency_s, reply_format, first_bonus
        self.calls = 0
        super().__init__(self._app(), port)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def __enter__(self) -> "StandInJudge":
        kiwi()  # load the morpheme model (seconds) before the first request, not during it
        return super().__enter__()

    async def completion(self, body: dict) -> dict:
        """One reply; the event loop runs one scoring at a time (one Kiwi instance), the latencies overlap."""
        self.calls += 1
        number = self.calls
        await asyncio.sleep(self.latency_s)
        messages = body.get("messages") or []
        prompt = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        text = judge_reply(prompt, self.reply_format, self.first_bonus)
        usage = {"prompt_tokens": estimate_tokens(messages), "completion_tokens": estimate_tokens([{"content": text}])}
        return {
            "id": f"stand-in-{number}",
            "object": "chat.completion",
            "model": body.get("model", "stand-in"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None)

        @app.get("/{path:path}")
        async def health(path: str) -> JSONResponse:
            return JSONResponse({"status": "ok"}, 200 if path == "health" else 404)

        @app.post("/{path:path}")
        async def chat(path: str, request: Request) -> JSONResponse:
            if not path.endswith("/chat/completions"):
                return JSONResponse({"error": {"message": f"no route /{path}"}}, 404)
            try:
                body = json.loads(await request.body())
            except ValueError:
                return JSONResponse({"error": {"message": "body is not JSON"}}, 400)
            return JSONResponse(await self.completion(body))

        return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.stand_in_judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each reply takes")
    parser.add_argument("--reply-format", choices=REPLY_FORMATS, default="json")
    parser.add_argument("--first-bonus", type=int, default=0, help="points added to the first shown answer")
    args = parser.parse_args(argv)
    with StandInJudge(args.port, args.latency, args.reply_format, args.first_bonus) as judge:
        print(f"stand-in judge at {judge.base_url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
