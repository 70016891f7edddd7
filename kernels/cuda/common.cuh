// common.cuh: what every radiant CUDA kernel shares.
//
// * Storage types. f16 and bf16 are kept as raw 16-bit patterns (`f16`,
//   `bf16`), converted with exact decoding and round-to-nearest-even encoding.
//   No CUDA header is included: the same text is compiled by nvcc at build
//   time and by NVRTC at run time, and NVRTC on a machine with only a driver
//   has no cuda_fp16.h. (A HIP port swaps the two inline-asm conversions for
//   its intrinsics.)
// * Reductions over a warp and over a block. The warp width is the constant
//   `kWarp` (RADIANT_WARP_SIZE): never write 32, AMD CDNA waves are 64.
// * 16-byte vector packs for vectorized loads and stores, used only when the
//   caller checked the alignment (views may start at any element offset).
//
// Index arithmetic: element offsets into tensors are `i64` everywhere a
// product of dimensions is formed; `int` only for values bounded by a single
// dimension that the host checked to fit.
#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;

#ifndef RADIANT_WARP_SIZE
#define RADIANT_WARP_SIZE 32
#endif
// Threads per warp (wave). Every lane-count computation uses this.
constexpr int kWarp = RADIANT_WARP_SIZE;
// Most warps a block can hold (1024 threads): the size of reduction scratch.
constexpr int kMaxWarps = 1024 / kWarp;
// Shuffle mask of a whole warp.
constexpr unsigned kFullMask = 0xffffffffu;

// IEEE infinities without <math.h> (NVRTC has none).
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fc00000); }
// NaN or +inf, tested on the bits (independent of fast-math flags): a
// softmax score that makes its row undefined (written NaN).
__device__ __forceinline__ bool nan_or_pos_inf(float v) {
    const unsigned b = __float_as_uint(v);
    return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}
__device__ __forceinline__ bool is_nan_f32(float v) { return (__float_as_uint(v) & 0x7fffffffu) > 0x7f800000u; }

// ---------------------------------------------------------------------------
// Storage types and conversions.

struct f16 {
    u16 bits;
};
struct bf16 {
    u16 bits;
};

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(f16 v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}
__device__ __forceinline__ float to_f32(bf16 v) { return __uint_as_float(((u32)v.bits) << 16); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);

template <>
__device__ __forceinline__ float from_f32<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ f16 from_f32<f16>(float v) {
    f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
    return r;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) {
    u32 u = __float_as_uint(v);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (u16)((u >> 16) | 0x0040u);  // NaN stays a (quiet) NaN
    } else {
        r.bits = (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // nearest even
    }
    return r;
}

// `v` rounded to T's precision and back (what storing and reloading gives).
template <typename T>
__device__ __forceinline__ float round_to(float v) {
    return to_f32(from_f32<T>(v));
}

// ---------------------------------------------------------------------------
// 16-byte packs: `Pack<T>::N` elements of T in four 32-bit words.

struct alignas(16) Pack16 {
    u32 w[4];
};

template <typename T>
struct Pack;

template <>
struct Pack<float> {
    static constexpr int N = 4;
    __device__ __forceinline__ static float get(const Pack16& p, int j) { return __uint_as_float(p.w[j]); }
    __device__ __forceinline__ static void set(Pack16& p, int j, float v) { p.w[j] = __float_as_uint(v); }
};

template <typename T>
struct Pack16Bit {
    static constexpr int N = 8;
    __device__ __forceinline__ static T get(const Pack16& p, int j) {
        T r;
        r.bits = (u16)(p.w[j >> 1] >> ((j & 1) * 16));
        return r;
    }
    __device__ __forceinline__ static void set(Pack16& p, int j, T v) {
        const int shift = (j & 1) * 16;
        p.w[j >> 1] = (p.w[j >> 1] & ~(0xffffu << shift)) | ((u32)v.bits << shift);
    }
};
template <>
struct Pack<f16> : Pack16Bit<f16> {};
template <>
struct Pack<bf16> : Pack16Bit<bf16> {};

__device__ __forceinline__ bool aligned16(const void* p) { return (((u64)p) & 15u) == 0; }

__device__ __forceinline__ Pack16 load_pack(const void* p) { return *reinterpret_cast<const Pack16*>(p); }
__device__ __forceinline__ void store_pack(void* p, const Pack16& v) { *reinterpret_cast<Pack16*>(p) = v; }

// ---------------------------------------------------------------------------
// Reductions.

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
    return v;
}

// Sum over the block; every thread gets the result. blockDim.x must be a
// multiple of kWarp (at most 1024); `scratch` holds kMaxWarps floats and may
// be reused by the next call (the leading barrier protects it).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int warps = blockDim.x / kWarp;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// rms_norm's row scale: y = ldexp(x, shift) · inv · (w + offset).
struct RmsRowScale {
    int shift;
    float inv;
};

// The row scale from the row's f32 sum of squares. When that sum overflowed,
// or is so small that its squares may have underflowed while eps is too
// small to dominate, the row is redone with its values scaled by 2^shift
// (the largest |x| brought to [0.5, 1)), as LAPACK's nrm2 avoids the same
// loss. That is rare, so every thread rescans the whole row itself: no
// barrier in a branch, and the same answer on every thread. A NaN sum takes
// the plain path (the row is NaN).
template <typename T>
__device__ __forceinline__ RmsRowScale rms_row_scale(const T* row, int hidden, float sum_sq, float eps) {
    RmsRowScale s = {0, 1.0f / sqrtf(sum_sq / (float)hidden + eps)};
    const bool overflow = sum_sq == pos_inf();
    const bool underflow = sum_sq < 0x1p-100f && eps < 0x1p-70f;
    if (!overflow && !underflow) return s;
    float amax = 0.0f;
    for (int i = 0; i < hidden; ++i) amax = fmaxf(amax, fabsf(to_f32(row[i])));
    if (!(amax > 0.0f) || amax == pos_inf()) return s;  // all zero, or ±inf (its element is NaN)
    int e;
    frexpf(amax, &e);
    const int k = -e;
    float sum = 0.0f;
    for (int i = 0; i < hidden; ++i) {
        const float v = ldexpf(to_f32(row[i]), k);
        sum += v * v;
    }
    const float t = ldexpf(eps, 2 * k);  // eps in the scaled units
    if (t == pos_inf()) return RmsRowScale{0, 1.0f / sqrtf(eps)};  // mean(x²) is negligible
    return RmsRowScale{k, 1.0f / sqrtf(sum / (float)hidden + t)};
}
