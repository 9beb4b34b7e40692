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
