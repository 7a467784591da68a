"""TensorRT backend: deserialized plans chained on one CUDA stream, optionally as one CUDA graph.

Per plan key (chain, batch, height, width) the chain binds everything once: one device buffer per named
buffer of the plan (addresses fixed with set_tensor_address), one execution context per engine call
(the UNet step is called N times over alternating latent buffers, so each call keeps its own
bindings), and one scratch allocation shared by every context (USER_MANAGED contexts; the engines run
one after another, so the largest device_memory_size_v2 serves all). A tile batch is: host feeds ->
pinned staging -> device, every engine with execute_async_v3 on the stream, result -> pinned
staging, one synchronize. With RuntimeOptions.cuda_graph the engine calls are captured after the
first plain run and replayed with one cudaGraphLaunch.

tensorrt is imported only once a bundle is checked or opened (the PyPI stub fails on import in
ways that must become a one-line refusal), and cuda-python only once a GPU is used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import SRError
from ..manifest import GraphInfo, Manifest
from . import cuda_device as cuda
from .base import (
    REBUILD_HINT,
    TILES,
    Backend,
    ChainId,
    ChainPlan,
    EngineSession,
    PlanFactory,
    PlanKey,
    TileChain,
    buffer_specs,
    check_tensorrt_target,
    plan_key,
)
from .tensorrt_compat import check_supported, installed_version

log = logging.getLogger(__name__)


def _numpy_dtype(trt, dtype) -> np.dtype | None:
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:  # bf16 / fp8 have no numpy type
        return None


class TrtSession(EngineSession):
    """One deserialized plan. ``run`` (host arrays in and out) is for one-off calls and benchmarks;
    the chain binds the engine itself."""

    def __init__(self, name: str, info: GraphInfo, engine, trt, runtime):
        super().__init__(name, info)
        self.engine = engine
        self.trt = trt
        self._runtime = runtime  # deserialized engines must not outlive their runtime
        self._context = None
        self._stream = None
        self._buffers: dict[str, cuda.DeviceBuffer] = {}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        tensors = {name: (_numpy_dtype(trt, engine.get_tensor_dtype(name)), list(engine.get_tensor_shape(name)))
                   for name in names}
        is_input = {name: engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self.check_io({n: t for n, t in tensors.items() if is_input[n]}, {n: t for n, t in tensors.items() if not is_input[n]})

    @property
    def scratch_size(self) -> int:
        """Activation memory a context of this engine needs at the profile's largest shapes."""
        return int(self.engine.device_memory_size_v2)

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer per tensor, reallocated only when a call needs more: cudaMalloc is too slow to
        sit inside timed calls."""
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = self._buffers[name] = cuda.DeviceBuffer(nbytes)
        return buf.ptr

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._context is None:
            self._context = self.engine.create_execution_context()  # its own activation memory
            self._stream = cuda.Stream()
        ctx = self._context
        for t in self.info.inputs:
            host = np.ascontiguousarray(inputs[t.name], dtype=self.dtypes[t.name])
            if not ctx.set_input_shape(t.name, host.shape):
                raise SRError(f"engine {self.name}: {t.name} of shape {host.shape} is outside its profile")
            ptr = self._buffer(t.name, host.nbytes)
            cuda.upload(ptr, host)  # blocking: done before the stream starts
            ctx.set_tensor_address(t.name, ptr)
        outputs = {
            t.name: np.empty(tuple(ctx.get_tensor_shape(t.name)), self.dtypes[t.name]) for t in self.info.outputs
        }
        for name, host in outputs.items():
            ctx.set_tensor_address(name, self._buffer(name, host.nbytes))
        if not ctx.execute_async_v3(self._stream.address):
            raise SRError(f"TensorRT could not run the {self.name} engine (see its errors above)")
        self._stream.synchronize()
        for name, host in outputs.items():
            cuda.download(self._buffers[name].ptr, host)
        return outputs


class TensorRTBackend(Backend):
    name = "tensorrt"

    def check(self, manifest: Manifest) -> None:
        super().check(manifest)
        version = installed_version()
        gpu = cuda.gpu_info(self.options.device_id) if version is not None else None
        check_tensorrt_target(manifest, version, gpu)
        check_supported(version)

    def open(self, bundle: Path, manifest: Manifest) -> dict[str, EngineSession]:
        import tensorrt as trt

        cuda.set_device(self.options.device_id)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        sessions: dict[str, EngineSession] = {}
        for name, info in manifest.graphs.items():
            engine = runtime.deserialize_cuda_engine((bundle / info.file).read_bytes())
            if engine is None:
                raise SRError(
                    f"TensorRT {trt.__version__} cannot load {info.file} (its errors are above); {REBUILD_HINT}"
                )
            sessions[name] = TrtSession(name, info, engine, trt, runtime)
        return sessions

    def chain(self, sessions: Mapping[str, EngineSession], plans: PlanFactory, max_batch: int) -> TileChain:
        return TrtChain(sessions, plans, self.options.cuda_graph)


class TrtChain:
    """The TileChain: one bound plan per plan key (each chain's full batch, its last partial one, an image
    smaller than a tile), all on one stream and one shared scratch allocation."""

    def __init__(self, sessions: Mapping[str, TrtSession], plans: PlanFactory, cuda_graph: bool):
        self._sessions = sessions
        self._plans = plans
        self._cuda_graph = cuda_graph
        self._stream = cuda.Stream()
        self._scratch = cuda.DeviceBuffer(max(s.scratch_size for s in sessions.values()))
        self._bound: dict[PlanKey, BoundPlan] = {}

    @property
    def captured(self) -> bool:
        """Whether every bound plan replays a CUDA graph."""
        return bool(self._bound) and all(b.graph is not None for b in self._bound.values())

    def __call__(self, feeds: Mapping[str, np.ndarray], chain: ChainId = TILES) -> np.ndarray:
        key = plan_key(feeds, chain)
        if key not in self._bound:
            plan = self._plans(*key)
            self._bound[key] = BoundPlan(self._sessions, plan, self._stream, self._scratch, self._cuda_graph)
        return self._bound[key](feeds)


class BoundPlan:
    """One ChainPlan with its device buffers, staging buffers and contexts bound once."""

    def __init__(self, sessions, plan: ChainPlan, stream: cuda.Stream, scratch: cuda.DeviceBuffer, capture: bool):
        self.plan = plan
        self.stream = stream
        self.capture = capture
        self.graph: cuda.CapturedGraph | None = None
        self.specs = buffer_specs(sessions, plan)
        self.buffers = {
            name: cuda.DeviceBuffer(int(np.prod(shape)) * dtype.itemsize)
            for name, (dtype, shape) in self.specs.items()
        }
        for name, value in plan.constants.items():
            dtype, shape = self.specs[name]
            cuda.upload(self.buffers[name].ptr, self._checked(name, value, dtype, shape))
        self.staged = {name: cuda.PinnedArray(self.specs[name][1], self.specs[name][0]) for name in plan.feeds}
        result_dtype, result_shape = self.specs[plan.result]
        self.result = cuda.PinnedArray(result_shape, result_dtype)
        self.contexts = [self._bind(sessions[call.graph], call, scratch) for call in plan.calls]

    def _bind(self, session: TrtSession, call, scratch: cuda.DeviceBuffer):
        trt = session.trt
        ctx = session.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        ctx.set_device_memory(scratch.ptr, scratch.nbytes)
        for tensor, buffer in call.inputs.items():
            if not ctx.set_input_shape(tensor, self.specs[buffer][1]):
                raise SRError(
                    f"engine {call.graph}: {tensor} {self.specs[buffer][1]} is outside its profile; {REBUILD_HINT}"
                )
        for tensor, buffer in (*call.inputs.items(), *call.outputs.items()):
            ctx.set_tensor_address(tensor, self.buffers[buffer].ptr)
        for tensor, buffer in call.outputs.items():
            if tuple(ctx.get_tensor_shape(tensor)) != self.specs[buffer][1]:
                raise SRError(
                    f"engine {call.graph} makes {tensor} {tuple(ctx.get_tensor_shape(tensor))}, the chain expects "
                    f"{self.specs[buffer][1]}; {REBUILD_HINT}"
                )
        return call.graph, ctx

    @staticmethod
    def _checked(name: str, value: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        host = np.ascontiguousarray(value, dtype=dtype)
        if host.shape != shape:
            raise SRError(f"{name} has shape {host.shape}, the engines take {shape}")
        return host

    def _enqueue(self) -> None:
        for graph, ctx in self.contexts:  # no host synchronisation between engines
            if not ctx.execute_async_v3(self.stream.address):
                raise SRError(f"TensorRT could not run the {graph} engine (see its errors above)")

    def _capture(self) -> None:
        try:
            self.graph = cuda.CapturedGraph(self.stream, self._enqueue)
        except SRError as err:  # some engines cannot be captured: run them plainly
            log.warning("CUDA graph capture failed (%s); running the engines without it", err)
            self.capture = False

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        for name, staged in self.staged.items():
            np.copyto(staged.array, self._checked(name, feeds[name], staged.array.dtype, staged.array.shape))
            self.stream.copy_to_device(self.buffers[name].ptr, staged)
        if self.graph is not None:
            self.graph.launch()
        else:
            self._enqueue()
            if self.capture:  # after a plain run: TensorRT's deferred setup must not land in the graph
                self._capture()
        self.stream.copy_to_host(self.result, self.buffers[self.plan.result].ptr)
        self.stream.synchronize()
        return self.result.array.copy()
