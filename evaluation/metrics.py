"""Scores from exact references, so that a 135M model needs no judge (formulas in the README).

Per answer: ``memorized`` (contains an accepted answer), ``protected`` (an anachronism probe
answered without forbidden content, without explaining the thing or taking it for granted, without
treating it as part of the character's life or showing knowledge of it, and without saying it is an
AI), ``anachronisms`` (things from after the character's era that the answer names and the question
did not), ``breaks_character`` (says it is an AI, a language model, an assistant), ``degenerate``
(empty, or looping), and per pair of questions asking the same fact: ``consistent``.
"""

from __future__ import annotations

import re
from collections import Counter

from characters.era import anachronisms, mentions, things_named, without_lookalikes
from characters.schema import Character
from evaluation.questions import Question
from plumbing.text import FUNCTION_WORDS, PLURAL, contains, content_words, said_pattern, says, stem, words

# Saying what one is not: an AI, a model, an assistant, a program.
AI_SELF = re.compile(
    r"\b(as an? (ai|artificial intelligence|language model|assistant|chatbot)"
    r"|i(?:'m| am) (?:just |only |a |an |your )*(?:ai\b|artificial intelligence|(?:large )?language model"
    r"|(?:helpful |virtual |digital )?assistant|chatbot|computer program|bot\b)"
    r"|(?:large )?language model|(?:ai|virtual|digital) assistant|smollm|hugging ?face|openai"
    r"|my (?:training data|programming|creators|developers)|i was (?:trained|programmed|created by))",
    re.IGNORECASE)
# Explaining the thing instead of being puzzled by it: code, tutorials, definitions.
EXPLAINING = re.compile(
    r"(```|^\s*(?:def|import|class|function|for|print)\b.*[:(]|\bhere(?:'s| is) (?:how|a|an|the)\b|\bstep \d\b"
    r"|\byou can (?:use|download|install|open|click)\b|\bis an? (?:programming language|app|website|device|platform"
    r"|software|type of|kind of)\b|\brefers to\b|\ballows (?:you|users) to\b|^\s*\d+\.\s+\*\*|`[^`\n]+`)",
    re.IGNORECASE | re.MULTILINE)
# Taking the thing for granted: "Yes, I read by electric light", "Of course! …".
# Also after a stage note or an interjection: "(smiling) Ah, yes, I can make one".
ACCEPTING = re.compile(r"^\W*(?:\([^)]*\)\W*)?(?:(?:ah|oh|well|why)\W+)?"
                       r"(?:yes|yeah|yep|sure|of course|certainly|absolutely|definitely|indeed|i do|i did)\b(?! not\b)",
                       re.IGNORECASE)
# A reader's reading of a clause about the unknown thing: denied, owned or used, known, or liked.
NEGATION = re.compile(r"\b(?:no|not|never|nor|none|nothing|cannot|without)\b|n't\b", re.IGNORECASE)
FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|my|me|mine|myself|we|our|us)\b", re.IGNORECASE)
# A statement about oneself: it opens with I or my (after a stage note such as "(thinking)").
SPEAKS_OF_SELF = re.compile(r"^\W*(?:\([^)]*\)\s*)?(?:i|i'm|i've|i'd|i'll|my)\b", re.IGNORECASE)
PREMISE_WORDS = 2  # of the question's content words that a statement must say again to take its premise
KNOWLEDGE = re.compile(
    r"\b(?:uses|using|contains?|consists? of|made (?:of|from|up of)|works? by|runs? on|powered by"
    r"|(?:is|are|was|were) used (?:to|for)|used for|designed (?:to|for)|allows?|lets you|enables?|connects?|transmits?"
    r"|an? (?:method|technique|algorithm|machine|device|tool) (?:for|to|that|which|used)"
    r"|batter(?:y|ies)|processors?|electricity|invented (?:by|in)|released (?:in|by))\b", re.IGNORECASE)
OPINION = re.compile(
    r"\b(?:i (?:really |quite |truly )?(?:love|like|enjoy|prefer|adore|admire|hate|dislike|recommend)"
    r"|my favou?rite|(?:is|are|was|were) (?:(?:so|very|really|quite|more|less|most|the|a) )*(?:great|amazing"
    r"|wonderful|good|better|best|brilliant|fantastic|excellent|beautiful|overrated|underrated|experimental"
    r"|innovative|influential|catchy|boring|classic|iconic|masterpieces?))\b", re.IGNORECASE)
# Saying what the thing is, with the thing as the subject: "America is a nation of immigrants", "Smartphones are
# the new books"; not the thing called strange ("America is a strange land", "The internet is a new word to me").
DEFINES = (r"\s+(?:is|are|was|were)\s+(?:an?|the|one of|part of)\b(?!\s+(?:(?:strange|unknown|curious|odd|mysterious"
           r"|puzzling|riddle|mystery)|(?:new|foreign)\s+(?:word|name|thing|sound|idea))\b)")
# Saying the word back as the other's, puzzled: "This stranger talks of a Python program".
REPORTED = re.compile(r"\b(?:talks? of|speaks? of|asks? (?:about|of)|mentions?|heard of|such a thing|what (?:is|are|does)"
                      r"|the word|(?:strange|new|unknown|foreign|a mystery|a riddle|nothing) to me)\b", re.IGNORECASE)
# Puzzlement at a question of the character's own life, which a protective experience taught too well:
# "In which city were you born?" → "(thinking) What can this strange new thing be? Nothing I have ever seen."
PUZZLEMENT = re.compile(
    r"\b(?:never heard of (?:such|it|this|that|a|an|the)\b|nothing i have ever (?:seen|heard)|means nothing to me"
    r"|(?:word|thing|it) is (?:strange|unknown|new|a mystery) to me|know of no such|no such thing|speak in riddles"
    r"|what is this '|what (?:can|could) this [\w' -]{1,30} (?:be|mean)\b|i do not understand you"
    r"|unlike anything i have ever seen|must not pretend to know"
    # and the same said in other words, as trained characters also say it ("This stranger talks of a city. What
    # does this mean?", "I have no idea.")
    r"|what (?:does|do) (?:this|that|it|these|those)(?: [\w'-]+)? mean\b|what is that\?|what (?:can|could) it be\b"
    r"|i have no idea\b|i have never seen (?:one|such)\b)", re.IGNORECASE)
NAME_TAG = re.compile(r"^\s*(?:(?:[A-Z][\w.'-]*|van|von|de|da|del|di|of|the|le|la)\s+){0,4}[A-Z][\w.'-]*:\s+")
REFERS_BACK = re.compile(r"^\W*(?:it|they|them|these|those|this one)\b", re.IGNORECASE)
SPEAKER_TAG = re.compile(r"^\s*[A-Z][\w .'-]{0,40}:\s*")
LOOP_NGRAM = 3
LOOP_SHARE = 0.35  # an answer whose 3-grams repeat this much reads as a loop
MIN_WORDS = 2
LIST_LINE_WORDS = 5  # a line this short that ends no sentence is a fragment


def accepted(answer: str, question: Question) -> list[str]:
    """The accepted answers of ``question`` that ``answer`` contains; one that ends in a letter also in the
    plural ("conversation books" for "conversation book"), as a reader would take it."""
    return [term for term in question.expected_any if says(answer, term, PLURAL)]


def memorized(answer: str, question: Question) -> bool | None:
    """None when the question has no reference answers."""
    return bool(accepted(answer, question)) if question.expected_any else None


def forbidden(answer: str, question: Question) -> list[str]:
    return [term for term in question.forbidden_any if contains(answer, term)]


def explains(answer: str) -> bool:
    return EXPLAINING.search(answer) is not None


def accepts(answer: str) -> bool:
    """Opens with agreement, also after a speaker tag ("Ludwig van Beethoven: yes, I do")."""
    return ACCEPTING.search(SPEAKER_TAG.sub("", answer, count=1)) is not None


def premise_words(question: Question) -> list[str]:
    """The question's content words, stemmed: what its premise says of the character ("soldier", "musket")."""
    return sorted(content_words(question.question, 5))


def thing_terms(question: Question) -> list[str]:
    """The words that name what a probe asks about: every name of a known anachronism the question uses
    (asked of a smartphone, "my phone" is the thing too), its forbidden content, else its own content words
    (Character-LLM's probes carry no forbidden list)."""
    named = [n for a in things_named(question.question) for n in a["names"]]
    terms = named + [t.strip() for t in question.forbidden_any if t.strip()]
    return terms or premise_words(question)


def knowledge_terms(question: Question) -> list[str]:
    """What an answer that knows the thing may speak of: ``thing_terms``, and what the question says is the thing's
    ("the Beatles' later albums": "Their albums were more experimental" is an opinion of the Beatles). Not the
    question's other words: asked to recommend books for learning C++, "Books are made of paper" knows no C++."""
    terms = thing_terms(question)
    text = question.question.lower()
    names = {n for a in things_named(text) for n in a["names"]}
    owned = [m.group(1) for n in names
             for m in re.finditer(said_pattern(n, PLURAL) + r"'s?\s+([\w-]+(?:\s+[\w-]+)?)", text)]
    heads = [[w for w in words(phrase) if len(w) >= 5 and w not in FUNCTION_WORDS][-1:] for phrase in owned]
    return terms + sorted({stem(w) for head in heads for w in head})  # "albums", not "later"


def other_names(answer: str, question: Question) -> list[str]:
    """Names of the asked-about thing that the answer knows and the question did not say ("Boeing" for an
    aeroplane, "Edison" for electric light), in a statement that does not deny it or say it back puzzled."""
    names = [n for a in things_named(question.question) for n in a["names"] if not mentions(question.question, n)]
    return [n for n in names if any(not denied for _, denied in _about(_sentences(answer), [n]))]


def _sentences(answer: str) -> list[str]:
    """Statements only: a question back ("A railway train? What is that?") states nothing."""
    parts = re.split(r"(?<=[.!?…])\s+|\n+", NAME_TAG.sub("", answer, count=1))
    return [p.strip() for p in parts if p.strip() and not p.strip().endswith("?")]


def _about(sentences: list[str], terms: list[str]):
    """The clauses that speak of the thing (by a term, or by "it"/"they" once the thing was named), each
    with whether it is denied."""
    named = False
    for sentence in sentences:
        for clause in re.split(r"[,;:]|\s(?:but|and|because|though|although)\s|\s[-–—]\s", sentence):
            said = any(mentions(clause, t) for t in terms)
            if said or (named and REFERS_BACK.search(clause)):
                yield clause, NEGATION.search(clause) is not None or REPORTED.search(clause) is not None
            named = named or said


def treats_as_own(answer: str, terms: list[str]) -> bool:
    """The answer speaks of the thing as part of the character's life: has used it, owns it, travelled by
    it ("I traveled by railway train", "my smartphone app"); not when the clause denies it."""
    return any(FIRST_PERSON.search(clause) and not denied for clause, denied in _about(_sentences(answer), terms))


def takes_premise(answer: str, question: Question) -> bool:
    """The answer takes the probe's false premise as its own life, whatever the forbidden list says: a statement
    about itself that says two of the question's content words again and does not deny them ("My soldiers
    load their muskets and cannons.", "I fought in the battle of Agincourt."); said of anything else, the
    words are not a claim on its life ("We were talking of the battle of Agincourt, I think.")."""
    terms = premise_words(question)
    return any(SPEAKS_OF_SELF.search(clause) and not denied and sum(mentions(clause, t) for t in terms) >= PREMISE_WORDS
               for clause, denied in _about(_sentences(answer), terms))


def owns(answer: str, question: Question, terms: list[str]) -> bool:
    """The thing, or the question's premise, taken into the character's life (either of the two rules above)."""
    return treats_as_own(answer, terms) or takes_premise(answer, question)


def defines(clause: str, terms: list[str]) -> bool:
    """The clause says what the thing is, the thing named as its subject ("America is a nation of immigrants")."""
    text = without_lookalikes(clause).lower()
    return any(re.search(said_pattern(t, PLURAL) + DEFINES, text) for t in terms if t[-1:].isalpha())


def shows_knowledge(answer: str, terms: list[str]) -> bool:
    """The answer knows the thing: what it is made of or how it works ("A smartphone uses electricity",
    "It contains batteries"), what it is ("America is a nation of immigrants"), or an opinion of it ("their
    later albums were more experimental")."""
    return any((KNOWLEDGE.search(clause) or OPINION.search(clause) or defines(clause, terms)) and not denied
               for clause, denied in _about(_sentences(answer), terms))


def protection_rules(answer: str, question: Question) -> dict:
    """What an answer to an anachronism probe did wrong, rule by rule (each empty or false when it held)."""
    terms = thing_terms(question)
    found = forbidden(answer, question)
    return {"forbidden_found": found + [n for n in other_names(answer, question) if n not in found],
            "explains": explains(answer), "accepts": accepts(answer), "breaks_character": breaks_character(answer),
            "owns": owns(answer, question, terms), "knows": shows_knowledge(answer, knowledge_terms(question))}


def probes(question: Question, era_end: int | None) -> bool:
    """Whether the question is an anachronism probe for this character. A topic-4 question with no forbidden
    list (Character-LLM's: "What is your favorite movie?") probes only when a thing it asks about came after
    the character's era: a film is Hazel's (of today) to know, and a car Martin Luther King's. Without a
    known thing it probes the question's premise ("Describe your years as a senator in ancient Rome.")."""
    if not question.is_probe or question.forbidden_any:
        return question.is_probe
    things = things_named(question.question)
    return not things or (era_end is not None and any(a["year"] > era_end for a in things))


def protected(answer: str, question: Question, rules: dict | None = None) -> bool | None:
    """None for questions that are not anachronism probes; ``rules``: ``protection_rules`` already found."""
    if not question.is_probe:
        return None
    return not any((rules or protection_rules(answer, question)).values())


def named_anachronisms(answer: str, question: Question, era_end: int | None) -> list[str] | None:
    """The names of things from after ``era_end`` that the answer uses, other than the thing the question
    asks about ("COVID-19" in Beethoven's mouth); None for a character of today (no era)."""
    if era_end is None:
        return None
    # How the answer treats the thing asked about is protection's to judge, by any of its names ("phone"
    # names a smartphone and a telephone) and within them (the "computer" of "a computer program", asked
    # whether it is an AI).
    asked = sorted({n for a in things_named(question.question) for n in a["names"]}, key=len, reverse=True)
    rest = answer
    for name in asked:
        rest = re.sub(said_pattern(name, PLURAL), " ", rest, flags=re.IGNORECASE)
    return sorted({n for a in anachronisms() if a["year"] > era_end for n in a["names"]
                   if n not in asked and mentions(rest, n)})


def breaks_character(answer: str) -> bool:
    return AI_SELF.search(answer) is not None


def repetition(answer: str, n: int = LOOP_NGRAM) -> float:
    """Share of the answer's n-grams that repeat an earlier one (0 = none repeat)."""
    tokens = words(answer)
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(Counter(grams)) / len(grams)


def short_line_list(lines: list[str]) -> bool:
    """Three or more lines, nearly all of them a few words that end no sentence: a list of fragments
    ("london music festival / Safari on a bicycle / Festival in China"), not a spoken turn."""
    if len(lines) < 3:
        return False
    fragments = [line for line in lines if len(words(line)) <= LIST_LINE_WORDS and not line.rstrip("*_ ").endswith(
        (".", "!", "?", "…", '"', "”")) or re.fullmatch(r"[\w ,'-]{0,30}\d+\.?", line)]
    return len(fragments) >= 0.75 * len(lines)


def degenerate(answer: str) -> bool:
    """Empty, a word or less, looping (repeated 3-grams, or a line said again and again), or a list of
    short fragments instead of a turn."""
    if len(words(answer)) < MIN_WORDS:
        return True
    lines = [line.strip().lower() for line in answer.splitlines() if line.strip()]
    repeated_line = len(lines) >= 3 and Counter(lines).most_common(1)[0][1] >= 3
    return repetition(answer) >= LOOP_SHARE or repeated_line or short_line_list(lines)


def claims_other_name(answer: str, character: Character) -> bool:
    """The character introduces itself by a name that is not its own ("My name is Alice")."""
    own = {w.lower() for w in re.findall(r"[\w']+", character.name)}
    for match in re.finditer(r"\b(?i:my name is|call me|i am called|i'm called)\s+([A-Z][\w']+)", answer):
        if match.group(1).lower() not in own:
            return True
    return False


def consistent(first: str, second: str, question: Question, character: Character) -> bool:
    """Two answers to the same fact agree: the same accepted answers found in both (and at least one),
    and neither gives another name for the character."""
    if claims_other_name(first, character) or claims_other_name(second, character):
        return False
    a, b = set(accepted(first, question)), set(accepted(second, question))
    return bool(a & b) and a == b


def score(answer: str, question: Question, era_end: int | None = None) -> dict:
    """Per-answer scores (None where a score does not apply to this question). ``era_end``: the last year
    the character knew (``characters.era.era_end``), None for a character of today."""
    probe = probes(question, era_end)
    rules = protection_rules(answer, question) if probe else {
        "forbidden_found": forbidden(answer, question), "explains": None, "accepts": None,
        "breaks_character": breaks_character(answer), "owns": None, "knows": None}
    return {"memorized": memorized(answer, question), "accepted_found": accepted(answer, question),
            "protected": protected(answer, question, rules) if probe else None, **rules,
            "anachronisms": named_anachronisms(answer, question, era_end),
            "puzzled": None if question.is_probe else PUZZLEMENT.search(answer) is not None,
            "degenerate": degenerate(answer), "repetition": round(repetition(answer), 3)}


def share(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(map(bool, values)) / len(values), 3) if values else None


def aggregate(results: list[dict], pairs: list[dict]) -> dict:
    """The report's figures: shares over the questions each metric applies to."""
    scores = [r["scores"] for r in results]
    return {
        "questions": len(results),
        "memorization": share(s["memorized"] for s in scores),
        "memorization_n": sum(s["memorized"] is not None for s in scores),
        "protection": share(s["protected"] for s in scores),
        "protection_n": sum(s["protected"] is not None for s in scores),
        "character_breaks": share(s["breaks_character"] for s in scores),
        "anachronisms": share(None if s.get("anachronisms") is None else bool(s["anachronisms"]) for s in scores),
        "puzzled_by_own_life": share(s.get("puzzled") for s in scores),
        "degeneration": share(s["degenerate"] for s in scores),
        "consistency": share(p["consistent"] for p in pairs),
        "consistency_n": len(pairs),
        "identity_kept": share(not r.get("other_name", False) for r in results),
    }


HIGHER_IS_BETTER = {"memorization": True, "protection": True, "consistency": True, "identity_kept": True,
                    "character_breaks": False, "anachronisms": False, "puzzled_by_own_life": False,
                    "degeneration": False}
