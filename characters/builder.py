"""Helpers of the SimsChat-style builder: a random but consistent character, a description
from the chosen elements without a model, and the prompt that asks the model to polish it."""

from __future__ import annotations

import random

from characters import catalogue
from characters.schema import Character, Simulacra

FIRST_NAMES = {
    "female": ["Ava", "Lena", "Mira", "Sofia", "Nadia", "Elif", "Hana", "Zoe", "Clara", "Amara", "Rosa", "Ingrid"],
    "male": ["Leo", "Omar", "Felix", "Mateo", "Kenji", "Ravi", "Jonas", "Tobias", "Idris", "Marco", "Sven", "Caleb"],
    "non-binary": ["Robin", "Sasha", "Quinn", "Rowan", "Ari", "Kai", "Jules", "Sky"],
}
LAST_NAMES = ["Hart", "Okoye", "Lindgren", "Moreno", "Castellanos", "Novak", "Ishikawa", "Bauer", "Adeyemi",
              "Fontaine", "Kowalski", "Reyes", "Sato", "Whitfield", "Haddad", "Petrov"]
TOWNS = ["Willow Creek", "Oasis Springs", "San Myshuno", "Brindleton Bay", "Windenburg", "Newcrest", "Sulani"]
# Skills that fit a career, so a surprise Astronaut does not top out at Mixology.
CAREER_SKILLS = {
    "Astronaut": ["Rocket Science", "Fitness", "Logic"], "Athlete": ["Fitness", "Charisma"],
    "Business": ["Charisma", "Logic"], "Criminal": ["Mischief", "Handiness"], "Culinary": ["Cooking", "Mixology"],
    "Entertainer": ["Comedy", "Guitar", "Singing", "Charisma"], "Painter": ["Painting", "Photography"],
    "Secret Agent": ["Charisma", "Logic", "Fitness"], "Tech Guru": ["Programming", "Video Gaming", "Logic"],
    "Writer": ["Writing", "Logic"], "Doctor": ["Logic", "Charisma"], "Detective": ["Logic", "Charisma"],
    "Scientist": ["Logic", "Handiness", "Rocket Science"], "Critic": ["Writing", "Cooking", "Painting"],
    "Politician": ["Charisma", "Writing"], "Social Media": ["Charisma", "Photography", "Writing"],
    "Actor": ["Charisma", "Comedy", "Singing"], "Military": ["Fitness", "Logic"],
    "Conservationist": ["Gardening", "Fishing"], "Education": ["Logic", "Charisma", "Writing"],
    "Engineer": ["Handiness", "Logic", "Programming"], "Law": ["Charisma", "Logic", "Writing"],
    "Gardener": ["Gardening", "Fishing"], "Style Influencer": ["Photography", "Charisma", "Painting"],
    "Musician": ["Piano", "Violin", "Guitar", "Singing"], "Philosopher": ["Logic", "Writing", "Charisma"],
    "Ruler": ["Charisma", "Logic"],
}
TRAIT_HOBBIES = {
    "Bookworm": "reading", "Foodie": "trying new restaurants", "Geek": "video games", "Music Lover": "concerts",
    "Active": "running", "Loves the Outdoors": "hiking", "Art Lover": "museums", "Creative": "sketching",
    "Romantic": "writing poems", "Goofball": "pranks", "Lazy": "naps", "Outgoing": "parties",
}


def surprise(seed: int | None = None) -> Character:
    """A random character whose traits do not conflict and whose skills fit the career."""
    rng = random.Random(seed)
    gender = rng.choice(list(FIRST_NAMES))
    name = f"{rng.choice(FIRST_NAMES[gender])} {rng.choice(LAST_NAMES)}"
    career = rng.choice(catalogue.careers()[:24])
    aspiration = rng.choice(catalogue.aspirations())
    traits: list[str] = []
    pool = catalogue.traits()
    while len(traits) < catalogue.MAX_TRAITS:
        trait = rng.choice(pool)
        if trait not in traits and not catalogue.trait_conflicts([*traits, trait]):
            traits.append(trait)
    skills = {skill: rng.randint(4, 10) for skill in CAREER_SKILLS.get(career, ["Charisma"])[:2]}
    extra = rng.choice([s for s in catalogue.skills() if s not in skills])
    skills[extra] = rng.randint(1, 5)
    hobbies = [TRAIT_HOBBIES[t] for t in traits if t in TRAIT_HOBBIES] or [f"practising {extra.lower()}"]
    town = rng.choice(TOWNS)
    character = Character(
        name=name,
        sims=Simulacra(career=career, aspiration=aspiration, traits=traits, skills=skills, gender=gender,
                       age=str(rng.randint(19, 70)), tone=rng.choice(catalogue.tones()), hobbies=hobbies,
                       living_conditions=f"Lives in {town}."),
    )
    character.description = describe(character)
    character.first_mes = f"Oh, hello! I'm {name.split()[0]}. What brings you here?"
    return character


def describe(character: Character) -> str:
    """A description from the chosen elements, for when nobody has written one (and no model is asked)."""
    s = character.sims
    first = character.name.split()[0] if character.name.strip() else "They"
    bits = [f"{character.name} is"]
    bits.append(f"a {s.age}-year-old" if s.age.isdigit() else "a")
    bits.append(f"{s.gender} " if s.gender else "")
    bits.append(f"{s.career.lower()} professional" if s.career else "person")
    sentence = " ".join(b for b in bits if b).replace("  ", " ").strip() + "."
    more = []
    if s.aspiration:
        more.append(f"{first} dreams of becoming a {s.aspiration}.")
    if s.traits:
        more.append(f"People know {first} as {', '.join(t.lower() for t in s.traits)}.")
    if s.skills:
        best = max(s.skills, key=s.skills.get)
        more.append(f"{first}'s best skill is {best.lower()} (level {s.skills[best]}).")
    if s.hobbies:
        more.append(f"In free time: {', '.join(s.hobbies)}.")
    if s.tone:
        more.append(f"{first} speaks in a {s.tone} way.")
    return " ".join([sentence, *more])


def polish_messages(character: Character) -> list[dict]:
    """Ask the model to write the description from the chosen elements."""
    s = character.sims
    elements = "\n".join(f"- {label}: {value}" for label, value in [
        ("Name", character.name), ("Gender", s.gender), ("Age", s.age), ("Career", s.career),
        ("Aspiration", s.aspiration), ("Traits", ", ".join(s.traits)),
        ("Skills", ", ".join(f"{k} {v}/10" for k, v in s.skills.items())), ("Tone", s.tone),
        ("Hobbies", ", ".join(s.hobbies)), ("Family", s.family), ("Living conditions", s.living_conditions),
    ] if value)
    return [
        {"role": "system", "content": "You write short, vivid character descriptions for a role-playing game."},
        {"role": "user", "content": f"Write a description of this character in 3 to 4 sentences, in the third "
                                    f"person, using every element below.\n{elements}"},
    ]
