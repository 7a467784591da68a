"""The little of CUDA the TensorRT backend needs, through cuda-python (a light dependency: no torch).

Every call of cuda-python's runtime API returns ``(error, *values)``; ``check`` turns an error into an
SRError naming the call. Device memory, pinned host memory, one stream and CUDA graph capture.
"""

from __future__ import annotations

import ctypes
import weakref

import numpy as np

from ..errors import SRError
from .base import GpuInfo


def _runtime():
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (12.6+, 13) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise SRError(
                "TensorRT bundles need cuda-python, which is missing here (pip install 'sr-export[tensorrt]')"
            ) from None
    return runtime


def check(result, what: str):
    """``result`` of a cuda-python call -> its value(s); raises SRError on a CUDA error."""
    rt = _runtime()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        text = rt.cudaGetErrorString(err)[1]
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise SRError(f"CUDA error in {what}: {text} ({err.name if hasattr(err, 'name') else err})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device_id: int = 0) -> GpuInfo | None:
    """The GPU ``device_id``, or None where CUDA finds no usable GPU (no driver, no device)."""
    rt = _runtime()
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or device_id >= count:
        return None
    prop = check(rt.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, bytes | bytearray):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(str(name).strip(), f"{prop.major}.{prop.minor}")


def set_device(device_id: int) -> None:
    check(_runtime().cudaSetDevice(device_id), f"cudaSetDevice({device_id})")


def _free_device(ptr: int) -> None:
    _runtime().cudaFree(ptr)  # at teardown an error has nowhere useful to go


def _free_host(ptr: int) -> None:
    _runtime().cudaFreeHost(ptr)


class DeviceBuffer:
    """``nbytes`` of device memory, freed with the object. ``ptr`` never changes: TensorRT contexts and
    captured CUDA graphs keep it."""

    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(_runtime().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))
        weakref.finalize(self, _free_device, self.ptr)


class PinnedArray:
    """A numpy array in page-locked host memory: the only host memory async copies can use without an
    implicit synchronisation."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        nbytes = max(size * dtype.itemsize, 1)
        self.ptr = int(check(_runtime().cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        weakref.finalize(self, _free_host, self.ptr)
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dtype, count=size).reshape(shape)


class Stream:
    """A non-blocking stream: no implicit ordering with the legacy default stream, so everything the
    chain does is ordered on this one stream alone."""

    def __init__(self):
        rt = _runtime()
        self.handle = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        weakref.finalize(self, rt.cudaStreamDestroy, self.handle)

    @property
    def address(self) -> int:
        """The cudaStream_t as an integer, as TensorRT's execute_async_v3 takes it."""
        return int(self.handle)

    def copy_to_device(self, dst: int, src: PinnedArray) -> None:
        rt = _runtime()
        check(rt.cudaMemcpyAsync(dst, src.ptr, src.array.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 self.handle), "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, dst: PinnedArray, src: int) -> None:
        rt = _runtime()
        check(rt.cudaMemcpyAsync(dst.ptr, src, dst.array.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 self.handle), "cudaMemcpyAsync (device to host)")

    def synchronize(self) -> None:
        check(_runtime().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")


def upload(dst: int, value: np.ndarray) -> None:
    """A blocking copy of a host array to the device, for constants written once."""
    rt = _runtime()
    host = np.ascontiguousarray(value)
    check(rt.cudaMemcpy(dst, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")


def download(src: int, host: np.ndarray) -> None:
    """A blocking copy from the device into the contiguous host array ``host``."""
    rt = _runtime()
    check(rt.cudaMemcpy(host.ctypes.data, src, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy")


class CapturedGraph:
    """The work ``enqueue()`` puts on ``stream``, captured once and replayed with one launch."""

    def __init__(self, stream: Stream, enqueue):
        rt = _runtime()
        # Global mode: any CUDA call unsafe during capture (a cudaMalloc from any thread) fails loudly
        # instead of silently escaping the graph.
        check(rt.cudaStreamBeginCapture(stream.handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
              "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            # Leave capture mode, or the stream stays unusable; the partial graph is dropped.
            err, graph = rt.cudaStreamEndCapture(stream.handle)
            if err == rt.cudaError_t.cudaSuccess and graph is not None:
                rt.cudaGraphDestroy(graph)
            raise
        graph = check(rt.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        weakref.finalize(self, rt.cudaGraphDestroy, graph)
        self._exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        weakref.finalize(self, rt.cudaGraphExecDestroy, self._exec)
        self._stream = stream

    def launch(self) -> None:
        check(_runtime().cudaGraphLaunch(self._exec, self._stream.handle), "cudaGraphLaunch")
