"""A genuine InvSR-family bundle made of hand-written ONNX stand-ins: the real graphs' names, inputs,
outputs and dtypes with simple math, recomputed in numpy here. Tests of the chaining (which buffer
feeds which engine, the constants, batching, dtypes) and of the CLI run on it in a blink."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sr_runtime.families.invsr.graphs import GRAPHS
from sr_runtime.families.invsr.section import Geometry, InvSRSection, StepGroup
from sr_runtime.manifest import MANIFEST_NAME, FileRecord, GraphInfo, Manifest, PipelineInfo, TensorInfo
from sr_runtime.precision import Precision
from sr_runtime.sd.prompt_embeds import PROMPT_EMBEDS_NAME
from sr_runtime.version import TOOL_VERSION

TILE = 16
LATENT = TILE // 2  # x4 then the VAE's /8
TOKENS, EMBED = 77, 8
SCALARS = ("timestep", "sigma", "sigma_next")

rng = np.random.default_rng(7)
W_ENC = rng.normal(size=(4, 3)).astype(np.float32)
B_ENC = rng.normal(size=4).astype(np.float32)
W_NP = rng.normal(size=(4, 3)).astype(np.float32)
W_DEC = rng.normal(size=(3, 4)).astype(np.float32)
B_DEC = rng.normal(size=3).astype(np.float32)
EMBEDS = rng.normal(size=(1, TOKENS, EMBED)).astype(np.float32)

GEOMETRY = Geometry(latent_channels=4, vae_factor=8, pad_multiple=16)  # SD-Turbo's
# name -> (inputs, outputs) with the symbolic dims the exporter writes into the manifest
GRAPH_IO = {io.name: ({t.name: t.dims for t in io.inputs}, {t.name: t.dims for t in io.outputs}) for io in GRAPHS}
SIZES = {"tile": TILE, "latent": LATENT, "image": 4 * TILE, "embed": EMBED, "tokens": TOKENS, "latent_channels": 4}


# ---- the stand-in math, in numpy --------------------------------------------------------------

def _pool(lr):
    n = len(lr)
    return lr.reshape(n, 3, LATENT, 2, LATENT, 2).mean(axis=(3, 5))


def _conv1x1(w, x):
    return np.einsum("oc,bchw->bohw", w, x)


def np_vae_encoder(lr, noise):
    return _conv1x1(W_ENC, _pool(lr)) + B_ENC[None, :, None, None] + 0.5 * noise


def np_noise_predictor(lr, timestep, noise, z_lr, sigma):
    return z_lr + sigma * (np.tanh(_conv1x1(W_NP, _pool(lr))) * (timestep / 1000) + noise)


def np_unet_step(latent, timestep, sigma, sigma_next, embeds):
    eps = np.tanh(latent / np.sqrt(sigma * sigma + 1)) + embeds.mean(axis=(1, 2))[:, None, None, None]
    return latent + (eps + timestep * 0.001) * (sigma_next - sigma)


def np_vae_decoder(latent):
    image = 1 / (1 + np.exp(-(_conv1x1(W_DEC, latent) + B_DEC[None, :, None, None])))
    return image.repeat(8, axis=2).repeat(8, axis=3)


def numpy_run_tiles(timesteps, sigmas, precision):
    """The chain of the stand-ins; fp16 rounds every non-scalar graph input and output like the engines."""
    io = (lambda x: x.astype(np.float16).astype(np.float32)) if precision == "fp16" else (lambda x: x)

    def run(lr, predictor_noise, vae_noise, group=0):
        lr, embeds = io(lr), io(np.repeat(EMBEDS, len(lr), axis=0))
        z_lr = io(np_vae_encoder(lr, io(vae_noise)))
        latent = io(np_noise_predictor(lr, timesteps[0], io(predictor_noise), z_lr, sigmas[0]))
        for i, t in enumerate(timesteps):
            latent = io(np_unet_step(latent, t, sigmas[i], sigmas[i + 1], embeds))
        return io(np_vae_decoder(latent)).astype(np.float32)

    return run


# ---- the same math as ONNX graphs -------------------------------------------------------------

def _graph_body(name: str) -> tuple[list, list]:
    """Nodes from ``in_<input>`` to ``out_<output>`` (fp32 inside), and their initializers."""
    n = helper.make_node
    pool = n("AveragePool", ["in_lr"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2])
    if name == "vae_encoder":
        init = [numpy_helper.from_array(W_ENC[:, :, None, None], "w"), numpy_helper.from_array(B_ENC, "b"),
                numpy_helper.from_array(np.float32(0.5), "half")]
        nodes = [pool, n("Conv", ["pooled", "w", "b"], ["conv"]), n("Mul", ["in_noise", "half"], ["scaled_noise"]),
                 n("Add", ["conv", "scaled_noise"], ["out_z_lr"])]
    elif name == "noise_predictor":
        init = [numpy_helper.from_array(W_NP[:, :, None, None], "w"), numpy_helper.from_array(np.float32(1000), "k")]
        nodes = [pool, n("Conv", ["pooled", "w"], ["conv"]), n("Tanh", ["conv"], ["th"]),
                 n("Div", ["in_timestep", "k"], ["tk"]), n("Mul", ["th", "tk"], ["pred0"]),
                 n("Add", ["pred0", "in_noise"], ["pred"]), n("Mul", ["pred", "in_sigma"], ["spred"]),
                 n("Add", ["in_z_lr", "spred"], ["out_latent"])]
    elif name == "unet_step":
        init = [numpy_helper.from_array(np.float32(1), "one"), numpy_helper.from_array(np.float32(0.001), "milli"),
                numpy_helper.from_array(np.array([3], np.int64), "axis3")]
        nodes = [n("Mul", ["in_sigma", "in_sigma"], ["s2"]), n("Add", ["s2", "one"], ["s2p1"]),
                 n("Sqrt", ["s2p1"], ["root"]), n("Div", ["in_latent", "root"], ["scaled"]),
                 n("Tanh", ["scaled"], ["th"]),
                 n("ReduceMean", ["in_prompt_embeds"], ["emb3"], axes=[1, 2], keepdims=1),
                 n("Unsqueeze", ["emb3", "axis3"], ["emb"]), n("Add", ["th", "emb"], ["eps0"]),
                 n("Mul", ["in_timestep", "milli"], ["tm"]), n("Add", ["eps0", "tm"], ["eps"]),
                 n("Sub", ["in_sigma_next", "in_sigma"], ["ds"]), n("Mul", ["eps", "ds"], ["delta"]),
                 n("Add", ["in_latent", "delta"], ["out_latent_next"])]
    else:
        init = [numpy_helper.from_array(W_DEC[:, :, None, None], "w"), numpy_helper.from_array(B_DEC, "b"),
                numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "scales")]
        nodes = [n("Conv", ["in_latent", "w", "b"], ["conv"]), n("Sigmoid", ["conv"], ["small"]),
                 n("Resize", ["small", "", "scales"], ["out_image"], mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    return nodes, init


def _onnx_dims(dims):
    return [d if isinstance(d, int) else (SIZES[d] if d in SIZES else d) for d in dims]


def make_onnx_graph(name: str, precision: str) -> onnx.ModelProto:
    inputs, outputs = GRAPH_IO[name]

    def elem(tensor: str):
        return TensorProto.FLOAT if precision == "fp32" or tensor in SCALARS else TensorProto.FLOAT16

    nodes, init = _graph_body(name)
    entry = [helper.make_node("Cast", [t], [f"in_{t}"], to=TensorProto.FLOAT) for t in inputs]
    exit_ = [helper.make_node("Cast", [f"out_{t}"], [t], to=elem(t)) for t in outputs]
    graph = helper.make_graph(
        entry + nodes + exit_,
        name,
        [helper.make_tensor_value_info(t, elem(t), _onnx_dims(d)) for t, d in inputs.items()],
        [helper.make_tensor_value_info(t, elem(t), _onnx_dims(d)) for t, d in outputs.items()],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def schedule(steps: int) -> tuple[list[float], list[float]]:
    return [249.0 - 50 * i for i in range(steps)], [0.69 - 0.2 * i for i in range(steps)] + [0.03]


def write_bundle(folder: Path, precision: str = "fp32", backend="onnxruntime-cpu", steps: int | list[int] = 2, batch=3,
                 demo=False) -> Path:
    """``steps``: one step group, or a list of them (a patch-adaptive bundle)."""
    folder.mkdir(parents=True)
    graphs = {}
    for name, (inputs, outputs) in GRAPH_IO.items():
        file = folder / f"{name}.onnx"
        onnx.save(make_onnx_graph(name, precision), str(file))

        def infos(tensors):
            return [TensorInfo(t, "float32" if precision == "fp32" or t in SCALARS else "float16", list(d))
                    for t, d in tensors.items()]

        graphs[name] = GraphInfo(file.name, hashlib.sha256(file.read_bytes()).hexdigest(), file.stat().st_size,
                                 infos(inputs), infos(outputs))
    groups = [StepGroup([int(t) + 1 for t in timesteps], timesteps, sigmas)
              for timesteps, sigmas in map(schedule, steps if isinstance(steps, list) else [steps])]
    section = InvSRSection(geometry=GEOMETRY, latent_scale=0.18215, prompt="test", embed_shape=list(EMBEDS.shape),
                           groups=groups)
    manifest = Manifest(tool_version=TOOL_VERSION, backend=backend, backend_version=ort.__version__,
                        precision=Precision(precision), demo=demo, section=section, graphs=graphs, checkpoints={},
                        pipeline=PipelineInfo(family="invsr", scale=4, tile=TILE, batch=batch))
    np.save(folder / PROMPT_EMBEDS_NAME, EMBEDS)
    embeds = folder / PROMPT_EMBEDS_NAME
    manifest.files = [FileRecord(embeds.name, hashlib.sha256(embeds.read_bytes()).hexdigest(), embeds.stat().st_size)]
    (folder / MANIFEST_NAME).write_text(manifest.to_json())
    return folder


def random_tiles(n: int, seed: int = 0):
    g = np.random.default_rng(seed)
    lr = g.random((n, 3, TILE, TILE), dtype=np.float32)
    return lr, g.standard_normal((n, 4, LATENT, LATENT), np.float32), g.standard_normal((n, 4, LATENT, LATENT), np.float32)


TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3}
