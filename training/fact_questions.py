"""An interviewer's questions about one of the character's facts, written in the first person.

The grounded interviews teach the facts; an interview later asks about them in words of its own.
So each fact is asked in several forms: direct wh-questions ("In what year did you move to
Vienna?"), the same asked indirectly ("Can you tell me who taught you to write for voices?"), the
topic ("Tell me about your father."), and yes/no forms. Each detail of the fact (its year, a
place, a person, a number, a title) gets a question that leaves that detail out, so the rest of
the fact becomes the cue that recalls it. Rules, not a model: a 135M model writes poor questions.

``rules=2`` (the default on 2026-11-28's evening) also asks for what the verb acts on ("What do you graft?",
"What did you dedicate to Countess Giulietta Guicciardi?"), for a named person's name ("What is your son's
name?") and for a place said as an adverb ("Where does your son live?"), and drops broken forms the first
rules wrote ("What were you born in Athens around 470?"). Without it, a fact such as "I press flowers." was
asked only as "Is it true that you press flowers?", whose answer is in the question: a trained character
recalled such facts from a question in other words far less often. ``rules=1`` gives the questions of the
datasets made before.

``rules=3`` (``QUESTION_RULES``, the default since 2026-11-28's late evening) also asks with the question
words that the probes of things a character cannot know open with ("In which place were you born?", "In which
year …", "Which person …"): with "Which" in probes only, a trained Socrates met "Which poison were you
condemned to drink?" with puzzlement, deciding on the question's first word, not its thing. The probes in turn
open with the facts' words (``training.protective_experiences``).
"""

from __future__ import annotations

import re
from collections import Counter

from characters.question_sets import held_out_questions
from characters.schema import Character

QUESTION_RULES = 3  # the rules datasets are made with unless asked otherwise (``ExperienceOptions.question_rules``)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
NOT_PROPER_NAMES = {"I", "My", "In", "The", "A", "An", "At", "On", "To", "From", *MONTHS}
ERAS = {"BC", "AD"}
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
SAID = {"said": "say"}  # with rules=2: "The oracle said …" is asked "Did the oracle say …?"
SECOND_PERSON = [(r"\bI am\b", "you are"), (r"\bI'm\b", "you're"), (r"\bI was\b", "you were"), (r"\bI have\b", "you have"),
                 (r"\bI\b", "you"), (r"\bmy\b", "your"), (r"\bMy\b", "Your"), (r"\bme\b", "you"),
                 (r"\bmyself\b", "yourself"), (r"\bmine\b", "yours"), (r"\bour\b", "your"), (r"\bOur\b", "Your"), (r"\bwe\b", "you"),
                 (r"\bus\b", "you")]
ONE_NAME = (r"[A-Z][\w'’à-ÿ-]*(?: (?:of the |of |de |van |von |da |the |to (?!(?:" + "|".join(TITLES) + r") ))?"
            r"[A-Z][\w'’à-ÿ-]*)*")
NAMES = rf"{ONE_NAME}(?:(?:, | and ){ONE_NAME})*"  # "Archduke Rudolph, Prince Lobkowitz and Prince Kinsky"
DATE = (rf"(?:(?:in|on|by|from|until) )?(?:(?:\d{{1,2}}(?:st|nd|rd|th)? )?(?:{'|'.join(MONTHS)}) )?"
        r"(?:\d{1,4} BC|\d{3,4}(?: AD)?)\b")
# rules=3: the same question opened as probes are ("Which …"); "Who are …" has no singular person to ask for.
WHICH = [(re.compile(r"^Where "), "In which place "), (re.compile(r"^In what year "), "In which year "),
         (re.compile(r"^Who (?!are\b)"), "Which person ")]
ADVERBS = {"also", "never", "once", "often", "later", "first", "always", "still", "only"}
FUNCTION_WORDS = {"in", "on", "at", "to", "from", "when", "and", "with", "of", "after", "before", "for", "by", "as"}
INDIRECT = ["Can you tell me {q}?", "Do you remember {q}?", "I would like to know {q}."]
BE = ("am", "are", "is", "was", "were")
DO = ("do", "does", "did")
# Words after which the object of a verb has ended: a preposition (the phrase stays in the question), or a
# clause, a negation or a verb, which the rules cannot ask around.
PREPOSITIONS = {"in", "on", "at", "to", "from", "with", "by", "after", "before", "for", "as", "into", "about",
                "around", "during", "since", "until", "through", "under", "over", "against", "near", "among"}
CLAUSE_WORDS = {"that", "if", "because", "when", "who", "which", "than", "whom", "where", "while", "not", "never"}
DETERMINERS = {"the", "a", "an", "your", "his", "her", "their", "its", "this", "these", "those"}
PLACE_ADVERBS = {"abroad", "overseas", "nearby"}
# What may follow a verb without being its object ("grew up", "trust no one", "want to lead …").
NOT_OBJECTS = {"up", "down", "out", "off", "away", "back", "no", "nothing", "nobody", "none", *PREPOSITIONS}
# The phrases of place and time kept after an object; others may belong to it ("the Commentaries on …").
KEPT_PHRASES = {"in", "at", "to", "with", "by", "near", "during"}
YEAR_WITH = {"around", "about", "circa"}  # "born in Athens around 470 BC": the word goes with the year


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


def _lemma(verb: str, rules: int = 2) -> str | None:
    """The base form of a past-tense verb when the rules are sure of it ("moved" → "move"), else None."""
    if verb in IRREGULAR:
        return IRREGULAR[verb]
    if rules >= 2 and verb in SAID:
        return SAID[verb]
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


def _is_verb(word: str, rules: int = 2, before: str = "") -> bool:
    """Whether ``word`` may be a verb; with rules=2 an "-ed" word is not one after a determiner ("the unexamined
    life", "a walled garden"), nor a short or "-eed" one ("the village seed swap", "red", "hundred")."""
    if rules >= 2 and word.endswith("ed") and word not in IRREGULAR:
        return word.islower() and before not in DETERMINERS and len(word) > 4 and not word.endswith("eed") and \
            word != "hundred"
    return word in AUX or word in IRREGULAR or word.endswith("ed") or rules >= 2 and (word in SAID or word in DO)


def _direct(wh: str, statement: str, subject_gap: bool = False, rules: int = 2) -> str | None:
    """The statement with a gap, asked directly: "you were born in Bonn" + "where" → "Where were you born in Bonn?"."""
    if subject_gap:
        return f"{wh[0].upper()}{wh[1:]} {statement}?"  # "Who taught you …?"
    words = statement.split(" ")
    if words[0] == "you" and len(words) > 1:
        at = 1
    else:  # the first auxiliary, else the first verb (with rules=2 the first of either), and no clause before it
        aux = next((k for k in range(1, len(words)) if words[k] in AUX), None)
        verb = next((k for k in range(1, len(words)) if _is_verb(words[k], rules, words[k - 1])), None)
        at = min(k for k in (aux, verb) if k is not None) if rules >= 2 and (aux or verb) else aux or verb
        if at is None or set(words[:at]) & {"you", "when", "who", "that", "which", "because", "if"}:
            return None
    subject, adverb = " ".join(words[:at]), ""
    if words[at] in ADVERBS and at + 1 < len(words):
        adverb, at = words[at] + " ", at + 1
    verb, rest = words[at], " ".join(words[at + 1:])
    if verb in AUX or rules >= 2 and verb in DO:  # "you do not charge" → "Do you not charge …?"
        question = f"{wh} {verb} {subject} {adverb}{rest}"
    elif lemma := _lemma(verb, rules):
        question = f"{wh} did {subject} {adverb}{lemma} {rest}"
    elif subject == "you" and re.fullmatch(r"[a-z]+", verb) and not verb.endswith(("s", "ed")) or \
            rules >= 2 and subject == "you" and re.fullmatch(r"[a-z]+ss", verb):  # "you press"
        question = f"{wh} do you {adverb}{verb} {rest}"
    else:
        return None
    question = _tidy(question)
    return f"{question[0].upper()}{question[1:]}?"


def _acts_as_person(following: list[str]) -> bool:
    """Whether a one-word name that begins a fact is a person, by what is said of it: it acts ("Gandhi
    inspired …", "Crassus has …"), something is done to it ("Pompey was killed …") or it is one of the people
    ("Octavian is your enemy"); not "Greek is the language of your court", "Capua is in Campania"."""
    if not following or following[0] not in BE:
        return True
    return len(following) > 1 and _is_verb(following[1]) or any(w.rstrip("s") in PEOPLE for w in following[1:])


def _gaps(statement: str, rules: int = 2) -> list[tuple[str, str, bool]]:
    """(wh-phrase, statement without the detail, whether the detail was the subject) for each detail of
    the fact, most telling first."""
    gaps = []
    for match in re.finditer(DATE, statement):
        start = match.start()
        if rules >= 2 and re.search(r"\d (?:to|and) $", statement[:start]):
            break  # "from 58 to 50 BC", "in 55 and 54 BC": one year cannot be asked alone
        if rules >= 2 and (before := re.search(r"\b(\w+) $", statement[:start])) and before.group(1) in YEAR_WITH:
            start = before.start()
        rest = _tidy(statement[:start] + statement[match.end():])
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
                following and following[0] not in FUNCTION_WORDS and \
                not (match.start() == 0 and _is_verb(following[0], rules)):
            continue  # not a name, a title of one's own ("your Third Symphony"), an adjective or a clause's subject
        if rules >= 2 and (name in ERAS or before and before[0] in PREPOSITIONS or
                           statement[match.end():].startswith((" and ", ", ")) or before[-1:] == ["and"]):
            continue  # "470 BC"; a preposition the gap would leave ("after in 406"); one of a list ("at Delium and")
        if rules >= 2 and (re.match(r" (?:from|of|on) [A-Z]", statement[match.end():]) or
                           match.group("prep") in ("from ", "on ") and
                           re.search(r"[A-Z][\w'’-]* $", statement[:match.start()])):
            continue  # a part of a longer title: "the Letter from Birmingham Jail"
        kept = match.group("prep") or ""
        the = match.group("the") == "the "
        if match.group("prep") and not the and \
                (len(words) == 1 and words[0] not in TITLES or kept.strip() in ("in", "from", "near")):
            wh, kept = "where", ""
        elif not the and "'" not in name and "’" not in name and \
                (len(words) > 1 or kept.strip() in ("with", "by") or
                 rules >= 2 and match.start() == 0 and _acts_as_person(following)):
            wh = "who"
        else:
            wh = "what"
        if rules >= 2 and wh == "who" and kept.strip() not in ("", "with", "by", "to", "for"):
            continue  # "who you spoke against the Vietnam War at in 1967"
        gaps.append((wh, _tidy(statement[:match.start()] + kept + statement[match.end():]), match.start() == 0))
    for match in re.finditer(r"\byour ([a-z]+) (?=[A-Z])(?P<name>" + ONE_NAME + ")", statement):
        following = statement[match.end():].split()
        if match.group(1) in PEOPLE and match.start() > 0 and not (following and _is_verb(following[0], rules)):
            gaps.append((f"which {match.group(1)}", _tidy(statement[:match.start()] + statement[match.end():]), False))
    return gaps


def _present_base(verb: str) -> str:
    """"has" → "have", "lives" → "live", "carries" → "carry", "watches" → "watch"."""
    if verb in ("has", "does"):
        return {"has": "have", "does": "do"}[verb]
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    return verb[:-2] if re.search(r"(?:ss|sh|ch|x|z|o)es$", verb) else verb[:-1]


def _plain(words: list[str], rules: int) -> bool:
    """Words the rules can carry into a question unchanged: no clause, negation or verb (an "-ed" word after
    a determiner is an adjective: "a walled garden")."""
    return not any(w in CLAUSE_WORDS or w in DO or w in AUX or _is_verb(w, rules, words[k - 1] if k else "")
                   for k, w in enumerate(words))


def _object_question(statement: str, rules: int) -> tuple[str, str] | None:
    """What the verb acts on, asked for, directly and as "what you …" for an indirect form: "you graft rare
    apple trees" → "What do you graft?"; a phrase of place or time after the object stays ("What did you play
    in the Bonn court orchestra?"), and a place said as an adverb is asked with "where" ("Where does your son
    live?"). None where the rules cannot find a plain object: a name is asked for by ``_gaps``, which tells
    "who" from "what"; a phrase that may belong to the object ("the Letter from Birmingham Jail") is not cut."""
    words = [w for w in statement.split(" ") if w not in ADVERBS - {"never"}]  # "you also studied" → "you studied"
    if words[0] == "you":
        subject, k = "you", 1
    else:  # "your son Felix lives abroad": the subject is "your son"
        person = re.match(r"^(your(?: [a-z]+){1,2}?)((?: [A-Z][\w'’-]*)*) ([a-z]{2,}s)\b", statement)
        if not person or person.group(3) in ("was", "this", "thus") or person.group(3).endswith("ss"):
            return None
        subject, k = person.group(1), len(person.group(0).split(" ")) - 1
        words = statement.split(" ")
    if k + 1 >= len(words):
        return None
    verb, tail = words[k], words[k + 1:]
    if subject == "you" and verb in BE and tail[0].endswith("ing") and len(tail) > 1:  # "you are cataloguing …"
        asked, said, tail = f"{verb} you {tail[0]}", f"you {verb} {tail[0]}", tail[1:]
    elif subject == "you" and verb in BE and len(tail) > 2 and _is_verb(tail[0], rules) and \
            (tail[1] == "of" or tail[1] == "to" and tail[2].islower() and tail[2] not in DETERMINERS):
        joined = " ".join(tail[:2 + (tail[1] == "to")])  # "condemned to drink", "accused of"
        asked, said = f"{verb} you {joined}", f"you {verb} {joined}"
        if tail[1] == "of":  # what follows "of" runs to the end: "accused of impiety and corrupting the youth"
            return f"What {asked}?", f"what {said}"
        tail = tail[3:]
    elif verb in AUX and not (subject != "you" and verb == "has") or verb in DO or verb == "never" or \
            not re.fullmatch(r"[a-z]+", verb):
        return None
    elif subject == "you":
        lemma = _lemma(verb, rules)
        if lemma is None and (verb.endswith("ed") or verb.endswith("s") and not verb.endswith("ss")):
            return None
        asked, said = (f"did you {lemma}" if lemma else f"do you {verb}"), f"you {verb}"
    else:
        asked, said = f"does {subject} {_present_base(verb)}", f"{subject} {verb}"
    if tail and tail[0] == "yourself":
        asked, said, tail = f"{asked} yourself", f"{said} yourself", tail[1:]
        if len(tail) > 1 and tail[0] in ("to", "as", "with") and (tail[1] in DETERMINERS or tail[1][:1].isupper()) \
                and _plain(tail[1:], rules):
            return f"What {asked} {tail[0]}?", f"what {said} {tail[0]}"  # "What did you compare yourself to?"
    if not tail or tail[0] in NOT_OBJECTS or tail[0][:1].isupper():
        return None
    if len(tail) == 1 and tail[0] in PLACE_ADVERBS:
        return f"Where {asked}?", f"where {said}"
    end = next((j for j, w in enumerate(tail) if w in PREPOSITIONS and
                (w != "to" or j + 1 < len(tail) and (tail[j + 1][:1].isupper() or tail[j + 1] in DETERMINERS))),
               len(tail))
    thing, phrase = tail[:end], tail[end:]
    if any(w.endswith("ing") for w in thing[1:]) or not _plain(thing, rules) or not _plain(phrase, rules) or \
            phrase and not (phrase[0] in KEPT_PHRASES or phrase[0] == "on" and phrase[1:2] and phrase[1][0].isdigit()):
        return None
    rest = f" {' '.join(phrase)}" if phrase else ""
    return f"What {asked}{rest}?", f"what {said}{rest}"


def fact_questions(fact: str, rules: int = QUESTION_RULES) -> list[str]:
    """Questions whose answer is ``fact`` (written in the first person), the most natural first; ``rules``
    as in the module's note."""
    statement = _front_phrase_to_end(second_person(fact))
    if statement.startswith(("The ", "A ", "An ")):
        statement = statement[0].lower() + statement[1:]
    direct, indirect, topics = [], [], []
    if re.match(r"^I was born (?:in|at|on) ", fact):
        direct.append("Where were you born?")
        topics.append("Tell me about your birth.")
    mine = re.match(r"^My ([\w' -]{2,40}?) (is|are|was|were|\w+ed|" + "|".join(IRREGULAR) + r")\b( \w+)?", fact)
    if rules >= 2 and not mine:  # "My cottage has …", "My son Felix lives …", not "My brother's advisers drove …"
        mine = re.match(r"^My ((?:[a-z]+ )?(?:" + "|".join(PEOPLE) + r")(?: [A-Z][\w'’-]*)*|[a-z]+) "
                        r"(has|[a-z]{2,}s)\b( \w+)?", fact)
        if mine and mine.group(2) != "has" and mine.group(1).split()[-1] not in PEOPLE and \
                not any(w in PEOPLE for w in mine.group(1).split()):
            mine = None
    if mine:
        thing = named = mine.group(1)
        if set(thing.split()) & set(AUX):
            thing = ""  # "My cottage has a walled garden" (rules=1): no thing to ask about
        elif thing[0].islower():
            thing = re.split(r" (?=[A-Z])", thing)[0]  # "father Johann …" → "father"; "Third Symphony" stays
        topics += [f"Tell me about your {thing}."] if thing else []
        if thing and mine.group(2) in BE and not _is_verb((mine.group(3) or " x").strip(), rules) and \
                (mine.group(3) or "").strip() not in ADVERBS | {"called", "known", "born"}:
            who = thing.split()[-1].rstrip("s") in PEOPLE
            direct.append(f"{'Who' if who else 'What'} {'are' if thing.endswith('s') else 'is'} your {thing}?")
        if rules >= 2 and thing and thing != named and thing.split()[-1] in PEOPLE:
            direct.append(f"What is your {thing}'s name?")
    gaps = _gaps(statement, rules)
    for i, (wh, rest, subject_gap) in enumerate(gaps):
        if not rest or rest == statement:
            continue
        question = _direct(wh, rest, subject_gap, rules)
        if question:
            direct.append(question)
        indirect.append(INDIRECT[i % len(INDIRECT)].format(q=f"{wh} {rest}"))
    if rules >= 2 and (asked := _object_question(statement, rules)):
        direct.append(asked[0])
        indirect.append(INDIRECT[len(gaps) % len(INDIRECT)].format(q=asked[1]))
    if rules >= 3:
        direct += [pattern.sub(which, q) for q in direct for pattern, which in WHICH if pattern.match(q)]
    # Yes/no forms are answered with the fact alone: "Yes." after each teaches a small model to agree
    # with anything, anachronisms included. One form is enough: the answer is in the question, so they
    # teach copying, not recall ("Is it true that …" is only for facts no other form fits).
    yes_no = _direct("", statement, rules=rules)
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


# What a question's frame and grammar add, not what it asks: "Can you tell me where your son lives?" asks what
# "Where does your son live?" asks. Who is asked about stays ("you", "your").
FRAMES = re.compile("^(?:" + "|".join(re.escape(frame.split("{q}")[0]) for frame in INDIRECT) + ")", re.IGNORECASE)
FRAME_WORDS = {"can", "could", "tell", "me", "do", "does", "did", "remember", "i", "would", "like", "to", "know",
               "a", "an", "the", "is", "are", "was", "were", "am", "s", "please"}


def question_key(question: str) -> frozenset[str]:
    """A question's words without its frame, each cut to a rough stem: two questions with one key ask the same
    thing in the same words."""
    text = FRAMES.sub("", question.lower())
    words = [w for w in re.findall(r"[a-z0-9]+", text) if w not in FRAME_WORDS]
    stems = [re.sub(r"(?:ing|ed|es|s|e)$", "", w) for w in words]
    return frozenset(stem if len(stem) >= 3 else word for stem, word in zip(stems, words))


def fact_wordings(character: Character, rules: int = QUESTION_RULES) -> list[list[str]]:
    """The questions of each fact (``fact_questions`` with these ``rules``), less those that two facts would
    answer: they would teach either answer. From rules=2 on also less those that ask no more than a question
    another fact asks ("What did you write?" of the Missa solemnis, beside "What did you write in October
    1802?" of the Heiligenstadt Testament), and those that ask a question of the character's shipped
    interview set, in any frame ("Can you tell me what you are cataloguing?" for "What are you
    cataloguing?"): that set measures recall of questions training never asked."""
    asked = [fact_questions(fact, rules) for fact in character.sims.facts]
    seen = Counter(q.lower() for questions in asked for q in set(questions))
    if rules < 2:
        return [[q for q in questions if seen[q.lower()] == 1] for questions in asked]
    bare = [[FRAMES.sub("", q.lower()).rstrip("?.") + " " for q in questions] for questions in asked]
    held = {question_key(q) for q in held_out_questions(character.name)}
    return [[q for q, text in zip(questions, bare[i]) if seen[q.lower()] == 1 and question_key(q) not in held and
             not any(other.startswith(text) for j, others in enumerate(bare) if j != i for other in others)]
            for i, questions in enumerate(asked)]
