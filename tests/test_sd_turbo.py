"""SD-Turbo loading, the prompt embedding and the tiny checkpoint writers.

Everything runs on tiny random-weight checkpoints written in the real file formats (a diffusers
folder and a Hugging Face hub cache), read by the same loaders real checkpoints go through.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from sr_export.families.invsr.noise_predictor import TINY_CONFIG, build_noise_predictor, load_noise_predictor
from sr_export.families.invsr.prompt import POSITIVE_PROMPT
from sr_export.families.invsr.random_checkpoints import (
    NOISE_PREDICTOR_CONFIG_FORMATS,
    NOISE_PREDICTOR_FILE,
    NOISE_PREDICTOR_WRAPPERS,
    write_random_noise_predictor,
    write_random_sd_turbo,
)
from sr_export.sd.loading import SDComponents, find_default_sd, load_sd, resolve_sd_folder, weight_files
from sr_export.sd.models import SD_TURBO
from sr_export.sd.prompts import encode_prompt
from sr_export.sd.random_checkpoints import SCHEDULER_CONFIGS
from sr_runtime.errors import SRError

HUB_REPO_FOLDER = SD_TURBO.hub_folder
SCHEDULER_CONFIG = SCHEDULER_CONFIGS[SD_TURBO]
WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
           "text_encoder/model.safetensors")


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_sd_turbo(tmp_path_factory.mktemp("diffusers") / "sd-turbo", seed=0)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_sd_turbo(tmp_path_factory.mktemp("hub"), seed=0, hub_layout=True)


@pytest.fixture(scope="module")
def sd(diffusers_folder: Path) -> SDComponents:
    return load_sd(diffusers_folder, SD_TURBO)


@pytest.fixture(scope="module")
def official_pipeline(hub_cache: Path):
    """What the official sampler loads (sampler_invsr.py build_model), offline, from the tiny hub cache."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        SD_TURBO.repo_id, cache_dir=hub_cache, use_safetensors=True, local_files_only=True
    )


@pytest.fixture
def folder_copy(diffusers_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(diffusers_folder, tmp_path / "sd-turbo"))


def _snapshot(cache: Path) -> Path:
    (snapshot,) = (cache / HUB_REPO_FOLDER / "snapshots").iterdir()
    return snapshot


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def _error(path: Path) -> str:
    with pytest.raises(SRError) as caught:
        load_sd(path, SD_TURBO)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_positive_prompt_is_the_official_text():
    assert POSITIVE_PROMPT == (
        "Cinematic, high-contrast, photo-realistic, 8k, ultra HD, meticulous detailing, "
        "hyper sharpness, perfect without deformations"
    )


def test_loads_a_diffusers_folder(sd: SDComponents, diffusers_folder: Path):
    assert sd.folder == diffusers_folder
    assert not (sd.unet.training or sd.vae.training or sd.text_encoder.training)
    assert {p.dtype for m in (sd.unet, sd.vae, sd.text_encoder) for p in m.parameters()} == {torch.float32}
    assert sd.scheduler_config == SCHEDULER_CONFIG
    # The SD-2.x shape the exporters rely on: 4 UNet levels and a VAE with spatial factor 8.
    assert list(sd.unet.config.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert sd.unet.config.use_linear_projection
    assert sd.unet.config.cross_attention_dim == sd.text_encoder.config.hidden_size
    assert 2 ** (len(sd.vae.config.block_out_channels) - 1) == 8
    assert sd.vae.config.scaling_factor == 0.18215


def test_tiny_checkpoint_runs_at_latent_scale(sd: SDComponents):
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latent = sd.vae.encode(image).latent_dist.mean
        eps = sd.unet(latent, 199, encoder_hidden_states=encode_prompt(sd, POSITIVE_PROMPT)).sample
        decoded = sd.vae.decode(latent).sample
    assert latent.shape == eps.shape == (1, 4, 8, 8)
    assert decoded.shape == image.shape


@pytest.mark.parametrize("where", ["cache root", "repo folder", "snapshot"])
def test_hub_cache_layouts_load_the_snapshot(where: str, hub_cache: Path, sd: SDComponents):
    snapshot = _snapshot(hub_cache)
    path = {"cache root": hub_cache, "repo folder": hub_cache / HUB_REPO_FOLDER, "snapshot": snapshot}[where]
    assert resolve_sd_folder(path, SD_TURBO) == snapshot
    loaded = load_sd(path, SD_TURBO)
    assert loaded.folder == snapshot
    # Same seed as the diffusers folder: the same weights, read through the blob symlinks.
    _assert_same_weights(loaded.unet, sd.unet)
    _assert_same_weights(loaded.text_encoder, sd.text_encoder)


def test_hub_cache_is_genuine_for_the_official_from_pretrained(official_pipeline, sd: SDComponents):
    from diffusers import EulerDiscreteScheduler

    assert isinstance(official_pipeline.scheduler, EulerDiscreteScheduler)
    _assert_same_weights(official_pipeline.unet, sd.unet)
    _assert_same_weights(official_pipeline.vae, sd.vae)


def test_hub_snapshot_links_into_blobs(hub_cache: Path):
    repo = hub_cache / HUB_REPO_FOLDER
    snapshot = _snapshot(hub_cache)
    assert (repo / "refs" / "main").read_text() == snapshot.name and len(snapshot.name) == 40
    files = [p for p in snapshot.rglob("*") if not p.is_dir()]
    assert len(files) == 12 and all(p.is_symlink() and not os.path.isabs(os.readlink(p)) for p in files)
    assert {p.resolve().parent for p in files} == {(repo / "blobs").resolve()}


def test_snapshot_choice_follows_refs_main_then_recency(hub_cache: Path, tmp_path: Path):
    cache = Path(shutil.copytree(hub_cache, tmp_path / "cache", symlinks=True))
    repo = cache / HUB_REPO_FOLDER
    main = _snapshot(cache)
    newer = Path(shutil.copytree(main, repo / "snapshots" / ("f" * 40), symlinks=True))
    os.utime(main, (1, 1))
    assert resolve_sd_folder(cache, SD_TURBO) == main  # refs/main wins over recency
    (repo / "refs" / "main").unlink()
    assert resolve_sd_folder(cache, SD_TURBO) == newer


def test_tokenizer_tokenizes_the_positive_prompt(sd: SDComponents):
    tokenizer = sd.tokenizer
    ids = tokenizer(POSITIVE_PROMPT, padding="max_length", max_length=77, truncation=True).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert len(ids) == 77 == tokenizer.model_max_length
    assert ids[0] == tokenizer.bos_token_id == tokenizer.convert_tokens_to_ids("<|startoftext|>")
    # Genuine BPE merges: each word of the prompt is one token, as with the real vocabulary.
    assert tokens[1:6] == ["cinematic</w>", ",</w>", "high</w>", "-</w>", "contrast</w>"]
    end = tokens.index("<|endoftext|>")
    assert end == 26 and tokens[end - 1] == "deformations</w>"
    # SD-2.x's special_tokens_map.json pads with "!" (id 0), not with <|endoftext|>.
    assert tokenizer.pad_token == "!" and set(ids[end + 1 :]) == {0}


def test_tokenizer_truncates_to_77_keeping_the_end_token(sd: SDComponents):
    ids = sd.tokenizer(POSITIVE_PROMPT * 5, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[-1] == sd.tokenizer.eos_token_id


def test_encode_prompt_matches_diffusers_encode_prompt(sd: SDComponents, official_pipeline):
    embeds = encode_prompt(sd, POSITIVE_PROMPT)
    assert embeds.shape == (1, 77, sd.text_encoder.config.hidden_size) and embeds.dtype == torch.float32
    assert not embeds.requires_grad
    expected, _ = official_pipeline.encode_prompt(POSITIVE_PROMPT, "cpu", 1, False)
    assert torch.equal(embeds, expected)
    other, _ = official_pipeline.encode_prompt("a cat", "cpu", 1, False)
    assert torch.equal(encode_prompt(sd, "a cat"), other)
    assert not torch.allclose(embeds, other)


def test_encode_prompt_is_in_the_text_encoder_dtype(diffusers_folder: Path, sd: SDComponents):
    half = load_sd(diffusers_folder, SD_TURBO, dtype=torch.bfloat16)
    embeds = encode_prompt(half, POSITIVE_PROMPT)
    assert embeds.dtype == torch.bfloat16 and half.unet.dtype == torch.bfloat16
    torch.testing.assert_close(embeds.float(), encode_prompt(sd, POSITIVE_PROMPT), atol=0.1, rtol=0.05)


def test_weight_files_are_the_loaded_files(diffusers_folder: Path, hub_cache: Path):
    assert weight_files(diffusers_folder, SD_TURBO) == [diffusers_folder / name for name in WEIGHTS]
    snapshot = _snapshot(hub_cache)
    files = weight_files(snapshot, SD_TURBO)
    # Inside the snapshot (for relative names in a manifest) even though they link to blobs/.
    assert [f.relative_to(snapshot).as_posix() for f in files] == list(WEIGHTS)
    assert all(f.is_symlink() and f.is_file() for f in files)


def test_fp16_variant_only_download_loads(folder_copy: Path, sd: SDComponents):
    default = folder_copy / WEIGHTS[0]
    fp16 = default.with_name("diffusion_pytorch_model.fp16.safetensors")
    save_file({k: v.half() for k, v in load_file(default).items()}, fp16, metadata={"format": "pt"})
    default.unlink()
    assert weight_files(folder_copy, SD_TURBO)[0] == fp16
    unet = load_sd(folder_copy, SD_TURBO).unet
    assert unet.dtype == torch.float32
    loaded = unet.state_dict()
    for key, value in sd.unet.state_dict().items():
        assert torch.equal(loaded[key], value.half().float()), key


def test_bin_only_download_loads(folder_copy: Path, sd: SDComponents):
    for name, pickle_name in ((WEIGHTS[0], "diffusion_pytorch_model.bin"), (WEIGHTS[2], "pytorch_model.bin")):
        torch.save(load_file(folder_copy / name), (folder_copy / name).with_name(pickle_name))
        (folder_copy / name).unlink()
    assert [f.name for f in weight_files(folder_copy, SD_TURBO)] == [
        "diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors", "pytorch_model.bin"]
    loaded = load_sd(folder_copy, SD_TURBO)
    _assert_same_weights(loaded.unet, sd.unet)
    _assert_same_weights(loaded.text_encoder, sd.text_encoder)


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda f: shutil.rmtree(f / "vae"), ["vae/ missing", "model_index.json"]),
        (lambda f: (f / WEIGHTS[0]).write_bytes(b"\0garbage" * 64), ["UNet", WEIGHTS[0]]),
        (lambda f: (f / WEIGHTS[2]).write_bytes((f / WEIGHTS[2]).read_bytes()[:500]), ["text encoder", "model."]),
        (lambda f: (f / WEIGHTS[1]).unlink(), ["VAE", WEIGHTS[1], "missing"]),
        (lambda f: (f / "unet" / "config.json").write_text("{"), ["UNet", "config.json", "JSON"]),
        (lambda f: [p.unlink() for p in (f / "tokenizer").glob("*.*")], ["tokenizer", "vocab.json"]),
    ],
    ids=["missing subfolder", "garbage safetensors", "truncated safetensors", "missing weights",
         "broken config", "empty tokenizer"],
)
def test_broken_folders_give_one_line_errors(mutate, fragments: list[str], folder_copy: Path):
    mutate(folder_copy)
    message = _error(folder_copy)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(("change", "fragment"), [("drop", "1 missing weight"), ("grow", "1 mis-shaped")])
def test_weights_that_do_not_fit_the_config_are_refused(change: str, fragment: str, folder_copy: Path):
    path = folder_copy / WEIGHTS[1]
    state = load_file(path)
    if change == "drop":
        del state["decoder.conv_in.bias"]
    else:
        state["decoder.conv_in.bias"] = torch.zeros(state["decoder.conv_in.bias"].numel() + 1)
    save_file(state, path, metadata={"format": "pt"})
    message = _error(folder_copy)
    assert fragment in message and "decoder.conv_in.bias" in message and "VAE" in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("prediction_type", "v_prediction", "epsilon"),
        ("_class_name", "PNDMScheduler", "EulerDiscreteScheduler"),
        ("beta_schedule", "cosine-ish", "usable EulerDiscreteScheduler config"),
    ],
)
def test_schedulers_other_than_sd_turbos_are_refused(key: str, value: str, fragment: str, folder_copy: Path):
    path = folder_copy / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    assert fragment in _error(folder_copy)


def test_components_of_another_pipeline_are_refused(folder_copy: Path):
    path = folder_copy / "model_index.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "unet": ["diffusers", "UNet2DModel"]}))
    assert "UNet2DModel" in _error(folder_copy)


def test_mismatched_components_are_refused(folder_copy: Path):
    path = folder_copy / "tokenizer" / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_max_length": 64}))
    assert "model_max_length 64 != text encoder max_position_embeddings 77" in _error(folder_copy)


def test_wrong_paths_give_one_line_errors(tmp_path: Path):
    assert "does not exist" in _error(tmp_path / "nowhere")
    (tmp_path / "file.safetensors").write_bytes(b"x")
    assert "is a file" in _error(tmp_path / "file.safetensors")
    assert "model_index.json" in _error(tmp_path)
    (tmp_path / HUB_REPO_FOLDER / "snapshots").mkdir(parents=True)
    assert "no downloaded snapshot" in _error(tmp_path)


@pytest.fixture
def no_default_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("SR_EXPORT_SD_TURBO", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_find_default_sd_turbo_finds_nothing_in_empty_places(no_default_places: Path):
    assert find_default_sd(SD_TURBO) is None


def test_find_default_sd_turbo_prefers_its_variable(no_default_places: Path, monkeypatch, hub_cache: Path):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("SR_EXPORT_SD_TURBO", str(no_default_places / "my-sd-turbo"))
    assert find_default_sd(SD_TURBO) == no_default_places / "my-sd-turbo"


@pytest.mark.parametrize("place", ["HF_HUB_CACHE", "HF_HOME", "home cache", "official ./weights"])
def test_find_default_sd_turbo_searches_hub_caches(place: str, no_default_places: Path, monkeypatch, hub_cache):
    root = no_default_places
    cache = {
        "HF_HUB_CACHE": root / "hub-cache",
        "HF_HOME": root / "hf-home" / "hub",
        "home cache": root / "home" / ".cache" / "huggingface" / "hub",
        "official ./weights": root / "weights",
    }[place]
    shutil.copytree(hub_cache, cache, symlinks=True)
    if place == "HF_HUB_CACHE":
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    if place == "HF_HOME":
        monkeypatch.setenv("HF_HOME", str(cache.parent))
    found = find_default_sd(SD_TURBO)
    assert found is not None and found.resolve() == (cache / HUB_REPO_FOLDER).resolve()
    assert resolve_sd_folder(found, SD_TURBO) == found / "snapshots" / _snapshot(cache).name


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_tiny_sd_turbo_writer_is_deterministic(diffusers_folder: Path, tmp_path: Path):
    again = _tree(write_random_sd_turbo(tmp_path / "again", seed=0))
    assert again == _tree(diffusers_folder)  # byte for byte: manifests hash these files
    other = _tree(write_random_sd_turbo(tmp_path / "other", seed=1))
    assert all(other[name] != again[name] for name in WEIGHTS)
    assert other["tokenizer/vocab.json"] == again["tokenizer/vocab.json"]


def _noise_predictor_reference(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_noise_predictor(TINY_CONFIG).state_dict()


@pytest.mark.parametrize("config_format", sorted(NOISE_PREDICTOR_CONFIG_FORMATS))
@pytest.mark.parametrize("wrapper", NOISE_PREDICTOR_WRAPPERS)
def test_tiny_noise_predictor_round_trips(wrapper: str, config_format: str, tmp_path: Path):
    checkpoint, config = write_random_noise_predictor(tmp_path, 3, wrapper=wrapper, config_format=config_format)
    assert checkpoint == tmp_path / NOISE_PREDICTOR_FILE
    model = load_noise_predictor(checkpoint, config)
    reference = _noise_predictor_reference(3)
    assert model.state_dict().keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("wrapper", "first_key"),
    [("none", "encoder."), ("module", "module.encoder."), ("orig_mod", "_orig_mod.encoder."),
     ("module_orig_mod", "module._orig_mod.encoder.")],
)
def test_tiny_noise_predictor_key_prefixes(wrapper: str, first_key: str, tmp_path: Path):
    checkpoint, _ = write_random_noise_predictor(tmp_path, wrapper=wrapper)
    state = torch.load(checkpoint, weights_only=True)
    assert all(key.startswith(first_key) for key in state)
    assert len(state) == len(_noise_predictor_reference(0))


def test_tiny_noise_predictor_file_formats(tmp_path: Path):
    checkpoint, official = write_random_noise_predictor(tmp_path / "a")  # the defaults: the official formats
    assert list(torch.load(checkpoint, weights_only=True)) == ["state_dict"]
    model_start = yaml.safe_load(official.read_text())["model_start"]
    assert model_start["target"] == "diffusers.models.autoencoders.NoisePredictor"
    assert model_start["params"] == TINY_CONFIG
    _, flat_yaml = write_random_noise_predictor(tmp_path / "b", config_format="flat_yaml")
    _, flat_json = write_random_noise_predictor(tmp_path / "c", config_format="flat_json")
    assert yaml.safe_load(flat_yaml.read_text()) == json.loads(flat_json.read_text()) == TINY_CONFIG


def test_tiny_noise_predictor_depends_on_the_seed_only(tmp_path: Path):
    first = torch.load(write_random_noise_predictor(tmp_path / "a", seed=5)[0], weights_only=True)["state_dict"]
    again = torch.load(write_random_noise_predictor(tmp_path / "b", seed=5)[0], weights_only=True)["state_dict"]
    other = torch.load(write_random_noise_predictor(tmp_path / "c", seed=6)[0], weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["encoder.conv_in.weight"], other["encoder.conv_in.weight"])


@pytest.mark.parametrize(("argument", "value"), [("wrapper", "ddp"), ("config_format", "toml")])
def test_tiny_noise_predictor_rejects_unknown_formats(argument: str, value: str, tmp_path: Path):
    with pytest.raises(ValueError, match=value):
        write_random_noise_predictor(tmp_path, **{argument: value})


def test_tiny_text_encoder_uses_the_released_key_names(diffusers_folder: Path) -> None:
    from safetensors import safe_open

    with safe_open(diffusers_folder / "text_encoder" / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("text_model.") for k in keys)
