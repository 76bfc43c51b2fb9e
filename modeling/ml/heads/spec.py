"""The prediction-head search space as data: a head spec is validated JSON.

A spec names an architecture over the frozen foundation model's patch tokens (linear or MLP on the
mean-pooled tokens, attention pooling with learned queries, a temporal convolution over the
token sequence) and its training hyper-parameters. Proposers (a language model, an optimizer,
random sampling) emit specs as text; ``parse_spec`` finds the JSON in it and validates it with
pydantic, and a rejected spec carries a reason the search counts and shows to the proposer.
"""

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Training(_Strict):
    learning_rate: float = Field(default=1e-3, gt=0, le=0.1)
    weight_decay: float = Field(default=1e-4, ge=0, le=0.5)
    epochs: int = Field(default=60, ge=1, le=500)
    class_weighting: Literal["none", "balanced"] = "balanced"


class LinearHead(_Strict):
    type: Literal["linear"] = "linear"


class MLPHead(_Strict):
    type: Literal["mlp"] = "mlp"
    depth: int = Field(1, ge=1, le=4)
    width: int = Field(64, ge=8, le=1024)
    activation: Literal["relu", "gelu", "tanh"] = "gelu"
    dropout: float = Field(0.1, ge=0, le=0.8)
    normalization: Literal["none", "layer", "batch"] = "layer"


class AttentionPoolHead(_Strict):
    type: Literal["attention_pool"] = "attention_pool"
    heads: int = Field(2, ge=1, le=8)
    queries: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.0, ge=0, le=0.8)


class TemporalConvHead(_Strict):
    type: Literal["temporal_conv"] = "temporal_conv"
    channels: int = Field(32, ge=8, le=256)
    kernel: int = Field(3, ge=1, le=15)
    layers: int = Field(1, ge=1, le=3)
    activation: Literal["relu", "gelu", "tanh"] = "gelu"
    dropout: float = Field(0.1, ge=0, le=0.8)


Architecture = Annotated[LinearHead | MLPHead | AttentionPoolHead | TemporalConvHead, Field(discriminator="type")]
ARCHITECTURES = ("linear", "mlp", "attention_pool", "temporal_conv")

# The search grid: the values proposers draw from and language models are constrained to. Any value
# within a field's bounds is valid (a language model without constraints may propose one).
Grid = dict[str, list[int | float | str]]  # setting -> the values it takes
ARCHITECTURE_CHOICES: dict[str, Grid] = {
    "linear": {},
    "mlp": {
        "depth": [1, 2, 3],
        "width": [32, 64, 128, 256],
        "activation": ["relu", "gelu", "tanh"],
        "dropout": [0.0, 0.1, 0.3],
        "normalization": ["none", "layer", "batch"],
    },
    "attention_pool": {"heads": [1, 2, 4], "queries": [1, 2, 4], "dropout": [0.0, 0.1]},
    "temporal_conv": {
        "channels": [16, 32, 64],
        "kernel": [3, 5, 9],
        "layers": [1, 2],
        "activation": ["relu", "gelu"],
        "dropout": [0.0, 0.1, 0.3],
    },
}
TRAINING_CHOICES: Grid = {
    "learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
    "weight_decay": [0.0, 1e-4, 1e-2],
    "epochs": [20, 40, 80],
    "class_weighting": ["none", "balanced"],
}


class HeadSpec(_Strict):
    head: Architecture
    training: Training = Training()

    def key(self) -> str:
        """Canonical JSON: two specs that train the same head have the same key."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class SpecError(ValueError):
    """A proposer's output that is not a valid spec; ``str()`` is the reason."""


def spec_schema() -> dict[str, Any]:
    """The JSON schema of a spec: shown to language-model proposers and used to constrain their output."""
    return HeadSpec.model_json_schema()


def decoding_schema() -> dict[str, Any]:
    """The spec schema for constrained decoders: references inlined, ``oneOf`` as ``anyOf``, each head's ``type``
    required, and every setting an enum of the search grid.

    lm-format-enforcer mis-resolves pydantic's discriminated ``oneOf`` of ``$ref``s (it lets a head take
    the training fields) and does not enforce numeric bounds (a small model writes 1000000...); this
    form it follows. Output is still validated by ``parse_spec``.
    """
    schema = spec_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
        result = {
            ("anyOf" if key == "oneOf" else key): inline(value) for key, value in node.items() if key != "discriminator"
        }
        properties = result.get("properties", {})
        if "type" in properties and "const" in properties["type"]:
            result["required"] = ["type"]
            grid = ARCHITECTURE_CHOICES[properties["type"]["const"]]
        else:
            grid = TRAINING_CHOICES if result.get("title") == "Training" else {}
        for name, options in grid.items():
            if name in properties:
                properties[name] = {"enum": options, "default": properties[name].get("default")}
        return result

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _json_objects(text: str) -> Iterator[str]:
    """Each top-level balanced {...} of ``text`` (not the objects nested in it), for output wrapped in prose or code fences."""
    position = 0
    while (start := text.find("{", position)) >= 0:
        depth, in_string, escaped, end = 0, False, False, None
        for index in range(start, len(text)):
            character = text[index]
            if in_string:
                if escaped:
                    escaped = False
                elif character == "\\":
                    escaped = True
                elif character == '"':
                    in_string = False
            elif character == '"':
                in_string = True
            elif character == "{":
                depth += 1
            elif character == "}":
                depth -= 1
                if depth == 0:
                    end = index
                    break
        if end is None:  # never closed: try from the next brace
            position = start + 1
            continue
        yield text[start : end + 1]
        position = end + 1


def parse_spec(raw: str | dict[str, Any]) -> HeadSpec:
    """A validated spec from a dict or from text containing one JSON object; SpecError says why not."""
    if isinstance(raw, dict):
        candidates = [raw]
    else:
        candidates = []
        for fragment in _json_objects(raw or ""):
            try:
                value = json.loads(fragment)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                candidates.append(value)
        if not candidates:
            raise SpecError("no JSON object found in the proposal")
    reasons = []
    for candidate in candidates:
        if "head" not in candidate and "type" in candidate:  # a bare architecture: accept it with default training
            candidate = {"head": candidate}
        try:
            return HeadSpec.model_validate(candidate)
        except ValidationError as error:
            reasons.append(
                "; ".join(
                    f"{'.'.join(str(part) for part in issue['loc']) or 'spec'}: {issue['msg']}"
                    for issue in error.errors()
                )
            )
    raise SpecError(reasons[0])


def describe_spec(spec: dict[str, Any] | None) -> str:
    """A spec in one line: "mlp depth 2, width 64, ... · lr 0.001, weight decay 0, 40 epochs, balanced"."""
    if not spec:
        return "—"
    head = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in spec["head"].items() if name != "type")
    training = spec["training"]
    return (
        f"{spec['head']['type'].replace('_', ' ')}{' ' + head if head else ''} · lr {training['learning_rate']:g}, weight decay "
        f"{training['weight_decay']:g}, {training['epochs']} epochs, {training['class_weighting']} class weights"
    )
