"""The ``Character``: Character Card V2/V3 fields plus SimsChat's aspects in ``extensions.simulacra``.

Unknown card fields (at the top level, in ``data``, in ``extensions`` and inside
``extensions.simulacra``) are kept in ``unknown_*`` dicts so a round trip loses nothing.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

from characters import catalogue

# Field size limits: generous for real cards, small enough that a hostile one cannot
# fill the memory or the model's context.
LIMITS = {
    "name": 100,
    "text": 20_000,        # description, personality, scenario, first_mes, mes_example, notes, prompts
    "short": 200,          # gender, age, tone, career, aspiration, creator, version, nickname, …
    "list_items": 100,     # tags, greetings, hobbies, …
    "item": 2_000,         # one tag, greeting line, hobby, …
    "paragraphs": 60,      # profile paragraphs
    "paragraph": 4_000,
    "facts": 300,
    "fact": 400,
}

V2_TEXT = ("description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
           "system_prompt", "post_history_instructions")
V2_SHORT = ("creator", "character_version")


class CharacterError(ValueError):
    """A character that does not validate; the message names each field and what is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Simulacra:
    """SimsChat's customisation and Character-LLM's profile, kept in ``extensions.simulacra``."""

    career: str = ""
    aspiration: str = ""
    traits: list[str] = field(default_factory=list)
    skills: dict[str, int] = field(default_factory=dict)
    gender: str = ""
    age: str = ""
    tone: str = ""
    hobbies: list[str] = field(default_factory=list)
    advantages: list[str] = field(default_factory=list)
    disadvantages: list[str] = field(default_factory=list)
    family: str = ""
    social_relations: str = ""
    living_conditions: str = ""
    era: str = ""  # when the character lived, e.g. "1770–1827": what it cannot know starts after this
    profile: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return self == Simulacra()


@dataclass
class Character:
    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    character_book: dict | None = None
    extensions: dict = field(default_factory=dict)  # other apps' extensions, without "simulacra"
    # Character Card V3 additions
    nickname: str = ""
    group_only_greetings: list[str] = field(default_factory=list)
    assets: list | None = None
    creation_date: int | None = None
    modification_date: int | None = None
    source: list[str] | None = None
    sims: Simulacra = field(default_factory=Simulacra)
    # Kept as found, for a lossless round trip
    unknown_data: dict = field(default_factory=dict)
    unknown_card: dict = field(default_factory=dict)
    unknown_sims: dict = field(default_factory=dict)
    had_sims: bool = False  # the card carried extensions.simulacra (even an empty one)

    def copy(self, **changes) -> "Character":
        clone = copy.deepcopy(self)
        for key, value in changes.items():
            setattr(clone, key, value)
        return clone

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def greetings(self) -> list[str]:
        return [g for g in [self.first_mes, *self.alternate_greetings] if g.strip()]


def _text(problems: list[str], where: str, value, limit: int) -> None:
    if not isinstance(value, str):
        problems.append(f"{where}: must be text, not {type(value).__name__}")
    elif len(value) > limit:
        problems.append(f"{where}: {len(value):,} characters; the limit is {limit:,}")


def _text_list(problems: list[str], where: str, value, max_items: int, item_limit: int) -> None:
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list of text, not {type(value).__name__}")
        return
    if len(value) > max_items:
        problems.append(f"{where}: {len(value)} items; the limit is {max_items}")
    for i, item in enumerate(value[:max_items]):
        _text(problems, f"{where}[{i}]", item, item_limit)


def validate(character: Character, strict_catalogue: bool = True) -> Character:
    """Return ``character`` if it is valid, else raise ``CharacterError`` listing every problem.

    ``strict_catalogue`` checks traits and skills against the catalogue (the builder's and
    presets' rule); imported cards from other apps are checked for types and sizes only.
    """
    p: list[str] = []
    c = character
    _text(p, "name", c.name, LIMITS["name"])
    if isinstance(c.name, str) and not c.name.strip():
        p.append("name: must not be empty")
    for name in V2_TEXT:
        _text(p, name, getattr(c, name), LIMITS["text"])
    for name in (*V2_SHORT, "nickname"):
        _text(p, name, getattr(c, name), LIMITS["short"])
    for name in ("alternate_greetings", "group_only_greetings"):
        _text_list(p, name, getattr(c, name), LIMITS["list_items"], LIMITS["text"])
    _text_list(p, "tags", c.tags, LIMITS["list_items"], LIMITS["short"])
    if c.character_book is not None and not isinstance(c.character_book, dict):
        p.append("character_book: must be an object")
    if not isinstance(c.extensions, dict):
        p.append("extensions: must be an object")
    for name in ("creation_date", "modification_date"):
        value = getattr(c, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            p.append(f"{name}: must be a Unix timestamp, not {type(value).__name__}")
    if c.source is not None:
        _text_list(p, "source", c.source, LIMITS["list_items"], LIMITS["item"])
    if c.assets is not None and not isinstance(c.assets, list):
        p.append("assets: must be a list")

    s = c.sims
    where = "extensions.simulacra"
    for name in ("career", "aspiration", "gender", "age", "tone", "era"):
        _text(p, f"{where}.{name}", getattr(s, name), LIMITS["short"])
    for name in ("family", "social_relations", "living_conditions"):
        _text(p, f"{where}.{name}", getattr(s, name), LIMITS["text"])
    for name in ("hobbies", "advantages", "disadvantages"):
        _text_list(p, f"{where}.{name}", getattr(s, name), LIMITS["list_items"], LIMITS["item"])
    _text_list(p, f"{where}.profile", s.profile, LIMITS["paragraphs"], LIMITS["paragraph"])
    _text_list(p, f"{where}.facts", s.facts, LIMITS["facts"], LIMITS["fact"])
    _text_list(p, f"{where}.traits", s.traits, catalogue.MAX_TRAITS if strict_catalogue else LIMITS["list_items"],
               LIMITS["short"])
    if strict_catalogue and isinstance(s.traits, list) and all(isinstance(t, str) for t in s.traits):
        p += [f"{where}.traits: {problem}" for problem in catalogue.trait_problems(s.traits)
              if not problem.startswith("at most")]
    if not isinstance(s.skills, dict):
        p.append(f"{where}.skills: must be an object of skill → level")
    else:
        known = set(catalogue.skills())
        low, high = catalogue.SKILL_LEVELS
        if len(s.skills) > len(known) + 20:
            p.append(f"{where}.skills: too many skills ({len(s.skills)})")
        for skill, level in list(s.skills.items())[:100]:
            if strict_catalogue and skill not in known:
                p.append(f"{where}.skills.{skill}: unknown skill")
            if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
                p.append(f"{where}.skills.{skill}: level must be a whole number from {low} to {high}, not {level!r}")
    if p:
        raise CharacterError(p)
    return c


def field_names() -> list[str]:
    return [f.name for f in fields(Character)]
