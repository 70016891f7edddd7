// gptq_matmul: out[M,N] = x[M,K] . W^T (+ bias) against a GPTQ weight, 4 or
// 8 bits, any group size, act-order g_idx honoured:
//   q[k,n] = (qweight[k/pf, n] >> (bits*(k%pf))) & (2^bits - 1),   pf = 32/bits
//   z[g,n] = (qzeros[g, n/pf] >> (bits*(n%pf))) & (2^bits - 1)     (v2: z itself)
//   W[n,k] = scales[g, n] * (q[k,n] - z[g,n]),  g = g_idx[k]
// formed in f32 (exact) and rounded to x's type, as the reference does.
// Group indices are clamped to [0, G): a device weight overwritten after
// upload gives wrong numbers, never an out-of-bounds read.
//
// Work split: quant_matmul.cuh's 32x64 tiles; weights are dequantized with
// n fastest (qweight rows are contiguous along N, so packed loads coalesce).
//
// Limits: bits in {4, 8} (the host's `select` refuses others), N % pf == 0
// (checked when the weight was built); scales f32 / f16 / bf16 (runtime
// code); offsets i64.
#include "quant_matmul.cuh"

struct GptqDequant {
    static constexpr bool kKFastest = false;
    const u32* qweight;
    const u32* qzeros;
    const void* scales;
    const int* g_idx;
    i64 n;
    int bits;
    int groups;
    int scale_dtype;

    __device__ __forceinline__ float weight(i64 col, i64 kk) const {
        const int pf = 32 / bits;
        const u32 mask = (1u << bits) - 1u;
        const u32 q = (qweight[(kk / pf) * n + col] >> (bits * (int)(kk % pf))) & mask;
        int g = g_idx[kk];
        g = g < 0 ? 0 : (g >= groups ? groups - 1 : g);
        const u32 z = (qzeros[(i64)g * (n / pf) + col / pf] >> (bits * (int)(col % pf))) & mask;
        const float s = load_scale(scales, (i64)g * n + col, scale_dtype);
        return s * (float)((int)q - (int)z);
    }
};

template <typename T>
__device__ __forceinline__ void gptq_matmul_entry(const T* x, const u32* qweight, const u32* qzeros,
                                                  const void* scales, const int* g_idx, const T* bias, T* out, i64 m,
                                                  i64 n, i64 k, int bits, int groups, int scale_dtype) {
    const GptqDequant deq{qweight, qzeros, scales, g_idx, n, bits, groups, scale_dtype};
    quant_matmul_impl<T>(x, deq, bias, out, m, n, k);
}

extern "C" __global__ void __launch_bounds__(256)
    gptq_matmul_f32(const float* x, const u32* qweight, const u32* qzeros, const void* scales, const int* g_idx,
                    const float* bias, float* out, i64 m, i64 n, i64 k, int bits, int groups, int scale_dtype) {
    gptq_matmul_entry<float>(x, qweight, qzeros, scales, g_idx, bias, out, m, n, k, bits, groups, scale_dtype);
}
extern "C" __global__ void __launch_bounds__(256)
    gptq_matmul_f16(const f16* x, const u32* qweight, const u32* qzeros, const void* scales, const int* g_idx,
                    const f16* bias, f16* out, i64 m, i64 n, i64 k, int bits, int groups, int scale_dtype) {
    gptq_matmul_entry<f16>(x, qweight, qzeros, scales, g_idx, bias, out, m, n, k, bits, groups, scale_dtype);
}
extern "C" __global__ void __launch_bounds__(256)
    gptq_matmul_bf16(const bf16* x, const u32* qweight, const u32* qzeros, const void* scales, const int* g_idx,
                     const bf16* bias, bf16* out, i64 m, i64 n, i64 k, int bits, int groups, int scale_dtype) {
    gptq_matmul_entry<bf16>(x, qweight, qzeros, scales, g_idx, bias, out, m, n, k, bits, groups, scale_dtype);
}
