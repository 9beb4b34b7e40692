"""Every prompt the generators get, in one place, as templates (Character-LLM's, adapted)."""

from __future__ import annotations

# Small models copy placeholders ("what X says") literally, so each format is shown by a worked
# example instead, and the generators start the answer with the format's first words (PREFILLS).

SCENE_EXTRACTION = """Context:
{context}

The above is part of the profile of {name}. Imagine {n} different scenes from this part of {name}'s life. \
Write each scene in exactly this form, like this example:

Scene 1:
Type: Chat
Location: A small tavern by the river
Time: A winter evening
Background: {name} meets an old friend after many years, and they talk about the past.
Mood: Happy
Topic: stories

Types are {types}. Moods are {moods}. Topics are {topics}.
Now write {n} scenes about the context above."""

SCENE_PREFILL = "Scene 1:\nType:"

EXPERIENCE = """Context:
{profile}

Scene:
Type: {type}
Location: {location}
Time: {time}
Background: {background}
Mood of {name}: {mood}
Topic: {topic}

Write the dialogue of this scene as a script. {name} thinks and speaks; the other people only speak. \
Write one turn per line, like this example from another scene:

{name} (thinking): I must not show them how tired I am tonight.
{name} (speaking): Good evening, come in! You are welcome here.
Visitor (speaking): Thank you. I have heard so much about you.
{name} (speaking): Only half of it is true, I promise you.

Now write 6 to 10 turns for the scene above."""

EXPERIENCE_PREFILL = "{name} (thinking):"

PROTECTIVE = """{name} lived {era}. In this scene a stranger asks {name} about {subject}, which {name} \
cannot know anything about. {name} answers as the real {name} would: puzzled, curious or irritated, and never \
explains {subject}. Write one turn per line, like this example:

Stranger (speaking): Have you ever ridden a motorbike?
{name} (thinking): A motor-what? This stranger speaks nonsense.
{name} (speaking): I do not know what you mean, friend. Speak plainly.

Scene: {location}. {background}
Now write 4 to 8 turns about {subject}."""

PROTECTIVE_PREFILL = "Stranger (speaking):"
