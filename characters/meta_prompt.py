"""The meta prompt: Character + Scene (+ another character) → the system prompt the model gets.

It follows Character-LLM's meta prompt ("I want you to act like {character}… The status
of you is as follows: Location: … Status: …"), extended with SimsChat's mood and
conversation topic and with the persona built from the card and the Sims-style fields.
Card fields are honoured as the Character Card V2 spec says: ``system_prompt`` replaces
the main instruction (``{{original}}`` in it stands for ours), and
``post_history_instructions`` comes after the conversation.
"""

from __future__ import annotations

import re

from characters.catalogue import aspiration_category
from characters.scenes import INTERVIEW, Scene
from characters.schema import Character

DEFAULT_USER = "User"


def main_instruction(name: str) -> str:
    return (f"I want you to act like {name}. I want you to respond and answer like {name}, using the tone, "
            f"manner and vocabulary {name} would use. You must know all of the knowledge of {name}.")


def replace_macros(text: str, char: str, user: str = DEFAULT_USER) -> str:
    """``{{char}}`` and ``{{user}}`` (any case, as other apps write them) → the names."""
    text = re.sub(r"\{\{\s*char\s*\}\}|<BOT>", lambda _: char, text, flags=re.IGNORECASE)
    return re.sub(r"\{\{\s*user\s*\}\}|<USER>", lambda _: user, text, flags=re.IGNORECASE)


def _join(items: list[str]) -> str:
    return ", ".join(i for i in items if i)


def persona(character: Character, user: str = DEFAULT_USER) -> str:
    """Who the character is, in plain lines, from the card and the Sims-style fields."""
    c, s = character, character.sims
    lines = []
    if c.description.strip():
        lines.append(c.description.strip())
    who = _join([s.gender, f"age {s.age}" if s.age else "", f"lived {s.era}" if s.era else ""])
    if who:
        lines.append(f"{c.name}: {who}.")
    if s.career:
        lines.append(f"Career: {s.career}.")
    if s.aspiration:
        category = aspiration_category(s.aspiration)
        lines.append(f"Aspiration: {s.aspiration}{f' ({category})' if category else ''}.")
    if s.traits:
        lines.append(f"Traits: {_join(s.traits)}.")
    if s.skills:
        ranked = sorted(s.skills.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("Skills: " + _join([f"{skill} {level}/10" for skill, level in ranked]) + ".")
    if c.personality.strip():
        lines.append(f"Personality: {c.personality.strip()}")
    if s.tone:
        lines.append(f"Tone of voice: {s.tone}.")
    for label, items in (("Hobbies", s.hobbies), ("Strengths", s.advantages), ("Weaknesses", s.disadvantages)):
        if items:
            lines.append(f"{label}: {_join(items)}.")
    for label, text in (("Family", s.family), ("Relationships", s.social_relations),
                        ("Living conditions", s.living_conditions)):
        if text.strip():
            lines.append(f"{label}: {text.strip()}")
    if c.scenario.strip():
        lines.append(f"Scenario: {c.scenario.strip()}")
    return replace_macros("\n".join(lines), c.name, user)


def meta_prompt(character: Character, scene: Scene | None = None, other: Character | None = None,
                user: str = DEFAULT_USER, user_persona: str = "", examples: bool = True, persona_text: bool = True) -> str:
    """The full system prompt for ``character`` in ``scene`` (Character-LLM's interview setting by default).

    A *trained* character gets Character-LLM's bare meta prompt (``persona_text=False``, no examples):
    who it is lives in its adapter, and training examples stay short."""
    scene = scene or INTERVIEW
    name = character.name
    main = main_instruction(name)
    if character.system_prompt.strip():
        main = character.system_prompt.replace("{{original}}", main)
    partner = other.name if other is not None else user
    parts = [main, persona(character, partner) if persona_text else ""]
    if examples and character.mes_example.strip():
        parts.append(f"Examples of how {name} speaks:\n{character.mes_example.strip()}")
    if other is not None:
        parts.append(f"You are talking with {other.name}. About {other.name}:\n{persona(other, name)}")
    elif user_persona.strip():
        parts.append(f"About {user}: {user_persona.strip()}")
    status = ["The status of you is as follows:"]
    if scene.place_and_time:
        status.append(f"Location: {scene.place_and_time}")
    if scene.type:
        status.append(f"Scene: {scene.type}")
    if scene.status.strip():
        status.append(f"Status: {scene.status.strip()}")
    if scene.mood:
        status.append(f"Mood: {scene.mood}")
    if scene.topic:
        status.append(f"Conversation topic: {scene.topic}")
    parts.append("\n".join(status))
    parts.append("The interactions are as follows:")
    return replace_macros("\n\n".join(p for p in parts if p.strip()), name, partner)


def post_history(character: Character, user: str = DEFAULT_USER) -> str:
    """The card's post-history instructions, macros replaced (``{{original}}``: we have none of our own)."""
    text = character.post_history_instructions.replace("{{original}}", "").strip()
    return replace_macros(text, character.name, user)


def chat_messages(character: Character, scene: Scene | None, history: list[dict], message: str | None = None,
                  user: str = DEFAULT_USER, user_persona: str = "", other: Character | None = None,
                  trained: bool = False) -> list[dict]:
    """System prompt + history (+ the new message) + post-history instructions, as engine messages."""
    prompt = meta_prompt(character, scene, other, user, user_persona, examples=not trained, persona_text=not trained)
    messages = [{"role": "system", "content": prompt}]
    messages += history
    if message is not None:
        messages.append({"role": "user", "content": message})
    after = post_history(character, user)
    if after:
        messages.append({"role": "system", "content": after})
    return messages
