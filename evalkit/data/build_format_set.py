"""Build the JSON-format tasks: ``format_eval.jsonl`` (evalkit's `format` suite) and
``datakit/demo/format_tasks.jsonl`` (the demo's training prompts, answered by the model and
kept only when the answer fits the task's schema: rejection sampling).

Every task is a prompt that asks for JSON of a given shape and the JSON Schema the answer
must fit. The shapes (an object with typed keys, a list of N items, a yes/no answer, an
enumerated choice, a sum, a nested object, ...) are shared; the subjects are not: each
subject pool is split in two by a hash of the subject, one half for evaluation and the other
for training, so no evaluation task's subject is ever in the training prompts (a test checks
the two files share no prompt and no subject).

    python -m evalkit.data.build_format_set     # rewrites both files
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EVAL_OUT = HERE / "format_eval.jsonl"
TRAIN_OUT = HERE.parent.parent / "datakit" / "demo" / "format_tasks.jsonl"
SEED = 20261203
TAIL = " Reply with JSON only."

# Subjects per shape: (subject phrase, extra) written here.
PEOPLE = ["a fictional librarian", "a retired sailor", "a young chess player", "a village baker",
          "a famous painter you invent", "a school teacher", "a night-shift nurse", "a beekeeper",
          "a lighthouse keeper", "a jazz drummer", "a marathon runner", "a train driver",
          "a museum guide", "a mountain guide", "a street musician", "a florist",
          "a ship's cook", "a bus driver", "a tennis coach", "a clock repairer",
          "a carpenter", "a radio host", "a park ranger", "a glass blower"]  # fmt: skip
THINGS = [("book", ["title", "author"], "year"), ("film", ["title", "director"], "year"),
          ("song", ["title", "artist"], "year"), ("car", ["make", "model"], "year"),
          ("laptop", ["brand", "model"], "price"), ("hotel", ["name", "city"], "stars"),
          ("restaurant", ["name", "cuisine"], "seats"), ("bridge", ["name", "river"], "length"),
          ("mountain", ["name", "country"], "height"), ("ship", ["name", "port"], "crew"),
          ("museum", ["name", "city"], "rooms"), ("board game", ["name", "publisher"], "players"),
          ("bicycle", ["brand", "colour"], "gears"), ("podcast", ["name", "host"], "episodes"),
          ("garden", ["name", "town"], "plants"), ("river", ["name", "continent"], "length"),
          ("castle", ["name", "region"], "towers"), ("novel", ["title", "genre"], "pages"),
          ("album", ["title", "band"], "tracks"), ("stadium", ["name", "city"], "capacity"),
          ("island", ["name", "sea"], "population"), ("festival", ["name", "town"], "days"),
          ("train", ["name", "operator"], "carriages"), ("school", ["name", "district"], "pupils")]  # fmt: skip
LISTS = [("colors", "colour names"), ("fruits", "fruits"), ("animals", "farm animals"),
         ("cities", "cities in Europe"), ("tools", "kitchen tools"), ("sports", "team sports"),
         ("instruments", "musical instruments"), ("vegetables", "green vegetables"),
         ("languages", "spoken languages"), ("birds", "birds"), ("flowers", "flowers"),
         ("metals", "metals"), ("games", "card games"), ("dances", "dances"),
         ("trees", "trees"), ("drinks", "hot drinks"), ("planets", "planets"),
         ("insects", "insects"), ("rivers", "rivers"), ("cheeses", "cheeses"),
         ("fabrics", "fabrics"), ("spices", "spices"), ("shapes", "geometric shapes"),
         ("jobs", "jobs in a hospital")]  # fmt: skip
QUESTIONS = ["is ice colder than steam?", "is the Pacific an ocean?", "do fish breathe air?",
             "is 7 a prime number?", "is Paris in Spain?", "do bees make honey?",
             "is the Moon bigger than the Earth?", "can penguins fly?", "is 10 an even number?",
             "is gold a metal?", "do spiders have six legs?", "is Mars a planet?",
             "is a tomato a fruit?", "does water boil at 50 degrees Celsius at sea level?",
             "is English written left to right?", "is a whale a fish?",
             "is the Sun a star?", "do cows eat grass?", "is 9 divisible by 3?",
             "is snow usually white?", "is Tokyo in Japan?", "does a triangle have four sides?",
             "is copper a good conductor of electricity?", "do trees need sunlight?"]  # fmt: skip
CHOICES = [("weather today", "conditions", ["sunny", "cloudy", "rainy"]),
           ("a traffic light you see", "light", ["red", "yellow", "green"]),
           ("the size of a coffee order", "size", ["small", "medium", "large"]),
           ("the mood of a short story", "mood", ["happy", "sad", "tense"]),
           ("the priority of a bug report", "priority", ["low", "medium", "high"]),
           ("the season of a photo of snow", "season", ["winter", "spring", "summer", "autumn"]),
           ("the direction of the wind", "direction", ["north", "south", "east", "west"]),
           ("the state of a parcel", "status", ["sent", "in_transit", "delivered"]),
           ("the level of a language course", "level", ["beginner", "intermediate", "advanced"]),
           ("the sentiment of the review 'great value'", "sentiment", ["positive", "negative", "neutral"]),
           ("the difficulty of a hike", "difficulty", ["easy", "moderate", "hard"]),
           ("the type of a pet that barks", "pet", ["cat", "dog", "fish"]),
           ("the shape of a coin", "shape", ["round", "square", "triangular"]),
           ("the speed of a snail", "speed", ["slow", "fast"]),
           ("the result of a won match", "result", ["win", "loss", "draw"]),
           ("the meal eaten in the morning", "meal", ["breakfast", "lunch", "dinner"])]  # fmt: skip
PLACES = ["a friend's home", "a dentist's office", "a public library", "a bakery",
          "a bicycle shop", "a swimming pool", "a post office", "a cinema",
          "a train station", "a city park", "a hardware store", "a music school",
          "a bookshop", "a pharmacy", "a farm shop", "a youth hostel",
          "a town hall", "a fire station", "a flower market", "a chess club",
          "a tailor", "a ferry terminal", "a yoga studio", "a bike repair cafe"]  # fmt: skip


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(props), "properties": props}


def _tasks(subject_ok) -> list[tuple[str, str, dict[str, Any]]]:
    """(subject, prompt, schema) for every subject that ``subject_ok`` admits."""
    rng = random.Random(SEED)
    pairs = sorted({(rng.randint(2, 40), rng.randint(2, 40)) for _ in range(24)})
    out = []
    for who in PEOPLE:
        if subject_ok(who):
            out.append((who, f"Give the name and age of {who} as JSON with keys name (string) "
                        "and age (integer).",
                        _obj({"name": {"type": "string", "minLength": 1},
                              "age": {"type": "integer", "minimum": 0}})))  # fmt: skip
    for thing, strs, num in THINGS:
        if subject_ok(thing):
            keys = ", ".join(f"{k} (string)" for k in strs) + f" and {num} (integer)"
            props = {k: {"type": "string", "minLength": 1} for k in strs}
            props[num] = {"type": "integer", "minimum": 0}
            out.append((thing, f"Describe a {thing} as JSON with {keys}.", _obj(props)))
    for key, what in LISTS:
        if subject_ok(key):
            n = 2 + len(what) % 3
            out.append((key, f"Return a JSON object with a key {key} holding a list of {n} "
                        f"{what}.",
                        _obj({key: {"type": "array", "items": {"type": "string", "minLength": 1},
                                    "minItems": n, "maxItems": n}})))  # fmt: skip
    for q in QUESTIONS:
        if subject_ok(q):
            out.append((q, f"Answer in JSON: {q} Use the key answer with true or false.",
                        _obj({"answer": {"type": "boolean"}})))  # fmt: skip
    for what, key, opts in CHOICES:
        if subject_ok(what):
            out.append((what, f"Give {what} as JSON with the key {key}, one of "
                        f"{', '.join(opts)}.", _obj({key: {"enum": opts}})))  # fmt: skip
    for place in PLACES:
        if subject_ok(place):
            out.append((place, f"Give the address of {place} as JSON with keys street "
                        "(string), number (integer) and city (string).",
                        _obj({"street": {"type": "string", "minLength": 1},
                              "number": {"type": "integer", "minimum": 0},
                              "city": {"type": "string", "minLength": 1}})))  # fmt: skip
    for a, b in pairs:
        if subject_ok(f"sum {a} {b}"):
            # the format asked for is an integer under "sum"; whether it is right is
            # arithmetic (a QA skill), not format
            out.append((f"sum {a} {b}", f"Return JSON with the key sum equal to {a} + {b}.",
                        _obj({"sum": {"type": "integer"}})))  # fmt: skip
    return out


def for_evaluation(subject: str) -> bool:
    """Half of every pool, fixed by a hash of the subject."""
    return int(hashlib.sha256(subject.encode()).hexdigest(), 16) % 2 == 0


def build() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ev = _tasks(for_evaluation)
    tr = _tasks(lambda s: not for_evaluation(s))
    evals = [
        {"id": f"fmt-{i:03d}", "prompt": p + TAIL, "schema": s, "task": "format",
         "meta": {"subject": subj}}
        for i, (subj, p, s) in enumerate(ev, 1)
    ]  # fmt: skip
    train = [
        {"prompt": p + TAIL, "meta": {"schema": s, "subject": subj, "source": "demo-format"}}
        for subj, p, s in tr
    ]  # fmt: skip
    return evals, train


def main() -> None:
    evals, train = build()
    for path, rows in ((EVAL_OUT, evals), (TRAIN_OUT, train)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {path}: {len(rows)} tasks")


if __name__ == "__main__":
    main()
