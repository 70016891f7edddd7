// rms_norm: y = x / sqrt(mean(x^2) + eps) * (w + weight_offset) over the last
// dim, for f32 / f16 / bf16 storage with f32 arithmetic.
//
// Work split: one block per row (grid-stride over rows, so any row count
// fits the grid); the block's threads stride over the row. Pass 1 sums the
// squares (warp shuffles, then one value per warp in shared memory); pass 2
// re-reads x (from L1/L2) and writes y. When x, w, out are 16-byte aligned
// and hidden is a multiple of the pack width (4 f32 / 8 f16 or bf16), both
// passes use 16-byte loads and stores; otherwise scalar ones. Every thread
// visits the same indices in both passes.
//
// Range: a row whose f32 sum of squares overflows or underflows is redone
// scaled by a power of two (rms_row_scale in common.cuh), so every finite x
// normalizes as the reference does.
//
// Rounding: the mean of squares accumulates in f32; 1/sqrt uses IEEE sqrtf
// and division (not rsqrtf); (w + offset) is formed in f32; y is rounded
// once to the storage type.
//
// Limits: blockDim.x a multiple of kWarp, at most 1024 (launch bounds keep
// the register count low enough for 1024); hidden < 2^31.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void rms_norm_impl(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                                              i64 rows, int hidden, float eps, float weight_offset) {
    __shared__ float scratch[kMaxWarps];
    constexpr int N = Pack<T>::N;
    const bool vec = (hidden % N) == 0 && aligned16(x) && aligned16(w) && aligned16(out);
    const int packs = hidden / N;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * (i64)hidden;
        T* yr = out + row * (i64)hidden;
        float sum_sq = 0.0f;
        if (vec) {
            for (int p = threadIdx.x; p < packs; p += blockDim.x) {
                const Pack16 v = load_pack(xr + (i64)p * N);
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    const float f = to_f32(Pack<T>::get(v, j));
                    sum_sq += f * f;
                }
            }
        } else {
            for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
                const float f = to_f32(xr[i]);
                sum_sq += f * f;
            }
        }
        sum_sq = block_sum(sum_sq, scratch);
        const RmsRowScale scale = rms_row_scale(xr, hidden, sum_sq, eps);
        if (vec) {
            for (int p = threadIdx.x; p < packs; p += blockDim.x) {
                const Pack16 v = load_pack(xr + (i64)p * N);
                const Pack16 wv = load_pack(w + (i64)p * N);
                Pack16 y = {};
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    const float f = ldexpf(to_f32(Pack<T>::get(v, j)), scale.shift) * scale.inv * (to_f32(Pack<T>::get(wv, j)) + weight_offset);
                    Pack<T>::set(y, j, from_f32<T>(f));
                }
                store_pack(yr + (i64)p * N, y);
            }
        } else {
            for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
                yr[i] = from_f32<T>(ldexpf(to_f32(xr[i]), scale.shift) * scale.inv * (to_f32(w[i]) + weight_offset));
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024) rms_norm_f32(const float* x, const float* w, float* out, i64 rows, int hidden, float eps,
                                        float weight_offset) {
    rms_norm_impl<float>(x, w, out, rows, hidden, eps, weight_offset);
}
extern "C" __global__ void __launch_bounds__(1024) rms_norm_f16(const f16* x, const f16* w, f16* out, i64 rows, int hidden, float eps,
                                        float weight_offset) {
    rms_norm_impl<f16>(x, w, out, rows, hidden, eps, weight_offset);
}
extern "C" __global__ void __launch_bounds__(1024) rms_norm_bf16(const bf16* x, const bf16* w, bf16* out, i64 rows, int hidden, float eps,
                                         float weight_offset) {
    rms_norm_impl<bf16>(x, w, out, rows, hidden, eps, weight_offset);
}
