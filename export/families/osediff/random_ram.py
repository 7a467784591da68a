"""Seeded random-weight RAM and DAPE files in the official formats, tiny, for the tests and the official comparison:
``ram_swin_large_14m.pth`` as ``{'model': state_dict}`` of RAM (every key the official model has, in its order: the
Swin with its index and mask buffers, the captioning ``tag_encoder`` and ``text_decoder``, the tagging head, the
projections), ``DAPE.pth`` as the flat dict of every ``lora_A`` / ``lora_B`` of the LoRA model, and the tag list and
threshold text files. Tensors the official model shares (the first tag_encoder layers with the tagging head, the
text decoder's output embedding with its input embedding) are one tensor here too, as ``torch.save`` of a state
dict stores them.

The official code takes its sizes from JSON configs (``TinyRamSizes.official_configs`` gives the ones that match);
the window stays 12 at 384, so the patch grid is 96 and a stage of 12 (or less) is one unshifted window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ...swin_windows import relative_position_index
from .ram import IMAGE_SIZE, shifted_window_mask
from .ram_checkpoint import DAPE_FILE, RAM_FILE, TAG_LIST_FILE, THRESHOLD_FILE

PATCH_SIZE = 4  # ram_lora.py builds the Swin with patch_size=4
MLP_RATIO = 4  # and mlp_ratio=4.
IMAGE_EMBED = 512  # ram_lora.py: image_proj = nn.Linear(vision_width, 512), and encoder_width = 512
WINDOW = 12  # config_swinL_384.json "window_size"
# Lower than the official 0.65-0.93: random weights give probabilities of about 0.1-0.85, and the comparison needs
# tags both kept and dropped.
THRESHOLD_CHOICES = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.68, 0.7)


@dataclass(frozen=True)
class TinyRamSizes:
    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    head_width: int  # the tagging head's hidden size, and so the tag_encoder's (their first layers are shared)
    head_ffn_width: int
    head_layers: int
    num_classes: int
    text_layers: int = 2  # tag_encoder / text_decoder depth (med_config), at least head_layers
    text_heads: int = 4
    vocab_size: int = 64
    max_positions: int = 16
    text_cross_width: int = 32  # text_decoder's cross-attention input (med_config "encoder_width")

    def official_configs(self) -> dict[str, dict]:
        """The official JSON configs for these sizes, by file name under ram/configs/: what the official code must
        read to build the model these files hold."""
        bert = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "hidden_size": self.head_width, "initializer_range": 0.02,
                "intermediate_size": self.head_ffn_width, "layer_norm_eps": 1e-12,
                "max_position_embeddings": self.max_positions, "model_type": "bert", "pad_token_id": 0,
                "type_vocab_size": 2, "vocab_size": self.vocab_size, "add_cross_attention": True}
        return {
            "swin/config_swinL_384.json": {
                "vision_width": self.embed_dim * 2 ** (len(self.depths) - 1), "image_res": IMAGE_SIZE,
                "window_size": WINDOW, "embed_dim": self.embed_dim, "depths": list(self.depths),
                "num_heads": list(self.heads)},
            "med_config.json": {**bert, "num_attention_heads": self.text_heads, "num_hidden_layers": self.text_layers,
                                "encoder_width": self.text_cross_width},
            "q2l_config.json": {**bert, "num_attention_heads": 4, "num_hidden_layers": self.head_layers,
                                "encoder_width": self.head_width, "add_tag_cross_attention": False},
        }


TINY_RAM = TinyRamSizes(embed_dim=16, depths=(2, 2, 2, 2), heads=(1, 2, 2, 4), head_width=32, head_ffn_width=64,
                        head_layers=2, num_classes=24)
# Different in every size the loader reads, with a 3-stage Swin whose last stage (24 > 12) has shifted windows.
TINY_RAM_WIDE = TinyRamSizes(embed_dim=24, depths=(2, 1, 3), heads=(2, 3, 6), head_width=48, head_ffn_width=96,
                             head_layers=1, num_classes=40, text_layers=3)


@dataclass(frozen=True)
class RamFiles:
    ram: Path
    dape: Path
    tag_list: Path
    thresholds: Path


class _RandomTensors:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator) * std

    def linear(self, prefix: str, out_features: int, in_features: int, bias: bool = True) -> Iterator:
        yield prefix + "weight", self.normal(out_features, in_features, std=in_features ** -0.5)
        if bias:
            yield prefix + "bias", self.normal(out_features, std=0.1)

    def norm(self, prefix: str, features: int) -> Iterator:
        yield prefix + "weight", 1 + self.normal(features, std=0.1)
        yield prefix + "bias", self.normal(features, std=0.1)


def _swin(t: _RandomTensors, sizes: TinyRamSizes) -> Iterator:
    dim = sizes.embed_dim
    yield "visual_encoder.patch_embed.proj.weight", t.normal(dim, 3, PATCH_SIZE, PATCH_SIZE, std=0.2)
    yield "visual_encoder.patch_embed.proj.bias", t.normal(dim, std=0.1)
    yield from t.norm("visual_encoder.patch_embed.norm.", dim)
    size = IMAGE_SIZE // PATCH_SIZE
    for stage, (depth, heads) in enumerate(zip(sizes.depths, sizes.heads, strict=True)):
        window = min(WINDOW, size)
        for index in range(depth):
            block = f"visual_encoder.layers.{stage}.blocks.{index}."
            if index % 2 and window < size:
                yield block + "attn_mask", shifted_window_mask(size, window, window // 2)
            yield from t.norm(block + "norm1.", dim)
            yield block + "attn.relative_position_bias_table", t.normal((2 * window - 1) ** 2, heads, std=0.5)
            yield block + "attn.relative_position_index", relative_position_index(window)
            yield from t.linear(block + "attn.qkv.", 3 * dim, dim)
            yield from t.linear(block + "attn.proj.", dim, dim)
            yield from t.norm(block + "norm2.", dim)
            yield from t.linear(block + "mlp.fc1.", MLP_RATIO * dim, dim)
            yield from t.linear(block + "mlp.fc2.", dim, MLP_RATIO * dim)
        if stage < len(sizes.depths) - 1:
            yield from t.linear(f"visual_encoder.layers.{stage}.downsample.reduction.", 2 * dim, 4 * dim, bias=False)
            yield from t.norm(f"visual_encoder.layers.{stage}.downsample.norm.", 4 * dim)
            dim, size = 2 * dim, size // 2
    yield from t.norm("visual_encoder.norm.", dim)


def _bert_embeddings(t: _RandomTensors, prefix: str, sizes: TinyRamSizes) -> Iterator:
    yield prefix + "position_ids", torch.arange(sizes.max_positions).expand((1, -1))
    yield prefix + "word_embeddings.weight", t.normal(sizes.vocab_size, sizes.head_width)
    yield prefix + "position_embeddings.weight", t.normal(sizes.max_positions, sizes.head_width)
    yield from t.norm(prefix + "LayerNorm.", sizes.head_width)


def _bert_layer(t: _RandomTensors, prefix: str, sizes: TinyRamSizes, cross_width: int, self_attention: bool):
    width, ffn = sizes.head_width, sizes.head_ffn_width
    for part, key_width in (("attention.", width), ("crossattention.", cross_width))[0 if self_attention else 1:]:
        yield from t.linear(prefix + part + "self.query.", width, width)
        yield from t.linear(prefix + part + "self.key.", width, key_width)
        yield from t.linear(prefix + part + "self.value.", width, key_width)
        yield from t.linear(prefix + part + "output.dense.", width, width)
        yield from t.norm(prefix + part + "output.LayerNorm.", width)
    yield from t.linear(prefix + "intermediate.dense.", ffn, width)
    yield from t.linear(prefix + "output.dense.", width, ffn)
    yield from t.norm(prefix + "output.LayerNorm.", width)


def random_ram_state(sizes: TinyRamSizes, seed: int) -> dict[str, torch.Tensor]:
    """RAM's state dict, keys in the official model's order."""
    t = _RandomTensors(seed)
    state = {"label_embed": t.normal(sizes.num_classes, IMAGE_EMBED)}
    state.update(_swin(t, sizes))
    state.update(_bert_embeddings(t, "tag_encoder.embeddings.", sizes))
    for index in range(sizes.text_layers):
        state.update(_bert_layer(t, f"tag_encoder.encoder.layer.{index}.", sizes, IMAGE_EMBED, self_attention=True))
    state.update(_bert_embeddings(t, "text_decoder.bert.embeddings.", sizes))
    for index in range(sizes.text_layers):
        state.update(_bert_layer(t, f"text_decoder.bert.encoder.layer.{index}.", sizes, sizes.text_cross_width,
                                 self_attention=True))
    heads = "text_decoder.cls.predictions."
    state[heads + "bias"] = t.normal(sizes.vocab_size, std=0.1)
    state.update(t.linear(heads + "transform.dense.", sizes.head_width, sizes.head_width))
    state.update(t.norm(heads + "transform.LayerNorm.", sizes.head_width))
    state[heads + "decoder.weight"] = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    state[heads + "decoder.bias"] = state[heads + "bias"]
    for index in range(sizes.head_layers):
        shared = f"tag_encoder.encoder.layer.{index}."
        for key in [key for key in state if key.startswith(shared) and not key.startswith(shared + "attention.")]:
            state[key.replace(shared, f"tagging_head.encoder.layer.{index}.")] = state[key]
    state.update(t.linear("wordvec_proj.", sizes.head_width, IMAGE_EMBED))
    state.update(t.linear("fc.", 1, sizes.head_width))
    vision_width = sizes.embed_dim * 2 ** (len(sizes.depths) - 1)
    state.update(t.linear("image_proj.", IMAGE_EMBED, vision_width))
    return state


def random_dape_state(ram_state: dict[str, torch.Tensor], seed: int, rank: int = 8) -> dict[str, torch.Tensor]:
    """DAPE.pth for that RAM: a LoRA pair after every LoRA layer's weight, in the state dict's order (the Swin's
    fused qkv with q and v parts; every BERT query and key, the captioning branches' included)."""
    t = _RandomTensors(seed)
    lora = {}
    for key, weight in ram_state.items():
        layer = key.removesuffix(".weight")
        if layer.endswith(".attn.qkv"):
            parts = 2  # q and v of three
            out_features = weight.shape[0] // 3 * parts
        elif layer.endswith((".self.query", ".self.key")):
            parts, out_features = 1, weight.shape[0]
        else:
            continue
        lora[layer + ".lora_A"] = t.normal(rank * parts, weight.shape[1], std=weight.shape[1] ** -0.5)
        lora[layer + ".lora_B"] = t.normal(out_features, rank, std=0.5)
    return lora


def write_random_ram(folder: str | Path, sizes: TinyRamSizes = TINY_RAM, seed: int = 0) -> RamFiles:
    """The four official files for ``sizes`` in ``folder``, under their official names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = RamFiles(folder / RAM_FILE, folder / DAPE_FILE, folder / TAG_LIST_FILE, folder / THRESHOLD_FILE)
    ram_state = random_ram_state(sizes, seed)
    torch.save({"model": ram_state}, files.ram)
    torch.save(random_dape_state(ram_state, seed + 1), files.dape)
    # As the official files are laid out: no newline after the last tag, one after every threshold.
    files.tag_list.write_text("\n".join(f"tiny tag {index}" for index in range(sizes.num_classes)), encoding="utf-8")
    generator = torch.Generator().manual_seed(seed + 2)
    picks = torch.randint(len(THRESHOLD_CHOICES), (sizes.num_classes,), generator=generator).tolist()
    files.thresholds.write_text("".join(f"{THRESHOLD_CHOICES[pick]}\n" for pick in picks), encoding="utf-8")
    return files

