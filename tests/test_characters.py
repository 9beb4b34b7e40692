"""Characters: schema, catalogue, presets, cards (V1/V2/V3, JSON and PNG), store, CLI, meta prompt."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from characters import catalogue
from characters.cards import CardError, export, read_card, to_png, to_v2, to_v3
from plumbing.files import UnsafePathError, atomic_write_text, inside, safe_child, slugify
from characters.meta_prompt import chat_messages, meta_prompt, replace_macros
from characters.scenes import Scene
from characters.schema import Character, CharacterError, Simulacra, validate
from characters.store import CharacterNotFound, CharacterStore
from conftest import ROOT, golden

FIXTURES = Path(__file__).parent / "fixtures"
HISTORICAL = ["Ludwig van Beethoven", "Cleopatra VII", "Julius Caesar", "Socrates", "Isaac Newton", "Spartacus",
              "Martin Luther King Jr."]


@pytest.fixture
def store(data_dir):
    return CharacterStore(data_dir)


def custom() -> Character:
    return Character(
        name="Nova Reyes", description="{{char}} is a street musician who plays for {{user}}.",
        personality="bright and restless", first_mes="Hey {{user}}! Got a request?",
        sims=Simulacra(career="Entertainer", aspiration="Musical Genius", traits=["Creative", "Outgoing", "Music Lover"],
                       skills={"Guitar": 8, "Singing": 6}, gender="female", age="23", tone="playful",
                       hobbies=["busking"], facts=["I busk in the old town."]),
    )


# ---- catalogue and presets -------------------------------------------------------------------

def test_catalogue_has_the_design_vocabulary():
    assert len(catalogue.moods()) == 16 and "Tense" in catalogue.moods()
    assert {"Chat", "Debate", "Discussion", "Speech"} <= set(catalogue.scene_types())
    assert len(catalogue.topics()) == 13 and len(catalogue.skills()) == 20
    assert "Musical Genius" in catalogue.aspirations() and catalogue.aspiration_category("Master Chef") == "Food"
    assert catalogue.trait_conflicts(["Neat", "Slob", "Genius"]) == [("Neat", "Slob")]


def test_historical_presets_are_complete(store):
    presets = store.presets()
    for name in HISTORICAL:
        c = presets[name]
        assert len(c.sims.profile) >= 8, name
        assert len(c.sims.facts) >= 30, name
        assert c.first_mes and "<START>" in c.mes_example and c.sims.era, name


def test_original_sims_presets_are_varied_and_valid(store):
    originals = [c for c in store.presets().values() if "SimsChat" in c.tags]
    assert len(originals) >= 8
    assert len({c.sims.career for c in originals}) == len(originals)
    assert len({c.sims.aspiration for c in originals}) == len(originals)
    assert len({tuple(sorted(c.sims.traits)) for c in originals}) == len(originals)
    for c in originals:
        validate(c)  # strict: catalogue traits, no conflicts, skills 1-10
        assert c.sims.career in catalogue.careers() and c.sims.aspiration in catalogue.aspirations()


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"description": "x" * 20_001}, "description"),
    ({"tags": "not a list"}, "tags"),
    ({"alternate_greetings": [1, 2]}, "alternate_greetings[0]"),
    ({"sims": Simulacra(traits=["Neat", "Slob"])}, "Neat and Slob conflict"),
    ({"sims": Simulacra(traits=["Genius", "Good", "Loner", "Geek"])}, "the limit is 3"),
    ({"sims": Simulacra(traits=["Telepathic"])}, "unknown trait"),
    ({"sims": Simulacra(skills={"Piano": 11})}, "skills.Piano"),
    ({"sims": Simulacra(skills={"Piano": "high"})}, "skills.Piano"),
    ({"sims": Simulacra(skills={"Juggling": 3})}, "unknown skill"),
    ({"sims": Simulacra(facts=["x" * 401])}, "facts[0]"),
])
def test_validation_names_the_field_and_the_problem(change, field):
    bad = custom().copy(**change)
    with pytest.raises(CharacterError) as err:
        validate(bad)
    assert field in str(err.value)


# ---- cards -----------------------------------------------------------------------------------

def test_card_from_another_app_imports_with_all_its_fields():
    raw = (FIXTURES / "other_app_card_v2.json").read_bytes()
    character, avatar = read_card(raw)
    assert avatar is None
    assert character.name == "Captain Mirela Stroud"
    assert character.alternate_greetings[1].startswith("*the engines")
    assert character.character_book["entries"][0]["keys"] == ["Kestrel"]
    assert character.extensions["depth_prompt"]["depth"] == 4
    assert character.unknown_data == {"x_custom_field": {"kept": [1, 2, 3]}}
    assert character.unknown_card == {"x_top_level": "kept too"}


def test_v2_json_round_trip_keeps_every_field():
    original = json.loads((FIXTURES / "other_app_card_v2.json").read_text())
    character, _ = read_card(json.dumps(original).encode())
    assert to_v2(character) == original
    again, _ = read_card(export(character, "v2"))
    assert again == character


def test_v3_json_round_trip_keeps_v3_fields_and_sims_extension():
    character = custom().copy(nickname="Nov", group_only_greetings=["Hi all"], source=["https://example.org/nova"],
                              creation_date=1700000000, modification_date=1700000001)
    character.extensions = {"other_app": {"x": 1}}
    character.unknown_sims = {"future_field": "kept"}
    card = to_v3(character)
    assert card["spec"] == "chara_card_v3" and card["data"]["extensions"]["simulacra"]["future_field"] == "kept"
    back, _ = read_card(export(character, "v3"))
    assert back == character.copy(had_sims=True, assets=card["data"]["assets"])
    assert to_v3(back) == card


def test_png_card_carries_both_chunks_and_round_trips():
    character = custom()
    png = to_png(character)
    with Image.open(io.BytesIO(png)) as image:
        assert {"chara", "ccv3"} <= set(image.text)
        assert json.loads(base64.b64decode(image.text["chara"]))["spec"] == "chara_card_v2"
    back, avatar = read_card(png)
    assert avatar == png
    assert back.name == character.name and back.sims == character.sims
    assert read_card(to_png(back, avatar))[0] == back


def test_png_reads_ccv3_before_chara():
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(to_v2(custom().copy(name="From V2"))).encode()).decode())
    info.add_text("ccv3", base64.b64encode(json.dumps(to_v3(custom().copy(name="From V3"))).encode()).decode())
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    assert read_card(out.getvalue())[0].name == "From V3"


def test_v1_card_imports_and_keeps_its_extra_keys():
    v1 = {"name": "Old Timer", "description": "d", "personality": "p", "scenario": "s", "first_mes": "hi",
          "mes_example": "", "metadata": {"created": 1}}
    character, _ = read_card(json.dumps(v1).encode())
    assert character.first_mes == "hi" and character.unknown_data == {"metadata": {"created": 1}}


def _png_with(chunks: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


HOSTILE_FILES = {
    "empty": b"",
    "not json": b"hello there",
    "json list": b"[1, 2, 3]",
    "not a card": b'{"spec": "something_else", "data": {}}',
    "no name": b'{"spec": "chara_card_v2", "data": {"description": "x"}}',
    "wrong types": b'{"spec": "chara_card_v2", "data": {"name": ["a"], "tags": "x", "alternate_greetings": 5}}',
    "data not object": b'{"spec": "chara_card_v2", "data": "x"}',
    "deeply nested": b'{"spec": "chara_card_v2", "data": {"name": "x", "extensions": ' + b'{"a": ' * 5000
                     + b"1" + b"}" * 5000 + b"}}",
    "oversized": b'{"name": "' + b"x" * (9 * 2**20) + b'"}',
    "broken png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
    "truncated png": None,
    "png without card": None,
    "png with bad base64": None,
    "huge text chunk": None,
}


@pytest.mark.parametrize("kind", list(HOSTILE_FILES))
def test_malformed_cards_give_a_clear_message(kind):
    data = HOSTILE_FILES[kind]
    if kind == "truncated png":
        data = to_png(custom())[:300]
    elif kind == "png without card":
        data = _png_with({"Comment": "just a picture"})
    elif kind == "png with bad base64":
        data = _png_with({"chara": "!!!not base64!!!"})
    elif kind == "huge text chunk":
        data = _png_with({"chara": "A" * (3 * 2**20)})
    with pytest.raises(ValueError) as err:
        read_card(data)
    assert str(err.value) and "Traceback" not in str(err.value)
    assert isinstance(err.value, (CardError, CharacterError))


# ---- files and store -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "CON", "nul", "x" * 500,
                                  "Ludwig van Beethoven", "Inès Moreau", "emoji 🎻 name"])
def test_hostile_names_become_safe_file_names(tmp_path, name):
    path = safe_child(tmp_path, name, ".json")
    assert path.parent == tmp_path.resolve()
    assert path.stem not in ("con", "nul", "", ".", "..") and len(path.name) <= 90


@pytest.mark.parametrize("name", ["", "   ", ".", "..", "../..", "🎻", "\x00"])
def test_names_without_letters_are_refused(name):
    with pytest.raises(UnsafePathError):
        slugify(name)


def test_inside_refuses_escapes(tmp_path):
    with pytest.raises(UnsafePathError):
        inside(tmp_path, "..", "etc")
    with pytest.raises(UnsafePathError):
        inside(tmp_path, "/etc/passwd")


def test_save_load_duplicate_delete(store, data_dir):
    store.save(custom())
    assert "Nova Reyes" in store.names()
    assert store.load("Nova Reyes") == custom().copy(had_sims=True, assets=store.load("Nova Reyes").assets,
                                                     creation_date=store.load("Nova Reyes").creation_date,
                                                     modification_date=store.load("Nova Reyes").modification_date)
    copy = store.duplicate("Nova Reyes")
    assert copy.name == "Nova Reyes (copy)" and store.load("Nova Reyes (copy)").sims == custom().sims
    store.delete("Nova Reyes")
    assert "Nova Reyes" not in store.names() and "Nova Reyes (copy)" in store.names()
    with pytest.raises(CharacterNotFound):
        store.load("Nova Reyes")
    assert list(data_dir.glob("characters/*")) == [data_dir / "characters" / "nova-reyes-copy.json"]


def test_presets_are_read_only_and_saving_a_changed_preset_means_a_copy(store):
    beethoven = store.load("Ludwig van Beethoven")
    beethoven.personality += " Loves coffee, counted sixty beans a cup."
    with pytest.raises(PermissionError):
        store.save(beethoven)
    with pytest.raises(PermissionError):
        store.delete("Socrates")
    copy = beethoven.copy(name=store.free_name(beethoven.name))
    store.save(copy)
    assert copy.name == "Ludwig van Beethoven (copy)"
    assert "sixty beans" in store.load(copy.name).personality
    assert "sixty beans" not in store.load("Ludwig van Beethoven").personality


def test_a_name_whose_slug_is_taken_does_not_overwrite_another_character(store):
    store.save(custom())
    with pytest.raises(FileExistsError):
        store.save(custom().copy(name="nova reyes"))
    assert store.load("Nova Reyes").name == "Nova Reyes"


def test_hostile_names_through_the_store(store, data_dir):
    for name in ["../evil", "CON", "x" * 100]:
        store.save(custom().copy(name=name))
        assert store.load(name).name == name
    for path in (data_dir / "characters").iterdir():
        assert path.resolve().parent == (data_dir / "characters").resolve()
    assert not (data_dir / "evil.json").exists()
    with pytest.raises(CharacterError):
        store.save(custom().copy(name=""))


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "card.json"
    atomic_write_text(target, "old")

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_a_damaged_user_file_is_skipped_not_lost(store, data_dir):
    store.save(custom())
    damaged = data_dir / "characters" / "broken.json"
    damaged.write_text("{not json")
    assert "Nova Reyes" in store.names()
    assert damaged.read_text() == "{not json"


# ---- CLI -------------------------------------------------------------------------------------

def cli(*args, data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "characters", "--data-dir", str(data_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_list_show_export_import_validate(data_dir, tmp_path):
    listed = cli("list", data_dir=data_dir)
    assert listed.returncode == 0 and "preset  Socrates" in listed.stdout
    shown = cli("show", "Socrates", data_dir=data_dir)
    assert shown.returncode == 0 and "I want you to act like Socrates" in shown.stdout
    for fmt in ("v2", "v3", "png"):
        out = tmp_path / f"socrates.{fmt}"
        assert cli("export", "Socrates", "--format", fmt, "--out", str(out), data_dir=data_dir).returncode == 0
        assert cli("validate", str(out), data_dir=data_dir).returncode == 0
    imported = cli("import", str(tmp_path / "socrates.png"), data_dir=data_dir)
    assert imported.returncode == 0 and "Socrates (copy)" in imported.stdout
    assert (data_dir / "characters" / "socrates-copy.png").is_file()


@pytest.mark.parametrize("args", [("show", "../../etc/passwd"), ("show", "Nobody"), ("validate", "/etc/hostname"),
                                  ("validate", "/no/such/file"), ("import", "/dev/null"),
                                  ("export", "Socrates", "--format", "v2", "--out", "/proc/version/x")])
def test_cli_errors_are_one_line_without_traceback(data_dir, args):
    result = cli(*args, data_dir=data_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


# ---- meta prompt -----------------------------------------------------------------------------

def test_meta_prompt_golden_preset_in_the_interview_setting(store):
    golden("beethoven_interview.txt", meta_prompt(store.load("Ludwig van Beethoven")))


def test_meta_prompt_golden_custom_character_in_a_scene_with_mood_and_topic():
    scene = Scene(name="Rooftop gig", type="Concert", location="A rooftop bar", time="Night",
                  status="{{char}} is about to play a set for a small crowd; {{user}} is at the front.",
                  mood="Energized", topic="discussing hobbies")
    golden("nova_rooftop.txt", meta_prompt(custom(), scene, user="Sam", user_persona="A sound engineer."))


def test_macros_are_replaced_in_every_spelling():
    assert replace_macros("{{char}} meets {{user}}; {{Char}}, {{ USER }}, <BOT> <USER>", "Ada", "Sam") == \
        "Ada meets Sam; Ada, Sam, Ada Sam"


def test_card_system_prompt_and_post_history_instructions_follow_the_spec():
    character, _ = read_card((FIXTURES / "other_app_card_v2.json").read_bytes())
    prompt = meta_prompt(character, user="Sam")
    assert prompt.startswith("I want you to act like Captain Mirela Stroud.")
    assert "Write in second person. Never speak for Sam." in prompt and "{{" not in prompt
    messages = chat_messages(character, None, [], "Hello", user="Sam")
    assert messages[-1] == {"role": "system", "content": "Keep Captain Mirela Stroud's replies under 80 words."}
    assert messages[-2] == {"role": "user", "content": "Hello"}


# ---- names as people type them ------------------------------------------------------------------

def test_a_name_is_found_as_people_type_it(store):
    for typed in ("Ludwig van Beethoven", "ludwig van beethoven", "Beethoven", "BEETHOVEN", "van Beethoven"):
        assert store.find(typed).name == "Ludwig van Beethoven", typed
    assert store.find("luther king").name == "Martin Luther King Jr."
    store.save(Character(name="Ludwig Minor", description="A second Ludwig."))
    with pytest.raises(CharacterNotFound) as several:
        store.find("ludwig")  # two characters have that word: neither is guessed
    assert "Ludwig van Beethoven" in str(several.value) and "Ludwig Minor" in str(several.value)
    with pytest.raises(CharacterNotFound) as misspelt:
        store.find("Bethoven")
    assert "nearest: Ludwig van Beethoven" in str(misspelt.value)
    with pytest.raises(CharacterNotFound):
        store.find("hoven")  # part of a word is not a name
    with pytest.raises(CharacterNotFound):
        store.load("beethoven")  # inside the app, names are exact


def test_the_cli_takes_a_name_as_typed_and_lists_the_nearest_when_it_is_not_found(data_dir):
    shown = cli("show", "beethoven", data_dir=data_dir)
    assert shown.returncode == 0 and "I want you to act like Ludwig van Beethoven" in shown.stdout
    missing = cli("show", "Socratez", data_dir=data_dir)
    assert missing.returncode == 1 and "nearest: Socrates" in missing.stderr and "Traceback" not in missing.stderr
