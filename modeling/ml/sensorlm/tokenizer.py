"""The caption tokenizer: WordPiece trained with ``tokenizers`` on training captions only, saved with the model.

Lower-cased, split on whitespace and punctuation, every digit its own token (so "148" is "1 4 8" and
no number is ever out of vocabulary). ``[CLS]`` starts and ``[SEP]`` ends every encoded caption.
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

FILENAME = "tokenizer.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_tokenizer(captions: Iterable[str], *, vocabulary_size: int = 2000) -> Tokenizer:
    """A WordPiece tokenizer fitted on ``captions`` (pass training captions only)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocabulary_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2, show_progress=False
    )
    tokenizer.train_from_iterator(captions, trainer=trainer)
    classify, separate = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", classify), ("[SEP]", separate)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / (FILENAME + ".partial")
    tokenizer.save(str(partial))
    partial.replace(directory / FILENAME)


def load_tokenizer(directory: Path) -> Tokenizer:
    return Tokenizer.from_file(str(Path(directory) / FILENAME))


def encode(tokenizer: Tokenizer, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(texts, max_tokens) token ids and attention mask, right-padded with [PAD] and truncated (keeping [SEP] last)."""
    pad = tokenizer.token_to_id("[PAD]")
    assert pad is not None  # [PAD] is a special token of every tokenizer trained here
    rows = [tokenizer.encode(text).ids for text in texts]
    rows = [ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + ids[-1:] for ids in rows]
    input_ids = torch.full((len(rows), max_tokens), pad, dtype=torch.long)
    for index, ids in enumerate(rows):
        input_ids[index, : len(ids)] = torch.tensor(ids)
    return input_ids, (input_ids != pad).long()


def token_lengths(tokenizer: Tokenizer, texts: list[str], max_tokens: int) -> dict[str, float]:
    """How long the texts are in tokens before truncation (median, 95th percentile, longest) and which
    fraction ``encode`` cuts at ``max_tokens``: a model trained on cut captions never reads their ends."""
    lengths = np.array([len(tokenizer.encode(text).ids) for text in texts])
    return {
        "max_tokens": max_tokens,
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "longest": int(lengths.max()),
        "truncated_fraction": float((lengths > max_tokens).mean()),
    }


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Text of token ids with special tokens dropped, spaced like the captions ("at 07:34, a 26-minute walk"),
    lower-cased as the tokenizer sees it."""
    tokens = [tokenizer.id_to_token(int(index)) for index in ids]
    words = [word for word in tokens if word is not None and word not in SPECIAL_TOKENS]
    text = ""
    for position, word in enumerate(words):
        previous = words[position - 1] if position else ""
        before_previous = words[position - 2] if position > 1 else ""
        attached = (
            word.startswith("##")
            or word in {",", ".", ";", ")", ":", "-"}
            or previous in {"(", "-"}
            or (word.isdigit() and previous.isdigit())
            or (word.isdigit() and previous in {":", "."} and before_previous.isdigit())
        )
        text += ("" if attached or not text else " ") + word.removeprefix("##")
    return text


def normalized(tokenizer: Tokenizer, text: str, max_tokens: int | None = None) -> str:
    """``text`` as the model can write it: tokenized, truncated to ``max_tokens`` (with [CLS] and [SEP]), decoded."""
    ids = tokenizer.encode(text).ids
    return decode(tokenizer, ids if max_tokens is None else ids[: max_tokens - 1])
