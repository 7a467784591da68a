"""ONNX Runtime backends: CPU (host arrays) and CUDA (IO binding, optional CUDA graphs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..cpu_target import this_cpu
from ..errors import SRError
from ..manifest import GraphInfo, Manifest
from .base import (
    REBUILD_HINT,
    TILES,
    Backend,
    ChainId,
    ChainPlan,
    CpuBackend,
    EngineSession,
    EngineTensor,
    PlanFactory,
    PlanKey,
    RuntimeOptions,
    TileChain,
    buffer_specs,
    first_line,
    plan_key,
)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
CONV_ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
# Run option that selects which captured CUDA graph a run records or replays.
GRAPH_ID_KEY = "gpu_graph_id"


# ONNX Runtime's names of the tensor types a manifest can declare.
_ORT_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}


def _tensor(arg: ort.NodeArg) -> EngineTensor:
    return _ORT_DTYPES.get(arg.type), list(arg.shape)


class OrtSession(EngineSession):
    def __init__(self, name: str, info: GraphInfo, session: ort.InferenceSession):
        super().__init__(name, info)
        self.session = session
        self.check_io({i.name: _tensor(i) for i in session.get_inputs()}, {o.name: _tensor(o) for o in session.get_outputs()})

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = self.host_inputs(inputs)
        names = [t.name for t in self.info.outputs]
        try:
            outputs = self.session.run(names, feed)
        except Exception as err:  # ONNX Runtime's exception types share no base: out of memory, a bad input
            raise SRError(f"engine {self.info.file} failed ({first_line(err)})") from err
        return dict(zip(names, outputs, strict=True))


def open_session(bundle: Path, name: str, info: GraphInfo, providers: list, options: RuntimeOptions,
                 optimised: bool = False) -> OrtSession:
    """``optimised``: the graph was saved optimised at build time (``--optimize-for-this-cpu``), so
    ONNX Runtime is not asked to optimise it again."""
    so = ort.SessionOptions()
    if optimised:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = options.threads
    # Each session's arena stays at its own peak: with a bundle's dozens of sessions (S3Diff: 58) that held
    # 7.66 GiB against 1.15 GiB without it on a 256 -> 1024 image, at no measured cost in time.
    so.enable_cpu_mem_arena = False
    try:
        session = ort.InferenceSession(str(bundle / info.file), sess_options=so, providers=providers)
    except Exception as err:  # ONNX Runtime's own exception types, for unreadable or unsupported graphs
        raise SRError(f"ONNX Runtime {ort.__version__} cannot load {info.file} ({first_line(err)}); {REBUILD_HINT}") from err
    return OrtSession(name, info, session)


class OrtCpuBackend(CpuBackend):
    name = "onnxruntime-cpu"

    def check(self, manifest: Manifest) -> None:
        super().check(manifest)
        if (target := manifest.cpu_target) is None:
            return
        here = this_cpu()
        if target.isa != here.isa or manifest.backend_version != ort.__version__:
            raise SRError(
                f"the bundle's graphs were optimised for {target} by ONNX Runtime {manifest.backend_version}, "
                f"this is {here} with ONNX Runtime {ort.__version__}; rebuild it here, or without --optimize-for-this-cpu"
            )

    def open(self, bundle: Path, manifest: Manifest) -> dict[str, EngineSession]:
        optimised = manifest.cpu_target is not None
        return {name: open_session(bundle, name, g, [CPU_EP], self.options, optimised)
                for name, g in manifest.graphs.items()}


def cuda_provider_options(options: RuntimeOptions) -> dict[str, str]:
    if options.cudnn_conv_algo_search not in CONV_ALGO_SEARCHES:
        raise SRError(
            f"cudnn_conv_algo_search must be one of {', '.join(CONV_ALGO_SEARCHES)}, "
            f"got {options.cudnn_conv_algo_search!r}"
        )
    return {
        "device_id": str(options.device_id),
        # The arena grows by exactly what is asked: the default power-of-two growth wastes GBs on VAE activations.
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "enable_cuda_graph": "1" if options.cuda_graph else "0",
        "prefer_nhwc": "1" if options.prefer_nhwc else "0",
    }


class OrtCudaBackend(Backend):
    name = "onnxruntime-cuda"

    def check(self, manifest: Manifest) -> None:
        super().check(manifest)
        if CUDA_EP not in ort.get_available_providers():
            raise SRError(
                f"the bundle needs ONNX Runtime's {CUDA_EP}, which onnxruntime {ort.__version__} here does not have "
                "(install onnxruntime-gpu on a CUDA machine, or rebuild with --backend onnxruntime-cpu)"
            )

    def open(self, bundle: Path, manifest: Manifest) -> dict[str, EngineSession]:
        # onnxruntime-gpu finds CUDA / cuDNN in the nvidia-* wheels only when told to look there.
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        providers = [(CUDA_EP, cuda_provider_options(self.options)), CPU_EP]
        sessions = {name: open_session(bundle, name, g, providers, self.options) for name, g in manifest.graphs.items()}
        for s in sessions.values():
            # A CUDA EP that fails to initialise (no driver, missing cuDNN) silently falls back to the CPU.
            if s.session.get_providers()[0] != CUDA_EP:
                raise SRError(
                    f"ONNX Runtime could not start its CUDA provider on device {self.options.device_id} "
                    "(no GPU, or missing CUDA 12+/cuDNN 9 libraries); see ONNX Runtime's warnings above"
                )
        return sessions

    def chain(self, sessions: Mapping[str, EngineSession], plans: PlanFactory, max_batch: int) -> TileChain:
        return BoundChain(sessions, plans, max_batch, "cuda", self.options.device_id, self.options.cuda_graph)


class _BoundPlan:
    """A plan with a persistent device buffer per named buffer, bound once to every call.

    Bindings never change after construction, so the same object serves CUDA graphs, whose replays
    reuse the addresses recorded at capture: per-batch data goes in with ``update_inplace``.
    """

    def __init__(
        self, sessions: Mapping[str, OrtSession], plan: ChainPlan, device: str, device_id: int, graph_capture: bool,
        graph_ids: dict[str, int],
    ):
        self.plan = plan
        self.device = device
        self.graph_capture = graph_capture
        self.specs = buffer_specs(sessions, plan)
        self.buffers = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype.type, device, device_id)
            for name, (dtype, shape) in self.specs.items()
        }
        for name, value in plan.constants.items():
            self._write(name, value)
        self.runs = []
        for call in plan.calls:
            session = sessions[call.graph]
            binding = session.session.io_binding()
            for tensor, buffer in call.inputs.items():
                binding.bind_ortvalue_input(tensor, self.buffers[buffer])
            for tensor, buffer in call.outputs.items():
                binding.bind_ortvalue_output(tensor, self.buffers[buffer])
            # Each call of a graph (the unet steps; every plan of the chain) binds other buffers, so it needs
            # its own captured graph: ids are unique per session across all plans (``graph_ids`` counts them).
            options = ort.RunOptions()
            options.add_run_config_entry(GRAPH_ID_KEY, str(graph_ids.get(call.graph, 0)))
            graph_ids[call.graph] = graph_ids.get(call.graph, 0) + 1
            self.runs.append((call.graph, session.session, binding, options))
            if plan.result in call.outputs.values():  # read back through the binding that writes it last
                self._result = (binding, list(call.outputs.values()).index(plan.result))

    def _write(self, name: str, value: np.ndarray) -> None:
        # update_inplace copies raw bytes: the host array must already have the buffer's dtype and shape.
        dtype, shape = self.specs[name]
        host = np.ascontiguousarray(value, dtype=dtype)
        if host.shape != shape:
            raise SRError(f"{name} has shape {host.shape}, the engines take {shape}")
        self.buffers[name].update_inplace(host)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The result buffer, copied to the host."""
        for name in self.plan.feeds:
            self._write(name, feeds[name])
        # The host-to-device copies run outside ONNX Runtime's compute stream: wait for them.
        self.runs[0][2].synchronize_inputs()
        for graph, session, binding, options in self.runs:
            try:
                session.run_with_iobinding(binding, options)
            except Exception as err:  # ONNX Runtime's exception types share no base: out of memory, failed capture
                hint = ", or run without CUDA graphs" if self.graph_capture else ""
                raise SRError(
                    f"engine {graph} failed on {self.device} ({first_line(err)}); if memory ran out, rebuild with "
                    f"a smaller --batch{hint}"
                ) from err
        binding, position = self._result
        return binding.copy_outputs_to_cpu()[position]


class BoundChain:
    """Keeps every buffer of the chain on the device: host data goes in once per tile batch and only
    the result comes back. With ``fixed_batch`` (CUDA graphs) every batch runs at ``max_batch``:
    smaller ones are padded and the padding's results dropped."""

    def __init__(
        self,
        sessions: Mapping[str, OrtSession],
        plans: PlanFactory,
        max_batch: int,
        device: str,
        device_id: int = 0,
        fixed_batch: bool = False,
    ):
        self._sessions = sessions
        self._plans = plans
        self._max_batch = max_batch
        self._device = (device, device_id)
        self._fixed_batch = fixed_batch
        # By plan key: each chain's full batches, its last partial one, and images smaller than a tile.
        self._bound: dict[PlanKey, _BoundPlan] = {}
        self._graph_ids: dict[str, int] = {}

    @property
    def plan_keys(self) -> tuple[PlanKey, ...]:
        """The (chain, batch, height, width) that have device buffers (with CUDA graphs, captured graphs)."""
        return tuple(self._bound)

    def __call__(self, feeds: Mapping[str, np.ndarray], chain: ChainId = TILES) -> np.ndarray:
        key = plan_key(feeds, chain, self._max_batch if self._fixed_batch else None)
        n, batch = len(feeds[chain.main_feed]), key.batch
        if n > batch:
            raise SRError(f"{n} tiles in one call, the captured engines take {batch}")
        if key not in self._bound:
            self._bound[key] = _BoundPlan(self._sessions, self._plans(*key), *self._device, self._fixed_batch,
                                          self._graph_ids)
        result = self._bound[key]({name: _pad(value, batch) for name, value in feeds.items()})
        return result[:n]  # the rest is padding


def _pad(value: np.ndarray, batch: int) -> np.ndarray:
    if len(value) == batch:
        return value
    return np.concatenate([value, np.zeros((batch - len(value), *value.shape[1:]), value.dtype)])
