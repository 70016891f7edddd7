"""radiant: LLM inference kernels on CPU, CUDA and WebGPU, from numpy.

Every op takes numpy arrays (float32 / float16 activations, int32 offsets and
tables, uint8 packed weights), must be C-contiguous, and returns numpy arrays
of the activation dtype. Invalid arguments raise ``ValueError`` (or
``TypeError`` for an unsupported dtype / non-array) with radiant's message;
an op a backend cannot run raises ``NotImplementedError``; an unavailable
device raises ``RuntimeError``. Kernels run with the GIL released.
"""

from typing import Optional, Tuple, TypedDict, Union, overload, Literal

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
Array = npt.NDArray[np.generic]

def matmul(
    a: Array,
    b: Array,
    bias: Optional[Array] = None,
    b_layout: Literal["kn", "nk"] = "kn",
    device: DeviceLike = "best",
) -> Array:
    """C[..., M, N] = A[..., M, K] · B (+ bias[N]); b is [K, N] ("kn") or [N, K] ("nk")."""

def rms_norm(
    x: Array,
    weight: Array,
    eps: float = 1e-6,
    weight_offset: float = 0.0,
    device: DeviceLike = "best",
) -> Array:
    """y = x / sqrt(mean(x²) + eps) · (weight + weight_offset) over the last dim."""

def fused_add_rms_norm(
    x: Array,
    residual: Array,
    weight: Array,
    eps: float = 1e-6,
    weight_offset: float = 0.0,
    device: DeviceLike = "best",
) -> Tuple[Array, Array]:
    """Returns (rms_norm(x + residual), x + residual); the input residual is not modified."""

@overload
def attention(
    q: Array, k: Array, v: Array, cu_seqlens_q: Array, cu_seqlens_k: Array,
    causal: bool = False, softmax_scale: Optional[float] = None,
    window_left: int = -1, window_right: int = -1, softcap: float = 0.0,
    return_lse: Literal[False] = False, device: DeviceLike = "best",
) -> Array: ...
@overload
def attention(
    q: Array, k: Array, v: Array, cu_seqlens_q: Array, cu_seqlens_k: Array,
    causal: bool = False, softmax_scale: Optional[float] = None,
    window_left: int = -1, window_right: int = -1, softcap: float = 0.0,
    *, return_lse: Literal[True], device: DeviceLike = "best",
) -> Tuple[Array, Array]: ...

def paged_attention(
    q: Array, k_cache: Array, v_cache: Array, block_tables: Array, context_lens: Array,
    softmax_scale: Optional[float] = None, window_left: int = -1, window_right: int = -1,
    softcap: float = 0.0, causal: bool = False, device: DeviceLike = "best",
) -> Array:
    """Decode attention over a paged KV cache (vLLM layout)."""

def gptq_matmul(
    x: Array, qweight: Array, qzeros: Array, scales: Array, g_idx: Optional[Array],
    bits: int, group_size: int, sym: Optional[bool] = None,
    format: Literal["gptq", "gptq_v2"] = "gptq", bias: Optional[Array] = None,
    device: DeviceLike = "best",
) -> Array:
    """y = x · dequant(W)ᵀ (+ bias) against a GPTQ layer as stored in the checkpoint."""

def awq_matmul(
    x: Array, qweight: Array, qzeros: Array, scales: Array, group_size: int,
    bias: Optional[Array] = None, device: DeviceLike = "best",
) -> Array:
    """y = x · dequant(W)ᵀ (+ bias) against a 4-bit AWQ (gemm layout) layer."""

def nvfp4_matmul(
    x: Array, weight_packed: Array, weight_scale: Array,
    weight_scale_2: Union[float, Array, None] = None, weight_global_scale: Union[float, Array, None] = None,
    bias: Optional[Array] = None, device: DeviceLike = "best",
) -> Array:
    """y = x · dequant(W)ᵀ (+ bias) against an NVFP4 layer; weight_scale is E4M3 bytes as uint8."""
