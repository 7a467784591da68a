"""``sr_runtime.sd.clip_tokenizer`` gives transformers' CLIP tokenizer's input ids, without torch.

The vocabularies are the project's random-SD tokenizer files (merges learnt from a text): the tiny one of the
InvSR prompt and a medium one learnt here; both in SD-2.x's layout (pads with "!") and SD-1.x's (pads with the
eos). The real 49408-token CLIP vocabulary is not downloaded here (it was checked by hand, see the module).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr_runtime.errors import SRError
from sr_runtime.sd.clip_tokenizer import ClipTokenizer, TokenizerSettings

transformers = pytest.importorskip("transformers")

TINY_TEXT = (
    "Cinematic, high-contrast, photo-realistic, 8k, ultra HD, meticulous detailing, hyper sharpness, "
    "perfect without deformations"
)
MEDIUM_TEXT = """A photograph of a golden retriever dog running on green grass under a blue sky with white
clouds, mountains and a lake in the background, trees, flowers, a wooden house, people walking on the street,
cars parked by the road, a red bicycle, the city skyline at night with lights, buildings, windows, a bridge
over the river, boats, birds flying, a cat sleeping on the sofa, the living room, a table with cups and
plates, food, fruit, apples, oranges, bananas, a woman smiling, a man wearing a hat and glasses, children
playing, portrait, close-up, landscape, architecture, nature, animal, snow, beach, sand, ocean, waves, sunset,
sunrise, rubik's cube, t-shirt, 3D CG rendering, French fries, mp3 player, high-resolution, 8k, 4k, ultra HD,
sharp, detailed, clean, realistic, cinematic, high-contrast, photo-realistic, meticulous detailing, hyper
sharpness, perfect without deformations, it's a dog's life, don't stop, we're here, I've seen, I'm fine,
you'll see!"""
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def write_tokenizer_files(folder: Path, vocabulary_text: str) -> Path:
    """The project's random-SD tokenizer files (SD-2.x's) in ``folder``: the one place naming their writer."""
    from sr_export.sd.random_checkpoints import _write_tokenizer

    _write_tokenizer(folder, vocabulary_text)
    return folder


def as_sd1(folder: Path) -> Path:
    """The same files with SD-1.x's special tokens map: padding with the eos, a plain string."""
    path = folder / "special_tokens_map.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pad_token": EOS}))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip-tokenizers")
    found = {}
    for name, text in (("tiny", TINY_TEXT), ("medium", MEDIUM_TEXT)):
        found[f"{name}-sd2"] = write_tokenizer_files(root / f"{name}-sd2" / "tokenizer", text)
        found[f"{name}-sd1"] = as_sd1(write_tokenizer_files(root / f"{name}-sd1" / "tokenizer", text))
    return found


def strings() -> list[str]:
    edge = [
        "",
        " ",
        "\n",
        "\t\t",
        "   \n\t  \r\n ",
        "dog, grass, sky, ,",
        "dog | grass | sky, ,",
        "dog, grass, sky, , ",
        TINY_TEXT,
        TINY_TEXT.upper(),
        "hello world!",
        "wow!!! great",
        "!!!",
        "!",
        "a!b",
        "Hello!World",
        "?!?!",
        "...",
        "a...b",
        "dog,cat;bird:fish",
        "\"quoted\" 'single'",
        "(parens) [brackets] {braces} <angle>",
        "a-b_c/d\\e|f",
        "#hash @at $dollar %pct ^caret &amp *star",
        "12345",
        "3.14159",
        "1,000,000",
        "8k 4K 1080p",
        "x2 x4",
        "2024-06-01",
        "1st 2nd 3rd",
        "it's",
        "don't",
        "we're",
        "I've",
        "I'm",
        "you'll",
        "he'd",
        "IT'S DON'T",
        "rubik's cube",
        "'s 't 're",
        "''s",
        "'''",
        "o'clock",
        "rock'n'roll",
        "dogs' toys",
        "don’t",
        "‘curly’ “double”",
        "café naïve résumé",
        "CAFÉ",
        "cafe\u0301",
        "Ångström",
        "Zürich straße",
        "ŁÓDŹ",
        "İstanbul",
        "ΟΔΟΣ σοφία",
        "Привет мир",
        "東京タワー",
        "北京 上海",
        "漢字かな交じり文",
        "한국어 텍스트",
        "中文,英文,日本語",
        "ＡＢＣ ｆｕｌｌ",
        "ﬁne ﬂower",
        "😀",
        "dog 🐶 cat 🐱",
        "👩\u200d👩\u200d👧\u200d👦 family",
        "🇯🇵 flag",
        "❤️ love",
        "✨sparkle✨",
        "a\u200bb",
        "zero\u200dwidth",
        "soft\u00adhyphen",
        "\ufeffbom",
        "tab\tseparated\tvalues",
        "line\nbreaks\r\nhere",
        "nbsp\u00a0space",
        "em\u2003space",
        "ideographic\u3000space",
        "  leading and trailing  ",
        "multiple     spaces",
        "UPPER CASE PROMPT",
        "MiXeD CaSe",
        "camelCaseWord",
        BOS,
        EOS,
        f"a{EOS}b",
        "A<|ENDOFTEXT|>B",
        f"{BOS}x",
        EOS + EOS,
        "<|endoftext",
        "|endoftext|>",
        "</w>",
        "a</w>b",
        "&lt;tag&gt;",
        "&amp;",
        "Ã©",
        "\x00null",
        "ctrl\x07bell",
        "del\x7f",
        "\U0001fae0 melting",
        "\u0e01\u0e34\u0e19 thai",
        "हिन्दी",
        "العربية",
        "עברית",
        "a" * 300,
        "supercalifragilisticexpialidocious" * 10,
        "x" * 3000,
    ]
    lengths = []
    for n in (74, 75, 76, 77, 78, 100):
        lengths += [
            "a " * n,
            "1" * n,
            "!" * n,
            "dog, " * n,
            ("cinematic " * n).strip(),
            "\n".join(["hd"] * n),
        ]
    rng = random.Random(0)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  ,.!?'-|;:()\t\n")
        + list("éüñçàÉ東京日本語한국ΣσπжЖ😀🐶✨❤️\u200d\u0301\u00a0\u3000’“”&;<>|")
        + ["'s", "'t", BOS, EOS, "</w>"]
    )
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(250)]
    words = sorted(set(re.findall(r"[\w'-]+", MEDIUM_TEXT)))
    tags = [" | ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) + ", ," for _ in range(100)]
    return edge + lengths + fuzz + tags


STRINGS = strings()


def uppercase_special(text: str) -> bool:
    """The one input on which transformers 5 differs from 4.x with SD-1.x's files (see the module)."""
    return any(m.group() != m.group().lower() for m in re.finditer(r"<\|(start|end)oftext\|>", text, re.I))


def reference_ids(cls, folder: Path, texts: list[str]) -> np.ndarray:
    tokenizer = cls.from_pretrained(str(folder))
    assert tokenizer.model_max_length == 77
    out = tokenizer(texts, max_length=tokenizer.model_max_length, padding="max_length", truncation=True)
    return np.array(out["input_ids"], dtype=np.int64)


@pytest.mark.parametrize("name", ["tiny-sd2", "tiny-sd1", "medium-sd2", "medium-sd1"])
@pytest.mark.parametrize("reference", ["AutoTokenizer", "CLIPTokenizer", "CLIPTokenizerFast"])
def test_ids_equal_transformers(folders, name, reference):
    cls = getattr(transformers, reference)
    if reference == "CLIPTokenizer" and cls is not transformers.CLIPTokenizerFast:
        pytest.skip("transformers 4.x's slow CLIPTokenizer differs on some unicode (ftfy or BasicTokenizer)")
    texts = [s for s in STRINGS if not (name.endswith("sd1") and uppercase_special(s))]
    got = ClipTokenizer.from_folder(folders[name]).encode_batch(texts)
    expected = reference_ids(cls, folders[name], texts)
    assert got.dtype == np.int64 and got.shape == (len(texts), 77)
    differ = [texts[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not differ, f"{len(differ)} of {len(texts)} differ, e.g. {differ[:5]}"


def test_special_tokens_are_whole_tokens(folders):
    """SD-2.x's pad "!" is a special token, so every "!" of a prompt is id 0; the normalised eos is matched
    after lower-casing with both layouts (as transformers 4.28, the official pin, does)."""
    sd2 = ClipTokenizer.from_folder(folders["tiny-sd2"])
    vocab = json.loads((folders["tiny-sd2"] / "vocab.json").read_text())
    a, b, bos, eos = vocab["a</w>"], vocab["b</w>"], vocab[BOS], vocab[EOS]
    assert sd2.pad_id == vocab["!"] == 0
    assert list(sd2.encode("a!!b")[:6]) == [bos, a, 0, 0, b, eos]
    for name in ("tiny-sd2", "tiny-sd1"):
        tokenizer = ClipTokenizer.from_folder(folders[name])
        assert list(tokenizer.encode("A<|ENDOFTEXT|>B")[:5]) == [bos, a, eos, b, eos]
    sd1 = ClipTokenizer.from_folder(folders["tiny-sd1"])
    assert sd1.pad_id == eos and list(sd1.encode("a!")[:4]) == [bos, a, vocab["!</w>"], eos]


@pytest.mark.parametrize("n", [74, 75, 76, 77, 200])
def test_truncation_keeps_the_eos(folders, n):
    tokenizer = ClipTokenizer.from_folder(folders["tiny-sd2"].parent)  # the diffusers folder works too
    vocab = json.loads((folders["tiny-sd2"] / "vocab.json").read_text())
    ids = tokenizer.encode("a " * n)
    kept = min(n, 75)
    assert ids.shape == (77,) and ids.dtype == np.int64
    assert list(ids) == [vocab[BOS]] + [vocab["a</w>"]] * kept + [vocab[EOS]] + [0] * (75 - kept)
    np.testing.assert_array_equal(tokenizer.encode_batch(["a " * n, ""])[0], ids)


def write_folder(root: Path) -> Path:
    return write_tokenizer_files(root / "tokenizer", TINY_TEXT)


def broken(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: (f / "vocab.json").unlink() or f / "vocab.json",
        lambda f: (f / "merges.txt").unlink() or f / "merges.txt",
        lambda f: (f / "tokenizer_config.json").unlink() or f / "tokenizer_config.json",
        lambda f: broken(f / "vocab.json", "{not json"),
        lambda f: broken(f / "vocab.json", "[1, 2]"),
        lambda f: broken(f / "vocab.json", '{"a": "one"}'),
        lambda f: broken(f / "merges.txt", "c i\n"),
        lambda f: broken(f / "merges.txt", "#version: 0.2\nc i n\n"),
        lambda f: broken(f / "merges.txt", "#version: 0.2\nc zzz\n"),
        lambda f: broken(f / "tokenizer_config.json", '{"model_max_length": 1e30}'),
        lambda f: broken(
            f / "tokenizer_config.json",
            json.dumps({**json.loads((f / "tokenizer_config.json").read_text()), "model_max_length": None}),
        ),
        lambda f: broken(f / "special_tokens_map.json", json.dumps({"pad_token": {"content": 3}})),
        lambda f: broken(f / "special_tokens_map.json", "\xff"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, damage):
    folder = write_folder(tmp_path)
    path = damage(folder)
    with pytest.raises(SRError) as err:
        ClipTokenizer.from_folder(folder)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_tokens_missing_from_the_vocabulary(tmp_path):
    folder = write_folder(tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text())
    del vocab[BOS]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(SRError, match=f"vocabulary {re.escape(str(folder))}.* lacks the bos token"):
        ClipTokenizer.from_folder(folder)


def test_settings_follow_transformers_precedence(tmp_path):
    folder = write_folder(tmp_path)
    with_map = TokenizerSettings.from_files(
        folder / "tokenizer_config.json", folder / "special_tokens_map.json"
    )
    alone = TokenizerSettings.from_files(folder / "tokenizer_config.json")
    assert with_map.pad.content == "!" and alone.pad.content == EOS and with_map.max_length == 77
    assert with_map.eos.normalized and not with_map.pad.normalized
    (folder / "special_tokens_map.json").unlink()  # optional, as in transformers
    assert ClipTokenizer.from_folder(folder).pad_id == json.loads((folder / "vocab.json").read_text())[EOS]


def test_runtime_module_imports_no_torch():
    code = (
        "import sys\n"
        "import sr_runtime.sd.clip_tokenizer\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'sr_export') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
