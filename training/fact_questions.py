"""An interviewer's questions about one of the character's facts, written in the first person.

The grounded interviews teach the facts; an interview later asks about them in words of its own.
So each fact is asked in several forms: direct wh-questions ("In what year did you move to
Vienna?"), the same asked indirectly ("Can you tell me who taught you to write for voices?"), the
topic ("Tell me about your father."), and yes/no forms. Each detail of the fact (its year, a
place, a person, a number, a title) gets a question that leaves that detail out, so the rest of
the fact becomes the cue that recalls it. Rules, not a model: a 135M model writes poor questions.
"""

from __future__ import annotations

import re

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
NOT_PROPER_NAMES = {"I", "My", "In", "The", "A", "An", "At", "On", "To", "From", *MONTHS}
PEOPLE = {"father", "mother", "wife", "husband", "son", "daughter", "brother", "sister", "teacher", "friend",
          "fiancée", "fiance", "niece", "nephew", "grandfather", "grandmother", "children", "twin", "parent",
          "follower", "enemy", "uncle", "aunt", "patron", "master", "student", "pupil", "cat", "dog", "lover",
          "rival", "partner", "mentor", "child", "cousin", "husband", "king", "queen"}
TITLES = {"King", "Queen", "Prince", "Princess", "Archduke", "Duke", "Duchess", "Count", "Countess", "Baron",
          "Emperor", "Empress", "Lord", "Lady", "Sir", "Pope", "Saint", "Doctor", "Dr", "General", "Captain"}
ORDINALS = {"First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth"}
NUMBERS = ("two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
           "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred")
AUX = ("am", "are", "is", "was", "were", "have", "has", "had", "can", "could", "will", "would")
IRREGULAR = {"wrote": "write", "tore": "tear", "became": "become", "gave": "give", "taught": "teach",
             "made": "make", "met": "meet", "went": "go", "took": "take", "led": "lead", "fought": "fight",
             "won": "win", "built": "build", "sang": "sing", "began": "begin", "saw": "see", "left": "leave",
             "found": "find", "lost": "lose", "bore": "bear", "fled": "flee", "rode": "ride", "ran": "run",
             "chose": "choose", "sold": "sell", "told": "tell", "kept": "keep", "spent": "spend", "grew": "grow",
             "drew": "draw", "knew": "know", "held": "hold", "brought": "bring", "bought": "buy", "sent": "send",
             "spoke": "speak", "heard": "hear", "thought": "think", "fell": "fall", "came": "come", "got": "get",
             "died": "die", "tied": "tie", "lied": "lie"}
SECOND_PERSON = [(r"\bI am\b", "you are"), (r"\bI'm\b", "you're"), (r"\bI was\b", "you were"), (r"\bI have\b", "you have"),
                 (r"\bI\b", "you"), (r"\bmy\b", "your"), (r"\bMy\b", "Your"), (r"\bme\b", "you"),
                 (r"\bmyself\b", "yourself"), (r"\bmine\b", "yours"), (r"\bour\b", "your"), (r"\bOur\b", "Your"), (r"\bwe\b", "you"),
                 (r"\bus\b", "you")]
ONE_NAME = (r"[A-Z][\w'’à-ÿ-]*(?: (?:of the |of |de |van |von |da |the |to (?!(?:" + "|".join(TITLES) + r") ))?"
            r"[A-Z][\w'’à-ÿ-]*)*")
NAMES = rf"{ONE_NAME}(?:(?:, | and ){ONE_NAME})*"  # "Archduke Rudolph, Prince Lobkowitz and Prince Kinsky"
DATE = (rf"(?:(?:in|on|by|from|until) )?(?:(?:\d{{1,2}}(?:st|nd|rd|th)? )?(?:{'|'.join(MONTHS)}) )?"
        r"(?:\d{1,4} BC|\d{3,4}(?: AD)?)\b")
ADVERBS = {"also", "never", "once", "often", "later", "first", "always", "still", "only"}
FUNCTION_WORDS = {"in", "on", "at", "to", "from", "when", "and", "with", "of", "after", "before", "for", "by", "as"}
INDIRECT = ["Can you tell me {q}?", "Do you remember {q}?", "I would like to know {q}."]


def second_person(fact: str) -> str:
    text = fact.rstrip(".!")
    for pattern, repl in SECOND_PERSON:
        text = re.sub(pattern, repl, text)
    return text[0].lower() + text[1:] if text.startswith(("You ", "Your ")) else text


def _tidy(text: str) -> str:
    return re.sub(r"\s+([,.?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip(" ,")


def _front_phrase_to_end(statement: str) -> str:
    """"In Vienna you studied with Haydn" → "you studied with Haydn in Vienna": the subject first."""
    match = re.match(r"^((?:In|At|From|On|By|After|Before|During) [^,]+?),? ((?:you|your)\b.*)$", statement)
    return f"{match.group(2)} {match.group(1)[0].lower()}{match.group(1)[1:]}" if match else statement


def _lemma(verb: str) -> str | None:
    """The base form of a past-tense verb when the rules are sure of it ("moved" → "move"), else None."""
    if verb in IRREGULAR:
        return IRREGULAR[verb]
    if verb.endswith("ied"):
        return verb[:-3] + "y"
    if not verb.endswith("ed") or len(verb) < 5:
        return None
    stem = verb[:-2]
    if re.search(r"(?:v|c|g|z|[^aeiou](?:at|ut|ur|ir)|is|iz|or|in)$", stem) and \
            not re.search(r"(?:ll|ss|ck|ng|ain|oin|oor)$", stem):
        return stem + "e"
    if re.search(r"([bdgmnprt])\1$", stem):
        return stem[:-1]
    if re.search(r"(?:[aeiou]{2}[^aeiouy]|[^aeiou]{2}|[aeiou][wy]|[^aeiou](?:en|er|on|it|el|al))$", stem):
        return stem
    return None


def _is_verb(word: str) -> bool:
    return word in AUX or word in IRREGULAR or word.endswith("ed")


def _direct(wh: str, statement: str, subject_gap: bool = False) -> str | None:
    """The statement with a gap, asked directly: "you were born in Bonn" + "where" → "Where were you born in Bonn?"."""
    if subject_gap:
        return f"{wh[0].upper()}{wh[1:]} {statement}?"  # "Who taught you …?"
    words = statement.split(" ")
    if words[0] == "you" and len(words) > 1:
        at = 1
    else:  # the first auxiliary, else the first verb, and no clause before it ("… when you are …")
        at = next((k for k in range(1, len(words)) if words[k] in AUX), None) or \
             next((k for k in range(1, len(words)) if _is_verb(words[k])), None)
        if at is None or set(words[:at]) & {"you", "when", "who", "that", "which", "because", "if"}:
            return None
    subject, adverb = " ".join(words[:at]), ""
    if words[at] in ADVERBS and at + 1 < len(words):
        adverb, at = words[at] + " ", at + 1
    verb, rest = words[at], " ".join(words[at + 1:])
    if verb in AUX:
        question = f"{wh} {verb} {subject} {adverb}{rest}"
    elif lemma := _lemma(verb):
        question = f"{wh} did {subject} {adverb}{lemma} {rest}"
    elif subject == "you" and re.fullmatch(r"[a-z]+", verb) and not verb.endswith(("s", "ed")):
        question = f"{wh} do you {adverb}{verb} {rest}"
    else:
        return None
    question = _tidy(question)
    return f"{question[0].upper()}{question[1:]}?"


def _gaps(statement: str) -> list[tuple[str, str, bool]]:
    """(wh-phrase, statement without the detail, whether the detail was the subject) for each detail of
    the fact, most telling first."""
    gaps = []
    for match in re.finditer(DATE, statement):
        rest = _tidy(statement[:match.start()] + statement[match.end():])
        gaps += [("in what year", rest, False), ("when", rest, False)]
        break
    for match in re.finditer(rf"(?:\b(?:the|a|an) )?\b({NUMBERS}|\d{{1,3}})(?:-\w+)? ((?:[a-z]+ )?[a-z]+s)( old)?\b",
                             statement):
        rest = _tidy(statement[:match.start()] + statement[match.end():])
        gaps.append(("how old" if match.group(3) else f"how many {match.group(2)}", rest, False))
    for match in re.finditer(rf"(?P<prep>\b(?:in|to|from|at|near|with|by) )?(?P<the>\b(?:the|your) )?(?P<name>{NAMES})",
                             statement):
        name = match.group("name")
        words = name.split()
        following = statement[match.end():].split()
        before = statement[:match.start()].split()[-1:]
        if words[0] in NOT_PROPER_NAMES or words[0] in ORDINALS or match.group("the") == "your " or \
                before and (before[0] in PEOPLE or before[0] in ("a", "an")) or \
                following and following[0] not in FUNCTION_WORDS and not (match.start() == 0 and _is_verb(following[0])):
            continue  # not a name, a title of one's own ("your Third Symphony"), an adjective or a clause's subject
        kept = match.group("prep") or ""
        the = match.group("the") == "the "
        if match.group("prep") and not the and \
                (len(words) == 1 and words[0] not in TITLES or kept.strip() in ("in", "from", "near")):
            wh, kept = "where", ""
        elif not the and "'" not in name and "’" not in name and (len(words) > 1 or kept.strip() in ("with", "by")):
            wh = "who"
        else:
            wh = "what"
        gaps.append((wh, _tidy(statement[:match.start()] + kept + statement[match.end():]), match.start() == 0))
    for match in re.finditer(r"\byour ([a-z]+) (?=[A-Z])(?P<name>" + ONE_NAME + ")", statement):
        following = statement[match.end():].split()
        if match.group(1) in PEOPLE and match.start() > 0 and not (following and _is_verb(following[0])):
            gaps.append((f"which {match.group(1)}", _tidy(statement[:match.start()] + statement[match.end():]), False))
    return gaps


def fact_questions(fact: str) -> list[str]:
    """Questions whose answer is ``fact`` (written in the first person), the most natural first."""
    statement = _front_phrase_to_end(second_person(fact))
    if statement.startswith(("The ", "A ", "An ")):
        statement = statement[0].lower() + statement[1:]
    direct, indirect, topics = [], [], []
    if re.match(r"^I was born (?:in|at|on) ", fact):
        direct.append("Where were you born?")
        topics.append("Tell me about your birth.")
    mine = re.match(r"^My ([\w' -]{2,40}?) (is|are|was|were|\w+ed|" + "|".join(IRREGULAR) + r")\b( \w+)?", fact)
    if mine:
        thing = mine.group(1)
        if set(thing.split()) & set(AUX):
            thing = ""  # "My cottage has a walled garden": no thing to ask about
        elif thing[0].islower():
            thing = re.split(r" (?=[A-Z])", thing)[0]  # "father Johann …" → "father"; "Third Symphony" stays
        topics += [f"Tell me about your {thing}."] if thing else []
        if thing and mine.group(2) in AUX and not _is_verb((mine.group(3) or " x").strip()) and \
                (mine.group(3) or "").strip() not in ADVERBS | {"called", "known", "born"}:
            who = thing.split()[-1].rstrip("s") in PEOPLE
            direct.append(f"{'Who' if who else 'What'} {'are' if thing.endswith('s') else 'is'} your {thing}?")
    for i, (wh, rest, subject_gap) in enumerate(_gaps(statement)):
        if not rest or rest == statement:
            continue
        question = _direct(wh, rest, subject_gap)
        if question:
            direct.append(question)
        indirect.append(INDIRECT[i % len(INDIRECT)].format(q=f"{wh} {rest}"))
    # Yes/no forms are answered with the fact alone: "Yes." after each teaches a small model to agree
    # with anything, anachronisms included. One form is enough: the answer is in the question, so they
    # teach copying, not recall ("Is it true that …" is only for facts no other form fits).
    yes_no = _direct("", statement)
    yes_no = [re.sub(r"\bnever\b", "ever", yes_no)] if yes_no else [f"Is it true that {statement}?"]
    questions = direct + indirect + topics + yes_no
    return list(dict.fromkeys(q for q in questions if len(q) < 200))


def fact_details(fact: str, besides: str = "") -> list[str]:
    """What a question about ``fact`` can ask for: its years (else its months), numbers and the words of its
    names ("1770", "nine", "Johann"), leaving out the words of ``besides`` (the character's own name)."""
    own = set(besides.split())
    # A month is the answer only to a date without a year: "29 December 1812" is not "22 December 1808".
    details = re.findall(r"\b\d{3,4}(?: BC)?\b", fact) or re.findall(rf"\b(?:{'|'.join(MONTHS)})\b", fact)
    details += re.findall(rf"\b(?:{NUMBERS})(?:-(?:one|{NUMBERS}))?\b", fact, re.IGNORECASE)
    for match in re.finditer(NAMES, fact):
        name = [re.sub(r"['’]s$", "", w.strip(",")) for w in match.group(0).split()]
        details += [w for w in name if w[:1].isupper() and w not in NOT_PROPER_NAMES and w not in ORDINALS
                    and not (w in TITLES and len(name) > 1)]  # "the Emperor" is a name, "Prince Kinsky" a title
    return [d for d in dict.fromkeys(details) if d not in own]
