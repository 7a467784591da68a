"""CLIP's prompt tokenisation for Stable Diffusion's text encoder, without torch or transformers.

``ClipTokenizer.from_folder(folder)`` reads the tokenizer files of a diffusers folder (``folder/tokenizer``
or the tokenizer folder itself: ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and, where there
is one, ``special_tokens_map.json``) and builds a Hugging Face ``tokenizers.Tokenizer`` the way transformers'
``CLIPTokenizerFast`` builds it from the same files (its ``CLIPConverter``): byte-level BPE with the
end-of-word suffix ``</w>``; NFC, every run of whitespace made one space, lower case; CLIP's split pattern
(``'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``, whitespace dropped) then the byte-level
alphabet. ``encode(text)`` then returns what ``tokenizer(text, max_length=tokenizer.model_max_length,
padding="max_length", truncation=True).input_ids`` returns: bos, the text's tokens cut to
``max_length - 2``, eos, then the pad token up to ``max_length`` (77), as int64.

That is the tokenizer the official OSEDiff code runs: ``AutoTokenizer.from_pretrained(sd_path,
subfolder="tokenizer")`` gives the *fast* tokenizer (SD folders carry no ``tokenizer.json``, so transformers
4.28.1, the official pin, converts the vocabulary and merges as above). The slow Python ``CLIPTokenizer`` is
not used, so ftfy, which the official environment does have (``open-clip-torch`` requires it), changes
nothing. The slow tokenizer differs from the fast one, and from this module, on: with ftfy, curly quotes
(``don’t``), HTML entities (``&amp;``), full-width letters, ligatures, mojibake, control characters and a
BOM, which ftfy and ``html.unescape`` repair first, and Greek capital sigma at a word's end (Python's
``lower`` gives ``ς``, the Rust one ``σ``); without ftfy (4.57's fallback), CJK text (each ideograph its own
word), format characters such as U+200B/U+200D/U+00AD, control characters and final sigma; 4.28's fallback
also strips accents and splits on all punctuation (``rubik's`` among RAM's 4585 tags). With ftfy, RAM's
prompts (ASCII words, ``|``, ``,``, ``'s``, digits) tokenise the same as here.

The special tokens are the ones the folder names, with transformers' precedence (``special_tokens_map.json``
over ``tokenizer_config.json``), and each is matched in the prompt as a whole token, as transformers does:
SD-2.x pads with ``"!"`` (id 0), so every ``!`` of a prompt is id 0 too (``"wow!!"`` is ``wow</w>, 0, 0``,
not the ``!!</w>`` of CLIP's own tokenizer); SD-1.x pads with ``<|endoftext|>``. Tokens flagged
``normalized`` are matched after lower-casing (``<|ENDOFTEXT|>`` is the eos).

Checked: once, by hand, on the real 49408-token CLIP vocabulary (vocab.json/merges.txt built from
open_clip 2.20.0's ``bpe_simple_vocab_16e6.txt.gz`` as CLIP builds them), in SD-2.x's and SD-1.x's layouts,
and on the project's tiny vocabulary: 6556 strings (all 4585 RAM tags, 1020 prompts in OSEDiff's
``f"{tags}, {prompt},"`` form, 151 edge and length cases: empty, whitespace, punctuation, digits,
contractions, accents, CJK, emoji, ZWJ, control characters, special-token text, 75/76/77+ tokens, and 800
random strings) give the same ids as the fast tokenizer of transformers 4.28.1 (tokenizers 0.13.3; the
official environment), 4.57.1 and 5.25, with tokenizers 0.15.0 and 0.23.3 under this module. The one
exception: transformers 5 with SD-1.x's files does not take an upper-case ``<|ENDOFTEXT|>`` for the eos
(4.x and this module do). ``tests/test_clip_tokenizer.py`` repeats the comparison with transformers 5 on
tokenizer files written offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

from ..bounded_parse import read_json, read_text
from ..checks import is_int
from ..errors import SRError

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"

# transformers' CLIPConverter (4.28 to 4.57). 5.x puts the special tokens' text in front, which changes
# nothing: the byte-level step's own pattern splits "<|endoftext|>" into "<|", "endoftext", "|>" again.
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
END_OF_WORD = "</w>"
# model_max_length is a shape here; CLIP's is 77. A file saying 1e30 ("no limit" in transformers) is refused.
MAX_LENGTH_LIMIT = 4096
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


@dataclass(frozen=True)
class SpecialToken:
    """One special token as a tokenizer file names it: its text and how transformers matches it."""

    content: str
    normalized: bool = False  # matched after normalisation (lower case), not in the raw text
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False

    def added_token(self) -> AddedToken:
        return AddedToken(
            self.content,
            single_word=self.single_word,
            lstrip=self.lstrip,
            rstrip=self.rstrip,
            normalized=self.normalized,
            special=True,
        )


@dataclass(frozen=True)
class TokenizerSettings:
    """What ``tokenizer_config.json`` and ``special_tokens_map.json`` decide: length and special tokens."""

    max_length: int
    bos: SpecialToken
    eos: SpecialToken
    unk: SpecialToken
    pad: SpecialToken

    @classmethod
    def from_files(cls, config: Path, special_tokens: Path | None = None) -> TokenizerSettings:
        """The settings of ``tokenizer_config.json``, its special tokens replaced by those of
        ``special_tokens_map.json`` where that is given (transformers' precedence: SD-2.x's pads with "!")."""
        settings = _json_object(config, "tokenizer config")
        tokens = {key: settings[key] for key in SPECIAL_KEYS if settings.get(key) is not None}
        if special_tokens is not None:
            overrides = _json_object(special_tokens, "special tokens map")
            for key in SPECIAL_KEYS:
                if overrides.get(key) is not None:
                    tokens[key] = overrides[key]
            _refuse_additional(overrides, special_tokens)
        _refuse_additional(settings, config)
        where = f"{config} and {special_tokens}" if special_tokens is not None else str(config)
        missing = [key for key in SPECIAL_KEYS if key not in tokens]
        if missing:
            raise SRError(f"tokenizer files {where} name no {', '.join(missing)}")
        max_length = settings.get("model_max_length")
        if not is_int(max_length, 3, MAX_LENGTH_LIMIT):
            raise SRError(
                f"tokenizer config {config}: model_max_length is {max_length!r}, not a whole number "
                f"from 3 to {MAX_LENGTH_LIMIT} (CLIP's is 77)"
            )
        return cls(
            max_length=max_length,
            **{key[: -len("_token")]: _special_token(tokens[key], key, where) for key in SPECIAL_KEYS},
        )


class ClipTokenizer:
    """CLIP's tokenizer for SD text encoders: ``encode(prompt)`` gives the ``input_ids`` that transformers'
    ``CLIPTokenizerFast`` gives with ``padding="max_length", max_length=model_max_length,
    truncation=True``."""

    def __init__(self, tokenizer: Tokenizer, settings: TokenizerSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        self.max_length = settings.max_length
        ids = [tokenizer.token_to_id(getattr(settings, key).content) for key in ("bos", "eos", "pad")]
        if None in ids:
            raise SRError("the tokenizer's bos, eos or pad token is not in its vocabulary")
        self.bos_id, self.eos_id, self.pad_id = ids

    @classmethod
    def from_folder(cls, folder: Path | str) -> ClipTokenizer:
        """From a diffusers folder (its ``tokenizer/`` subfolder) or a tokenizer folder."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).exists() and (folder / "tokenizer").is_dir():
            folder = folder / "tokenizer"
        special_tokens = folder / SPECIAL_TOKENS_FILE
        settings = TokenizerSettings.from_files(
            folder / CONFIG_FILE, special_tokens if special_tokens.exists() else None
        )
        return cls.from_files(folder / VOCAB_FILE, folder / MERGES_FILE, settings)

    @classmethod
    def from_files(cls, vocab: Path, merges: Path, settings: TokenizerSettings) -> ClipTokenizer:
        vocab_ids = _read_vocab(Path(vocab))
        merge_pairs = _read_merges(Path(merges))
        try:
            model = BPE(
                vocab=vocab_ids,
                merges=merge_pairs,
                dropout=None,
                continuing_subword_prefix="",
                end_of_word_suffix=END_OF_WORD,
                fuse_unk=False,
                unk_token=settings.unk.content,
            )
        except Exception as err:  # the Rust side's error: a merge of tokens not in the vocabulary
            raise SRError(
                f"BPE merges {merges} do not fit vocabulary {vocab}: {' '.join(str(err).split())}"
            ) from None
        for key in ("bos", "eos", "unk", "pad"):
            # transformers would add it with a new id, past the end of the text encoder's embedding table
            if getattr(settings, key).content not in vocab_ids:
                raise SRError(
                    f"tokenizer vocabulary {vocab} lacks the {key} token {getattr(settings, key).content!r}"
                )
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        # Each found in the prompt as a whole token. Where two name the same text (SD-1.x: eos, unk, pad),
        # the first in transformers' order bos, eos, unk, pad decides how it is matched, as in transformers
        # 4.x (5.x lets the last decide: SD-1.x's plain-string pad, so "<|ENDOFTEXT|>" is not the eos there).
        specials = {}
        for token in (settings.bos, settings.eos, settings.unk, settings.pad):
            specials.setdefault(token.content, token)
        tokenizer.add_special_tokens([token.added_token() for token in specials.values()])
        return cls(tokenizer, settings)

    def encode(self, text: str) -> np.ndarray:
        """``text``'s ids, shape ``(max_length,)``, int64: bos, tokens (truncated), eos, padding."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Several prompts, shape ``(len(texts), max_length)``, int64."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("encode_batch takes a sequence of strings")
        out = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        keep = self.max_length - 2
        for row, encoding in zip(
            out, self.tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True
        ):
            ids = encoding.ids[:keep]
            row[0] = self.bos_id
            row[1 : 1 + len(ids)] = ids
            row[1 + len(ids)] = self.eos_id
        return out


def _json_object(path: Path, what: str) -> dict[str, Any]:
    document = read_json(path, what)
    if not isinstance(document, dict):
        raise SRError(f"{what} {path}: not a JSON object")
    return document


def _refuse_additional(settings: dict[str, Any], path: Path) -> None:
    """Extra special tokens would be split out of prompts by transformers; no SD tokenizer has any."""
    if settings.get("additional_special_tokens"):
        raise SRError(
            f"tokenizer file {path}: additional_special_tokens are not supported (SD's CLIP has none)"
        )


def _special_token(value: Any, key: str, where: str) -> SpecialToken:
    """A token as the files write it: a string, or an AddedToken object (``{"content": ...,
    "normalized": ...}``, with ``"__type": "AddedToken"`` in tokenizer_config.json). A bare string is
    matched un-normalised, as transformers adds it."""
    if isinstance(value, str) and value:
        return SpecialToken(value)
    if isinstance(value, dict) and isinstance(value.get("content"), str) and value["content"]:
        flags = {
            name: value.get(name, default)
            for name, default in (
                ("normalized", True),
                ("lstrip", False),
                ("rstrip", False),
                ("single_word", False),
            )
        }
        if all(isinstance(flag, bool) for flag in flags.values()):
            return SpecialToken(value["content"], **flags)
    raise SRError(f"tokenizer files {where}: {key} is {value!r:.80}, not a token")


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = _json_object(path, "tokenizer vocabulary")
    if not vocab:
        raise SRError(f"tokenizer vocabulary {path} is empty")
    for token, index in vocab.items():
        if not is_int(index, 0, 2**31 - 1):
            raise SRError(f"tokenizer vocabulary {path}: {token!r:.40} has id {index!r:.40}, not a token id")
    if len(set(vocab.values())) != len(vocab):
        raise SRError(f"tokenizer vocabulary {path}: two tokens share an id")
    return vocab


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """``merges.txt``: a ``#version`` line, then one merge per line, its two tokens separated by a space."""
    lines = read_text(path, "BPE merges").split("\n")
    if not lines[0].startswith("#version"):
        raise SRError(f"BPE merges {path} does not start with a '#version' line; is it a merges.txt?")
    if lines[-1] == "":
        lines.pop()
    merges = []
    for number, line in enumerate(lines[1:], start=2):
        pair = line.removesuffix("\r").split(" ")
        if len(pair) != 2 or not all(pair):
            raise SRError(
                f"BPE merges {path}: line {number} is {line!r:.60}, not two tokens separated by a space"
            )
        merges.append((pair[0], pair[1]))
    return merges
