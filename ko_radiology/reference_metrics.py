"""Korean reference metrics that need no judge: chrF++ and BLEU for translations, ROUGE-L for answers.

    from ko_radiology.reference_metrics import chrf_pp, rouge_l_chars_scores
    chrf_pp(["폐는 깨끗합니다."], ["폐는 깨끗합니다."])   # 1.0

Every score is in [0, 1] (sacrebleu's 0-100 divided by 100), so identical strings score 1.0 everywhere. The usual
ROUGE tokenizer keeps only [a-z0-9] and scores any Hangul pair 0, hence ROUGE-L here runs on Kiwi morphemes (the
unit Korean inflects in: 있습니다 → 있 + 습니다) or on characters (no tokenizer to disagree with). BLEU runs on
Kiwi morphemes too, the role sacrebleu's `ko-mecab` tokenizer plays where MeCab-ko is installed. Text is NFC
normalized first, so decomposed jamo from some editors match their composed syllables.
"""

import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

from sacrebleu.metrics import BLEU, CHRF


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    """NFC strings of equal count; a missing prediction scores 0, a missing reference is an error."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; pass one per sample.")
    if not references:
        raise ValueError("no samples: predictions and references are empty.")
    checked_predictions, checked_references = [], []
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError(f"reference {index} is empty or not text ({reference!r}); every sample needs one.")
        if prediction is not None and not isinstance(prediction, str):
            raise ValueError(f"prediction {index} is {type(prediction).__name__}, not text; use '' for no answer.")
        checked_predictions.append(unicodedata.normalize("NFC", prediction or ""))
        checked_references.append(unicodedata.normalize("NFC", reference))
    return checked_predictions, checked_references


@lru_cache(maxsize=1)
def kiwi():
    """Kiwi takes about a second to load its model, so it is loaded once, on first use."""
    from kiwipiepy import Kiwi

    return Kiwi()


def morphemes(text: str) -> list[str]:
    """Kiwi morpheme forms of `text` (우측 폐하엽에 → 우측 폐 하 엽 에)."""
    return [token.form for token in kiwi().tokenize(text)]


def characters(text: str) -> list[str]:
    """The characters of `text` without whitespace, so spacing differences (띄어쓰기) cost nothing."""
    return [char for char in text if not char.isspace()]


def _unit(score: float) -> float:
    """sacrebleu's 0-100 as 0-1; float error can put an identical pair at 100.00000000000004."""
    return min(1.0, score / 100)


def chrf_pp_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence-level chrF++ (character 6-grams plus word bigrams) per pair, in [0, 1]."""
    predictions, references = _check_pairs(predictions, references)
    metric = CHRF(word_order=2)
    return [_unit(metric.sentence_score(p, [r]).score) for p, r in zip(predictions, references, strict=True)]


def chrf_pp(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF++ in [0, 1] (statistics summed over the corpus, as sacrebleu reports it)."""
    predictions, references = _check_pairs(predictions, references)
    return _unit(CHRF(word_order=2).corpus_score(predictions, [references]).score)


def _morpheme_lines(texts: Sequence[str]) -> list[str]:
    return [" ".join(morphemes(text)) for text in texts]


def bleu_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence-level BLEU on Kiwi morphemes per pair, in [0, 1] (effective order, so short answers are not 0)."""
    predictions, references = _check_pairs(predictions, references)
    metric = BLEU(tokenize="none", effective_order=True)
    pairs = zip(_morpheme_lines(predictions), _morpheme_lines(references), strict=True)
    return [_unit(metric.sentence_score(p, [r]).score) for p, r in pairs]


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level BLEU on Kiwi morphemes in [0, 1]."""
    predictions, references = _check_pairs(predictions, references)
    return _unit(BLEU(tokenize="none").corpus_score(_morpheme_lines(predictions), [_morpheme_lines(references)]).score)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, one row of the dynamic programme at a time."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction_tokens: Sequence[str], reference_tokens: Sequence[str]) -> float:
    """ROUGE-L F1 (beta = 1) of two token lists; 0 when either is empty."""
    common = lcs_length(prediction_tokens, reference_tokens)
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def _rouge_l_scores(
    predictions: Sequence[str], references: Sequence[str], tokenize: Callable[[str], list[str]]
) -> list[float]:
    predictions, references = _check_pairs(predictions, references)
    return [rouge_l(tokenize(p), tokenize(r)) for p, r in zip(predictions, references, strict=True)]


def rouge_l_morphemes_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 on Kiwi morphemes per pair, in [0, 1]."""
    return _rouge_l_scores(predictions, references, morphemes)


def rouge_l_chars_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 on characters (whitespace ignored) per pair, in [0, 1]."""
    return _rouge_l_scores(predictions, references, characters)


def korean_overlap(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every metric above as one flat dict: corpus chrF++ and BLEU, mean sentence ROUGE-L on both units."""
    morpheme_scores = rouge_l_morphemes_scores(predictions, references)
    char_scores = rouge_l_chars_scores(predictions, references)
    return {
        "chrf_pp": chrf_pp(predictions, references),
        "bleu": bleu(predictions, references),
        "rouge_l_morphemes": sum(morpheme_scores) / len(morpheme_scores),
        "rouge_l_chars": sum(char_scores) / len(char_scores),
    }
