// quant_matmul.cuh: the tiled GEMM shared by the quantized matmuls
// (gptq_matmul.cu, awq_matmul.cu, nvfp4_matmul.cu):
//   out[M,N] = x[M,K] . W^T (+ bias[N]),  W[n,k] = Dequant::weight(n, k)
// where each format's functor dequantizes one weight in f32 exactly as the
// reference does; the kernel rounds it to x's storage type (the op's
// rounding contract) before multiplying, and accumulates in f32.
//
// Work split: 32 (rows of x) x 64 (output columns) tiles, numbered over
// (tile row, tile col) with blocks striding over them; K in steps of 32
// through shared memory. 256 threads: thread (ty = tid / 64, tx = tid % 64)
// owns column tx and rows ty + 4i (i < 8). The x tile is read k-fastest; the
// weight tile is dequantized along the packing's contiguous axis
// (Dequant::kKFastest) so packed loads coalesce. Out-of-range rows, columns
// and k read as zero; stores are bounds-checked.
//
// Limits: offsets i64; N, K < 2^31 (host-checked). Dequantization happens
// once per (tile row, weight element): decode-sized M (<= 32) reads each
// packed weight once.
#pragma once
#include "common.cuh"

namespace quant {
constexpr int BM = 32, BN = 64, BK = 32, THREADS = 256;
}

// A scale of a runtime storage type: 0 f32, 1 f16, 2 bf16.
__device__ __forceinline__ float load_scale(const void* p, i64 index, int dtype) {
    if (dtype == 1) return to_f32(static_cast<const f16*>(p)[index]);
    if (dtype == 2) return to_f32(static_cast<const bf16*>(p)[index]);
    return static_cast<const float*>(p)[index];
}

template <typename T, typename Dequant>
__device__ __forceinline__ void quant_matmul_impl(const T* __restrict__ x, const Dequant& deq,
                                                  const T* __restrict__ bias, T* __restrict__ out, i64 m, i64 n,
                                                  i64 k) {
    using namespace quant;
    __shared__ float xs[BK][BM + 1];
    __shared__ float ws[BK][BN + 1];
    const int tid = threadIdx.x;
    const int tx = tid % BN, ty = tid / BN;
    constexpr int ROWS = BM / (THREADS / BN);  // 8 rows per thread
    const i64 tiles_m = (m + BM - 1) / BM;
    const i64 tiles_n = (n + BN - 1) / BN;
    const i64 total = tiles_m * tiles_n;
    for (i64 tile = blockIdx.x; tile < total; tile += gridDim.x) {
        const i64 row0 = (tile / tiles_n) * BM;
        const i64 col0 = (tile % tiles_n) * BN;
        float acc[ROWS];
#pragma unroll
        for (int i = 0; i < ROWS; ++i) acc[i] = 0.0f;
        for (i64 k0 = 0; k0 < k; k0 += BK) {
#pragma unroll
            for (int i = 0; i < (BM * BK) / THREADS; ++i) {
                const int e = tid + i * THREADS;
                const int ml = e / BK, kl = e % BK;
                const i64 row = row0 + ml, kk = k0 + kl;
                xs[kl][ml] = (row < m && kk < k) ? to_f32(x[row * k + kk]) : 0.0f;
            }
            // Not unrolled: each dequantization is a handful of dependent
            // loads, and unrolling eight of them spills registers.
#pragma unroll 1
            for (int i = 0; i < (BN * BK) / THREADS; ++i) {
                const int e = tid + i * THREADS;
                int kl, nl;
                if (Dequant::kKFastest) {
                    kl = e % BK;
                    nl = e / BK;
                } else {
                    nl = e % BN;
                    kl = e / BN;
                }
                const i64 col = col0 + nl, kk = k0 + kl;
                ws[kl][nl] = (col < n && kk < k) ? round_to<T>(deq.weight(col, kk)) : 0.0f;
            }
            __syncthreads();
#pragma unroll 8
            for (int kl = 0; kl < BK; ++kl) {
                const float w = ws[kl][tx];
#pragma unroll
                for (int i = 0; i < ROWS; ++i) acc[i] = fmaf(xs[kl][ty + i * (THREADS / BN)], w, acc[i]);
            }
            __syncthreads();
        }
        const i64 col = col0 + tx;
        if (col < n) {
            const float b = bias != nullptr ? to_f32(bias[col]) : 0.0f;
#pragma unroll
            for (int i = 0; i < ROWS; ++i) {
                const i64 row = row0 + ty + i * (THREADS / BN);
                if (row < m) out[row * n + col] = from_f32<T>(acc[i] + b);
            }
        }
    }
}
