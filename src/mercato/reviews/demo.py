"""What the demo's buyers write: a star rating drawn from the J-shaped distribution real shops
see (mostly fives, then fours, a bump of ones, few twos and threes), and for some of them a
title and a short text that matches the stars. A few carry a link, which the abuse filter
flags for staff. Everything comes from the caller's seeded ``random.Random``: the same seed,
the same reviews.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from mercato.reviews.writing import ReviewDraft

# Share of each star rating among reviews, 1 to 5 (the "J": online ratings pile up at 5, with a
# smaller pile at 1 from the disappointed, and little in between).
STAR_WEIGHTS: tuple[int, ...] = (9, 4, 7, 20, 60)

STAR_ONLY_SHARE = 0.45
"""Buyers who leave stars and nothing else (published at once when the shop auto-approves)."""

WITH_LINK_SHARE = 0.02
"""Written reviews with a link in them: the abuse filter holds these for staff."""

_TITLES: dict[int, tuple[str, ...]] = {
    1: ("Very disappointed", "Not as described", "Broke after a week", "Would not buy again"),
    2: ("Not great", "Below expectations", "Cheap feel", "Meh"),
    3: ("It's okay", "Does the job", "Average", "Fine for the price"),
    4: ("Good value", "Happy with it", "Nice, small flaws", "Solid choice"),
    5: ("Excellent", "Love it", "Exactly what I wanted", "Great quality", "Highly recommended"),
}

_BODIES: dict[int, tuple[str, ...]] = {
    1: (
        "It stopped working after a few days and the finish was scratched out of the box.",
        "The pictures promise much more than what arrived. Returned it.",
        "Poor quality for the money; the seams came apart on the first use.",
    ),
    2: (
        "Works, but it feels flimsy and the colour is duller than on the photos.",
        "Smaller than I expected and not very comfortable.",
    ),
    3: (
        "Does what it says. Nothing special, nothing wrong.",
        "Decent for everyday use, though the instructions could be clearer.",
        "Fair for the price; I expected a little more.",
    ),
    4: (
        "Good quality and quick delivery. One star off for the packaging.",
        "Very pleased overall; it fits well and looks good.",
        "Does the job nicely. I would buy it again.",
    ),
    5: (
        "Exactly as described, well made and arrived quickly. Very happy.",
        "Bought it as a gift and it was a hit. Great quality.",
        "I use it every day. Sturdy, looks great, worth every cent.",
        "Second one I've bought; still as good as the first.",
    ),
}


def demo_rating(rng: random.Random) -> int:
    """A star rating, 1 to 5, from :data:`STAR_WEIGHTS`."""
    return rng.choices(range(1, 6), weights=STAR_WEIGHTS)[0]


_WHEN = (
    "Arrived in {n} days.",
    "Had it for {n} weeks now.",
    "Ordered it {n} weeks ago.",
    "Using it for {n} weeks.",
    "Delivery took {n} days.",
)
_USES = (
    "",
    " Bought it for my partner.",
    " A present for my sister.",
    " For the office.",
    " Use it mostly at weekends.",
    " Got it for our holiday.",
    " Replaced an old one.",
    " For my daughter's room.",
)


def demo_review(
    rng: random.Random, rating: int, *, taken: Collection[str | None] = ()
) -> ReviewDraft:
    """A review of ``rating`` stars: star-only, or a title and a text that fit the stars. The
    text is made of a few sentences; one already in ``taken`` is drawn again (a few times),
    since the abuse filter holds a text repeated from another review for staff."""
    if rng.random() < STAR_ONLY_SHARE:
        return ReviewDraft(rating=rating)
    title = rng.choice(_TITLES[rating]) if rng.random() < 0.85 else None
    body = ""
    for _ in range(5):
        when = rng.choice(_WHEN).format(n=rng.randint(1, 12))
        body = f"{rng.choice(_BODIES[rating])} {when}{rng.choice(_USES)}"
        if body not in taken:
            break
    if rng.random() < WITH_LINK_SHARE:
        body += " More photos on https://example.com/my-unboxing"
    return ReviewDraft(rating=rating, title=title, body=body)
