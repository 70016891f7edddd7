// nvfp4_matmul: out[M,N] = x[M,K] . W^T (+ bias) against an NVFP4 weight
// (W4A16): E2M1 elements, one E4M3 scale per 16 K elements, one f32 global
// scale that multiplies (ModelOpt) or divides (compressed-tensors):
//   code = (packed[n, k/2] >> 4*(k%2)) & 0xF      (element 2j in the low nibble)
//   m    = e4m3(scales[n, k/16]) * g   (or / d)   formed first, in f32
//   W[n,k] = e2m1(code) * m                       then rounded to x's type
// exactly as the reference (and ModelOpt / compressed-tensors) does. The
// division is IEEE (nvcc and NVRTC default to --prec-div=true).
//
// Work split: quant_matmul.cuh's 32x64 tiles; weights are dequantized with
// k fastest (rows of `packed` are contiguous along K).
//
// Limits: K padded to Kp (a multiple of 16) in storage; padded elements are
// never read into a product (k < K). No FP4 tensor cores are used: every
// arch dequantizes in registers. Offsets i64.
#include "quant_matmul.cuh"

// E2M1: bit 3 sign, bits 0-2 index [0, 0.5, 1, 1.5, 2, 3, 4, 6].
__device__ __forceinline__ float e2m1(u32 code) {
    const u32 e = (code >> 1) & 3u, mant = code & 1u;
    const float mag = e == 0 ? 0.5f * (float)mant : (1.0f + 0.5f * (float)mant) * (float)(1u << (e - 1));
    return (code & 8u) ? -mag : mag;
}

// E4M3FN: s eeee mmm, bias 7; e = 0 subnormal m * 2^-9; 0x7F / 0xFF NaN.
__device__ __forceinline__ float e4m3(u32 byte) {
    if ((byte & 0x7fu) == 0x7fu) return __int_as_float(0x7fc00000);
    const u32 e = (byte >> 3) & 0xfu, mant = byte & 7u;
    const float mag = e == 0 ? (float)mant * 0.001953125f : __uint_as_float(((e + 120u) << 23) | (mant << 20));
    return (byte & 0x80u) ? -mag : mag;
}

struct Nvfp4Dequant {
    static constexpr bool kKFastest = true;
    const unsigned char* packed;
    const unsigned char* scales;
    i64 k_padded;
    float global_scale;
    int divisor;

    __device__ __forceinline__ float weight(i64 col, i64 kk) const {
        const u32 byte = packed[col * (k_padded / 2) + kk / 2];
        const u32 code = (byte >> (4 * (int)(kk & 1))) & 0xFu;
        const float s = e4m3(scales[col * (k_padded / 16) + kk / 16]);
        const float multiplier = divisor ? s / global_scale : s * global_scale;
        return e2m1(code) * multiplier;
    }
};

template <typename T>
__device__ __forceinline__ void nvfp4_matmul_entry(const T* x, const unsigned char* packed, const unsigned char* scales,
                                                   const T* bias, T* out, i64 m, i64 n, i64 k, i64 k_padded,
                                                   float global_scale, int divisor) {
    const Nvfp4Dequant deq{packed, scales, k_padded, global_scale, divisor};
    quant_matmul_impl<T>(x, deq, bias, out, m, n, k);
}

extern "C" __global__ void __launch_bounds__(256)
    nvfp4_matmul_f32(const float* x, const unsigned char* packed, const unsigned char* scales, const float* bias,
                     float* out, i64 m, i64 n, i64 k, i64 k_padded, float global_scale, int divisor) {
    nvfp4_matmul_entry<float>(x, packed, scales, bias, out, m, n, k, k_padded, global_scale, divisor);
}
extern "C" __global__ void __launch_bounds__(256)
    nvfp4_matmul_f16(const f16* x, const unsigned char* packed, const unsigned char* scales, const f16* bias, f16* out,
                     i64 m, i64 n, i64 k, i64 k_padded, float global_scale, int divisor) {
    nvfp4_matmul_entry<f16>(x, packed, scales, bias, out, m, n, k, k_padded, global_scale, divisor);
}
extern "C" __global__ void __launch_bounds__(256)
    nvfp4_matmul_bf16(const bf16* x, const unsigned char* packed, const unsigned char* scales, const bf16* bias,
                      bf16* out, i64 m, i64 n, i64 k, i64 k_padded, float global_scale, int divisor) {
    nvfp4_matmul_entry<bf16>(x, packed, scales, bias, out, m, n, k, k_padded, global_scale, divisor);
}
