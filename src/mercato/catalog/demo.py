"""A believable demo catalog: a category tree, brands, and products with variants.

Everything is derived from ``random.Random(seed)`` (ids and timestamps included), so the same
seed always builds the same shop. Prices are chosen as euro figures and stored as the like round
figures of the shop's currency (:func:`mercato.money.local_figure`: 19.99 EUR is 19.99 GBP,
¥1999, 199.90 SEK), so a shop in any currency gets sensible prices. Rows go in with Core
``insert()`` executemany in batches, one transaction per batch, and one ``ProductCreated``
outbox event per product.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from mercato import events
from mercato.catalog.common import slugify
from mercato.catalog.models import Brand, Category, Product, Variant
from mercato.db import Database, UnitOfWork
from mercato.money import local_figure

BATCH = 2000
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SPREAD = timedelta(days=365)


@dataclass(frozen=True)
class Leaf:
    """A leaf category and how its products look."""

    name: str
    noun: str  # what one product is called in a title: "Kettle"
    price: tuple[int, int]  # whole euros, low and high (scaled to the shop's currency)
    weight: tuple[int, int]  # grams
    attributes: dict[str, Sequence[str]]
    options: dict[str, Sequence[str]]
    adjectives: Sequence[str] = ()
    book: bool = False  # books get invented titles; the "brand" is the publisher

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class Node:
    name: str
    children: Sequence[Node | Leaf] = field(default_factory=tuple)

    @property
    def slug(self) -> str:
        return slugify(self.name)


COLOURS = ("black", "white", "grey", "navy", "red", "green", "beige", "blue")
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = ("38", "39", "40", "41", "42", "43", "44", "45", "46")


def _clothes(name: str, noun: str, price: tuple[int, int], materials: Sequence[str]) -> Leaf:
    return Leaf(
        name,
        noun,
        price,
        (150, 900),
        {"material": materials, "fit": ("regular", "slim", "relaxed")},
        {"size": SIZES, "colour": COLOURS},
        ("Everyday", "Essential", "Heritage", "Urban", "Organic"),
    )


def _shoes(name: str, noun: str, price: tuple[int, int]) -> Leaf:
    return Leaf(
        name,
        noun,
        price,
        (500, 1400),
        {"material": ("leather", "suede", "mesh", "canvas"), "gender": ("women", "men", "unisex")},
        {"size": SHOE_SIZES, "colour": COLOURS[:6]},
        ("Runner", "Court", "Street", "Trail", "Classic", "Cloud"),
    )


def _books(name: str, noun: str, themes: Sequence[str]) -> Leaf:
    return Leaf(
        name,
        noun,
        (9, 39),
        (200, 1100),
        {
            "theme": themes,
            "language": ("English", "German", "French"),
            "pages": ("180", "320", "450", "640"),
        },
        {"format": ("Paperback", "Hardcover", "E-book", "Audiobook")},
        book=True,
    )


# fmt: off
TREE: tuple[Node, ...] = (
    Node("Electronics", (
        Node("Audio", (
            Leaf("Headphones", "Headphones", (39, 399), (180, 400),
                 {"connectivity": ("Bluetooth", "wired", "USB-C"),
                  "noise_cancelling": ("yes", "no")},
                 {"colour": COLOURS[:4]}, ("Wireless", "Studio", "Over-ear", "Quiet")),
            Leaf("Earbuds", "Earbuds", (19, 249), (40, 90),
                 {"connectivity": ("Bluetooth", "Bluetooth LE"),
                  "battery_hours": ("6", "8", "10", "12")},
                 {"colour": COLOURS[:4]}, ("True Wireless", "Sport", "Mini")),
            Leaf("Speakers", "Speaker", (29, 499), (300, 3500),
                 {"connectivity": ("Bluetooth", "Wi-Fi", "AirPlay"),
                  "waterproof": ("IPX4", "IPX7", "none")},
                 {"colour": COLOURS[:5]}, ("Portable", "Smart", "Outdoor", "Bookshelf")),
            Leaf("Soundbars", "Soundbar", (99, 899), (2000, 6000),
                 {"channels": ("2.0", "2.1", "3.1", "5.1")},
                 {"colour": ("black", "white")}, ("Cinema", "Slim", "Dolby")),
        )),
        Node("Computers", (
            Leaf("Laptops", "Laptop", (399, 2499), (1000, 2500),
                 {"screen_inches": ("13", "14", "15.6", "16"),
                  "processor": ("4-core", "8-core", "12-core")},
                 {"memory": ("8 GB", "16 GB", "32 GB"), "storage": ("256 GB", "512 GB", "1 TB")},
                 ("Ultrabook", "Creator", "Business", "Gaming")),
            Leaf("Monitors", "Monitor", (119, 999), (3000, 8000),
                 {"screen_inches": ("24", "27", "32", "34"),
                  "resolution": ("1080p", "1440p", "4K")},
                 {"stand": ("standard", "height-adjustable")}, ("UltraSharp", "Curved", "Pro")),
            Leaf("Keyboards", "Keyboard", (19, 199), (400, 1200),
                 {"switches": ("linear", "tactile", "membrane"),
                  "connectivity": ("wired", "wireless")},
                 {"layout": ("US", "UK", "DE", "FR"), "colour": ("black", "white")},
                 ("Mechanical", "Compact", "Silent")),
            Leaf("Mice", "Mouse", (9, 129), (60, 150),
                 {"dpi": ("1600", "4000", "16000"), "connectivity": ("wired", "wireless")},
                 {"colour": COLOURS[:3]}, ("Ergonomic", "Travel", "Precision")),
        )),
        Node("Phones & Tablets", (
            Leaf("Smartphones", "Smartphone", (149, 1299), (150, 240),
                 {"screen_inches": ("6.1", "6.4", "6.7"), "network": ("4G", "5G")},
                 {"storage": ("128 GB", "256 GB", "512 GB"), "colour": COLOURS[:4]},
                 ("Lite", "Plus", "Max", "Edge")),
            Leaf("Tablets", "Tablet", (129, 999), (300, 700),
                 {"screen_inches": ("8", "10.9", "12.9")},
                 {"storage": ("64 GB", "128 GB", "256 GB"), "network": ("Wi-Fi", "Wi-Fi + 5G")},
                 ("Air", "Pro", "Kids")),
            Leaf("Phone cases", "Phone case", (9, 49), (30, 80),
                 {"material": ("silicone", "leather", "recycled plastic")},
                 {"colour": COLOURS}, ("Slim", "Rugged", "Clear")),
            Leaf("Chargers", "Charger", (12, 79), (80, 300),
                 {"wattage": ("20", "30", "65", "100"), "ports": ("1", "2", "3")},
                 {"plug": ("EU", "UK", "US")}, ("Fast", "Travel", "GaN")),
        )),
        Node("Cameras", (
            Leaf("Digital cameras", "Camera", (299, 2999), (400, 1200),
                 {"sensor": ("APS-C", "full-frame", "1-inch"), "megapixels": ("24", "33", "45")},
                 {"kit": ("body only", "with 18-55 mm lens")}, ("Mirrorless", "Compact")),
            Leaf("Action cameras", "Action camera", (79, 499), (100, 200),
                 {"resolution": ("4K", "5.3K"), "waterproof_m": ("10", "30")},
                 {"bundle": ("standard", "creator kit")}, ("Adventure", "Mini", "360")),
        )),
    )),
    Node("Home & Kitchen", (
        Node("Kitchen appliances", (
            Leaf("Kettles", "Kettle", (19, 149), (800, 1600),
                 {"wattage": ("1800", "2200", "3000"), "capacity_l": ("1.0", "1.5", "1.7"),
                  "material": ("stainless steel", "glass", "plastic")},
                 {"colour": COLOURS[:5]}, ("Classic", "Rapid", "Quiet Boil", "Temperature")),
            Leaf("Toasters", "Toaster", (19, 129), (1200, 2500),
                 {"slots": ("2", "4"), "wattage": ("800", "1000", "1600")},
                 {"colour": COLOURS[:5]}, ("Retro", "Long-slot", "Compact")),
            Leaf("Coffee machines", "Coffee machine", (59, 1199), (2500, 9000),
                 {"type": ("espresso", "filter", "bean-to-cup", "capsule"),
                  "pressure_bar": ("9", "15", "19")},
                 {"colour": ("black", "silver", "white")}, ("Barista", "Café", "Morning")),
            Leaf("Blenders", "Blender", (29, 399), (1500, 4500),
                 {"wattage": ("600", "1000", "1500"), "jug_l": ("1.2", "1.5", "2.0")},
                 {"colour": ("black", "silver", "red")}, ("Power", "Smoothie", "Personal")),
        )),
        Node("Cookware", (
            Leaf("Frying pans", "Frying pan", (15, 149), (700, 2200),
                 {"material": ("cast iron", "carbon steel", "non-stick", "stainless steel"),
                  "induction": ("yes", "no")},
                 {"diameter": ("20 cm", "24 cm", "28 cm", "32 cm")}, ("Chef's", "Everyday")),
            Leaf("Saucepans", "Saucepan", (19, 129), (800, 2000),
                 {"material": ("stainless steel", "copper", "enamelled")},
                 {"capacity": ("1.5 L", "2 L", "3 L")}, ("Professional", "Heritage")),
            Leaf("Knives", "Knife", (12, 249), (100, 400),
                 {"steel": ("German", "Japanese VG-10", "Damascus")},
                 {"blade": ("10 cm", "15 cm", "20 cm")}, ("Chef", "Santoku", "Paring")),
        )),
        Node("Furniture", (
            Leaf("Desk chairs", "Desk chair", (79, 899), (9000, 20000),
                 {"material": ("mesh", "fabric", "leather"), "max_load_kg": ("110", "130", "150")},
                 {"colour": ("black", "grey", "blue")}, ("Ergonomic", "Executive", "Task")),
            Leaf("Bookshelves", "Bookshelf", (49, 499), (10000, 40000),
                 {"material": ("oak", "walnut", "pine", "white laminate"),
                  "shelves": ("3", "4", "5")},
                 {"finish": ("natural", "white", "black")}, ("Modular", "Ladder", "Tall")),
            Leaf("Lamps", "Lamp", (19, 299), (500, 4000),
                 {"bulb": ("LED E27", "LED GU10", "integrated LED"), "dimmable": ("yes", "no")},
                 {"colour": ("black", "white", "brass")}, ("Desk", "Floor", "Arc")),
        )),
        Node("Bedding", (
            Leaf("Duvets", "Duvet", (39, 299), (1500, 3500),
                 {"filling": ("down", "feather", "hollowfibre"), "tog": ("4.5", "10.5", "13.5")},
                 {"size": ("single", "double", "king", "super king")}, ("All-season", "Cosy")),
            Leaf("Pillows", "Pillow", (12, 89), (500, 1200),
                 {"filling": ("memory foam", "down", "microfibre"),
                  "firmness": ("soft", "medium", "firm")},
                 {"pack": ("single", "pair")}, ("Hotel", "Support", "Cooling")),
        )),
    )),
    Node("Fashion", (
        Node("Shoes", (
            _shoes("Sneakers", "Sneakers", (49, 189)),
            _shoes("Trainers", "Trainers", (59, 219)),
            _shoes("Boots", "Boots", (79, 329)),
            _shoes("Sandals", "Sandals", (25, 119)),
        )),
        Node("Clothing", (
            _clothes("T-shirts", "T-shirt", (9, 49), ("cotton", "organic cotton", "linen")),
            _clothes("Hoodies", "Hoodie", (29, 119), ("cotton", "fleece", "recycled polyester")),
            _clothes("Jeans", "Jeans", (39, 179), ("denim", "stretch denim", "selvedge denim")),
            _clothes("Jackets", "Jacket", (59, 399), ("nylon", "wool", "waxed cotton")),
        )),
        Node("Accessories", (
            Leaf("Backpacks", "Backpack", (29, 249), (500, 1500),
                 {"volume_l": ("15", "20", "28", "35"), "laptop_sleeve": ("yes", "no")},
                 {"colour": COLOURS[:5]}, ("Commuter", "Roll-top", "Daypack", "Travel")),
            Leaf("Watches", "Watch", (49, 899), (40, 150),
                 {"movement": ("quartz", "automatic", "solar"), "water_resistance": ("5 ATM",
                  "10 ATM")},
                 {"strap": ("leather", "steel", "nylon")}, ("Field", "Diver", "Minimal")),
            Leaf("Sunglasses", "Sunglasses", (19, 249), (25, 60),
                 {"lens": ("polarised", "gradient", "mirrored"), "uv": ("UV400",)},
                 {"frame": ("black", "tortoise", "gold")}, ("Aviator", "Round", "Wayfarer")),
        )),
    )),
    Node("Sports & Outdoors", (
        Node("Fitness", (
            Leaf("Yoga mats", "Yoga mat", (15, 99), (900, 2500),
                 {"thickness_mm": ("3", "4", "6", "8"), "material": ("TPE", "natural rubber",
                  "cork")},
                 {"colour": COLOURS[:6]}, ("Grip", "Travel", "Eco")),
            Leaf("Dumbbells", "Dumbbell set", (19, 299), (2000, 40000),
                 {"type": ("fixed", "adjustable"), "coating": ("rubber", "neoprene", "chrome")},
                 {"weight": ("2 x 5 kg", "2 x 10 kg", "2 x 20 kg")}, ("Home Gym", "Pro")),
        )),
        Node("Cycling", (
            Leaf("Bike helmets", "Bike helmet", (29, 249), (250, 450),
                 {"mips": ("yes", "no"), "use": ("road", "mountain", "city")},
                 {"size": ("S", "M", "L"), "colour": COLOURS[:4]}, ("Aero", "Trail", "Urban")),
            Leaf("Bike lights", "Bike light set", (9, 119), (80, 300),
                 {"lumens": ("100", "400", "1200"), "charging": ("USB-C", "batteries")},
                 {"set": ("front", "front + rear")}, ("Commuter", "Night Ride")),
        )),
        Node("Camping", (
            Leaf("Tents", "Tent", (49, 699), (1200, 6000),
                 {"persons": ("1", "2", "3", "4"), "seasons": ("3-season", "4-season")},
                 {"colour": ("green", "orange", "grey")}, ("Ultralight", "Family", "Trekking")),
            Leaf("Sleeping bags", "Sleeping bag", (29, 399), (700, 2200),
                 {"comfort_c": ("-5", "0", "5", "10"), "filling": ("down", "synthetic")},
                 {"length": ("regular", "long"), "zip": ("left", "right")}, ("Summit", "Camp")),
        )),
    )),
    Node("Books", (
        Node("Fiction", (
            _books("Crime novels", "Mystery", ("Nordic noir", "cosy crime", "police procedural")),
            _books("Science fiction", "Saga", ("space opera", "cyberpunk", "first contact")),
            _books("Fantasy", "Chronicle", ("epic", "urban fantasy", "fairy tale retelling")),
        )),
        Node("Non-fiction", (
            _books("Cookbooks", "Cookbook", ("baking", "vegetarian", "Mediterranean")),
            _books("Biographies", "Biography", ("science", "music", "sport")),
        )),
    )),
    Node("Toys & Games", (
        Node("Building toys", (
            Leaf("Building sets", "Building set", (9, 199), (200, 3000),
                 {"pieces": ("150", "500", "1200", "3000"), "age": ("6+", "9+", "12+", "18+")},
                 {"theme": ("city", "space", "castle")}, ("Creator", "Expert", "Junior")),
        )),
        Node("Games", (
            Leaf("Strategy games", "Strategy game", (19, 89), (800, 2500),
                 {"players": ("1-4", "2-4", "2-6"), "playing_time": ("30 min", "60 min",
                  "120 min")},
                 {"edition": ("standard", "deluxe")}, ("Empire", "Frontier", "Dynasty")),
            Leaf("Family games", "Family game", (9, 49), (400, 1200),
                 {"players": ("2-6", "3-8"), "age": ("6+", "8+", "10+")},
                 {"language": ("English", "German", "French")}, ("Party", "Quick", "Classic")),
            Leaf("Jigsaw puzzles", "Jigsaw puzzle", (9, 39), (400, 1100),
                 {"pieces": ("500", "1000", "1500", "2000")},
                 {"motif": ("landscape", "map", "art", "animals")}, ("Panoramic", "Gallery")),
        )),
    )),
    Node("Beauty", (
        Node("Skincare", (
            Leaf("Moisturisers", "Moisturiser", (7, 89), (60, 250),
                 {"skin_type": ("dry", "oily", "combination", "sensitive"), "spf": ("0", "15",
                  "30")},
                 {"size": ("30 ml", "50 ml", "100 ml")}, ("Hydrating", "Daily", "Night")),
            Leaf("Cleansers", "Cleanser", (5, 49), (120, 400),
                 {"skin_type": ("dry", "oily", "combination", "sensitive")},
                 {"size": ("100 ml", "200 ml", "400 ml")}, ("Gentle", "Foaming", "Balm")),
        )),
        Node("Hair care", (
            Leaf("Shampoos", "Shampoo", (4, 39), (250, 1100),
                 {"hair_type": ("normal", "dry", "curly", "coloured")},
                 {"size": ("250 ml", "500 ml", "1 L")}, ("Repair", "Volume", "Clarifying")),
            Leaf("Hair dryers", "Hair dryer", (19, 399), (400, 900),
                 {"wattage": ("1200", "1800", "2200"), "ionic": ("yes", "no")},
                 {"colour": ("black", "white", "rose")}, ("Salon", "Travel", "Supersonic")),
        )),
    )),
)

BRANDS = (
    "Acme", "Nordhaven", "Brightwell", "Kestrel", "Larkspur", "Oakridge", "Solenne", "Vantor",
    "Halcyon", "Ferrovia", "Marlow & Finch", "Tidewater", "Corvel", "Ashgrove", "Bellhaven",
    "Quillon", "Redfern", "Stonebridge", "Valdor", "Westmark", "Zephyrine", "Alder & Co",
    "Bramblewood", "Cobalt Works", "Driftline", "Emberly", "Fjordic", "Glenmoor", "Highpeak",
    "Ironvale", "Juniper Lane", "Kinsale", "Lumio", "Mossgrove", "Northcraft", "Orchard Row",
    "Pinecrest", "Quartzline", "Riverstone", "Saltmarsh", "Thistledown", "Upland", "Veloce",
    "Willowby", "Yarrow", "Zenno", "Aurora Labs", "Brisk", "Calder", "Dune & Dusk", "Evergale",
    "Foxglove", "Greyhound Gear", "Hearthstone", "Isla Verde", "Jetstream", "Kobalt",
    "Lindqvist", "Meridian", "Novalis",
)

ADJECTIVES = ("Classic", "Pro", "Essential", "Signature", "Smart", "Premium", "Compact", "Eco")
SERIES = ("", "", "", " II", " 2", " X", " S", " Plus", " Air", " One")
CENTS = (99, 99, 99, 95, 49, 50, 0, 89, 29)

OPENINGS = (
    "The {title} is {adj} and built for everyday use.",
    "Meet the {title}: {adj} through and through.",
    "Designed to be {adj}, the {title} simply works.",
    "Clean lines and {adj} construction make the {title} easy to live with.",
)
BOOK_OPENINGS = (
    "{title} is a {theme} story that readers call {adj}.",
    "In {title}, a {adj} {theme} tale unfolds over {pages} pages.",
    "{brand} presents {title}, a {adj} work of {theme}.",
)
CLOSINGS = (
    "Backed by a two-year warranty.",
    "Ships in recyclable packaging.",
    "Free returns within 30 days.",
    "Designed in Europe and built to last.",
    "Rated highly by reviewers for value.",
)
BOOK_CLOSINGS = (
    "A favourite of book clubs this season.",
    "Includes a new afterword by the author.",
    "Shortlisted for several prizes.",
)
DESCRIPTIVE = ("well made", "reliable", "thoughtful", "versatile", "durable", "comfortable")
BOOK_WORDS = (
    ("Silent", "Hidden", "Last", "Northern", "Winter", "Golden", "Broken", "Distant", "Quiet",
     "Burning", "Salt", "Glass", "Paper", "Lantern", "Iron", "Summer"),
    ("Harbour", "Orchard", "Signal", "Empire", "Garden", "Voyage", "Kitchen", "Letters", "Tide",
     "Archive", "Valley", "Station", "Crown", "Table", "Lighthouse", "Season"),
)
UNITS = {"_inches": '"', "_l": " L", "_m": " m", "_mm": " mm", "_kg": " kg", "_c": " °C",
         "_hours": " h", "_bar": " bar", "wattage": " W", "lumens": " lm"}
# fmt: on


# --------------------------------------------------------------------------------------------
# Deterministic ids (the same shape as mercato.ids.new_id, drawn from the seeded generator)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _seeded_id(prefix: str, when: datetime, rng: random.Random) -> str:
    millis = _base32(int(when.timestamp() * 1000), 10)
    # 80 random bits are exactly 16 base32 digits; the C encoder is much faster than a loop.
    rand = base64.b32encode(rng.getrandbits(80).to_bytes(10, "big")).decode()
    return f"{prefix}_{millis}{rand.translate(_FROM_RFC4648)}"


# --------------------------------------------------------------------------------------------
# Generation (pure: no database)


@dataclass(frozen=True)
class CategoryRow:
    id: str
    parent_id: str | None
    name: str
    slug: str
    path: str
    depth: int
    position: int
    leaf: Leaf | None


def category_rows(rng: random.Random) -> list[CategoryRow]:
    """The fixed tree, depth first, with seeded ids."""
    rows: list[CategoryRow] = []

    def walk(node: Node | Leaf, parent: CategoryRow | None, position: int) -> None:
        path = f"{parent.path}/{node.slug}" if parent else node.slug
        row = CategoryRow(
            id=_seeded_id("cat", EPOCH, rng),
            parent_id=parent.id if parent else None,
            name=node.name,
            slug=node.slug,
            path=path,
            depth=parent.depth + 1 if parent else 0,
            position=position,
            leaf=node if isinstance(node, Leaf) else None,
        )
        rows.append(row)
        if isinstance(node, Node):
            for i, child in enumerate(node.children):
                walk(child, row, i)

    for i, root in enumerate(TREE):
        walk(root, None, i)
    slugs = [r.slug for r in rows]
    assert len(slugs) == len(set(slugs)), "demo category slugs must be unique"
    return rows


def brand_rows(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": _seeded_id("brd", EPOCH, rng),
            "name": name,
            "slug": slugify(name),
            "created_at": EPOCH,
        }
        for name in BRANDS
    ]


def _brands_for_departments(brands: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each brand serves two departments, so a brand's range looks coherent."""
    per: list[list[dict[str, Any]]] = [[] for _ in TREE]
    for i, brand in enumerate(brands):
        per[i % len(TREE)].append(brand)
        per[(i * 3 + 1) % len(TREE)].append(brand)
    return per


def _code(text: str, length: int = 3) -> str:
    letters = "".join(ch for ch in text.upper() if ch.isalpha())
    return (letters + "XXX")[:length]


def _price(rng: random.Random, low: int, high: int) -> int:
    # Prices cluster towards the low end of a range, as they do in real shops.
    euros = int(low + (high - low) * rng.random() ** 2)
    return euros * 100 + rng.choice(CENTS)


def _variant_options(rng: random.Random, leaf: Leaf, count: int) -> list[dict[str, str]]:
    axes = list(leaf.options.items())
    if rng.random() < 0.5 and len(axes) > 1:
        axes = axes[:1]  # plenty of products only vary along one axis
    combos = list(itertools.product(*(values for _, values in axes)))
    chosen = sorted(rng.sample(range(len(combos)), min(count, len(combos))))
    return [{name: combos[c][i] for i, (name, _) in enumerate(axes)} for c in chosen]


def _fact(name: str, value: str) -> str:
    """``("capacity_l", "1.7")`` → ``"capacity 1.7 L"``."""
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            label = name[: -len(suffix)] if suffix.startswith("_") else name
            return f"{label.replace('_', ' ')} {value}{unit}"
    return f"{name.replace('_', ' ')} {value}"


def _description(
    rng: random.Random, title: str, brand: str, leaf: Leaf, attributes: dict[str, str]
) -> str:
    adj = rng.choice(DESCRIPTIVE)
    if leaf.book:
        opening = rng.choice(BOOK_OPENINGS).format(title=title, adj=adj, brand=brand, **attributes)
        return f"{opening} {rng.choice(BOOK_CLOSINGS)}"
    parts = [rng.choice(OPENINGS).format(title=title, adj=adj, brand=brand)]
    facts = [_fact(name, value) for name, value in attributes.items()]
    parts.append("Key facts: " + ", ".join(facts) + ".")
    parts.append(rng.choice(CLOSINGS))
    return " ".join(parts)


@dataclass
class Batch:
    products: list[dict[str, Any]] = field(default_factory=list)
    variants: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


class ShopGenerator:
    """The seeded shop: its categories and brands, and its products one by one."""

    def __init__(self, products: int, seed: int, *, currency: str) -> None:
        self.rng = random.Random(seed)
        self.products = products
        self.currency = currency
        self.categories = category_rows(self.rng)
        self.brands = brand_rows(self.rng)
        roots = {c.id: i for i, c in enumerate(c for c in self.categories if c.depth == 0)}
        by_id = {c.id: c for c in self.categories}

        def department(c: CategoryRow) -> int:
            while c.parent_id is not None:
                c = by_id[c.parent_id]
            return roots[c.id]

        self.leaves = [(c, department(c)) for c in self.categories if c.leaf is not None]
        self.brand_pool = _brands_for_departments(self.brands)
        self.step = SPREAD / max(products, 1)

    def batches(self, size: int = BATCH) -> Iterator[Batch]:
        batch = Batch()
        for index in range(self.products):
            self._product(index, batch)
            if len(batch.products) >= size:
                yield batch
                batch = Batch()
        if batch.products:
            yield batch

    def _title(self, brand: str, leaf: Leaf) -> str:
        rng = self.rng
        if leaf.book:
            return f"The {rng.choice(BOOK_WORDS[0])} {rng.choice(BOOK_WORDS[1])}"
        pool = leaf.adjectives if leaf.adjectives and rng.random() < 0.8 else ADJECTIVES
        return f"{brand} {rng.choice(pool)} {leaf.noun}{rng.choice(SERIES)}"

    def _product(self, index: int, batch: Batch) -> None:
        rng = self.rng
        category, dept = rng.choice(self.leaves)
        leaf = category.leaf
        assert leaf is not None
        brand = rng.choice(self.brand_pool[dept])
        title = self._title(brand["name"], leaf)
        attributes = {name: rng.choice(values) for name, values in leaf.attributes.items()}
        created = EPOCH + self.step * index + timedelta(seconds=rng.randrange(60))
        product_id = _seeded_id("prd", created, rng)
        count = rng.choices((1, 2, 3, 4, 5, 6), weights=(30, 20, 20, 12, 10, 8))[0]
        base = _price(rng, *leaf.price)
        markup = rng.choice((115, 120, 125, 150)) if rng.random() < 0.2 else None
        sku_stem = f"{_code(brand['slug'])}-{_code(leaf.slug)}-{index + 1:06d}"
        variants: list[dict[str, Any]] = []
        for position, options in enumerate(_variant_options(rng, leaf, count)):
            # In euro cents until stored: the same draws whatever the currency.
            price = base + position * rng.choice((0, 0, 100, 200, 500))
            # A crossed-out "was" price ending in .99, some 15-50 % above the price.
            was = (price * markup // 10000) * 100 + 99 if markup else None
            variants.append(
                {
                    "id": _seeded_id("var", created, rng),
                    "product_id": product_id,
                    "sku": f"{sku_stem}-{position + 1}",
                    "title": " / ".join(options.values()),
                    "options": options,
                    "price": local_figure(price, self.currency),
                    "compare_at": None if was is None else local_figure(was, self.currency),
                    "currency": self.currency,
                    "weight_grams": rng.randint(*leaf.weight),
                    "active": True,
                    "position": position,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        prices = [v["price"] for v in variants]
        batch.variants.extend(variants)
        batch.products.append(
            {
                "id": product_id,
                "title": title,
                "slug": slugify(title, 220),
                "description": _description(rng, title, brand["name"], leaf, attributes),
                "brand_id": brand["id"],
                "category_id": category.id,
                "status": "active",
                "attributes": attributes,
                "media": [f"/static/img/{category.slug}.svg"],
                "tax_class": "reduced" if category.path.startswith("books/") else "standard",
                "currency": self.currency,
                "min_price": min(prices),
                "max_price": max(prices),
                "created_at": created,
                "updated_at": created,
            }
        )
        batch.events.append(
            (
                "ProductCreated",
                product_id,
                {
                    "product_id": product_id,
                    "title": title,
                    "status": "active",
                    "category_id": category.id,
                    "brand_id": brand["id"],
                    "variant_ids": [v["id"] for v in variants],
                },
            )
        )


# --------------------------------------------------------------------------------------------
# Seeding


async def seed_catalog(
    db: Database,
    products: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    *,
    currency: str,
) -> list[str]:
    """Fill an empty catalog with ``products`` generated products priced in ``currency`` (the
    shop's); returns every variant id.

    Categories and brands whose slug already exists are reused rather than duplicated.
    ``progress(n)`` is called after each committed batch of ``n`` products.
    """
    shop = ShopGenerator(products, seed, currency=currency)
    async with db.transaction() as uow:
        category_ids, brand_ids = await _seed_tree_and_brands(uow, shop)
    variant_ids: list[str] = []
    for batch in shop.batches():
        for row in batch.products:
            row["category_id"] = category_ids[row["category_id"]]
            row["brand_id"] = brand_ids[row["brand_id"]]
        for _, _, payload in batch.events:
            payload["category_id"] = category_ids[payload["category_id"]]
            payload["brand_id"] = brand_ids[payload["brand_id"]]
        async with db.transaction() as uow:
            await uow.execute(insert(Product.__table__), batch.products)  # type: ignore[arg-type]
            await uow.execute(insert(Variant.__table__), batch.variants)  # type: ignore[arg-type]
            await events.publish_many(uow, batch.events)
        variant_ids.extend(v["id"] for v in batch.variants)
        if progress is not None:
            progress(len(batch.products))
    return variant_ids


async def _seed_tree_and_brands(
    uow: UnitOfWork, shop: ShopGenerator
) -> tuple[dict[str, str], dict[str, str]]:
    """Insert the categories and brands not there yet; map generated ids to the stored ones."""
    have_categories = dict((await uow.execute(select(Category.slug, Category.id))).all())
    have_brands = dict((await uow.execute(select(Brand.slug, Brand.id))).all())
    category_ids = {c.id: have_categories.get(c.slug, c.id) for c in shop.categories}
    brand_ids = {b["id"]: have_brands.get(b["slug"], b["id"]) for b in shop.brands}
    new_categories: list[dict[str, Any]] = [
        {
            "id": c.id,
            "parent_id": category_ids[c.parent_id] if c.parent_id else None,
            "name": c.name,
            "slug": c.slug,
            "path": c.path,
            "depth": c.depth,
            "position": c.position,
            "created_at": EPOCH,
            "updated_at": EPOCH,
        }
        for c in shop.categories
        if c.slug not in have_categories
    ]
    new_brands = [b for b in shop.brands if b["slug"] not in have_brands]
    # Depth-first order puts parents before children, so one executemany satisfies the
    # self-referencing foreign key.
    if new_categories:
        await uow.execute(insert(Category.__table__), new_categories)  # type: ignore[arg-type]
    if new_brands:
        await uow.execute(insert(Brand.__table__), new_brands)  # type: ignore[arg-type]
    created: list[tuple[str, str, dict[str, Any]]] = [
        ("CategoryCreated", c["id"], {k: c[k] for k in ("slug", "path", "parent_id")})
        for c in new_categories
    ]
    created += [
        ("BrandCreated", b["id"], {"slug": b["slug"], "name": b["name"]}) for b in new_brands
    ]
    for _, ident, payload in created:
        payload["category_id" if ident.startswith("cat_") else "brand_id"] = ident
    await events.publish_many(uow, created)
    return category_ids, brand_ids
