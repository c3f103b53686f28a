"""Any OpenAI-compatible server (a fleet of vLLM servers, or a provider).

Async with bounded concurrency; requests are spread round-robin over several base URLs
(data-parallel fleets) and a retry goes to the next URL. Retries with exponential backoff
and jitter on 429, 5xx, timeouts, connection errors and garbage answers; after the last try
the request comes back as an error result and the rest of the batch is kept. No API key is
sent unless ``api_key_env`` names the environment variable holding one (never the key
itself in the config file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

from ..errors import ToolkitError
from .base import Completion, Request, Result

log = logging.getLogger(__name__)


class GarbageResponse(Exception):
    """The server answered 200 but the body is not a usable completion."""


class OpenAIEngine:
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | list[str],
        api_key_env: str | None = None,
        concurrency: int = 16,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ):
        import openai

        self.model = model
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ToolkitError("openai engine: base_url needs at least one URL")
        # Key-less by default (a vLLM fleet needs none); a config that names a variable
        # for the key means the server wants one, so a missing variable is an error.
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ToolkitError(
                    f"openai engine: environment variable {api_key_env} is not set "
                    "(api_key_env names the variable that holds the API key)"
                )
        self.urls = urls
        self._key = key or "none"
        self._timeout = timeout
        self.clients: list[Any] = []
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._openai = openai

    def generate(self, requests: list[Request]) -> list[Result]:
        return asyncio.run(self._run(requests))

    async def _run(self, requests: list[Request]) -> list[Result]:
        # Async clients belong to the event loop they run in, and each generate() call runs
        # its own loop: make them here. Our retry loop decides what is retried, so theirs is off.
        o = self._openai
        self.clients = [
            o.AsyncOpenAI(base_url=u, api_key=self._key, max_retries=0, timeout=self._timeout)
            for u in self.urls
        ]
        sem = asyncio.Semaphore(self.concurrency)

        async def one(i: int, r: Request) -> Result:
            async with sem:
                return await self._with_retries(i, r)

        try:
            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))
        finally:
            for c in self.clients:
                await c.close()

    def _retryable(self, e: Exception) -> bool:
        o = self._openai
        if isinstance(
            e,
            (
                GarbageResponse,
                ValueError,  # a 200 whose body is not JSON
                o.APIResponseValidationError,
                o.APIConnectionError,
                o.APITimeoutError,
                o.RateLimitError,
                o.InternalServerError,
            ),
        ):
            return True
        return isinstance(e, o.APIStatusError) and (e.status_code == 429 or e.status_code >= 500)

    async def _with_retries(self, i: int, r: Request) -> Result:
        last: Exception | None = None
        attempts = 0
        for attempt in range(self.max_retries + 1):
            attempts += 1
            client = self.clients[(i + attempt) % len(self.clients)]
            try:
                return await self._call(client, r)
            except Exception as e:  # noqa: BLE001 - classified right below
                last = e
                if not self._retryable(e) or attempt == self.max_retries:
                    break
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (
                    0.5 + random.random() / 2
                )
                retry_after = (
                    getattr(getattr(e, "response", None), "headers", {}).get("retry-after")
                    if hasattr(e, "response")
                    else None
                )
                if retry_after:
                    try:
                        delay = max(delay, min(float(retry_after), 60.0))
                    except ValueError:
                        pass
                log.debug(
                    "request %d attempt %d failed (%s); retrying in %.1fs", i, attempt + 1, e, delay
                )
                await asyncio.sleep(delay)
        msg = f"{type(last).__name__}: {str(last)[:200]}"
        log.warning("request %d failed after %d attempt(s): %s", i, attempts, msg)
        return Result([], error=msg)

    async def _call(self, client: Any, r: Request) -> Result:
        kw: dict[str, Any] = dict(
            model=self.model,
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            n=r.n,
        )
        if r.temperature > 0:
            kw["seed"] = r.effective_seed()  # per request: the batch never shifts a sample
        if r.stop:
            kw["stop"] = list(r.stop)
        extra: dict[str, Any] = {}
        if r.json_schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": r.json_schema},
            }
        elif r.choice is not None:
            extra["structured_outputs"] = {"choice": list(r.choice)}
        elif r.regex is not None:
            extra["structured_outputs"] = {"regex": r.regex}
        if extra:
            kw["extra_body"] = extra
        if r.messages is not None:
            resp = await client.chat.completions.create(messages=list(r.messages), **kw)
            texts = [
                (
                    getattr(getattr(c, "message", None), "content", None),
                    getattr(c, "finish_reason", None),
                )
                for c in (getattr(resp, "choices", None) or [])
            ]
        else:
            resp = await client.completions.create(prompt=r.prompt, **kw)
            texts = [
                (getattr(c, "text", None), getattr(c, "finish_reason", None))
                for c in (getattr(resp, "choices", None) or [])
            ]
        if len(texts) != r.n or any(not isinstance(t, str) for t, _ in texts):
            raise GarbageResponse(f"expected {r.n} text choices, got {str(resp)[:120]}")
        usage = getattr(resp, "usage", None)
        comp_tokens = getattr(usage, "completion_tokens", 0) or 0
        comps = [
            Completion(t, fr if fr in ("stop", "length") else "stop", comp_tokens // max(1, r.n))
            for t, fr in texts
        ]
        return Result(comps, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0)

    def close(self) -> None:
        pass
