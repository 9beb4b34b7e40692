"""A turn ends where the character's turn ends: before another speaker's line, and at the last whole
sentence when the token limit cuts it."""

from __future__ import annotations

import pytest

from characters.scenes import find_scene
from characters.store import CharacterStore
from engine import SamplingOptions
from engine.roleplay import stream_turn
from engine.turn_end import SPEAKER_LINE, end_turn, is_own
from evaluation.metrics import degenerate


def run(pieces: list[str], speaker: str = "Ludwig van Beethoven", limit: int = 256) -> tuple[list[str], dict]:
    """``end_turn`` over ``pieces`` as the engine streams them: a token a piece, counted in ``stats``."""
    stats = {"new_tokens": 0}

    def engine():
        for piece in pieces:
            stats["new_tokens"] += 1
            yield piece

    return list(end_turn(engine(), speaker, limit, stats)), stats


@pytest.mark.parametrize("pieces, kept", [
    (["Of course.", "\nAn", "na: Then", " go!"], "Of course."),
    (["Of course.\n", "**Socrates:**", " I agree"], "Of course."),
    (["Yes,", " tonight.", "\n\nSphinx: You should build", " a new city."], "Yes, tonight."),
    (["I am ready", " <ST", "ART> User: hi"], "I am ready"),
    (["I am ready.", "<|im_start|>user"], "I am ready."),
])
def test_the_turn_ends_before_another_speakers_line(pieces, kept):
    out, stats = run(pieces)
    assert "".join(out).rstrip() == kept and stats["turn_end"] == "speaker"  # a space may go out before a marker
    assert not any(":" in piece for piece in out)  # no half of the other line was ever shown


def test_the_characters_own_lines_and_ordinary_lines_go_on():
    out, stats = run(["Ready.", "\nBeethoven: And", " you?", "\nI", " wonder", " why."])
    assert "".join(out) == "Ready.\nBeethoven: And you?\nI wonder why." and stats["turn_end"] == "eos"
    assert is_own("Beethoven", "Ludwig van Beethoven") and not is_own("Anna", "Ludwig van Beethoven")


def test_a_reply_cut_by_the_limit_ends_at_its_last_whole_sentence():
    said = ["One"] + [" more"] * 26 + [" thing."] + [" Two", " things!"]  # 30 tokens, then 10 of a cut sentence
    out, stats = run(said + [" And", " then", " the", " third", " and", " the", " fourth", " and", " the", " fifth"],
                     limit=40)
    assert "".join(out) == "".join(said) and stats["turn_end"] == "length"
    out, _ = run(said[:28] + [" and"] * 12, limit=40)  # the limit cuts a sentence begun before the last 10 tokens
    assert "".join(out).endswith(" and…")
    assert "".join(run(["No", " full", " stop", " here"], limit=4)[0]) == "No full stop here…"  # nothing to cut to


def test_text_streams_freely_until_the_limit_is_near():
    pieces = ["Word"] + [" word"] * 59 + ["."]
    out, _ = run(pieces, limit=200)
    assert len(out) > 50  # not held back sentence by sentence


@pytest.mark.parametrize("line, name", [("Anna: hi", "Anna"), ("**Dr. Okafor:** yes", "Dr. Okafor"),
                                        ("  Sicilons: I think", "Sicilons")])
def test_speaker_lines_are_recognised(line, name):
    assert SPEAKER_LINE.match(line).group(1) == name


def test_a_list_of_unrelated_short_lines_is_degenerate():
    assert degenerate("london music festival\nSafari on a bicycle\nFestival in China\nBloody Brawls\nYuma, 5.")
    assert degenerate("Yuma, 5.\nMini, Mini, 5.\nMini, 5.")
    assert not degenerate("Ready? Always.\nThe orchestra is tuned, the hall is full.\nLet them come.")
    assert not degenerate("Yes.\nI was born in Bonn, in 1770, to a family of musicians.")


def test_real_replies_in_a_scene_never_carry_another_speakers_line(engine):
    beethoven = CharacterStore().load("Ludwig van Beethoven")
    scene = find_scene("Concert hall before a premiere")
    for seed in range(3):
        stats = {}
        reply = "".join(stream_turn(engine, beethoven, scene, [], "Are you ready for tonight?",
                                    SamplingOptions(max_new_tokens=96, seed=seed), user="Anna", stats=stats))
        lines = reply.splitlines()[1:]
        assert not any((m := SPEAKER_LINE.match(line)) and not is_own(m.group(1), beethoven.name) for line in lines)
        assert stats["turn_end"] in ("eos", "speaker", "length")
