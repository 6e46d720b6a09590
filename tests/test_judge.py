"""The judge core against real HTTP judges: the stand-in judge (known rules, chosen reply format), `transformers
serve` on the tiny model (garbage replies: the failure path), and the fault proxy in front of them."""

import pytest

from eval.stand_in_judge import StandInJudge, parse_prompt
from ko_radiology.judge import (
    NO_ANSWER,
    Judge,
    JudgeConfig,
    JudgeItem,
    evaluate_with_judge,
    get_criterion,
    longer_wins_rate,
    parse_judgements,
    swap_flip_rate,
)
from ko_radiology.llm import LLMClient, LLMClientConfig
from tests.standins import Fault, FaultProxy

REPORT = "우측 폐하엽에 새로운 경화가 있음. 폐렴에 합당함. 흉막삼출이나 기흉은 없음."
QUESTION = "폐렴 소견이 있나요?"
# The stand-in scores understandability by the share of Latin letters: 0% → 4, 8% → 3, 21% → 2, 84% → 1.
BY_SCORE = {
    4: "우측 폐 아래쪽에 폐렴으로 보이는 하얀 부분이 있습니다.",
    3: "우측 폐 아래쪽에 폐렴으로 보이는 하얀 부분 CT 있습니다.",
    2: "우측 폐 아래쪽에 lung 하얀 부분이 있어요.",
    1: "Right lower lobe consolidation, 폐렴입니다.",
}


def client_for(base_url: str, tmp_path, **overrides) -> LLMClient:
    config = {"model": "judge", "base_url": base_url, "api_key_env": None, "cache_path": str(tmp_path / "c.sqlite")}
    return LLMClient(LLMClientConfig(**{**config, "show_progress": False, "backoff_base_s": 0.01, **overrides}))


@pytest.fixture(scope="module")
def stand_in():
    with StandInJudge(reply_format="json") as judge:
        yield judge


def test_parsing_reads_json_fences_and_prose_and_never_invents_a_score():
    assert [
        p.score for p in parse_judgements('{"judgements": [{"answer": 2, "score": 1}, {"answer": 1, "score": 4}]}', 2)
    ] == [4, 1]
    assert parse_judgements('결과:\n```json\n{"score": "3점", "rationale": "근거"}\n```', 1)[0].score == 3
    assert [p.score for p in parse_judgements("답변 1: 정확함. 점수: 4\n답변 2: 좌우가 틀림. 점수: 1", 2)] == [4, 1]
    for reply in ("<unused3> 폐 폐 폐", '{"score": 0}', '{"score": 7}', "점수는 2점 또는 3점입니다", ""):
        (parsed,) = parse_judgements(reply, 1)
        assert parsed.score is None and parsed.error, reply
    half = parse_judgements('[{"answer": 1, "score": 2}]', 2)
    assert half[0].score == 2 and half[1].score is None and half[1].error.startswith("no score found for this answer")


RUBRIC_ECHO = "\n".join(line for line in get_criterion("accuracy").rubric.splitlines() if "점:" in line)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # The forms the prompt asks for, in prose and markdown: one score each.
        ("점수: 3", [3]),
        ("정확하게 답했습니다. 3점입니다.", [3]),
        ("Score: 4", [4]),
        ("The answer matches the report, so I give it a score of 4.", [4]),
        ("**점수: 3**", [3]),
        ("## 평가\n- 근거: 좌우와 위치가 판독문과 같음\n- **점수**: 4", [4]),
        ("```\n근거: 크기가 빠짐\n점수: 3\n```", [3]),
        ("점수: 2점. 중요한 소견 하나가 빠져 2점을 줍니다.", [2]),
        ("답변 1: 근거 있는 내용 형태소 비율 0.95. 점수: 4", [4]),  # the stand-in's prose, a decimal in the rationale
        ("3점: 대체로 정확하나 크기가 빠졌다.", [3]),  # one rubric line chosen as the verdict
        (RUBRIC_ECHO + "\n\n위 기준에 따라 점수: 3", [3]),  # the rubric echoed, then the score
        ("1점: 모순 2점: 일부만 3점: 대체로 4점: 정확. 이 답변은 2점", [2]),
        # JSON, also wrapped in prose, a fence, or with the score as text.
        ('평가 결과입니다.\n{"judgements": [{"answer": 1, "rationale": "정확", "score": 4}]}\n감사합니다.', [4]),
        ('```json\n{"judgements": [{"answer": 1, "rationale": "크기 누락", "score": 3}]}\n```', [3]),
        ('{"rationale": "근거", "score": "3점"}', [3]),
        # Refusals and scale statements: no score.
        ("평가 불가 (1~4점 중 어느 것도 아님)", [None]),
        ("판독문이 비어 있어 평가할 수 없습니다.", [None]),
        ("I cannot evaluate this answer without the images.", [None]),
        ("1~4점 척도로 평가합니다.", [None]),
        ("Rating: 4", [None]),  # not a form the prompt asked for
        ("", [None]),
        # Ranges, fractions, other scales, out of range.
        ("점수: 2-3", [None]),
        ("2~3점", [None]),
        ("score: 2 or 3", [None]),
        ("score: 4/10", [None]),
        ("점수: 3/4", [None]),
        ("Score: 3 out of 4", [None]),
        ("10점 만점에 8점", [None]),
        ("점수: 5", [None]),
        ("0점", [None]),
        ("점수: 3.5", [None]),
        ('{"score": 0}', [None]),
        ('{"score": 7}', [None]),
        ('{"rationale": "애매함", "score": "2-3"}', [None]),
        # Several different scores for one answer.
        ("점수는 2점 또는 3점입니다", [None]),
        ("처음에는 점수: 3 이라고 생각했으나 다시 보니 최종 점수: 4", [None]),
        ('초안 {"score": 2}\n최종 {"score": 3}', [None]),
        ('{"judgements": [{"answer": 1, "score": 4}, {"answer": 1, "score": 2}]}', [None, None]),
        # Several answers in one reply.
        ("답변 1: 정확함. 점수: 4\n답변 2: 좌우가 틀림. 점수: 1", [4, 1]),
        ("Answer 1: score 3\nAnswer 2: score 2", [3, 2]),
        ("- **답변 1**: 4점\n- **답변 2**: 2점", [4, 2]),
        ("[답변 1] 점수: 3\n[답변 2] 점수: 2-3", [3, None]),
        ("답변 2: 점수 1", [None, 1]),
        ('{"judgements": [{"answer": 2, "score": 1}, {"answer": 1, "score": 4}]}', [4, 1]),
    ],
)
def test_a_reply_is_a_score_only_when_it_states_one_score_in_range(reply, expected):
    parsed = parse_judgements(reply, len(expected))
    assert [p.score for p in parsed] == expected
    for judgement in parsed:
        assert (judgement.error is None) == (judgement.score is not None)
        if judgement.error:  # the reason, then the raw reply, whole
            assert judgement.error.endswith(f" in the reply {reply!r}")


def test_shuffled_orders_are_seeded_and_mapped_back(stand_in, tmp_path):
    answers = tuple(BY_SCORE[s] for s in (4, 3, 2, 1))
    items = [JudgeItem(REPORT, QUESTION, answers) for _ in range(6)]
    judge = Judge(client_for(stand_in.base_url, tmp_path), JudgeConfig(criterion="und", seed=3))
    calls = judge.plan(items)
    shown = [parse_prompt(call.request.messages[1]["content"])[1] for call in calls]
    assert len({tuple(s) for s in shown}) > 1  # the order differs between questions
    assert [[answers[i] for i in call.order] for call in calls] == shown
    assert [call.order for call in judge.plan(items)] == [call.order for call in calls]  # same seed, same orders
    outcome = judge.run(items)
    assert [[j.score for j in item] for item in outcome.judgements] == [[4.0, 3.0, 2.0, 1.0]] * 6


def test_all_positions_measures_a_position_bias(tmp_path):
    items = [JudgeItem(REPORT, QUESTION, (BY_SCORE[3], BY_SCORE[2])) for _ in range(4)]
    config = JudgeConfig(criterion="understandability", all_positions=True)
    with StandInJudge(first_bonus=1) as biased:
        outcome = Judge(client_for(biased.base_url, tmp_path), config).run(items)
    # Shown first, the 3 becomes 4 and the 2 becomes 3: a tie in one order, a win in the other → every pair flips.
    assert outcome.swap_flip_rate() == 1.0
    assert [[j.score for j in item] for item in outcome.judgements] == [[3.5, 2.5]] * 4
    assert all(len(j.position_scores) == 2 for item in outcome.judgements for j in item)


def test_bias_measures_by_hand():
    assert swap_flip_rate([[[4, 4], [3, 3]], [[4, 2], [3, 3]]]) == 0.5
    assert swap_flip_rate([[[4], [3]]]) is None  # one order: nothing to compare
    assert longer_wins_rate([[("긴 답변입니다", 4), ("짧음", 2)], [("아주 긴 답변", 1), ("짧", 3)]]) == (0.5, 2)


def test_compute_counts_failures_and_missing_answers_never_zero(stand_in, tmp_path):
    results = evaluate_with_judge(
        "accuracy",
        [REPORT, None, "  "],
        [REPORT] * 3,
        [QUESTION] * 3,
        judge_model="judge",
        judge_base_url=stand_in.base_url,
        api_key_env=None,
        cache_path=str(tmp_path / "c.sqlite"),
        show_progress=False,
    )
    assert results["scores"] == [4.0, None, None] and results["errors"][1:] == [NO_ANSWER] * 2
    assert (results["mean"], results["num_failures"], results["failure_rate"]) == (4.0, 2, 2 / 3)
    assert (results["ci_low"], results["ci_high"]) == (4.0, 4.0)


def test_second_run_is_answered_from_the_cache(stand_in, tmp_path):
    def run():
        kwargs = {"judge_model": "judge", "api_key_env": None, "cache_path": str(tmp_path / "c.sqlite")}
        return evaluate_with_judge(
            "understandability",
            [[BY_SCORE[4], BY_SCORE[1]], [BY_SCORE[2], BY_SCORE[3]]],
            [REPORT] * 2,
            [QUESTION] * 2,
            judge_base_url=stand_in.base_url,
            show_progress=False,
            **kwargs,
        )

    before = stand_in.calls
    first = run()
    assert stand_in.calls == before + 2
    assert run() == first and stand_in.calls == before + 2
    assert first["mean"] == [3.0, 2.0] and first["scores"] == [[4.0, 1.0], [2.0, 3.0]]
    assert first["longer_wins_rate"] == 0.5 and first["longer_wins_pairs"] == 2


@pytest.mark.parametrize(("reply_format", "expected"), [("fenced", [4.0]), ("prose", [4.0]), ("no_score", [None])])
def test_servers_that_ignore_the_schema_are_read_tolerantly(reply_format, expected, tmp_path):
    with StandInJudge(reply_format=reply_format) as judge:
        outcome = Judge(client_for(judge.base_url, tmp_path), JudgeConfig(structured_output=False)).run(
            [JudgeItem(REPORT, QUESTION, (REPORT,))]
        )
    assert outcome.scores(0) == expected
    if expected == [None]:
        assert "no score found" in outcome.judgements[0][0].error
        assert outcome.summary(0).mean is None and outcome.summary(0).failure_rate == 1.0


def test_tiny_server_garbage_is_a_counted_failure_on_both_paths(tiny_server, tmp_path):
    item = JudgeItem(REPORT, QUESTION, (REPORT,))
    with FaultProxy(tiny_server.base_url) as proxy:
        client = client_for(proxy.base_url, tmp_path, model=tiny_server.model, max_retries=0)
        structured = Judge(client, JudgeConfig(max_tokens=8)).run([item])
        tolerant = Judge(client, JudgeConfig(max_tokens=8, structured_output=False)).run([item])
    assert proxy.forwarded[0]["response_format"]["type"] == "json_schema"
    assert "response_format" not in proxy.forwarded[1]
    assert structured.scores(0) == [None] and "judge call failed" in structured.judgements[0][0].error
    assert tolerant.scores(0) == [None] and tolerant.summary(0).num_failures == 1


def test_rate_limits_and_failures_mid_run_lose_nothing(stand_in, tmp_path):
    items = [JudgeItem(REPORT, f"{QUESTION} q{n}", (REPORT,)) for n in range(4)]
    config = JudgeConfig()
    with FaultProxy(stand_in.base_url) as proxy:
        client = client_for(proxy.base_url, tmp_path, max_retries=1)
        proxy.script(Fault.http_status(429, retry_after="0"), *[Fault.http_status(500, match="q2")] * 2)
        first = Judge(client, config).run(items)
        assert first.scores(0) == [4.0, 4.0, None, 4.0]
        assert "HTTP 500" in first.judgements[2][0].error
        proxy.reset()
        second = Judge(client, config).run(items)
    assert second.scores(0) == [4.0] * 4
    assert len(proxy.forwarded) == 1  # only the failed one was sent again; the rest came from the cache


def test_compute_names_bad_options_and_inputs(tmp_path):
    common = {"judge_model": "judge", "api_key_env": None, "cache_path": str(tmp_path / "c.sqlite")}
    with pytest.raises(TypeError, match="Unknown judge option 'temperature'"):
        evaluate_with_judge("accuracy", [REPORT], [REPORT], [QUESTION], temperature=0.5, **common)
    with pytest.raises(ValueError, match="judge_model is required"):
        evaluate_with_judge("accuracy", [REPORT], [REPORT], [QUESTION], judge_model=None)
    with pytest.raises(ValueError, match=r"questions\[0\] is empty"):
        evaluate_with_judge("accuracy", [REPORT], [REPORT], [" "], **common)
    with pytest.raises(ValueError, match="similarity criterion needs a reference answer"):
        evaluate_with_judge("similarity", [REPORT], [REPORT], [QUESTION], **common)
    with pytest.raises(ValueError, match="Unknown judge criterion 'acuracy'"):
        evaluate_with_judge("acuracy", [REPORT], [REPORT], [QUESTION], **common)
