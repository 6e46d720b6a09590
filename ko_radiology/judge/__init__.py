"""The LLM judge: Korean rubrics, prompts, tolerant reading of replies, shuffled orders mapped back, and summaries.

    from ko_radiology.judge import Judge, JudgeConfig, JudgeItem
    from ko_radiology.llm import LLMClient, LLMClientConfig

    client = LLMClient(LLMClientConfig(model="judge", base_url="http://127.0.0.1:8000/v1", api_key_env=None))
    outcome = Judge(client, JudgeConfig(criterion="accuracy")).run([JudgeItem(report, question, (answer,))])
    outcome.summary(0)            # mean, 95% CI, failures (never counted as 0)

One concern per module: `rubrics` (the criteria), `prompt` (the call and its JSON schema), `parsing` (reading a
reply), `ordering` (shuffle and map back), `summary` (means, CIs and bias measures), `runner` (calls through the
client), `evaluation` (the flat result of the `evaluate` module). The bootstrap lives in `ko_radiology.statistics`,
shared with the reference metrics.
"""

from ko_radiology.judge.evaluation import evaluate_with_judge
from ko_radiology.judge.ordering import map_back, shown_orders
from ko_radiology.judge.parsing import ParsedJudgement, parse_judgements
from ko_radiology.judge.prompt import build_judge_messages, judgement_schema
from ko_radiology.judge.rubrics import CRITERIA, SCORE_MAX, SCORE_MIN, Criterion, get_criterion
from ko_radiology.judge.runner import (
    NO_ANSWER,
    AnswerJudgement,
    Judge,
    JudgeConfig,
    JudgeItem,
    JudgeOutcome,
    longer_answer_wins,
)
from ko_radiology.judge.summary import ScoreSummary, longer_wins_rate, summarize_scores, swap_flip_rate

__all__ = [
    "CRITERIA",
    "NO_ANSWER",
    "SCORE_MAX",
    "SCORE_MIN",
    "AnswerJudgement",
    "Criterion",
    "Judge",
    "JudgeConfig",
    "JudgeItem",
    "JudgeOutcome",
    "ParsedJudgement",
    "ScoreSummary",
    "build_judge_messages",
    "evaluate_with_judge",
    "get_criterion",
    "judgement_schema",
    "longer_answer_wins",
    "longer_wins_rate",
    "map_back",
    "parse_judgements",
    "shown_orders",
    "summarize_scores",
    "swap_flip_rate",
]
