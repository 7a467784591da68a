"""What a backend offers the pipeline, and what the pipeline asks of it.

The pipeline describes one tile batch as a ``ChainPlan``: engine calls in order over named
buffers (what is computed). A backend opens one ``EngineSession`` per graph and turns a plan into a
``TileChain`` (how buffers live: host arrays, or device buffers bound once). A family can have several
chains over the same engines (a step group, a stage, a VAE segment), each named by a ``ChainId``; a tile batch's
plan is made, and bound, per ``PlanKey``: its chain and the shape of the chain's main feed.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol

import numpy as np

from ..errors import SRError
from ..graph_io import Call
from ..manifest import GraphInfo, Manifest, TensorInfo

log = logging.getLogger(__name__)

REBUILD_HINT = "rebuild the bundle on this machine with `sr-export build`"


@dataclass(frozen=True)
class RuntimeOptions:
    device_id: int = 0
    # CUDA graphs replay each engine call without per-kernel launch overhead; the chain then runs at
    # the bundle's batch size only (smaller batches are padded).
    cuda_graph: bool = False
    # cuDNN's convolution search: EXHAUSTIVE is ONNX Runtime's default but makes the first run slow and
    # memory hungry (whether it is faster for these networks is not yet measured).
    cudnn_conv_algo_search: str = "HEURISTIC"
    threads: int = 0  # CPU intra-op threads; 0 lets ONNX Runtime choose
    # ONNX Runtime CUDA: convolutions in channels-last (NHWC) kernels, the layout fp16 tensor-core convolutions
    # want. Off by default: on an H200 the full-size InvSR-1 bundle ran slower with it (45.0 against 42.9 ms),
    # and CUDA graphs refuse it (a few nodes fall back to the CPU); exact either way (tests -k cuda).
    prefer_nhwc: bool = False


@dataclass(frozen=True)
class ChainPlan:
    """The engine calls of one tile batch of ``batch`` tiles, in order, over named buffers."""

    batch: int
    calls: tuple[Call, ...]
    constants: Mapping[str, np.ndarray]  # buffers with the same value for every tile batch
    feeds: tuple[str, ...]  # buffers filled from the host for every tile batch
    result: str  # the buffer that goes back to the host
    sizes: Mapping[str, int]  # values of the symbolic dimensions in the manifest's tensor shapes

    def shape(self, tensor: TensorInfo) -> tuple[int, ...]:
        try:
            return tuple(self.sizes[d] if isinstance(d, str) else int(d) for d in tensor.shape)
        except KeyError as err:
            raise SRError(f"tensor {tensor.name} has an unknown dimension {err}; {REBUILD_HINT}") from None


BufferSpec = tuple[np.dtype, tuple[int, ...]]


def buffer_specs(sessions: Mapping[str, EngineSession], plan: ChainPlan) -> dict[str, BufferSpec]:
    """Each named buffer's dtype and shape, from the manifest tensors it is bound to (which must agree)."""
    specs: dict[str, BufferSpec] = {}
    for call in plan.calls:
        info = sessions[call.graph].info
        tensors = {t.name: t for t in (*info.inputs, *info.outputs)}
        for tensor, buffer in (*call.inputs.items(), *call.outputs.items()):
            spec = (np.dtype(tensors[tensor].dtype), plan.shape(tensors[tensor]))
            if specs.setdefault(buffer, spec) != spec:
                raise SRError(
                    f"graph {call.graph} takes {tensor} as {spec}, another graph has it as {specs[buffer]}; "
                    f"{REBUILD_HINT}"
                )
    return specs


LR_FEED = "lr"  # the host feed of LR tiles (n, 3, h, w) in [0, 1]: the main feed of a chain unless it names another


@dataclass(frozen=True)
class ChainId:
    """Which of a family's chains over the same engines a tile batch runs, and the host feed that sizes the batch.

    ``name`` says what the chain runs ("tiles": the one chain of RRDBNet and ResShift; "steps": an InvSR step group;
    "whole", "degrade", "encode", "denoise", "decode", ...: a stage of a one-step family; "vae_encoder_segment",
    "vae_decoder_segment": a segment of the tiled VAE), ``index`` which one of several alike (the step group, the
    segment), ``main_feed`` the host feed whose shape, (n, c, h, w) or token ids (n, tokens), gives the plan's batch,
    height and width."""

    name: str
    index: int = 0
    main_feed: str = LR_FEED

    def __str__(self) -> str:
        """The name, and the index where it is not 0 (for messages)."""
        return f"{self.name}[{self.index}]" if self.index else self.name


TILES = ChainId("tiles")  # the chain of a family that has one: its LR tiles in, its SR tiles out


class TileChain(Protocol):
    """Runs one tile batch: host feeds (buffer name -> array with the tiles on axis 0) -> the result
    buffer. ``chain`` picks one of the family's chains over the same engines (InvSR: a step group; S3Diff and
    OSEDiff: a stage, a VAE segment)."""

    def __call__(self, feeds: Mapping[str, np.ndarray], chain: ChainId = TILES) -> np.ndarray: ...


class PlanKey(NamedTuple):
    """What a tile batch's plan is made for; the backends keep one bound plan per key."""

    chain: ChainId
    batch: int  # tiles (or the batch they are padded to)
    height: int
    width: int  # of the main feed; token ids (n, tokens) have a width only (height 0)


# (chain, tiles, height, width) of a tile batch -> the plan for that batch.
PlanFactory = Callable[[ChainId, int, int, int], ChainPlan]


def plan_key(feeds: Mapping[str, np.ndarray], chain: ChainId, batch: int | None = None) -> PlanKey:
    """What a tile batch's plan is made for: ``chain``, and the shape of its main feed: its tiles (or ``batch``,
    padded to), height and width; a main feed of token ids (n, tokens) has a width only."""
    if chain.main_feed not in feeds:
        raise SRError(f"chain {chain} is fed {chain.main_feed!r} per tile batch, got {', '.join(feeds) or 'nothing'}")
    shape = feeds[chain.main_feed].shape
    height, width = shape[-2:] if len(shape) == 4 else (0, shape[-1])
    return PlanKey(chain, batch or shape[0], height, width)


def first_line(err: Exception) -> str:
    """An engine library's error as one line (its messages often run to many)."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# What an engine says of one of its tensors: its dtype (None: one numpy has not) and its dimensions (an int where
# fixed; a name, or a negative int, where dynamic).
EngineTensor = tuple[np.dtype | None, Sequence[int | str | None]]


class EngineSession(ABC):
    """One graph of a bundle, ready to run."""

    def __init__(self, name: str, info: GraphInfo):
        self.name = name
        self.info = info
        self.dtypes = {t.name: np.dtype(t.dtype) for t in (*info.inputs, *info.outputs)}  # as the manifest declares

    def check_io(self, inputs: Mapping[str, EngineTensor], outputs: Mapping[str, EngineTensor]) -> None:
        """Refuses an engine whose tensors are not the manifest's: names, then each one's dtype and shape (rank,
        and every dimension the manifest fixes). Checked when the bundle opens, so a manifest that disagrees
        with its engines fails there in one line, not in the middle of a batch."""
        declared = ({t.name for t in self.info.inputs}, {t.name for t in self.info.outputs})
        if declared != (set(inputs), set(outputs)):
            raise SRError(
                f"engine {self.info.file} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                f"the manifest says {sorted(declared[0])} and {sorted(declared[1])}; {REBUILD_HINT}"
            )
        engine = {**inputs, **outputs}
        for t in (*self.info.inputs, *self.info.outputs):
            dtype, shape = engine[t.name]
            fixed_differ = any(isinstance(want, int) and isinstance(have, int) and have >= 0 and have != want
                               for want, have in zip(t.shape, shape, strict=False))
            if dtype != np.dtype(t.dtype) or len(shape) != len(t.shape) or fixed_differ:
                raise SRError(
                    f"engine {self.info.file} has {t.name} as {dtype} {list(shape)}, the manifest says {t.dtype} "
                    f"{t.shape}; {REBUILD_HINT}"
                )

    def host_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs`` as contiguous host arrays of the dtypes the graph declares."""
        return {name: np.ascontiguousarray(value, dtype=self.dtypes[name]) for name, value in inputs.items()}

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host arrays in (cast to the dtypes the graph declares), host arrays out."""


class HostChain:
    """Runs plans with host arrays between engines: right for CPU engines, where host is device."""

    def __init__(self, sessions: Mapping[str, EngineSession], plans: PlanFactory):
        self._sessions = sessions
        self._plans = plans

    def __call__(self, feeds: Mapping[str, np.ndarray], chain: ChainId = TILES) -> np.ndarray:
        plan = self._plans(*plan_key(feeds, chain))
        buffers = {**plan.constants, **feeds}
        for call in plan.calls:
            outputs = self._sessions[call.graph].run({name: buffers[b] for name, b in call.inputs.items()})
            buffers.update({call.outputs[name]: value for name, value in outputs.items()})
        return buffers[plan.result]


class Backend(ABC):
    """Runs the engines of one kind of bundle (the manifest's ``backend``)."""

    name: ClassVar[str]

    def __init__(self, options: RuntimeOptions | None = None):
        self.options = options or RuntimeOptions()

    def check(self, manifest: Manifest) -> None:
        """Refuses, with an SRError, a bundle this backend cannot run on this machine."""
        if manifest.backend != self.name:
            raise SRError(
                f"the bundle was built for {manifest.backend}, not {self.name}; "
                f"rebuild it with `sr-export build --backend {self.name}`"
            )

    @abstractmethod
    def open(self, bundle: Path, manifest: Manifest) -> dict[str, EngineSession]:
        """One session per graph of the (checked) bundle."""

    def chain(self, sessions: Mapping[str, EngineSession], plans: PlanFactory, max_batch: int) -> TileChain:
        return HostChain(sessions, plans)


class CpuBackend(Backend):
    """Engines that run on the CPU, with host arrays between them."""

    def check(self, manifest: Manifest) -> None:
        super().check(manifest)
        if self.options.cuda_graph:
            raise SRError("CUDA graphs need a GPU bundle (onnxruntime-cuda or tensorrt); this one runs on the CPU")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


def check_tensorrt_target(manifest: Manifest, installed_version: str | None, gpu: GpuInfo | None) -> None:
    """TensorRT plans load only in the TensorRT version that built them, on a GPU like the one they
    were built on: refuse anything else before deserialising fails with a cryptic message."""
    if installed_version is None:
        raise SRError(
            "the bundle holds TensorRT engines but TensorRT is not installed here "
            "(pip install 'sr-export[tensorrt]' on a CUDA machine, or rebuild with --backend onnxruntime-cuda)"
        )
    if installed_version != manifest.backend_version:
        raise SRError(
            f"the bundle's engines were built with TensorRT {manifest.backend_version}, this machine has "
            f"TensorRT {installed_version}; {REBUILD_HINT}"
        )
    if gpu is None:
        raise SRError("the bundle holds TensorRT engines but no CUDA GPU is visible here")
    target = manifest.target
    if target is None:
        raise SRError(f"the TensorRT bundle's manifest does not say which GPU it was built for; {REBUILD_HINT}")
    built_for = f"{target.gpu_name} (compute capability {target.compute_capability})"
    here = f"{gpu.name} (compute capability {gpu.compute_capability})"
    if gpu.compute_capability != target.compute_capability:
        raise SRError(f"the bundle's engines were built for {built_for}, this GPU is {here}; {REBUILD_HINT}")
    elif gpu.name != target.gpu_name:
        # Same architecture: the plans load and compute the same, but were tuned for another model.
        log.warning("the bundle's engines were tuned on %s, running on %s may be slower", built_for, here)
