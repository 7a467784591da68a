"""OSEDiff's RAM + DAPE tagger on tiny random files in the official formats: the real loader, sizes read from the
checkpoint, the LoRA merge against loralib's unmerged formula (with the tagging head's tied weights), one-line
errors for bad files, and the tag list / threshold files. The comparison with the official code itself is
scripts/official_osediff_ram.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sr_export.families.osediff.ram import shifted_window_mask, tagger_input
from sr_export.families.osediff.ram_checkpoint import (
    DEFAULT_THRESHOLD,
    MAX_TAG_FILE_BYTES,
    load_ram_tagger,
    read_tag_vocabulary,
)
from sr_export.families.osediff.random_ram import TINY_RAM, TINY_RAM_WIDE, write_random_ram
from sr_runtime.errors import SRError
from sr_runtime.families.osediff.prompt import tag_string

LORA_SCALE = 1 / 8  # loralib: lora_alpha (default 1) / r (8)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return write_random_ram(tmp_path_factory.mktemp("tiny-ram"), TINY_RAM, seed=4)


@pytest.fixture(scope="module")
def tiny_tagger(tiny_files):
    return load_ram_tagger(tiny_files.ram, tiny_files.dape)


def _error_line(call) -> str:
    with pytest.raises(SRError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def _rewritten_ram(files, tmp_path, change):
    data = torch.load(files.ram, weights_only=True)
    change(data["model"])
    path = tmp_path / "ram.pth"
    torch.save(data, path)
    return path


def _rewritten_dape(files, tmp_path, change):
    data = torch.load(files.dape, weights_only=True)
    change(data)
    path = tmp_path / "DAPE.pth"
    torch.save(data, path)
    return path


def test_tiny_checkpoint_loads_and_tags(tiny_tagger):
    config = tiny_tagger.config
    assert not tiny_tagger.training
    assert [(s.dim, s.depth, s.heads, s.window) for s in config.stages] == [
        (16, 2, 1, 12), (32, 2, 2, 12), (64, 2, 2, 12), (128, 2, 4, 12)]
    assert (config.head_layers, config.head_width, config.head_ffn_width, config.num_classes) == (2, 32, 64, 24)
    image = tagger_input(torch.rand(2, 3, 200, 264, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        probabilities = tiny_tagger(image)
    assert probabilities.shape == (2, 24)
    assert bool(((probabilities > 0) & (probabilities < 1)).all())
    assert not torch.equal(probabilities[0], probabilities[1])


def test_sizes_come_from_the_checkpoint(tmp_path, tiny_tagger):
    wide_files = write_random_ram(tmp_path, TINY_RAM_WIDE, seed=1)
    wide = load_ram_tagger(wide_files.ram, wide_files.dape)
    config = wide.config
    assert [(s.dim, s.depth, s.heads) for s in config.stages] == [(24, 2, 2), (48, 1, 3), (96, 3, 6)]
    assert (config.head_layers, config.head_width, config.num_classes) == (1, 48, 40)
    # The last stage of the wide Swin (24x24, window 12) shifts its odd blocks; the tiny one's (12x12) is one window.
    assert wide.visual_encoder.layers[2].blocks[1].shift == 6
    assert tiny_tagger.visual_encoder.layers[3].blocks[1].shift == 0
    assert tiny_tagger.visual_encoder.layers[2].blocks[1].shift == 6
    with torch.no_grad():
        assert wide(torch.zeros(1, 3, 384, 384)).shape == (1, 40)


def test_qkv_merge_equals_unmerged_loralib(tiny_files, tiny_tagger):
    """loralib's MergedLinear forward before merging: x W^T + b, plus (x A_g^T B_g^T) * scale on the rows of each
    enabled part g (q and v; not k)."""
    base = torch.load(tiny_files.ram, weights_only=True)["model"]
    lora = torch.load(tiny_files.dape, weights_only=True)
    name = "visual_encoder.layers.1.blocks.1.attn.qkv"
    weight, bias, a, b = base[name + ".weight"], base[name + ".bias"], lora[name + ".lora_A"], lora[name + ".lora_B"]
    dim = weight.shape[1]
    x = torch.randn(5, dim, generator=torch.Generator().manual_seed(1))
    unmerged = F.linear(x, weight, bias)
    unmerged[:, :dim] += x @ a[:8].T @ b[:dim].T * LORA_SCALE
    unmerged[:, 2 * dim:] += x @ a[8:].T @ b[dim:].T * LORA_SCALE
    merged = tiny_tagger.visual_encoder.layers[1].blocks[1].attn.qkv
    torch.testing.assert_close(merged(x), unmerged, rtol=0, atol=1e-5)
    assert torch.equal(merged.weight[dim:2 * dim], weight[dim:2 * dim])  # k carries no LoRA


def test_head_merge_adds_both_tied_loras(tiny_files, tiny_tagger):
    """The head's first layers share their weights with tag_encoder's (the official ties them); each module merges
    its own LoRA into the shared tensor, so both count."""
    base = torch.load(tiny_files.ram, weights_only=True)["model"]
    lora = torch.load(tiny_files.dape, weights_only=True)
    head = "tagging_head.encoder.layer.1.crossattention.self.key"
    tied = "tag_encoder.encoder.layer.1.crossattention.self.key"
    x = torch.randn(3, base[head + ".weight"].shape[1], generator=torch.Generator().manual_seed(2))
    unmerged = F.linear(x, base[head + ".weight"], base[head + ".bias"])
    for layer in (tied, head):
        unmerged += x @ lora[layer + ".lora_A"].T @ lora[layer + ".lora_B"].T * LORA_SCALE
    torch.testing.assert_close(tiny_tagger.tagging_head[1].key(x), unmerged, rtol=0, atol=1e-5)


def test_shifted_window_mask_matches_the_slice_construction():
    """The official labels the rolled map's regions with three row and three column slices."""
    size, window, shift = 24, 12, 6
    regions = torch.zeros(size, size)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in slices for c in slices):
        regions[rows, cols] = label
    windows = regions.view(2, window, 2, window).permute(0, 2, 1, 3).reshape(4, window * window)
    expected = (windows[:, None, :] - windows[:, :, None]).ne(0).float() * -100.0
    assert torch.equal(shifted_window_mask(size, window, shift), expected)


def test_wrong_ram_key_names_file_and_key(tiny_files, tmp_path):
    path = _rewritten_ram(tiny_files, tmp_path, lambda s: s.__setitem__("image_proj.weight_", s.pop("image_proj.weight")))
    message = _error_line(lambda: load_ram_tagger(path, tiny_files.dape))
    assert str(path) in message and "image_proj.weight" in message


def test_ram_shape_mismatch_names_file_and_key(tiny_files, tmp_path):
    key = "visual_encoder.layers.2.blocks.0.mlp.fc2.weight"
    path = _rewritten_ram(tiny_files, tmp_path, lambda s: s.__setitem__(key, s[key][:, :-1]))
    message = _error_line(lambda: load_ram_tagger(path, tiny_files.dape))
    assert str(path) in message and key in message


def test_missing_swin_block_is_not_a_shorter_swin(tiny_files, tmp_path):
    def drop_block(state):
        for key in [k for k in state if k.startswith("visual_encoder.layers.0.blocks.0.")]:
            del state[key]
    path = _rewritten_ram(tiny_files, tmp_path, drop_block)
    assert str(path) in _error_line(lambda: load_ram_tagger(path, tiny_files.dape))


def test_wrong_dape_key_names_file_and_key(tiny_files, tmp_path):
    layer = "visual_encoder.layers.0.blocks.0.attn.proj"
    path = _rewritten_dape(tiny_files, tmp_path, lambda s: s.update(
        {layer + ".lora_A": torch.zeros(8, 16), layer + ".lora_B": torch.zeros(16, 8)}))
    message = _error_line(lambda: load_ram_tagger(tiny_files.ram, path))
    assert str(path) in message and layer in message


def test_wrong_dape_rank_names_file_and_key(tiny_files, tmp_path):
    layer = "visual_encoder.layers.3.blocks.0.attn.qkv"
    path = _rewritten_dape(tiny_files, tmp_path, lambda s: s.update(
        {layer + ".lora_A": s[layer + ".lora_A"][:8], layer + ".lora_B": s[layer + ".lora_B"][:, :4]}))
    message = _error_line(lambda: load_ram_tagger(tiny_files.ram, path))
    assert str(path) in message and layer + ".lora_A" in message and "rank 8" in message


def test_dape_without_a_pair_half_or_a_layer(tiny_files, tmp_path):
    half = "tagging_head.encoder.layer.0.crossattention.self.query.lora_B"
    path = _rewritten_dape(tiny_files, tmp_path, lambda s: s.pop(half))
    assert half in _error_line(lambda: load_ram_tagger(tiny_files.ram, path))
    layer = "visual_encoder.layers.1.blocks.0.attn.qkv"
    path = _rewritten_dape(tiny_files, tmp_path, lambda s: [s.pop(layer + ".lora_A"), s.pop(layer + ".lora_B")])
    assert layer in _error_line(lambda: load_ram_tagger(tiny_files.ram, path))


def test_ram_file_as_dape_is_refused(tiny_files):
    message = _error_line(lambda: load_ram_tagger(tiny_files.ram, tiny_files.ram))
    assert f"DAPE checkpoint {tiny_files.ram}" in message


class _RunsCode:
    def __reduce__(self):
        return print, ("a pickle ran code",)


def test_pickle_with_code_is_refused(tiny_files, tmp_path):
    path = tmp_path / "ram.pth"
    torch.save({"model": {}, "args": _RunsCode()}, path)
    message = _error_line(lambda: load_ram_tagger(path, tiny_files.dape))
    assert str(path) in message and "pickled Python objects" in message


@pytest.mark.parametrize("which", ["ram", "dape"])
def test_truncated_file_is_refused(tiny_files, tmp_path, which):
    source = getattr(tiny_files, which)
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    ram, dape = (path, tiny_files.dape) if which == "ram" else (tiny_files.ram, path)
    assert str(path) in _error_line(lambda: load_ram_tagger(ram, dape))


def test_official_tag_files(tiny_files):
    vocabulary = read_tag_vocabulary(tiny_files.tag_list, tiny_files.thresholds, TINY_RAM.num_classes)
    assert vocabulary.tags[0] == "tiny tag 0" and len(vocabulary.tags) == 24
    written = [float(line) for line in tiny_files.thresholds.read_text().splitlines()]
    assert list(vocabulary.thresholds) == [float(torch.tensor(v, dtype=torch.float32)) for v in written]


def test_threshold_file_rules(tmp_path):
    tags = tmp_path / "tags.txt"
    tags.write_bytes(b"3D glasses\r\nabacus\nzoo")  # no newline after the last tag, as the official file
    thresholds = tmp_path / "thresholds.txt"
    thresholds.write_bytes(b"0.8\r\n 0.95 \n")  # shorter than the list: the rest keep 0.68
    vocabulary = read_tag_vocabulary(tags, thresholds, 3)
    assert vocabulary.tags == ("3D glasses", "abacus", "zoo")
    assert vocabulary.thresholds == tuple(torch.tensor([0.8, 0.95, DEFAULT_THRESHOLD]).tolist())
    # Strictly above the threshold, in class order, joined with ", ".
    assert tag_string(torch.tensor([0.9, 0.95, 0.7]), vocabulary.tags, vocabulary.thresholds) == "3D glasses, zoo"
    assert tag_string(torch.tensor([0.1, 0.2, 0.3]), vocabulary.tags, vocabulary.thresholds) == ""

    thresholds.write_text("0.7\n0.7\n0.7\n0.7\n")
    assert "more lines" in _error_line(lambda: read_tag_vocabulary(tags, thresholds, 3))
    thresholds.write_text("0.7\n\n0.7\n")
    assert f"{thresholds}, line 2" in _error_line(lambda: read_tag_vocabulary(tags, thresholds, 3))
    thresholds.write_text("0.7\nnan\n")
    assert "line 2" in _error_line(lambda: read_tag_vocabulary(tags, thresholds, 3))
    assert str(tags) in _error_line(lambda: read_tag_vocabulary(tags, thresholds, 4))


def test_huge_tag_file_is_refused(tmp_path):
    tags = tmp_path / "tags.txt"
    tags.write_bytes(b"tag\n" * (MAX_TAG_FILE_BYTES // 4 + 1))
    thresholds = tmp_path / "thresholds.txt"
    thresholds.write_text("0.7\n")
    assert str(tags) in _error_line(lambda: read_tag_vocabulary(tags, thresholds, 3))
