"""Character Card V1/V2/V3 in JSON and PNG, in and out, without losing a field.

PNG cards carry base64 UTF-8 JSON in tEXt chunks: ``ccv3`` (V3) and ``chara`` (V2);
``ccv3`` is read first. Pillow reads and writes the chunks.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from dataclasses import fields

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from characters.schema import Character, CharacterError, Simulacra, validate

MAX_CARD_BYTES = 8 * 2**20  # a card with a portrait is well under this
MAX_JSON_DEPTH = 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
V2_FIELDS = (*V1_FIELDS, "creator_notes", "system_prompt", "post_history_instructions", "alternate_greetings",
             "character_book", "tags", "creator", "character_version", "extensions")
V3_FIELDS = (*V2_FIELDS, "nickname", "group_only_greetings", "assets", "creation_date", "modification_date",
             "source")
SIMS_FIELDS = tuple(f.name for f in fields(Simulacra))


class CardError(ValueError):
    """A file that is not a character card we can read; the message says why."""


# ---- reading ------------------------------------------------------------------------------

def _depth(value, limit: int, level: int = 0) -> None:
    if level > limit:
        raise CardError(f"the JSON is nested more than {limit} levels deep")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, limit, level + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, limit, level + 1)


def parse_json(text: str | bytes) -> dict:
    try:
        value = json.loads(text)
    except RecursionError:
        raise CardError(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CardError(f"not valid JSON: {err}") from None
    _depth(value, MAX_JSON_DEPTH)
    if not isinstance(value, dict):
        raise CardError(f"a card is a JSON object, not a {type(value).__name__}")
    return value


def png_chunks(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG, or a CardError."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise CardError(f"expected a PNG image, got {image.format}")
            image.load()  # text chunks after the image data are read here
            return dict(getattr(image, "text", {}) or {})
    except CardError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CardError(f"the PNG could not be read: {err}") from None


def card_from_png(data: bytes) -> dict:
    chunks = png_chunks(data)
    for key in ("ccv3", "chara"):
        if key in chunks:
            try:
                raw = base64.b64decode(chunks[key], validate=False)
            except (binascii.Error, ValueError) as err:
                raise CardError(f"the {key} chunk is not base64: {err}") from None
            return parse_json(raw)
    raise CardError("this PNG has no character card (no ccv3 or chara text chunk)")


def read_card(data: bytes) -> tuple[Character, bytes | None]:
    """A ``Character`` from card bytes (JSON or PNG), and the PNG itself when it was one (the avatar)."""
    if not isinstance(data, (bytes, bytearray)):
        raise CardError("a card file must be bytes")
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"the file is {len(data) / 2**20:.1f} MB; cards are limited to {MAX_CARD_BYTES // 2**20} MB")
    if not data.strip():
        raise CardError("the file is empty")
    is_png = data[:8] == PNG_MAGIC
    card = card_from_png(data) if is_png else parse_json(data)
    return character_from_card(card), (bytes(data) if is_png else None)


def character_from_card(card: dict) -> Character:
    """Map a V1, V2 or V3 card object to a ``Character``; unknown fields are kept."""
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{spec}: 'data' must be an object")
        unknown_card = {k: v for k, v in card.items() if k not in ("spec", "spec_version", "data")}
        known = V3_FIELDS
    elif spec is None and "name" in card:
        data, unknown_card, known = card, {}, V1_FIELDS
    else:
        raise CardError(f"not a character card (spec {spec!r})" if spec else "not a character card (no spec, no name)")

    values: dict = {}
    problems = []
    for name in known:
        if name in data:
            values[name] = data[name]
    if "name" not in values:
        problems.append("name: missing")
    extensions = values.pop("extensions", {}) or {}
    if not isinstance(extensions, dict):
        problems.append("extensions: must be an object")
        extensions = {}
    extensions = dict(extensions)
    raw_sims = extensions.pop("simulacra", None)
    had_sims = raw_sims is not None
    if raw_sims is not None and not isinstance(raw_sims, dict):
        problems.append("extensions.simulacra: must be an object")
        raw_sims = {}
    raw_sims = raw_sims or {}
    if problems:
        raise CharacterError(problems)
    try:
        sims = Simulacra(**{k: v for k, v in raw_sims.items() if k in SIMS_FIELDS})
        character = Character(
            **values, extensions=extensions, sims=sims,
            unknown_data={k: v for k, v in data.items() if k not in known},
            unknown_card=unknown_card,
            unknown_sims={k: v for k, v in raw_sims.items() if k not in SIMS_FIELDS},
            had_sims=had_sims,
        )
    except TypeError as err:
        raise CardError(f"unexpected card layout: {err}") from None
    # Cards from other apps need not use our catalogue, only sane types and sizes.
    return validate(character, strict_catalogue=False)


# ---- writing ------------------------------------------------------------------------------

def _data(character: Character, names: tuple[str, ...]) -> dict:
    data = {}
    for name in names:
        if name == "extensions":
            extensions = dict(character.extensions)
            if character.had_sims or not character.sims.is_empty() or character.unknown_sims:
                sims = {f: getattr(character.sims, f) for f in SIMS_FIELDS}
                extensions["simulacra"] = {**sims, **character.unknown_sims}
            data["extensions"] = extensions
        else:
            data[name] = getattr(character, name)
    data.update(character.unknown_data)
    return data


def to_v2(character: Character) -> dict:
    data = _data(character, V2_FIELDS)
    # V3-only fields that carry something survive a trip through V2 as extra data fields.
    for name in V3_FIELDS[len(V2_FIELDS):]:
        value = getattr(character, name)
        if value not in ("", [], None):
            data[name] = value
    return {**character.unknown_card, "spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def to_v3(character: Character) -> dict:
    data = _data(character, V3_FIELDS)
    data["creation_date"] = character.creation_date if character.creation_date is not None else int(time.time())
    data["modification_date"] = int(time.time()) if character.modification_date is None else character.modification_date
    data.setdefault("assets", None)
    if data["assets"] is None:
        data["assets"] = [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]
    if data["source"] is None:
        data.pop("source")
    return {**character.unknown_card, "spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def card_json(card: dict) -> bytes:
    return (json.dumps(card, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _b64(card: dict) -> str:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii")


def placeholder_avatar(name: str, size: int = 400) -> Image.Image:
    """A plain portrait card: the initials on a colour drawn from the name."""
    from PIL import ImageDraw, ImageFont

    hue = sum(map(ord, name)) % 360
    colour = tuple(int(c) for c in _hsv(hue, 0.45, 0.75))
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    initials = "".join(word[0] for word in name.split()[:2]).upper() or "?"
    try:
        font = ImageFont.load_default(size=size // 3)
    except TypeError:
        font = ImageFont.load_default()
    draw.text((size / 2, size / 2), initials, fill=(255, 255, 255), font=font, anchor="mm")
    return image


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys

    return tuple(255 * c for c in colorsys.hsv_to_rgb(h / 360, s, v))


def to_png(character: Character, avatar: bytes | None = None) -> bytes:
    """A PNG card with both chunks (``chara`` V2 and ``ccv3`` V3) on the avatar or a placeholder."""
    image = None
    if avatar:
        try:
            image = Image.open(io.BytesIO(avatar))
            image.load()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            image = None
    if image is None:
        image = placeholder_avatar(character.name)
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", _b64(to_v2(character)))
    info.add_text("ccv3", _b64(to_v3(character)))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)  # Pillow drops the old text chunks: only ours remain
    return out.getvalue()


def export(character: Character, fmt: str, avatar: bytes | None = None) -> bytes:
    if fmt == "v2":
        return card_json(to_v2(character))
    if fmt == "v3":
        return card_json(to_v3(character))
    if fmt == "png":
        return to_png(character, avatar)
    raise ValueError(f"format must be v2, v3 or png, not {fmt!r}")
