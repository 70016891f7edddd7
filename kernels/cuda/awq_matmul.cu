// awq_matmul: out[M,N] = x[M,K] . W^T (+ bias) against an AWQ "gemm" weight
// (4 bits, interleaved packing along N):
//   word = qweight[k, n/8],  q[k,n] = (word >> 4*REV[n%8]) & 0xF,
//   REV = [0,4,1,5,2,6,3,7]  (nibble i holds column ORDER[i] = [0,2,4,6,1,3,5,7])
//   z[g,n] from qzeros[g, n/8] the same way,  g = k / group_size
//   W[n,k] = scales[g, n] * (q[k,n] - z[g,n])
// formed in f32 (exact) and rounded to x's type, as the reference does.
//
// Work split: quant_matmul.cuh's 32x64 tiles; weights are dequantized with
// n fastest (8 neighbouring columns share a word).
//
// Limits: N % 8 == 0 and K % group_size == 0 (checked when the weight was
// built); scales f32 / f16 / bf16 (runtime code); offsets i64.
#include "quant_matmul.cuh"

struct AwqDequant {
    static constexpr bool kKFastest = false;
    const u32* qweight;
    const u32* qzeros;
    const void* scales;
    i64 n;
    int group_size;
    int groups;
    int scale_dtype;

    __device__ __forceinline__ float weight(i64 col, i64 kk) const {
        const int j = (int)(col % 8);
        const int shift = 4 * (((j & 1) << 2) | (j >> 1));  // 4 * REV[j]
        const i64 words = n / 8;
        const u32 q = (qweight[kk * words + col / 8] >> shift) & 0xFu;
        i64 g = kk / group_size;
        g = g >= groups ? groups - 1 : g;
        const u32 z = (qzeros[g * words + col / 8] >> shift) & 0xFu;
        const float s = load_scale(scales, g * n + col, scale_dtype);
        return s * (float)((int)q - (int)z);
    }
};

template <typename T>
__device__ __forceinline__ void awq_matmul_entry(const T* x, const u32* qweight, const u32* qzeros, const void* scales,
                                                 const T* bias, T* out, i64 m, i64 n, i64 k, int group_size,
                                                 int groups, int scale_dtype) {
    const AwqDequant deq{qweight, qzeros, scales, n, group_size, groups, scale_dtype};
    quant_matmul_impl<T>(x, deq, bias, out, m, n, k);
}

extern "C" __global__ void __launch_bounds__(256)
    awq_matmul_f32(const float* x, const u32* qweight, const u32* qzeros, const void* scales, const float* bias,
                   float* out, i64 m, i64 n, i64 k, int group_size, int groups, int scale_dtype) {
    awq_matmul_entry<float>(x, qweight, qzeros, scales, bias, out, m, n, k, group_size, groups, scale_dtype);
}
extern "C" __global__ void __launch_bounds__(256)
    awq_matmul_f16(const f16* x, const u32* qweight, const u32* qzeros, const void* scales, const f16* bias, f16* out,
                   i64 m, i64 n, i64 k, int group_size, int groups, int scale_dtype) {
    awq_matmul_entry<f16>(x, qweight, qzeros, scales, bias, out, m, n, k, group_size, groups, scale_dtype);
}
extern "C" __global__ void __launch_bounds__(256)
    awq_matmul_bf16(const bf16* x, const u32* qweight, const u32* qzeros, const void* scales, const bf16* bias,
                    bf16* out, i64 m, i64 n, i64 k, int group_size, int groups, int scale_dtype) {
    awq_matmul_entry<bf16>(x, qweight, qzeros, scales, bias, out, m, n, k, group_size, groups, scale_dtype);
}
