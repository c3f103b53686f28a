"""Plain transformers ``generate``: the fallback where vLLM is not installed.

Requests with the same sampling settings are batched (left padding). A ``choice`` constraint
is met exactly by scoring every choice's log-likelihood and taking the best; JSON-schema and
regex constraints need vllm or an OpenAI-compatible vLLM server and are refused up front.
"""

from __future__ import annotations

import hashlib
import logging
from itertools import groupby
from typing import Any

from ..errors import ToolkitError
from .base import Completion, Request, Result

log = logging.getLogger(__name__)


def _row_seed(engine_seed: int, request_seed: int, sample: int) -> int:
    h = hashlib.sha256(f"{engine_seed}/{request_seed}/{sample}".encode()).digest()
    return int.from_bytes(h[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class RowSampler:
    """A logits processor that samples each row with its own ``torch.Generator``.

    Temperature, then nucleus (top-p) filtering, then one uniform draw per row and step by
    inverse CDF. The chosen token keeps score 0 and every other token -inf, so the greedy
    step of ``generate`` takes exactly the sampled token. One draw per row per step, from
    the row's own generator: the sample depends on the row's logits and seed only.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        import torch

        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        if self.top_p < 1.0:
            before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass ahead of each token
            sorted_p = sorted_p.masked_fill(before >= self.top_p, 0.0)
        cdf = torch.cumsum(sorted_p.double(), dim=-1)
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.gens])
        target = (u * cdf[:, -1])[:, None]
        pos = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        chosen = order.gather(1, pos)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen, 0.0)
        return out


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
                raise ToolkitError(
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
        n = first.n
        # Each request is expanded into its n rows here (not by num_return_sequences), and
        # every row draws from its own generator seeded by the request: a request's tokens
        # never depend on which requests share its batch, so a resumed run that batches the
        # leftover requests differently produces the same texts.
        rows = [i for i in batch for _ in range(n)]
        enc = self.tokenizer(
            [self._text(requests[i]) for i in rows],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(self.device)
        kw: dict[str, Any] = dict(
            max_new_tokens=first.max_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            do_sample=False,  # the row sampler below picks the token; greedy then takes it
        )
        if first.temperature > 0:
            from transformers import LogitsProcessorList

            seeds = [
                _row_seed(self.seed, requests[i].effective_seed(), m)
                for i in batch
                for m in range(n)
            ]
            kw["logits_processor"] = LogitsProcessorList(
                [RowSampler(seeds, first.temperature, first.top_p)]
            )
        if first.stop:
            kw.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.lm.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1] :]
        eos = self.tokenizer.eos_token_id
        results = []
        for j in range(len(batch)):
            comps = []
            for seq in new[j * n : (j + 1) * n]:
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
            results.append(Result(comps, prompt_tokens=int(enc["attention_mask"][j * n].sum())))
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
