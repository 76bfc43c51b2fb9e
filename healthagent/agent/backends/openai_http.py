"""A chat-completions server that speaks the OpenAI protocol: vLLM, Ollama, TGI, llama.cpp's server.

Configuration: ``base_url`` (e.g. ``http://gpu-host:8000/v1``, a host of ``settings.LLM_ALLOWED_HOSTS`` when that
is set), ``model``, optional ``api_key_env`` (the name of the workers' environment variable holding the key, which
starts with ``HEALTHAGENT_LLM_``: healthagent.models.llm_server_problem), ``temperature``, ``max_tokens``,
``retries``. Connection failures, time-outs and 5xx answers are retried with back-off; anything else fails at once
with a sentence that says what happened: the status only, never the server's response body (it can echo the request,
and failures are shown to researchers).
"""

import os
import time

import httpx

from healthagent.agent.backends.base import BackendAnswer, BackendConfigError, BackendError, BackendTimeout
from healthagent.agent.prompt import chat_messages
from healthagent.models import llm_server_problem


class OpenAIHTTPBackend:
    name = "openai_http"

    def __init__(self, config: dict):
        self.base_url = (config.get("base_url") or "").rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendConfigError(
                "base_url must be an http:// or https:// URL, for example http://localhost:8000/v1"
            )
        self.model = config.get("model") or ""
        if not self.model:
            raise BackendConfigError("model must name the model the server serves")
        if problem := llm_server_problem(config):
            raise BackendConfigError(problem)
        self.api_key = os.environ.get(config["api_key_env"], "") if config.get("api_key_env") else ""
        self.temperature = float(config.get("temperature", 0.0))
        self.max_tokens = int(config.get("max_tokens", 400))
        self.retries = int(config.get("retries", 2))
        self.backoff_s = float(config.get("backoff_s", 0.5))

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        payload = {
            "model": self.model,
            "messages": chat_messages(context),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": 0,
        }
        text, metadata = self._chat(payload, timeout_s=timeout_s)
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
        """The reply to ``messages``; with ``json_schema`` the server is asked for structured output under it
        (``response_format`` of type ``json_schema``; servers without it may ignore it, the caller validates)."""
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature if temperature is None else temperature,
            "max_tokens": self.max_tokens,
            "seed": 0 if seed is None else seed,
        }
        if json_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        text, _ = self._chat(payload, timeout_s=timeout_s)
        return text

    def _chat(self, payload: dict, *, timeout_s: float) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        last_problem = ""
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendTimeout(
                    f"the model server at {self.base_url} did not answer within {timeout_s:.0f} s ({last_problem or 'no answer'})"
                )
            started = time.perf_counter()
            try:
                response = httpx.post(
                    url, json=payload, headers=headers, timeout=httpx.Timeout(remaining, connect=min(remaining, 5.0))
                )
            except httpx.TimeoutException:
                last_problem = "timed out"
            except httpx.TransportError as error:
                last_problem = f"cannot connect: {error}"
            else:
                if response.status_code < 500:
                    return self._answer(response, started, attempt)
                last_problem = f"server error {response.status_code}"
            if attempt < self.retries:
                time.sleep(min(self.backoff_s * 2**attempt, max(deadline - time.monotonic(), 0)))
        if last_problem == "timed out":
            raise BackendTimeout(f"the model server at {self.base_url} did not answer within {timeout_s:.0f} s")
        raise BackendError(
            f"the model server at {self.base_url} is not available after {self.retries + 1} attempts ({last_problem})"
        )

    def _answer(self, response: httpx.Response, started: float, attempt: int) -> tuple[str, dict]:
        if response.status_code != 200:
            raise BackendError(
                f"the model server refused the request: HTTP {response.status_code} {response.reason_phrase}".rstrip()
            )
        try:
            body = response.json()
            text = body["choices"][0]["message"]["content"] or ""
            finish_reason = body["choices"][0].get("finish_reason")  # "length" when max_tokens cut the answer
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise BackendError(f"the model server's answer is not a chat completion ({error})") from error
        usage = body.get("usage") or {}
        return text.strip(), {
            "backend": self.name,
            "model": body.get("model", self.model),
            "attempts": attempt + 1,
            "latency_s": round(time.perf_counter() - started, 3),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "temperature": self.temperature,
            "finish_reason": finish_reason,
        }
