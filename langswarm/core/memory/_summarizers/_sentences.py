"""Reading sentences: splitting text into them, and spotting the facts and names they hold.

Facts are what a reader must get exactly right: numbers, dates, amounts, identifiers, e-mail
addresses and inline code. Names are runs of capitalised words that are not sentence openers.
"""

from __future__ import annotations

import re

__all__ = [
    "DECISION",
    "PLEASANTRY",
    "QUESTION_START",
    "SPACE",
    "find_facts",
    "find_names",
    "split_sentences",
]

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WEEKDAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"
_UNIT = (
    r"(?:(?:business |working |calendar )?(?:second|minute|hour|day|night|week|month|year)s?"
    r"|guests?|people|persons?|seats?|rooms?|items?|rows?|pods?|users?|kg|km|miles?|GB|MB|TB)"
)
_FACT = re.compile(
    "|".join(
        [
            r"`[^`\n]{1,80}`",  # inline code
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail address
            rf"\b(?:{_WEEKDAY},? )?{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?\b(?:,? \d{{4}})?",
            rf"\b(?:{_WEEKDAY},? )?\d{{1,2}}(?:st|nd|rd|th)? {_MONTH}\b(?: \d{{4}})?",
            rf"\b{_WEEKDAY}\b",
            # amounts, ids, versions, times, percentages: any token holding a digit, with the
            # unit after it ("48 hours")
            r"[#$€£¥+]?\b[\w-]*\d(?:[\w.,:/+-]*[\w%])?(?: ?(?:%|am|pm|AM|PM|UTC)\b)?%?"
            rf"(?: {_UNIT}\b)?",
        ]
    )
)
_DATE_WORD = re.compile(rf"(?:{_WEEKDAY}|{_MONTH})$")
# A run of capitalised words, joined by a few lowercase particles: "Dr. Okafor", "Bank of Ireland".
_PARTICLES = frozenset(["and", "of", "de", "van", "von", "da", "del", "la", "le"])
_NAME = re.compile(
    r"\b(?:(?:Dr|Mr|Mrs|Ms|Prof|St)\. )?[A-Z][\w'\u2019-]*[A-Za-z0-9]"
    r"(?:(?: (?:and|of|de|van|von|da|del|la|le))? [A-Z][\w'\u2019-]*[A-Za-z0-9])*"
)
# Capitalised words that open sentences without naming anything.
_NOT_NAMES = frozenset(
    """
    A About Actually After Again All Also Alright Although An And Any Anything Are As At Be
    Because Before Best But By Can Could Dear Did Do Does Done Each Either Even Every First For
    From Glad Good Got Great Happy Has Have He Hello Her Here Hey Hi His How However I I'd I'll
    I'm I've If In Is It It's Its Just Let Let's Lovely Many May Maybe Might More Most My No
    Not Nothing Now OK Of Oh Ok Okay On Once One Only Or Other Our Perfect Please Same See She
    Should Since So Some Sorry Sounds Still Sure That That's The Their Then There There's These
    They This Those Thanks Thank To Today Tomorrow Unfortunately Until Very Was We We'll We're
    Well Were What When Where Whether Which While Who Why Will With Would Yes Yesterday Yet You
    You'd You'll You're You've Your
    """.split()  # noqa: SIM905 - a word list reads better as words
)
QUESTION_START = re.compile(
    r"^(?:how|what|when|where|why|which|who|whom|whose|can|could|would|will|is|are|am|do|"
    r"does|did|should|may|might|have|has)\b",
    re.IGNORECASE,
)
# Words that mark a decision, commitment or change of state.
DECISION = re.compile(
    r"\b(?:I'll|I will|we'll|we will|I've|let's|let us|decided?|agreed?|confirm(?:ed|s)?|"
    r"book(?:ed)?|schedul(?:e|ed)|reserv(?:e|ed)|cancel(?:l?ed)?|refund(?:ed)?|issued|"
    r"approv(?:e|ed)|applied|credited|charged|switch(?:ed)?|upgraded?|downgraded?|updated?|"
    r"changed?|moved?|rebooked|registered|set up|created|opened|sent|assigned|escalat\w+|"
    r"will be|is now|has been|have been|going to|plan(?:ned)?|recommend\w*|suggest\w*|"
    r"should|must|needs? to|go with|prefer|deadline|due|done|owns?|fix(?:ed)?)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9$€£#])")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|No|approx|e\.g|i\.e|etc|Inc|Ltd)\.$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_CODE_BLOCK = re.compile(r"```[^\n]*\n?(.*?)```", re.DOTALL)
_ERROR_LINE = re.compile(r"\w+(?:Error|Exception)\b")
_CONTEXT_SKIP = frozenset(
    """
    about after almost another around before between each every exactly first from into just
    last least more most nearly next only over roughly than that their there these this those
    under until upon what when which with within your
    """.split()  # noqa: SIM905 - a word list reads better as words
)
PLEASANTRY = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|great|perfect|ok|okay|sure|wonderful|awesome|cool|"
    r"lovely|no problem|you're welcome|welcome|bye|goodbye|cheers|sounds good|got it)\b",
    re.IGNORECASE,
)
SPACE = re.compile(r"\s+")


def find_facts(text: str) -> list[tuple[str, str]]:
    """Numbers, dates, amounts, ids, e-mails and code in ``text``, as (fact, display) pairs.

    For a bare number ``display`` adds the word before it when that says what the number is
    ("order 88231"); it is what the ``Also noted:`` line shows.
    """
    found: list[tuple[str, str]] = []
    for match in _FACT.finditer(text):
        fact = match.group().rstrip(".,:;-/")
        if not fact:
            continue
        display = fact
        if not any(c.isalpha() for c in fact):
            before = text[: match.start()].rstrip()
            word = before.rsplit(None, 1)[-1] if before else ""
            if word.isalpha() and word.islower() and len(word) > 3 and word not in _CONTEXT_SKIP:
                display = f"{word} {fact}"
            elif len(fact) <= 2:
                display = ""  # a bare small number says nothing on its own
        found.append((fact, display))
    return found


def find_names(text: str) -> tuple[list[str], str | None]:
    """Proper nouns in ``text``, and the one-word name opening it (if any).

    A capitalised word that opens a sentence may be an ordinary word ("Replacement of ..."):
    the caller keeps such an opener only if it also appears capitalised mid-sentence.
    """
    names: list[str] = []
    opener = None
    for match in _NAME.finditer(text):
        words = match.group().split(" ")
        dropped = False
        while words and (
            words[0] in _NOT_NAMES or words[0] in _PARTICLES or _DATE_WORD.match(words[0])
        ):
            words.pop(0)
            dropped = True
        while words and words[-1] in _PARTICLES:
            words.pop()
        if not words:
            continue
        name = " ".join(words)
        if match.start() == 0 and not dropped and len(words) == 1:
            opener = name
        names.append(name)
    return names, opener


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; list items and lines count as sentences of their own."""
    text = _CODE_BLOCK.sub(_code_gist, text)
    sentences: list[str] = []
    for line in text.splitlines():
        line = SPACE.sub(" ", _LIST_MARKER.sub("", line)).strip()
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if not _ABBREVIATION.search(line, 0, match.start()):
                sentences.append(line[start : match.start()].strip())
                start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _code_gist(match: re.Match[str]) -> str:
    """A fenced code block shrinks to its error line, or else its first line, as code."""
    lines = [line.strip() for line in match.group(1).splitlines() if line.strip()]
    if not lines:
        return ""
    errors = [line for line in lines if _ERROR_LINE.search(line)]
    gist = (errors[-1] if errors else lines[0])[:80].replace("`", "'")
    return f"\n`{gist}`\n"
