"""Placeholder product pictures for the demo shop: the generated products point at
``/static/img/<category-slug>.svg``, which no file backs. This route draws one: the category's
name on a soft colour taken from a hash of the name, so every category looks different and the
same one always looks the same."""

from __future__ import annotations

import hashlib
import re
from xml.sax.saxutils import escape

from fastapi import APIRouter
from fastapi.responses import Response

from mercato.problems import not_found

router = APIRouter()

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
CACHE = "public, max-age=86400"
_QUOTE = {'"': "&quot;"}


def label_of(name: str) -> str:
    """``frying-pans`` → ``Frying pans``."""
    words = name.replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _lines(label: str, width: int = 14) -> list[str]:
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines[:3]


def placeholder_svg(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    accent = (hue + 35 + digest[2] % 50) % 360
    label = label_of(name)
    lines = _lines(label)
    first = 330 - (len(lines) - 1) * 28
    text = "".join(
        f'<tspan x="300" y="{first + i * 56}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    # Dark text on a pale background of the same hue: well above 4.5:1 contrast.
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 600 600" width="600" height="600"'
        f' role="img" aria-label="{escape(label, _QUOTE)}">'
        f'<rect width="600" height="600" fill="hsl({hue} 55% 92%)"/>'
        f'<circle cx="470" cy="130" r="150" fill="hsl({accent} 60% 84%)"/>'
        f'<circle cx="110" cy="520" r="120" fill="hsl({hue} 50% 86%)"/>'
        f'<rect x="210" y="150" width="180" height="110" rx="22" fill="hsl({hue} 35% 30%)"'
        ' opacity=".85"/>'
        f'<circle cx="300" cy="205" r="32" fill="hsl({hue} 55% 92%)"/>'
        f'<text font-family="system-ui, sans-serif" font-size="48" font-weight="600"'
        f' text-anchor="middle" fill="hsl({hue} 45% 20%)">{text}</text>'
        "</svg>"
    )


@router.get("/static/img/{name}.svg", include_in_schema=False)
async def placeholder(name: str) -> Response:
    if not NAME.fullmatch(name):
        raise not_found("Image", name)
    return Response(
        placeholder_svg(name),
        media_type="image/svg+xml",
        headers={"Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"},
    )
