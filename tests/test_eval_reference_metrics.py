"""Korean reference metrics and the bootstrap they report with, on inputs whose answers are known by hand."""

import unicodedata

import numpy as np
import pytest

from ko_radiology.reference_metrics import (
    bleu,
    bleu_scores,
    chrf_pp,
    chrf_pp_scores,
    korean_overlap,
    lcs_length,
    morphemes,
    rouge_l_chars_scores,
    rouge_l_morphemes_scores,
)
from ko_radiology.statistics import bootstrap_ci, paired_bootstrap, sign_test, wilson_interval

KOREAN = ["우측 폐하엽에 새로운 경화가 있어 폐렴에 합당합니다.", "흉막삼출이나 기흉은 없습니다."]


def test_identical_korean_scores_one_on_every_metric():
    # The default ROUGE tokenizer keeps [a-z0-9] only and would give these pairs 0.
    for scores in (chrf_pp_scores, bleu_scores, rouge_l_morphemes_scores, rouge_l_chars_scores):
        assert scores(KOREAN, KOREAN) == [1.0, 1.0], scores.__name__
    assert set(korean_overlap(KOREAN, KOREAN).values()) == {1.0}


def test_disjoint_text_scores_zero_and_partial_overlap_in_between():
    assert rouge_l_chars_scores(["가나다"], ["라마바"]) == [0.0]
    assert bleu(["심장 크기"], ["폐렴"]) == 0.0
    partial = chrf_pp_scores(["좌측 폐하엽에 새로운 경화가 있어 폐렴에 합당합니다."], KOREAN[:1])[0]
    assert 0.5 < partial < 1.0
    assert 0.2 < chrf_pp(["우측 폐하엽에 경화가 있습니다."], KOREAN[:1]) < 1.0


def test_rouge_l_chars_by_hand():
    # LCS of 우측폐경화 and 좌측폐경화없음 is 측폐경화 (4): precision 4/5, recall 4/7, F1 = 2/3.
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert rouge_l_chars_scores(["우측 폐 경화"], ["좌측 폐 경화 없음"]) == [pytest.approx(2 / 3)]


def test_character_rouge_ignores_spacing_and_unicode_form():
    assert rouge_l_chars_scores(["흉막 삼출이 없습니다"], ["흉막삼출이 없습니다"]) == [1.0]
    decomposed = unicodedata.normalize("NFD", KOREAN[1])
    assert decomposed != KOREAN[1]
    assert rouge_l_morphemes_scores([decomposed], [KOREAN[1]]) == [1.0]


def test_morphemes_split_inflection():
    assert morphemes("있습니다") == ["있", "습니다"]


def test_missing_prediction_scores_zero_and_bad_input_is_named():
    assert rouge_l_chars_scores([""], ["폐렴"]) == [0.0]
    assert chrf_pp_scores([None], ["폐렴"]) == [0.0]
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        chrf_pp(["가", "나"], ["가"])
    with pytest.raises(ValueError, match="reference 1 is empty"):
        rouge_l_chars_scores(["가", "나"], ["가", " "])
    with pytest.raises(ValueError, match="prediction 0 is float"):
        bleu_scores([float("nan")], ["가"])


def test_bootstrap_ci_on_known_inputs():
    assert bootstrap_ci([3.0] * 20) == (3.0, 3.0, 3.0)
    coin = [0.0, 1.0] * 200  # mean 0.5, standard error 0.025: a 95% CI of about ±0.049
    mean, low, high = bootstrap_ci(coin, seed=7)
    assert mean == 0.5
    assert low == pytest.approx(0.451, abs=0.01) and high == pytest.approx(0.549, abs=0.01)
    assert bootstrap_ci(coin, seed=7) == bootstrap_ci(coin, seed=7)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_paired_bootstrap_sees_a_shared_difficulty_the_unpaired_view_hides():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1, 200)
    base = difficulty + rng.normal(0, 0.1, 200)
    tuned = base + 0.1
    diff, low, high = paired_bootstrap(tuned, base)
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    _, tuned_low, _ = bootstrap_ci(tuned)
    _, _, base_high = bootstrap_ci(base)
    assert tuned_low < base_high  # the two intervals overlap, yet the paired difference is clearly above 0
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_sign_test_exact_values():
    assert sign_test(8, 2) == pytest.approx(0.109375)  # 2 * (1 + 10 + 45) / 1024
    assert sign_test(5, 5) == 1.0
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)


def test_wilson_interval_on_known_inputs():
    share, low, high = wilson_interval(81, 263)  # the worked example of Wilson's interval: 0.255 to 0.366
    assert share == pytest.approx(0.308, abs=1e-3)
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson_interval(0, 10) == (0.0, 0.0, pytest.approx(0.2775, abs=1e-4))  # not a point, unlike a bootstrap
    assert wilson_interval(10, 10) == (1.0, pytest.approx(0.7225, abs=1e-4), 1.0)
    with pytest.raises(ValueError, match="3 of 2"):
        wilson_interval(3, 2)
