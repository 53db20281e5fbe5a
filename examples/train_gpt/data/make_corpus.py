"""Rebuild ``corpus.txt``: original prose (``prose.txt``) plus generated plain English.

The corpus is written for this project, not downloaded: hand-written prose and sentences from a
small seeded grammar (village chronicle, weather notes, letters, recipes, short dialogues).
The output is deterministic, so re-running this script reproduces the shipped file byte for byte.

    python examples/train_gpt/data/make_corpus.py
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
TARGET_BYTES = 200_000

# fmt: off
PEOPLE = [
    "Mara", "Tomas", "Elena", "Mr Okafor", "the baker", "old Jonas", "Aunt Ilse", "the teacher",
    "Petra", "young Karl", "the harbour master", "Nina", "the doctor", "Luca", "Sofia", "Ada",
]
PLACES = [
    "the harbour", "the library", "the market square", "the old pier", "the bakery",
    "the hill above the town", "the school", "the lighthouse", "the boat yard", "the chapel",
    "the river mouth", "the post office", "the orchard", "the narrow lane by the church",
]
THINGS = [
    "a basket of apples", "a wooden box", "a letter", "a lantern", "a coil of rope",
    "a loaf of bread", "a map of the coast", "a jar of honey", "a small brass key", "a net",
    "a book about tides", "a red scarf", "a kettle", "a pair of oars", "a bundle of firewood",
]
VERBS_PAST = [
    "carried", "found", "mended", "painted", "lost", "borrowed", "returned", "cleaned",
    "wrapped", "counted", "hid", "sold", "bought", "repaired", "opened",
]
TIMES = [
    "early in the morning", "at noon", "in the afternoon", "just before sunset",
    "late in the evening", "on Monday", "on the first day of spring", "after the storm",
    "before breakfast", "when the tide was low", "while the bells were ringing",
]
FEELINGS = ["glad", "tired", "curious", "worried", "proud", "cold", "hungry", "surprised"]
WEATHER = ["clear", "grey", "windy", "wet", "calm", "foggy", "bright", "stormy", "mild"]
WINDS = ["north", "south", "east", "west", "north-west", "south-east"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
INGREDIENTS = [
    "flour", "butter", "salt", "honey", "apples", "onions", "fish", "potatoes", "milk",
    "eggs", "barley", "cabbage", "herbs", "pepper",
]
# fmt: on


def cap(text: str) -> str:
    """Upper-case the first letter only (``str.capitalize`` would lower-case "Karl")."""
    return text[:1].upper() + text[1:]


def chronicle(rng: random.Random) -> str:
    who, other = rng.sample(PEOPLE, 2)
    sentences = [
        f"{cap(rng.choice(TIMES))}, {who} {rng.choice(VERBS_PAST)} "
        f"{rng.choice(THINGS)} at {rng.choice(PLACES)}.",
        f"{cap(other)} saw it and was {rng.choice(FEELINGS)}.",
        f"They walked together to {rng.choice(PLACES)} and talked about the "
        f"{rng.choice(['weather', 'boats', 'market', 'lighthouse', 'harvest', 'school'])}.",
        f"By {rng.choice(['evening', 'night', 'supper time', 'the next morning'])}, "
        f"{rng.choice(THINGS)} had been {rng.choice(VERBS_PAST)} as well.",
    ]
    middle = sentences[1:3]
    rng.shuffle(middle)
    return " ".join([sentences[0], *middle, sentences[3]][: rng.randint(2, 4)])


def weather(rng: random.Random) -> str:
    day, month = rng.randint(1, 28), rng.choice(MONTHS)
    low = rng.randint(-5, 15)
    return (
        f"Weather for {day} {month}: {rng.choice(WEATHER)} skies, wind from the "
        f"{rng.choice(WINDS)} at {rng.randint(2, 40)} knots, temperature between {low} and "
        f"{low + rng.randint(2, 10)} degrees. The sea will be {rng.choice(WEATHER)}, and "
        f"boats should {rng.choice(['stay in the harbour', 'go out with care', 'fish as usual'])}."
    )


def letter(rng: random.Random) -> str:
    sender, reader = rng.sample([p for p in PEOPLE if p[0].isupper()], 2)  # "Dear Nina", not "the"
    return (
        f"Dear {reader},\n"
        + textwrap.fill(
            f"Thank you for {rng.choice(THINGS)}. I was very {rng.choice(FEELINGS)} when it "
            f"arrived. Here the days are {rng.choice(WEATHER)} and the evenings are long. I "
            f"often walk to {rng.choice(PLACES)} and think of you. Please write again soon.",
            width=96,
        )
        + f"\nYours, {sender}"
    )


def recipe(rng: random.Random) -> str:
    items = rng.sample(INGREDIENTS, rng.randint(3, 5))
    steps = ", then ".join(
        f"{rng.choice(['add', 'stir in', 'chop', 'warm', 'mix'])} the {item}" for item in items
    )
    return (
        f"To make {rng.choice(['a simple soup', 'a harbour pie', 'a winter stew', 'a cake'])}, "
        f"take {', '.join(items[:-1])} and {items[-1]}. First {steps}. Cook it for "
        f"{rng.randint(10, 90)} minutes and serve it {rng.choice(['hot', 'warm', 'cold'])}."
    )


def dialogue(rng: random.Random) -> str:
    a, b = rng.sample(PEOPLE, 2)
    thing, place = rng.choice(THINGS), rng.choice(PLACES)
    return (
        f'"Have you seen {thing}?" asked {a}.\n'
        f'"I think it is at {place}," said {b}. "I saw it {rng.choice(TIMES)}."\n'
        f'"Then I will go and look," said {a}, and went.'
    )


def counting(rng: random.Random) -> str:
    start = rng.randint(1, 80)
    numbers = " ".join(str(n) for n in range(start, start + rng.randint(5, 12)))
    return f"{cap(rng.choice(PEOPLE))} counted the steps aloud: {numbers}."


KINDS: list[tuple[Callable[[random.Random], str], int]] = [
    (chronicle, 5),
    (weather, 2),
    (letter, 1),
    (recipe, 1),
    (dialogue, 2),
    (counting, 1),
]


def generate(seed: int = 7, target: int = TARGET_BYTES) -> str:
    """The generated part of the corpus, about ``target`` bytes of paragraphs."""
    rng = random.Random(seed)
    makers = [maker for maker, weight in KINDS for _ in range(weight)]
    paragraphs: list[str] = []
    size = 0
    while size < target:
        text = rng.choice(makers)(rng)
        if "\n" not in text:
            text = textwrap.fill(text, width=96)
        paragraphs.append(text)
        size += len(text) + 2
    return "\n\n".join(paragraphs) + "\n"


def main() -> None:
    prose = (HERE / "prose.txt").read_text(encoding="utf-8")
    corpus = prose + "\n" + generate(target=TARGET_BYTES - len(prose))
    (HERE / "corpus.txt").write_text(corpus, encoding="utf-8")
    print(f"wrote {len(corpus.encode())} bytes, {len(set(corpus))} distinct characters")


if __name__ == "__main__":
    main()
