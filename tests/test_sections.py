"""The section parser on the sample's known layouts and on the odd ones MIMIC-CXR holds."""

from ko_radiology.sample_corpus import SAMPLE_DIR
from ko_radiology.sections import join_sections, parse_report, unwrap


def sample_report(study_id: str) -> str:
    return next(SAMPLE_DIR.glob(f"files/p*/p*/{study_id}.txt")).read_text(encoding="utf-8")


def test_full_report_sections_are_unwrapped():
    parsed = parse_report(sample_report("s53000101"))
    assert list(parsed.sections) == [
        "examination",
        "indication",
        "technique",
        "findings",
        "impression",
        "notification",
    ]
    assert parsed.sections["examination"] == "CHEST (PORTABLE AP)"
    assert "\n" not in parsed.sections["findings"]  # 13 hard-wrapped lines, one paragraph
    assert parsed.sections["findings"].startswith("There are acute, displaced fractures of the lateral left fourth")
    impression = parsed.sections["impression"].splitlines()
    assert impression[0].startswith("1. Acute displaced fractures") and impression[1].startswith("2. Small left")
    assert parsed.flags == [] and parsed.other_sections == []


def test_impression_only_report_is_flagged():
    parsed = parse_report(sample_report("s50000104"))
    assert list(parsed.sections) == ["impression"]
    assert parsed.flags == ["impression_only"]


def test_history_stays_its_own_section_and_recommendations_are_canonical():
    parsed = parse_report(sample_report("s51000112"))
    assert {"indication", "history", "recommendations"} <= set(parsed.sections)


def test_text_on_the_header_line_is_kept():
    parsed = parse_report(sample_report("s51000114"))
    assert parsed.sections["impression"] == "Hyperinflation consistent with COPD, unchanged. No evidence of pneumonia."
    assert parsed.sections["indication"].endswith("increased sputum production. // pneumonia?")


def test_addendum_and_unknown_headers_are_not_lost():
    text = (
        "                                 FINAL REPORT\n WET READ: ___ ___ 3:12 PM\n  No pneumothorax.\n"
        " EXAMINATION:  CHEST (PA AND LAT)\n \n FINDINGS: \n \n Clear lungs.\n \n"
        " PROVISIONAL FINDINGS IMPRESSION (PFI): Clear.\n IMPRESSION: \n No acute process.\n"
        " ADDENDUM: Comparison made with ___.\n IMPRESSION: Unchanged.\n"
    )
    parsed = parse_report(text)
    assert parsed.sections["addendum"] == "Comparison made with ___."
    assert parsed.sections["impression"] == "No acute process.\nUnchanged."
    assert "repeated_section:impression" in parsed.flags
    names = [section["name"] for section in parsed.other_sections]
    assert names == ["WET READ", "PROVISIONAL FINDINGS IMPRESSION (PFI)"]


def test_abbreviations_followed_by_a_colon_are_not_headers():
    parsed = parse_report(" FINDINGS: \n The PICC: tip in the SVC.\n NG: in stomach.\n")
    assert parsed.sections == {"findings": "The PICC: tip in the SVC. NG: in stomach."}
    assert parsed.other_sections == []


def test_report_without_any_section_is_flagged_and_kept():
    parsed = parse_report("Heart size normal. Lungs clear.\nNo effusion.")
    assert parsed.sections == {}
    assert parsed.flags == ["no_final_report_header", "no_sections_found"]
    assert parsed.other_sections == [{"name": "preamble", "text": "Heart size normal. Lungs clear. No effusion."}]


def test_unwrap_keeps_paragraphs_and_numbered_items():
    assert unwrap(" a\n b\n \n c\n 1.  d\n e\n 2.  f") == "a b\nc\n1. d e\n2. f"


def test_join_sections_labels_in_canonical_order():
    assert join_sections({"impression": "결론임.", "findings": "소견임."}, "ko") == "소견: 소견임.\n\n결론: 결론임."
    assert join_sections({"impression": "Clear."}, "en") == "IMPRESSION: Clear."


def test_combined_findings_and_impression_header_goes_to_impression():
    parsed = parse_report(sample_report("s50000108"))
    assert "findings" not in parsed.sections and parsed.other_sections == []
    impression = parsed.sections["impression"].splitlines()
    assert impression[0].startswith("Compared with the prior study, the multifocal consolidations")
    assert impression[1] == "Interval improvement of multifocal pneumonia with minimal residual right basilar opacity."


def test_organ_labels_stay_inside_findings_one_per_line():
    parsed = parse_report(sample_report("s52000113"))
    labels = [line.split(":")[0] for line in parsed.sections["findings"].splitlines()]
    assert labels == ["TUBES AND LINES", "MEDIASTINUM", "LUNGS", "PLEURA"]
    assert parsed.other_sections == [] and parsed.sections["addendum"].startswith("On further review")
    text = (
        " FINDINGS:\n CARDIOMEDIASTINAL: Normal.\n HEART: Normal size.\n SOFT TISSUES: Unremarkable.\n"
        " BONES: Intact,\n no fracture.\n IMPRESSION: No acute process.\n"
    )
    assert parse_report(text).sections == {
        "findings": "CARDIOMEDIASTINAL: Normal.\nHEART: Normal size.\nSOFT TISSUES: Unremarkable.\n"
        "BONES: Intact, no fracture.",
        "impression": "No acute process.",
    }


def test_windows_and_old_mac_line_endings_parse_as_unix_ones():
    text = sample_report("s53000101")
    unix = parse_report(text)
    for line_end in ("\r\n", "\r"):
        parsed = parse_report(text.replace("\n", line_end))
        assert parsed == unix, line_end.encode()
    assert list(unix.sections)[-3:] == ["findings", "impression", "notification"]  # impression its own section
    assert "IMPRESSION" not in unix.sections["findings"] and unix.sections["impression"].startswith("1. Acute")
