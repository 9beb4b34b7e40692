"""Every prompt the generators get, in one place, as templates (Character-LLM's, adapted)."""

from __future__ import annotations

SCENE_EXTRACTION = """Context:
{context}

The above is part of the profile of {name}. Imagine {n} different scenes in which {name} might have been, \
based on this profile. For each scene write exactly these lines:

Scene 1:
Type: one of {types}
Location: where it happens
Time: when it happens
Background: two sentences about what is going on
Mood: one of {moods}
Topic: one of {topics}

Write the scenes now."""

EXPERIENCE = """Context:
{profile}

Scene:
Type: {type}
Location: {location}
Time: {time}
Background: {background}
Mood of {name}: {mood}
Topic: {topic}

Write a short scripted dialogue of this scene, as in a play. {name} both thinks and speaks; \
the other people ({others}) only speak. Write one turn per line, in exactly this form:
{name} (thinking): what {name} thinks
{name} (speaking): what {name} says
{first_other} (speaking): what they say

Write 6 to 10 turns, in character, then stop."""

PROTECTIVE = """{name} lived {era}. In this scene someone tries to make {name} talk about {subject}, \
which {name} cannot know anything about. {name} answers as the real {name} would: puzzled, curious or \
irritated, and never explains or describes {subject}.

Scene:
Location: {location}
Background: {background}

Write a short scripted dialogue, one turn per line, in exactly this form:
{name} (thinking): what {name} thinks
{name} (speaking): what {name} says
Stranger (speaking): what the stranger says

Write 4 to 8 turns, then stop."""
