"""Language checks shared by the sample-corpus tests and the builder's quality flags.

Word-level tools fail on Hangul (no spaces inside compounds, agglutinated particles), so the checks here work on
characters.
"""

HANGUL_SYLLABLES = ("\uac00", "\ud7a3")


def is_hangul(char: str) -> bool:
    return HANGUL_SYLLABLES[0] <= char <= HANGUL_SYLLABLES[1]


def hangul_ratio(text: str) -> float:
    """Share of alphabetic characters that are Hangul syllables (0.0 for text without letters)."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return 0.0
    return sum(is_hangul(char) for char in letters) / len(letters)


def is_mostly_korean(text: str, threshold: float = 0.5) -> bool:
    """Korean clinical text keeps English abbreviations (PICC, ETT), so "mostly" rather than "only" Hangul."""
    return hangul_ratio(text) >= threshold
