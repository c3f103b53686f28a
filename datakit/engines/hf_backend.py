"""Plain transformers ``generate``: the fallback where vLLM is not installed.

Requests with the same sampling settings are batched (left padding). A ``choice`` constraint
is met exactly by scoring every choice's log-likelihood and taking the best; JSON-schema and
regex constraints need vllm or an OpenAI-compatible vLLM server and are refused up front.
"""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Any

from ..errors import DatakitError
from .base import Completion, Request, Result

log = logging.getLogger(__name__)


class TransformersEngine:
    backend = "transformers"

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 16,
        seed: int = 0,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = (
            AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype))
            .to(device)
            .eval()
        )

    def _text(self, r: Request) -> str:
        if r.messages is None:
            return r.prompt or ""
        return self.tokenizer.apply_chat_template(
            list(r.messages), add_generation_prompt=True, tokenize=False
        )

    def generate(self, requests: list[Request]) -> list[Result]:
        for r in requests:
            if r.json_schema is not None or r.regex is not None:
                raise DatakitError(
                    "the transformers backend cannot constrain output to a JSON schema or regex; use the vllm or openai backend"
                )
        results: list[Result | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: self._group(requests[i]))
        for _, grp in groupby(order, key=lambda i: self._group(requests[i])):
            idx = list(grp)
            for s in range(0, len(idx), self.batch_size):
                batch = idx[s : s + self.batch_size]
                outs = (
                    self._choose(requests, batch)
                    if requests[batch[0]].choice
                    else self._sample(requests, batch)
                )
                for i, res in zip(batch, outs, strict=True):
                    results[i] = res
        return results  # type: ignore[return-value]

    @staticmethod
    def _group(r: Request) -> tuple:
        return (r.choice is not None, r.temperature, r.top_p, r.max_tokens, r.n, r.stop or ())

    def _sample(self, requests: list[Request], batch: list[int]) -> list[Result]:
        import torch

        first = requests[batch[0]]
        # One seed per batch, derived from the requests' seeds: the same batch reproduces.
        torch.manual_seed(hash(tuple(requests[i].seed or 0 for i in batch)) % (2**31) + self.seed)
        enc = self.tokenizer(
            [self._text(requests[i]) for i in batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(self.device)
        kw: dict[str, Any] = dict(
            max_new_tokens=first.max_tokens,
            num_return_sequences=first.n,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if first.temperature > 0:
            kw.update(do_sample=True, temperature=first.temperature, top_p=first.top_p)
        else:
            kw.update(do_sample=False)
        if first.stop:
            kw.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.lm.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1] :]
        eos = self.tokenizer.eos_token_id
        results = []
        for j in range(len(batch)):
            comps = []
            for seq in new[j * first.n : (j + 1) * first.n]:
                ids = seq.tolist()
                n_tok = len(ids)
                if eos in ids:
                    n_tok = ids.index(eos) + 1
                    ids = ids[: ids.index(eos)]
                    reason = "stop"
                else:
                    ids = [t for t in ids if t != self.tokenizer.pad_token_id]
                    reason = "length" if n_tok >= first.max_tokens else "stop"
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                for s in first.stop or ():
                    if s in text:
                        text, reason = text[: text.index(s)], "stop"
                comps.append(Completion(text, reason, n_tok))
            results.append(Result(comps, prompt_tokens=int(enc["attention_mask"][j].sum())))
        return results

    def _choose(self, requests: list[Request], batch: list[int]) -> list[Result]:
        import torch

        results = []
        for i in batch:
            r = requests[i]
            prefix = self.tokenizer(self._text(r), add_special_tokens=False)["input_ids"]
            scores = []
            for c in r.choice or ():
                ids = self.tokenizer(c, add_special_tokens=False)["input_ids"]
                x = torch.tensor([prefix + ids], device=self.device)
                with torch.no_grad():
                    logp = torch.log_softmax(self.lm(x).logits[0, len(prefix) - 1 : -1], -1)
                scores.append(
                    logp.gather(1, torch.tensor(ids, device=self.device)[:, None]).sum().item()
                )
            best = list(r.choice or ())[max(range(len(scores)), key=scores.__getitem__)]
            results.append(
                Result(
                    [
                        Completion(
                            best,
                            "stop",
                            len(self.tokenizer(best, add_special_tokens=False)["input_ids"]),
                        )
                    ]
                    * r.n,
                    prompt_tokens=len(prefix),
                )
            )
        return results

    def close(self) -> None:
        self.lm = None
