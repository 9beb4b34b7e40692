"""The Characters tab over HTTP: what a visitor's clicks (or a hostile client) send."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file

from characters import catalogue
from characters.builder import describe, surprise
from characters.cards import read_card
from characters.schema import validate
from characters.store import CharacterStore
from conftest import form


@pytest.fixture
def client(app_url):
    return Client(app_url[0], verbose=False)


def test_surprise_draws_consistent_characters():
    for seed in range(40):
        character = surprise(seed)
        validate(character)  # no conflicting traits, skills 1-10 from the catalogue
        assert character.description == describe(character)
        assert character.sims.career.lower() in character.description


def test_save_through_the_api_then_a_new_session_finds_it(client, app_url):
    picker, name, message = client.predict(None, *form(), api_name="/save_character")
    assert name == "Tess Okoro" and "Saved" in message
    fresh = Client(app_url[0], verbose=False)  # as after a page reload
    assert {"name": "Tess Okoro", "kind": "user"} in fresh.predict(api_name="/characters")
    card = fresh.predict("Tess Okoro", api_name="/character")
    assert card["data"]["extensions"]["simulacra"]["skills"] == {"Painting": 7}


def test_saving_a_changed_preset_saves_a_copy(client, app_url):
    values = form(name="Socrates")
    _, name, _ = client.predict("Socrates", *values, api_name="/save_character")
    assert name == "Socrates (copy)"
    assert CharacterStore(app_url[1]).load("Socrates").sims.career == "Philosopher"  # the preset is untouched


@pytest.mark.parametrize("values, words", [
    (form(traits=("Neat", "Slob")), "conflict"),
    (form(traits=("Genius", "Good", "Loner", "Geek")), "limit is 3"),
    (form(skills={"Piano": 15}), "maximum value 10"),  # Gradio checks the slider range on the server too
    (form(name=""), "name"),
    (form(name="x" * 500), "name"),
    (form(name="../../etc/passwd", description="x" * 30_000), "description"),
])
def test_the_server_refuses_what_the_form_would_not_send(client, values, words):
    with pytest.raises(Exception) as err:
        client.predict(None, *values, api_name="/save_character")
    assert words in str(err.value)


def test_a_path_in_a_name_stays_a_name(client, app_url):
    _, name, _ = client.predict(None, *form(name="../../outside"), api_name="/save_character")
    assert name == "../../outside"
    assert not (app_url[1].parent / "outside.json").exists()
    assert (app_url[1] / "characters" / "outside.json").is_file()


def test_card_import_and_export_through_the_app(client, tmp_path):
    picker, message = client.predict(handle_file("tests/fixtures/other_app_card_v2.json"), api_name="/import_card")
    assert "Captain Mirela Stroud" in message
    values = client.predict("Captain Mirela Stroud", api_name="/load_character")
    exported = client.predict("Captain Mirela Stroud", *values[:-1], api_name="/export_v2")
    card = json.loads(open(exported).read())
    assert card["data"]["x_custom_field"] == {"kept": [1, 2, 3]}
    assert card["data"]["extensions"]["depth_prompt"]["depth"] == 4
    png = client.predict("Captain Mirela Stroud", *values[:-1], api_name="/export_png")
    assert read_card(open(png, "rb").read())[0].character_book["name"] == "Kestrel lore"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(Exception, match="PNG"):
        client.predict(handle_file(str(bad)), api_name="/import_card")
