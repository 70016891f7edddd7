// fused_add_rms_norm: residual <- x + residual (written back), then
// out = rms_norm(residual), for f32 / f16 / bf16 storage with f32 arithmetic.
//
// Rounding contract (the op's): the sum is formed in f32 and rounded to the
// storage type; that rounded value is written to `residual` AND is what gets
// normalized. (f32 holds the exact sum of two f16/bf16 values up to one
// rounding, and 24 >= 2p + 2 bits makes the double rounding harmless.)
//
// Work split: as rms_norm.cu, one block per row (grid-stride), threads
// stride over the row; 16-byte packs when every pointer is aligned and
// hidden is a multiple of the pack width. Pass 1 writes the rounded sum to
// `residual` and sums its squares; pass 2 re-reads `residual` (each thread
// reads back only the elements it wrote itself, so no barrier is needed)
// and writes `out`.
//
// Limits: blockDim.x a multiple of kWarp, at most 1024; hidden < 2^31;
// `residual` must not alias x, w or out (checked by the host).
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void fused_add_rms_norm_impl(const T* __restrict__ x, T* residual,
                                                        const T* __restrict__ w, T* __restrict__ out, i64 rows,
                                                        int hidden, float eps, float weight_offset) {
    __shared__ float scratch[kMaxWarps];
    constexpr int N = Pack<T>::N;
    const bool vec = (hidden % N) == 0 && aligned16(x) && aligned16(residual) && aligned16(w) && aligned16(out);
    const int packs = hidden / N;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * (i64)hidden;
        T* rr = residual + row * (i64)hidden;
        T* yr = out + row * (i64)hidden;
        float sum_sq = 0.0f;
        if (vec) {
            for (int p = threadIdx.x; p < packs; p += blockDim.x) {
                const Pack16 a = load_pack(xr + (i64)p * N);
                const Pack16 b = load_pack(rr + (i64)p * N);
                Pack16 s = {};
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    const T sum = from_f32<T>(to_f32(Pack<T>::get(a, j)) + to_f32(Pack<T>::get(b, j)));
                    Pack<T>::set(s, j, sum);
                    const float f = to_f32(sum);
                    sum_sq += f * f;
                }
                store_pack(rr + (i64)p * N, s);
            }
        } else {
            for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
                const T sum = from_f32<T>(to_f32(xr[i]) + to_f32(rr[i]));
                rr[i] = sum;
                const float f = to_f32(sum);
                sum_sq += f * f;
            }
        }
        sum_sq = block_sum(sum_sq, scratch);
        const RmsRowScale scale = rms_row_scale(rr, hidden, sum_sq, eps);
        if (vec) {
            for (int p = threadIdx.x; p < packs; p += blockDim.x) {
                const Pack16 v = load_pack(rr + (i64)p * N);
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
                yr[i] = from_f32<T>(ldexpf(to_f32(rr[i]), scale.shift) * scale.inv * (to_f32(w[i]) + weight_offset));
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024) fused_add_rms_norm_f32(const float* x, float* residual, const float* w, float* out, i64 rows,
                                                  int hidden, float eps, float weight_offset) {
    fused_add_rms_norm_impl<float>(x, residual, w, out, rows, hidden, eps, weight_offset);
}
extern "C" __global__ void __launch_bounds__(1024) fused_add_rms_norm_f16(const f16* x, f16* residual, const f16* w, f16* out, i64 rows,
                                                  int hidden, float eps, float weight_offset) {
    fused_add_rms_norm_impl<f16>(x, residual, w, out, rows, hidden, eps, weight_offset);
}
extern "C" __global__ void __launch_bounds__(1024) fused_add_rms_norm_bf16(const bf16* x, bf16* residual, const bf16* w, bf16* out, i64 rows,
                                                   int hidden, float eps, float weight_offset) {
    fused_add_rms_norm_impl<bf16>(x, residual, w, out, rows, hidden, eps, weight_offset);
}
