"""radiant: LLM inference kernels on CPU, CUDA and WebGPU, from numpy, DLPack
or device-resident tensors.

Array arguments are numpy arrays (float32 / float16 / ml_dtypes.bfloat16
activations, int32 offsets and tables, uint8 packed weights; C-contiguous),
``radiant.Tensor``s, or any object with ``__dlpack__`` (torch, jax, cupy, ...).

* Results follow the main input (``a``, ``x`` or ``q``): a numpy array in,
  numpy arrays out; a ``radiant.Tensor`` (or another DLPack object) in,
  ``radiant.Tensor``s out, left on the op's device.
* The device is ``device=`` if given, else the device of the first
  ``radiant.Tensor`` / quantized-weight argument, else ``"best"``. A Tensor
  argument must live on that device (``cpu`` and ``reference`` share host
  memory); move it with ``.to(device)``.
* Host memory (numpy, a DLPack tensor on kDLCPU) is used in place, without a
  copy, on the host devices ``cpu`` and ``reference`` when it is 4-byte
  aligned; it is copied otherwise and for GPU devices. Do not write such an
  array from another thread while an op reads it (the GIL is released).
* DLPack GPU memory (kDLCUDA, kDLROCM, ...) is not imported: a
  ``BufferError`` asks for a host copy. GPU tensors export only host copies.

Errors: invalid arguments raise ``ValueError`` (``TypeError`` for an
unsupported dtype or a non-array), an op a backend cannot run raises
``NotImplementedError``, an unavailable device ``RuntimeError``, a DLPack
exchange that cannot happen ``BufferError``. Kernels run with the GIL released.
"""

import os
from typing import Any, Optional, Tuple, TypedDict, Union, overload, Literal

import numpy as np
import numpy.typing as npt

__version__: str

class DeviceEntry(TypedDict):
    name: str
    available: bool
    reason: Optional[str]
    description: Optional[str]

def devices() -> list[DeviceEntry]:
    """Every device radiant can use here, and every backend family it cannot (with the reason)."""

class Device:
    """A device: "reference", "cpu", "cuda:N", "wgpu:N" or "best"."""

    def __init__(self, name: str = "best") -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...

DeviceLike = Union[str, Device, None]
DTypeLike = Union[str, type, np.dtype[Any], None]
Array = npt.NDArray[np.generic]

class Tensor:
    """A tensor that lives on a radiant device between calls.

    Made by :func:`tensor`, :meth:`Tensor.from_numpy`, :func:`from_dlpack` /
    :meth:`Tensor.from_dlpack`, :meth:`to`, or returned by an op whose main
    input is not a numpy array. Not constructible directly.

    A host tensor (``cpu`` / ``reference``) made from host memory without
    ``copy=True`` shares that memory: writes on either side are visible on
    the other. ``np.from_dlpack(t)`` and ``torch.from_dlpack(t)`` share a host
    tensor's memory too; the exported view keeps it alive after ``t`` is gone.
    """

    @staticmethod
    def from_numpy(array: Array, device: DeviceLike = None, copy: Optional[bool] = None) -> "Tensor":
        """A numpy array on ``device`` (default "best").

        copy=None shares the array's memory when the device is a host device
        and the array is writable and 4-byte aligned, else copies; copy=True
        always copies; copy=False raises BufferError instead of copying.
        """
    @staticmethod
    def from_dlpack(obj: Any, device: DeviceLike = None, copy: Optional[bool] = None) -> "Tensor":
        """Any object with ``__dlpack__`` (or a DLPack capsule) on ``device``.

        Same copy rules as :meth:`from_numpy`; a read-only export (versioned
        DLPack READ_ONLY flag) is copied. Non-contiguous tensors raise
        ValueError (radiant never copies strided memory); GPU memory raises
        BufferError (pass ``t.cpu()``). The producer is kept alive, and its
        deleter called exactly once, when radiant no longer uses the memory.
        """
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def dtype(self) -> str:
        """"float32", "float16", "bfloat16", "int32", "uint8" or "float8_e4m3fn"."""
    @property
    def device(self) -> str:
        """The device name: "cpu", "reference", "cuda:0", "wgpu:0", ..."""
    @property
    def ndim(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def numpy(self) -> Array:
        """A numpy copy (bfloat16 needs ml_dtypes; float8_e4m3fn comes back as uint8 bytes).

        For a zero-copy view of a host tensor use ``np.from_dlpack(t)``.
        """
    def to(self, device: Union[str, Device]) -> "Tensor":
        """The tensor on ``device``: itself if already there, the same memory
        between the host devices (cpu <-> reference), else a copy."""
    def __dlpack__(
        self,
        stream: Any = None,
        *,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any:
        """DLPack export. A host tensor is shared (no copy); ``max_version=(1, x)``
        gives a versioned capsule. A GPU tensor is exported only as a host
        copy, when ``dl_device=(1, 0)`` is asked for (BufferError otherwise).
        ``stream`` is accepted and ignored: results are complete when an op returns."""
    def __dlpack_device__(self) -> Tuple[int, int]:
        """(1, 0) kDLCPU for host tensors, (2, N) for cuda:N, (15, N) for wgpu:N."""
    def __array__(self, dtype: DTypeLike = None, copy: Optional[bool] = None) -> Array: ...
    def __len__(self) -> int: ...

ArrayLike = Union[Array, Tensor, Any]
"""A numpy array, a radiant.Tensor, or any object with __dlpack__."""
Result = Union[Array, Tensor]

def tensor(data: ArrayLike, device: DeviceLike = None, copy: Optional[bool] = None) -> Tensor:
    """A radiant.Tensor from a numpy array, a DLPack object or a radiant.Tensor.

    ``device`` defaults to the device of a radiant.Tensor ``data``, else "best".
    Copy rules as in :meth:`Tensor.from_numpy`.
    """

def from_dlpack(obj: Any, device: DeviceLike = None, copy: Optional[bool] = None) -> Tensor:
    """Same as :meth:`Tensor.from_dlpack`."""

# ---------------------------------------------------------------- quantized weights

PathLike = Union[str, "os.PathLike[str]"]

class GptqWeight:
    """A GPTQ weight (4 or 8 bits) resident on a device.

    Build it once — from checkpoint arrays, :meth:`from_safetensors` or
    :meth:`quantize` — and pass it to :func:`gptq_matmul` any number of
    times without another upload.
    """

    def __init__(
        self,
        qweight: ArrayLike,
        qzeros: ArrayLike,
        scales: ArrayLike,
        g_idx: Optional[ArrayLike] = None,
        *,
        bits: int,
        group_size: int,
        format: Literal["gptq", "gptq_v2"] = "gptq",
        bias: Optional[ArrayLike] = None,
        device: DeviceLike = None,
    ) -> None:
        """From a layer's checkpoint arrays: int32 qweight [K*bits/32, N],
        qzeros [G, N*bits/32], float scales [G, N], int32 g_idx [K] (or None)."""
    @staticmethod
    def from_safetensors(
        path: PathLike,
        prefix: str = "",
        device: DeviceLike = None,
        *,
        bits: Optional[int] = None,
        group_size: Optional[int] = None,
        format: Optional[Literal["gptq", "gptq_v2"]] = None,
    ) -> "GptqWeight":
        """Layer ``prefix`` (``prefix.qweight``, ``.qzeros``, ``.scales``,
        optional ``.g_idx`` and ``.bias``) of a safetensors file or checkpoint
        directory. Layout: the keywords, else the checkpoint's quantization
        config (config.json / quantize_config.json), else a case file's
        ``__metadata__``."""
    @staticmethod
    def quantize(
        weight: ArrayLike,
        bits: int = 4,
        group_size: int = 128,
        sym: bool = True,
        act_order: Optional[npt.ArrayLike] = None,
        format: Literal["gptq", "gptq_v2"] = "gptq",
        scale_dtype: DTypeLike = "float16",
        device: DeviceLike = None,
    ) -> "GptqWeight":
        """Round-to-nearest GPTQ of a float weight [N, K] (N and K multiples of
        32/bits): |w - s*(q - z)| <= s/2 for every element. ``act_order``: a
        permutation of range(K) giving the order columns are grouped in
        (non-monotonic g_idx, as in desc_act checkpoints); None = sequential."""
    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def bits(self) -> int: ...
    @property
    def group_size(self) -> int:
        """Columns per group; -1 = one group spanning K."""
    @property
    def groups(self) -> int: ...
    @property
    def format(self) -> str:
        """The source's zero-point storage: "gptq" (v1) or "gptq_v2"."""
    @property
    def sym(self) -> bool:
        """Every zero point is 2^(bits-1)."""
    @property
    def act_order(self) -> bool:
        """g_idx is not sequential."""
    @property
    def scale_dtype(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def bias(self) -> Optional[Tensor]:
        """The checkpoint's bias (its own dtype), or None. Not applied implicitly:
        pass ``bias=w.bias`` (converted to x's dtype if they differ)."""
    def dequantize(self, dtype: DTypeLike = "float32") -> Array:
        """W [N, K] as numpy (float32, float16 or bfloat16), rounded once from f32."""
    def tensors(self) -> dict[str, Array]:
        """The checkpoint arrays (qweight, qzeros in the source format, scales, g_idx, bias)."""
    def to(self, device: Union[str, Device]) -> "GptqWeight": ...

class AwqWeight:
    """A 4-bit AWQ (GEMM layout) weight resident on a device."""

    def __init__(
        self,
        qweight: ArrayLike,
        qzeros: ArrayLike,
        scales: ArrayLike,
        *,
        group_size: int,
        bias: Optional[ArrayLike] = None,
        device: DeviceLike = None,
    ) -> None:
        """From checkpoint arrays: int32 qweight [K, N/8], qzeros [G, N/8], float scales [G, N]."""
    @staticmethod
    def from_safetensors(
        path: PathLike, prefix: str = "", device: DeviceLike = None, *, group_size: Optional[int] = None
    ) -> "AwqWeight":
        """Layer ``prefix`` (``.qweight``, ``.qzeros``, ``.scales``, optional ``.bias``);
        the group size from the keyword, the config, or a case file's __metadata__."""
    @staticmethod
    def quantize(
        weight: ArrayLike, group_size: int = 128, scale_dtype: DTypeLike = "float16", device: DeviceLike = None
    ) -> "AwqWeight":
        """Round-to-nearest asymmetric 4-bit AWQ of a float weight [N, K] (N % 8 == 0, K % group_size == 0)."""
    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def bits(self) -> int: ...
    @property
    def group_size(self) -> int: ...
    @property
    def groups(self) -> int: ...
    @property
    def scale_dtype(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def bias(self) -> Optional[Tensor]: ...
    def dequantize(self, dtype: DTypeLike = "float32") -> Array: ...
    def tensors(self) -> dict[str, Array]: ...
    def to(self, device: Union[str, Device]) -> "AwqWeight": ...

class Nvfp4Weight:
    """An NVFP4 weight (E2M1 values, E4M3 scale per 16, f32 global scale) resident on a device."""

    def __init__(
        self,
        weight_packed: ArrayLike,
        weight_scale: ArrayLike,
        weight_scale_2: Union[float, ArrayLike, None] = None,
        weight_global_scale: Union[float, ArrayLike, None] = None,
        *,
        in_features: Optional[int] = None,
        bias: Optional[ArrayLike] = None,
        device: DeviceLike = None,
    ) -> None:
        """From checkpoint arrays: uint8 weight_packed [N, Kp/2], E4M3 bytes as
        uint8 weight_scale [N, Kp/16], and exactly one of weight_scale_2
        (ModelOpt multiplier) or weight_global_scale (compressed-tensors
        divisor). ``in_features``: K when rows are padded (default Kp)."""
    @staticmethod
    def from_safetensors(
        path: PathLike, prefix: str = "", device: DeviceLike = None, *, in_features: Optional[int] = None
    ) -> "Nvfp4Weight":
        """Layer ``prefix``: ``.weight_packed`` or ModelOpt's ``.weight``, ``.weight_scale``,
        ``.weight_scale_2`` or ``.weight_global_scale``, optional ``.bias``."""
    @staticmethod
    def quantize(
        weight: ArrayLike,
        producer: Literal["modelopt", "compressed-tensors"] = "modelopt",
        device: DeviceLike = None,
    ) -> "Nvfp4Weight":
        """Quantizes a float weight [N, K] (any K; rows padded to 16) as ``producer``
        does: "modelopt" (global scale = amax/(6*448), a multiplier) or
        "compressed-tensors" (6*448/amax, a divisor)."""
    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def k_padded(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    @property
    def global_scale(self) -> float: ...
    @property
    def producer(self) -> str:
        """"modelopt" (weight_scale_2) or "compressed-tensors" (weight_global_scale)."""
    @property
    def device(self) -> str: ...
    @property
    def bias(self) -> Optional[Tensor]: ...
    def dequantize(self, dtype: DTypeLike = "float32") -> Array: ...
    def tensors(self) -> dict[str, Array]: ...
    def to(self, device: Union[str, Device]) -> "Nvfp4Weight": ...

# ---------------------------------------------------------------- ops

def matmul(
    a: ArrayLike,
    b: ArrayLike,
    bias: Optional[ArrayLike] = None,
    b_layout: Literal["kn", "nk"] = "kn",
    device: DeviceLike = None,
) -> Result:
    """C[..., M, N] = A[..., M, K] · B (+ bias[N]); b is [K, N] ("kn") or [N, K] ("nk")."""

def rms_norm(
    x: ArrayLike,
    weight: ArrayLike,
    eps: float = 1e-6,
    weight_offset: float = 0.0,
    device: DeviceLike = None,
) -> Result:
    """y = x / sqrt(mean(x²) + eps) · (weight + weight_offset) over the last dim."""

def fused_add_rms_norm(
    x: ArrayLike,
    residual: ArrayLike,
    weight: ArrayLike,
    eps: float = 1e-6,
    weight_offset: float = 0.0,
    device: DeviceLike = None,
) -> Tuple[Result, Result]:
    """Returns (rms_norm(x + residual), x + residual).

    A numpy / DLPack residual is not modified. A radiant.Tensor residual is
    updated in place (and returned as the second result when results are
    Tensors); it must not share memory with x or weight.
    """

@overload
def attention(
    q: ArrayLike, k: ArrayLike, v: ArrayLike, cu_seqlens_q: ArrayLike, cu_seqlens_k: ArrayLike,
    causal: bool = False, softmax_scale: Optional[float] = None,
    window_left: int = -1, window_right: int = -1, softcap: float = 0.0,
    return_lse: Literal[False] = False, device: DeviceLike = None,
) -> Result: ...
@overload
def attention(
    q: ArrayLike, k: ArrayLike, v: ArrayLike, cu_seqlens_q: ArrayLike, cu_seqlens_k: ArrayLike,
    causal: bool = False, softmax_scale: Optional[float] = None,
    window_left: int = -1, window_right: int = -1, softcap: float = 0.0,
    *, return_lse: Literal[True], device: DeviceLike = None,
) -> Tuple[Result, Result]: ...

def paged_attention(
    q: ArrayLike, k_cache: ArrayLike, v_cache: ArrayLike, block_tables: ArrayLike, context_lens: ArrayLike,
    softmax_scale: Optional[float] = None, window_left: int = -1, window_right: int = -1,
    softcap: float = 0.0, causal: bool = False, device: DeviceLike = None,
) -> Result:
    """Decode attention over a paged KV cache (vLLM layout)."""

def gptq_matmul(
    x: ArrayLike, qweight: Union[ArrayLike, GptqWeight, None] = None, qzeros: Optional[ArrayLike] = None,
    scales: Optional[ArrayLike] = None, g_idx: Optional[ArrayLike] = None,
    bits: Optional[int] = None, group_size: Optional[int] = None, sym: Optional[bool] = None,
    format: Literal["gptq", "gptq_v2"] = "gptq", bias: Optional[ArrayLike] = None,
    device: DeviceLike = None, *, weight: Optional[GptqWeight] = None,
) -> Result:
    """y = x · dequant(W)ᵀ (+ bias): W is a GptqWeight (``weight=`` or in place of
    ``qweight``) or the checkpoint arrays with ``bits`` and ``group_size``."""

def awq_matmul(
    x: ArrayLike, qweight: Union[ArrayLike, AwqWeight, None] = None, qzeros: Optional[ArrayLike] = None,
    scales: Optional[ArrayLike] = None, group_size: Optional[int] = None,
    bias: Optional[ArrayLike] = None, device: DeviceLike = None, *, weight: Optional[AwqWeight] = None,
) -> Result:
    """y = x · dequant(W)ᵀ (+ bias): W is an AwqWeight or the checkpoint arrays with ``group_size``."""

def nvfp4_matmul(
    x: ArrayLike, weight_packed: Union[ArrayLike, Nvfp4Weight, None] = None,
    weight_scale: Optional[ArrayLike] = None,
    weight_scale_2: Union[float, ArrayLike, None] = None, weight_global_scale: Union[float, ArrayLike, None] = None,
    bias: Optional[ArrayLike] = None, device: DeviceLike = None,
    *, weight: Union[Nvfp4Weight, ArrayLike, None] = None,
) -> Result:
    """y = x · dequant(W)ᵀ (+ bias): W is an Nvfp4Weight (``weight=`` or in place of
    ``weight_packed``) or the checkpoint arrays (``weight=`` may also be
    ModelOpt's name for the packed uint8 array); weight_scale is E4M3 bytes as uint8."""
