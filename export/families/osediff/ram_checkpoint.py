"""OSEDiff's tagger from the official files: RAM's ``ram_swin_large_14m.pth`` (``{'model': state_dict}``) with DAPE's
LoRA (``DAPE.pth``, a flat dict of every ``lora_A`` / ``lora_B`` of the LoRA model) merged as loralib merges it when
the official script calls ``.eval()``; and the tag list and class thresholds the official model reads beside them.

What the official code does, and this loader with it:

- RAM's weights come from ``checkpoint['model']`` with the Swin's ``relative_position_index`` / ``attn_mask`` buffers
  dropped (rebuilt here) and old ``vision_multi`` names read as ``tagging_head``. The captioning branches
  (``tag_encoder``, ``text_decoder``) are not on the tagging path and are not read;
- every LoRA layer has rank 8 and loralib's default alpha 1: the merged weight is ``W + (B @ A) / 8``; the Swin's fused
  qkv carries it on q and v only (``MergedLinear`` with ``enable_lora=[True, False, True]``: A stacks the q and v
  down-projections, B the up-projections), the tagging head on its cross-attention query and key;
- the first tagging-head layers share their weight tensors with the same layers of ``tag_encoder`` (the official
  ties them), but not their LoRA: on ``.eval()`` each of the two modules adds its own LoRA to the one shared
  weight, tag_encoder's first. Both are merged here in that order.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sr_runtime.bounded_parse import read_text
from sr_runtime.errors import SRError

from ...checkpoints import load_checkpoint_dict
from .ram import RamConfig, RamTagger, checkpoint_key

RAM_FILE, DAPE_FILE = "ram_swin_large_14m.pth", "DAPE.pth"  # the official downloads' names
TAG_LIST_FILE, THRESHOLD_FILE = "ram_tag_list.txt", "ram_tag_list_threshold.txt"  # the official ram/data/
DAPE_RANK = 8  # swin_transformer_lora.py and bert_lora.py build every LoRA layer with r=8
DAPE_ALPHA = 1  # loralib's default lora_alpha, which those layers keep
QKV_LORA_PARTS = (True, False, True)  # swin_transformer_lora.py: enable_lora=[True, False, True] (q, k, v)
DEFAULT_THRESHOLD = 0.68  # ram_lora.py's threshold=0.68, kept by classes the threshold file does not reach
MAX_TAG_FILE_BYTES = 4 * 2**20  # the official tag list is 42 kB, the thresholds 22 kB

_OURS = re.compile(r"visual_encoder\.|image_proj\.|wordvec_proj\.|fc\.|label_embed$|tagging_head\.encoder\.layer\.")
_REBUILT_BUFFERS = re.compile(r"\.(relative_position_index|attn_mask)$")
_SWIN_QKV = re.compile(r"visual_encoder\.layers\.\d+\.blocks\.\d+\.attn\.qkv$")
_HEAD_QUERY_KEY = re.compile(r"tagging_head\.encoder\.layer\.(\d+)\.crossattention\.self\.(query|key)$")
_CAPTIONING_QUERY_KEY = re.compile(r"(tag_encoder|text_decoder)\..*\.(query|key)$")


def load_ram_tagger(ram_path: str | Path, dape_path: str | Path) -> RamTagger:
    """The tagger in eval mode with DAPE's LoRA merged; every problem with either file is one SRError line."""
    ram_path, dape_path = Path(ram_path), Path(dape_path)
    state = _ram_state(ram_path)
    try:
        config = RamConfig.from_shapes({key: value.shape for key, value in state.items()})
        tagger = RamTagger(config)
    except KeyError as err:
        raise SRError(f"RAM checkpoint {ram_path} lacks {err.args[0]}") from None
    except (ValueError, IndexError) as err:
        raise SRError(f"RAM checkpoint {ram_path} does not describe a RAM Swin tagger: {err}") from None
    _load_weights(tagger, state, ram_path)
    _merge_dape(tagger, _dape_layers(dape_path), dape_path)
    return tagger.eval()


def _ram_state(path: Path) -> dict[str, torch.Tensor]:
    loaded = load_checkpoint_dict(path)
    state = loaded.get("model")
    if not isinstance(state, dict):
        raise SRError(f"RAM checkpoint {path} has no 'model' state dict (keys: {sorted(map(str, loaded))[:5]})")
    renamed = {}
    for key, value in state.items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            renamed[key.replace("vision_multi", "tagging_head")] = value
    return renamed


def _load_weights(tagger: RamTagger, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = tagger.state_dict()
    wanted = {checkpoint_key(key): key for key in expected}
    for key in state:
        if _OURS.match(key) and not _REBUILT_BUFFERS.search(key) and key not in wanted:
            raise SRError(f"RAM checkpoint {path}: unexpected key {key} for a tagger of its other tensors' sizes")
    weights = {}
    for key, ours in wanted.items():
        if key not in state:
            raise SRError(f"RAM checkpoint {path} lacks {key}")
        if state[key].shape != expected[ours].shape:
            raise SRError(f"RAM checkpoint {path}: {key} has shape {tuple(state[key].shape)}, where its other tensors "
                          f"make it {tuple(expected[ours].shape)}")
        weights[ours] = state[key]
    tagger.load_state_dict(weights)


@dataclass(frozen=True)
class LoraPair:
    down: torch.Tensor  # lora_A: (rank * enabled parts, in)
    up: torch.Tensor  # lora_B: (out / parts * enabled parts, rank)


def _dape_layers(path: Path) -> dict[str, LoraPair]:
    """The LoRA layers of DAPE.pth by layer name, each with both of its tensors."""
    state = load_checkpoint_dict(path)
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        layer, _, half = str(key).rpartition(".")
        if half not in ("lora_A", "lora_B") or not isinstance(value, torch.Tensor) or value.ndim != 2:
            raise SRError(f"DAPE checkpoint {path}: {key} is not a LoRA matrix (.lora_A / .lora_B)")
        halves.setdefault(layer, {})[half] = value
    layers = {}
    for layer, pair in halves.items():
        for half in ("lora_A", "lora_B"):
            if half not in pair:
                raise SRError(f"DAPE checkpoint {path} lacks {layer}.{half}")
        layers[layer] = LoraPair(pair["lora_A"], pair["lora_B"])
    return layers


def _merge_dape(tagger: RamTagger, layers: dict[str, LoraPair], path: Path) -> None:
    targets = {}  # LoRA layer -> (our weight it merges into, enabled parts)
    for key in tagger.state_dict():
        name = checkpoint_key(key).removesuffix(".weight")
        if _SWIN_QKV.match(name):
            targets[name] = (key, QKV_LORA_PARTS)
        elif _HEAD_QUERY_KEY.match(name):
            targets[name] = (key, (True,))
            targets[name.replace("tagging_head.", "tag_encoder.", 1)] = (key, (True,))
    for required in (name for name in targets if not name.startswith("tag_encoder.")):
        if required not in layers:
            raise SRError(f"DAPE checkpoint {path} lacks {required}.lora_A")
    weights = dict(tagger.named_parameters())
    # tag_encoder's LoRA first: the official eval() reaches tag_encoder before tagging_head.
    for layer in sorted(layers, key=lambda name: not name.startswith("tag_encoder.")):
        pair = layers[layer]
        if layer in targets:
            weight_key, parts = targets[layer]
            delta = _lora_delta(pair, weights[weight_key].shape, parts, f"DAPE checkpoint {path}: {layer}")
            with torch.no_grad():
                weights[weight_key] += delta * (DAPE_ALPHA / DAPE_RANK)
        elif _CAPTIONING_QUERY_KEY.match(layer):  # off the tagging path: only its rank is checked
            _lora_delta(pair, (pair.up.shape[0], pair.down.shape[1]), (True,), f"DAPE checkpoint {path}: {layer}")
        else:
            raise SRError(f"DAPE checkpoint {path}: {layer}.lora_A is not a LoRA layer of RAM's tagger")


def _lora_delta(pair: LoraPair, weight_shape: torch.Size | tuple[int, int], parts: tuple[bool, ...],
                where: str) -> torch.Tensor:
    """(B @ A) laid over the weight's rows as loralib's zero_pad lays it: one (out / parts)-row slice per
    enabled part, from that part's rank-sized slices of A and B; rows of disabled parts stay zero."""
    out_features, in_features = weight_shape
    part_rows = out_features // len(parts)
    enabled = [index for index, on in enumerate(parts) if on]
    for half, tensor, shape in (("lora_A", pair.down, (DAPE_RANK * len(enabled), in_features)),
                                ("lora_B", pair.up, (part_rows * len(enabled), DAPE_RANK))):
        if tuple(tensor.shape) != shape:
            raise SRError(f"{where}.{half} has shape {tuple(tensor.shape)}, expected {shape} (rank {DAPE_RANK})")
    down, up = pair.down.float(), pair.up.float()
    delta = torch.zeros(out_features, in_features)
    for group, part in enumerate(enabled):
        rows = slice(part * part_rows, (part + 1) * part_rows)
        delta[rows] = up[group * part_rows:(group + 1) * part_rows] @ down[group * DAPE_RANK:(group + 1) * DAPE_RANK]
    return delta


@dataclass(frozen=True)
class TagVocabulary:
    tags: tuple[str, ...]
    thresholds: tuple[float, ...]  # per class, float32 values: the official compares in float32


def read_tag_vocabulary(tag_list: str | Path, thresholds: str | Path, num_classes: int) -> TagVocabulary:
    """The official ``ram_tag_list.txt`` (one tag a line, ``str.splitlines``) and ``ram_tag_list_threshold.txt``
    (one number a line; classes past its end keep 0.68), for a tagger of ``num_classes`` classes."""
    tag_list, thresholds = Path(tag_list), Path(thresholds)
    tags = tuple(read_text(tag_list, "tag list", MAX_TAG_FILE_BYTES).splitlines())
    if len(tags) != num_classes:
        raise SRError(f"tag list {tag_list} has {len(tags)} tags; the tagger has {num_classes} classes")
    values = [DEFAULT_THRESHOLD] * num_classes
    # Iterated as the official iterates its open file: universal newlines, no other line breaks.
    lines = io.StringIO(read_text(thresholds, "threshold file", MAX_TAG_FILE_BYTES), newline=None)
    for number, line in enumerate(lines, start=1):
        if number > num_classes:
            raise SRError(f"threshold file {thresholds} has more lines than the {num_classes} classes")
        try:
            values[number - 1] = float(line.strip())
        except ValueError:
            raise SRError(f"threshold file {thresholds}, line {number}: {line.strip()[:40]!r} is not a number") from None
        if not math.isfinite(values[number - 1]):
            raise SRError(f"threshold file {thresholds}, line {number}: {line.strip()} is not a finite number")
    return TagVocabulary(tags, tuple(np.asarray(values, dtype=np.float32).tolist()))
