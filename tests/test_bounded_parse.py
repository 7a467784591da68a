"""Small hostile files cannot hang a run or take its memory: YAML aliases of aliases, merge keys of merge keys,
deep nesting, interpolations that double at every level, binary text, non-finite numbers and absurd sizes are
each one line naming the file, at once, from the parser and from the commands that read configs."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sr_export.cli import main
from sr_runtime.bounded_parse import MAX_BYTES, read_json, read_yaml
from sr_runtime.errors import SRError

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))
MERGES = "m0: &m0 {k0: 1, k1: 2}\n" + "".join(
    f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], x{i}: 1}}\n" for i in range(1, 30))
# A chain of interpolations, each a level of recursion if followed.
CHAIN = "model:\n  params:\n" + "".join(f"    v{i}: ${{model.params.v{i + 1}}}\n" for i in range(5000)) + \
    "    v5000: x\nautoencoder: {}\ndiffusion: {}\n"
# Interpolations that double at every level: 2**40 lookups if followed.
DOUBLING = "model:\n  params:\n" + "".join(f"    v{i}: ${{model.params.v{i + 1}}}${{model.params.v{i + 1}}}\n"
                                           for i in range(40)) + "    v40: x\nautoencoder: {}\ndiffusion: {}\n"

HOSTILE = {
    "billion laughs": (LAUGHS, "values once its aliases are expanded"),
    "merge keys": (MERGES, "once its aliases are expanded"),
    "deep flow nesting": ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    "deep block nesting": ("".join(" " * i + "-\n" for i in range(2000)), "nested deeper than"),
    "recursive alias": ("a: &a [*a]\n", "nested deeper than"),
    "NaN": ("kappa: .nan\n", "kappa is nan, not a finite number"),
    "infinity": ("steps: [1, .inf]\n", r"steps\[1\] is inf"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_yaml_is_one_line_at_once(tmp_path, name):
    text, expected = HOSTILE[name]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(SRError, match=expected) as err:
        read_yaml(path, "config")
    assert time.perf_counter() - start < 5 and str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, expected", [('{"a": NaN}', "NaN is not a number JSON allows"),
                                            ("[1e999]", "is inf, not a finite number"),
                                            ("[" * 100_000 + "]" * 100_000, "nested")])
def test_hostile_json_is_one_line(tmp_path, text, expected):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(SRError, match=expected):
        read_json(path, "config")


def test_binary_oversized_and_special_files_are_refused_before_parsing(tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"model: \xff\xfe\x00\x01")
    with pytest.raises(SRError, match="is not UTF-8 text"):
        read_yaml(binary, "config")
    big = tmp_path / "big.yaml"
    with open(big, "wb") as file:
        file.truncate(MAX_BYTES + 1)
    with pytest.raises(SRError, match="above the limit"):
        read_yaml(big, "config")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SRError, match="not a regular file"):  # opening it would block until a writer came
        read_yaml(fifo, "config")


def _build(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["build", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture
def resshift_checkpoints(tmp_path) -> tuple[Path, Path]:
    """Files that exist where the checkpoints would be: the config is read and refused before them."""
    checkpoint, autoencoder = tmp_path / "denoiser.pth", tmp_path / "ae.pth"
    checkpoint.write_bytes(b"x")
    autoencoder.write_bytes(b"x")
    return checkpoint, autoencoder


@pytest.mark.parametrize("text, expected", [
    (LAUGHS, "values once its aliases are expanded"),
    (DOUBLING, "interpolations take more than"),
    (CHAIN, "interpolations refer through more than 64 others"),
    ("model: {params: {}}\nautoencoder: {params: {}}\ndiffusion: {params: {kappa: .nan}}\n", "not a finite number"),
])
def test_resshift_configs_are_refused_in_one_line(tmp_path, resshift_checkpoints, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    checkpoint, autoencoder = resshift_checkpoints
    start = time.perf_counter()
    code, output = _build("--model", "resshift-v3", "--checkpoint", checkpoint, "--autoencoder", autoencoder,
                          "--config", config, "-o", tmp_path / "b")
    assert code == 1 and expected in output and str(config) in output and time.perf_counter() - start < 30
    assert not (tmp_path / "b").exists()


def test_a_resshift_schedule_of_absurd_length_is_refused(tmp_path):
    from sr_export.families.resshift.config import MAX_STEPS, load_config
    from sr_export.families.resshift.official_configs import MODELS

    spec = MODELS["resshift-v3"]
    document = copy.deepcopy(spec.config)
    document["diffusion"]["params"]["steps"] = 100_000_000
    config = tmp_path / "steps.yaml"
    config.write_text(yaml.safe_dump(document))
    with pytest.raises(SRError, match=f"steps must be at most {MAX_STEPS:,}"):
        load_config(spec, config)


def test_noise_predictor_configs_are_refused_in_one_line(tmp_path, tiny_checkpoints):
    sd, pth, _ = tiny_checkpoints
    config = tmp_path / "np.yaml"
    config.write_text(MERGES)
    code, output = _build("--sd-turbo", sd, "--noise-predictor", pth, "--noise-predictor-config", config,
                          "-o", tmp_path / "b")
    assert code == 1 and "once its aliases are expanded" in output and str(config) in output
    code, output = _build("--noise-predictor-config", config, "-o", tmp_path / "b")  # nothing it could describe
    assert code == 1 and "none was found" in output and not (tmp_path / "b").exists()
