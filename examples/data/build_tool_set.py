"""Build the tool-calling recipe's data (examples/tool-agent.yaml): ``tool_train.jsonl``
(conversations in which the assistant calls a tool, reads its result and answers) and
``tool_eval.jsonl`` (eval items: the same system prompt and tools, a request, the call
expected; scored by evalkit's ``tool_call_match``).

Four tools with JSON-Schema arguments. The requests are made from templates and value pools
written here; every pool is split in two by a hash of the value, one half for the eval items
and the other for training, so no eval request names a city, currency pair, timer label or
route the training conversations use (a test checks the two files share no argument value).

    python examples/data/build_tool_set.py     # rewrites both files
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 20261203

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                       "properties": {"city": {"type": "string"},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount between currencies.",
        "parameters": {"type": "object", "required": ["amount", "from", "to"],
                       "additionalProperties": False,
                       "properties": {"amount": {"type": "number"},
                                      "from": {"type": "string", "pattern": "^[A-Z]{3}$"},
                                      "to": {"type": "string", "pattern": "^[A-Z]{3}$"}}}}},
    {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown timer.",
        "parameters": {"type": "object", "required": ["minutes", "label"],
                       "additionalProperties": False,
                       "properties": {"minutes": {"type": "integer", "minimum": 1},
                                      "label": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "Find flights between two cities on a date.",
        "parameters": {"type": "object", "required": ["origin", "destination", "date"],
                       "additionalProperties": False,
                       "properties": {"origin": {"type": "string"},
                                      "destination": {"type": "string"},
                                      "date": {"type": "string",
                                               "pattern": "^\\d{4}-\\d{2}-\\d{2}$"}}}}},
]  # fmt: skip

SYSTEM = (
    "You are an assistant that can call tools. To call one, reply with exactly "
    '<tool_call>{"name": TOOL, "arguments": {...}}</tool_call> and nothing else. '
    "Tools: " + json.dumps([t["function"] for t in TOOLS], separators=(",", ":"))
)

CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Tunis", "Quito", "Perth", "Riga",
          "Dakar", "Hanoi", "Bergen", "Porto", "Cusco", "Kyoto", "Malmo", "Leeds", "Turin",
          "Cairo", "Denver", "Austin", "Zagreb", "Vilnius", "Seville"]  # fmt: skip
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "NOK", "SEK", "CHF", "CAD", "AUD", "INR", "BRL", "ZAR"]
LABELS = ["pasta", "tea", "laundry", "bread", "eggs", "break", "stretch", "rice", "oven",
          "call mum", "parking", "homework", "plants", "meeting", "nap", "pizza"]  # fmt: skip
DATES = ["2027-01-14", "2027-02-03", "2027-03-21", "2027-04-09", "2027-05-30", "2027-06-12",
         "2027-07-04", "2027-08-18", "2027-09-26", "2027-10-02", "2027-11-11", "2027-12-20"]  # fmt: skip

WEATHER = ["What's the weather like in {city}?", "Is it cold in {city} right now?",
           "Tell me the current weather in {city} in {unit}."]  # fmt: skip
CONVERT = ["How much is {amount} {from} in {to}?", "Convert {amount} {from} to {to}, please."]
TIMER = ["Set a {minutes} minute timer for {label}.", "Remind me about {label} in {minutes} minutes."]
FLIGHTS = ["Find flights from {origin} to {destination} on {date}.",
           "Any flights {origin} to {destination} on {date}?"]  # fmt: skip


def _half(value: str) -> str:
    """'eval' or 'train', by a hash of the value: the two halves never share it."""
    return "eval" if hashlib.sha256(value.encode()).digest()[0] % 2 else "train"


def _calls(side: str, rng: random.Random, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """n (request, tool name, arguments) for one side, the tools in turn."""
    cities = [c for c in CITIES if _half(c) == side]
    labels = [x for x in LABELS if _half(x) == side]
    pairs = [(a, b) for a in CURRENCIES for b in CURRENCIES if a != b and _half(a + b) == side]
    routes = [(a, b) for a in cities for b in cities if a != b]
    out = []
    for k in range(n):
        kind = k % 4
        if kind == 0:
            city, unit = rng.choice(cities), rng.choice(["celsius", "fahrenheit"])
            tpl = rng.choice(WEATHER)
            args: dict[str, Any] = {"city": city}
            if "{unit}" in tpl:
                args["unit"] = unit
            out.append((tpl.format(city=city, unit=unit), "get_weather", args))
        elif kind == 1:
            a, b = rng.choice(pairs)
            amount = rng.choice([5, 12, 20, 40, 75, 100, 250, 1200])
            text = rng.choice(CONVERT).format(amount=amount, **{"from": a, "to": b})
            out.append((text, "convert_currency", {"amount": amount, "from": a, "to": b}))
        elif kind == 2:
            label, minutes = rng.choice(labels), rng.choice([3, 5, 8, 10, 15, 25, 40])
            text = rng.choice(TIMER).format(minutes=minutes, label=label)
            out.append((text, "set_timer", {"minutes": minutes, "label": label}))
        else:
            (o, d), date = rng.choice(routes), rng.choice(DATES)
            text = rng.choice(FLIGHTS).format(origin=o, destination=d, date=date)
            out.append((text, "search_flights", {"origin": o, "destination": d, "date": date}))
    return out


RESULTS = {
    "get_weather": ({"temperature": 7, "sky": "cloudy"}, "It is 7 degrees and cloudy."),
    "convert_currency": ({"result": 93.1}, "That comes to 93.1."),
    "set_timer": ({"ok": True}, "Done, the timer is running."),
    "search_flights": ({"flights": 3, "cheapest": 129}, "I found 3 flights; the cheapest is 129."),
}


def build() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(SEED)
    train, items = [], []
    seen: set[str] = set()
    for text, name, args in _calls("train", rng, 80):
        if text in seen:
            continue
        seen.add(text)
        result, answer = RESULTS[name]
        call = {"type": "function", "function": {"name": name, "arguments": args}}
        train.append({
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": text},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "name": name, "content": json.dumps(result)},
                {"role": "assistant", "content": answer},
            ],
            "tools": TOOLS,
            "meta": {"source": "tool-recipe"},
        })  # fmt: skip
    for k, (text, name, args) in enumerate(_calls("eval", rng, 40)):
        if text in seen:
            continue
        seen.add(text)
        items.append({
            "id": f"tool-{k + 1:03d}",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            "tools": TOOLS,
            "expected": {"tool_call": {"name": name, "arguments": args}},
            "task": "tool_call",
        })  # fmt: skip
    return train, items


def main() -> None:
    train, items = build()
    for name, rows in (("tool_train.jsonl", train), ("tool_eval.jsonl", items)):
        (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)}")


if __name__ == "__main__":
    main()
