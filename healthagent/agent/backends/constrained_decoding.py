"""Decoding a local language model under a JSON schema with lm-format-enforcer.

lm-format-enforcer's own transformers integration imports modules transformers 5 no longer has, so
the tokenizer data is built here through the library's extension API (the vocabulary as
(token id, text, starts a word) triples) and applied as a logits processor: at every step only
the tokens that keep the output a prefix of a schema-valid JSON document stay possible.
Numeric bounds are not enforced by the library; the caller still validates what it gets.
"""

import functools
from typing import cast

import torch
from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData
from transformers import LogitsProcessor


def _regular_tokens(tokenizer) -> list[tuple[int, str, bool]]:
    """(id, text, starts a new word) of every non-special token; decoded after "0" so a leading space survives."""
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    tokens = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        after_zero = tokenizer.decode([zero, token_id])[1:]
        alone = tokenizer.decode([token_id])
        tokens.append((token_id, after_zero, len(after_zero) > len(alone)))
    return tokens


@functools.lru_cache(maxsize=2)
def tokenizer_data(tokenizer) -> TokenEnforcerTokenizerData:
    """The enforcer's view of ``tokenizer`` (a few seconds to build; kept per process like the model)."""

    def decode(token_ids: list[int]) -> str:
        return tokenizer.decode(token_ids).rstrip("\ufffd")  # an incomplete UTF-8 sequence is not text yet

    return TokenEnforcerTokenizerData(_regular_tokens(tokenizer), decode, tokenizer.eos_token_id, False, len(tokenizer))


class JsonSchemaLogitsProcessor(LogitsProcessor):
    """Masks every token the schema does not allow next (the first sequence the enforcer sees is taken as the prompt)."""

    def __init__(self, tokenizer, json_schema: dict):
        self.enforcer = TokenEnforcer(tokenizer_data(tokenizer), JsonSchemaParser(json_schema))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, sequence in enumerate(input_ids.tolist()):
            allowed = self.enforcer.get_allowed_tokens(
                sequence
            ).allowed_tokens  # the enforcer keys its state on the whole sequence
            mask[row, [token for token in allowed if token < scores.shape[-1]]] = 0.0
        return cast(torch.FloatTensor, scores + mask)
