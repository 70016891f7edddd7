// matmul: C[b,M,N] = A[b,M,K] . B (+ bias[N]) with B either [b,K,N] ("kn",
// b_nk = 0) or [b,N,K] ("nk", linear-layer weights, b_nk = 1); a B without
// its own batch (b_batched = 0) is shared by every batch. f32 accumulation,
// one rounding to the storage type after the bias is added.
//
// Two kernels, picked on the host by `select_matmul` (src/cuda/backend.rs):
// * matmul_simt_<T>: 64x64 output tiles, K in steps of 16 through shared
//   memory, 256 threads, each thread 4x4 outputs strided by 16 (so shared
//   reads are broadcasts or consecutive). Any arch, any dtype.
// * matmul_tc_<T> (f16 / bf16, sm_80+): 64x64 output tiles, K in steps of 32,
//   128 threads = 4 warps in 2x2, each warp 32x32 made of 2x4 tensor-core
//   tiles (mma.sync m16n8k16, f32 accumulators). Fragments are read from
//   shared memory with the PTX-documented m16n8k16 layouts (lane = 4*g + t:
//   A rows g / g+8, cols 2t,2t+1 (+8); B cols g, rows 2t,2t+1 (+8); C rows
//   g / g+8, cols 2t,2t+1). The mma fragment layout is a 32-lane NVIDIA
//   contract, so this kernel asserts kWarp == 32; a HIP port uses its own
//   matrix-core kernel. Below sm_80 its body traps (never selected there).
//   Correctness first: plain element loads; a later version pipelines with
//   cp.async and ldmatrix.
//
// Work split: tiles are numbered over (batch, tile row, tile col) and
// blocks stride over that 1-D index, so any size fits the grid. Every load
// outside [M) x [K) or [K) x [N) reads as zero; every store is bounds-checked.
//
// Limits: offsets are i64; M, N, K each < 2^31 (the host checks).
#include "common.cuh"

namespace simt {
constexpr int BM = 64, BN = 64, BK = 16, THREADS = 256;
}

template <typename T>
__device__ __forceinline__ void matmul_simt_impl(const T* __restrict__ a, const T* __restrict__ b,
                                                 const T* __restrict__ bias, T* __restrict__ c, i64 batch, i64 m,
                                                 i64 n, i64 k, int b_nk, int b_batched) {
    using namespace simt;
    __shared__ float as[BK][BM + 4];
    __shared__ float bs[BK][BN + 4];
    const int tid = threadIdx.x;
    const int tx = tid % 16;  // output column group
    const int ty = tid / 16;  // output row group
    const i64 tiles_m = (m + BM - 1) / BM;
    const i64 tiles_n = (n + BN - 1) / BN;
    const i64 total = batch * tiles_m * tiles_n;
    for (i64 tile = blockIdx.x; tile < total; tile += gridDim.x) {
        const i64 bi = tile / (tiles_m * tiles_n);
        const i64 rest = tile % (tiles_m * tiles_n);
        const i64 row0 = (rest / tiles_n) * BM;
        const i64 col0 = (rest % tiles_n) * BN;
        const T* ab = a + bi * m * k;
        const T* bb = b + (b_batched ? bi * k * n : 0);
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

        for (i64 k0 = 0; k0 < k; k0 += BK) {
            // A tile: 64 rows x 16 k, 4 elements per thread, k fastest.
#pragma unroll
            for (int i = 0; i < (BM * BK) / THREADS; ++i) {
                const int e = tid + i * THREADS;
                const int ml = e / BK, kl = e % BK;
                const i64 row = row0 + ml, kk = k0 + kl;
                as[kl][ml] = (row < m && kk < k) ? to_f32(ab[row * k + kk]) : 0.0f;
            }
            // B tile: 16 k x 64 cols.
#pragma unroll
            for (int i = 0; i < (BN * BK) / THREADS; ++i) {
                const int e = tid + i * THREADS;
                int kl, nl;
                if (b_nk) {
                    nl = e / BK;
                    kl = e % BK;
                } else {
                    kl = e / BN;
                    nl = e % BN;
                }
                const i64 col = col0 + nl, kk = k0 + kl;
                float v = 0.0f;
                if (col < n && kk < k) v = to_f32(b_nk ? bb[col * k + kk] : bb[kk * n + col]);
                bs[kl][nl] = v;
            }
            __syncthreads();
#pragma unroll
            for (int kl = 0; kl < BK; ++kl) {
                float av[4], bv[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) av[i] = as[kl][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; ++j) bv[j] = bs[kl][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
            }
            __syncthreads();
        }
        T* cb = c + bi * m * n;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const i64 row = row0 + ty + 16 * i;
            if (row >= m) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const i64 col = col0 + tx + 16 * j;
                if (col >= n) continue;
                float v = acc[i][j];
                if (bias != nullptr) v += to_f32(bias[col]);
                cb[row * n + col] = from_f32<T>(v);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
    matmul_simt_f32(const float* a, const float* b, const float* bias, float* c, i64 batch, i64 m, i64 n, i64 k,
                    int b_nk, int b_batched) {
    matmul_simt_impl<float>(a, b, bias, c, batch, m, n, k, b_nk, b_batched);
}
extern "C" __global__ void __launch_bounds__(256)
    matmul_simt_f16(const f16* a, const f16* b, const f16* bias, f16* c, i64 batch, i64 m, i64 n, i64 k, int b_nk,
                    int b_batched) {
    matmul_simt_impl<f16>(a, b, bias, c, batch, m, n, k, b_nk, b_batched);
}
extern "C" __global__ void __launch_bounds__(256)
    matmul_simt_bf16(const bf16* a, const bf16* b, const bf16* bias, bf16* c, i64 batch, i64 m, i64 n, i64 k,
                     int b_nk, int b_batched) {
    matmul_simt_impl<bf16>(a, b, bias, c, batch, m, n, k, b_nk, b_batched);
}

// ---------------------------------------------------------------------------
// Tensor cores.

namespace tc {
constexpr int BM = 64, BN = 64, BK = 32, THREADS = 128;
constexpr int LD = BK + 8;  // padded row (u16 elements): 80 bytes, keeps 4-byte alignment
}

template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float* d, const u32* af, const u32* bf);

template <>
__device__ __forceinline__ void mma_m16n8k16<f16>(float* d, const u32* af, const u32* bf) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
#else
    __trap();
#endif
}

template <>
__device__ __forceinline__ void mma_m16n8k16<bf16>(float* d, const u32* af, const u32* bf) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
#else
    __trap();
#endif
}

template <typename T>
__device__ __forceinline__ void matmul_tc_impl(const T* __restrict__ a, const T* __restrict__ b,
                                               const T* __restrict__ bias, T* __restrict__ c, i64 batch, i64 m, i64 n,
                                               i64 k, int b_nk, int b_batched) {
    using namespace tc;
    static_assert(kWarp == 32, "mma.sync fragments are defined for 32-lane warps");
    __shared__ alignas(16) u16 as[BM][LD];  // [row][k]
    __shared__ alignas(16) u16 bs[BN][LD];  // [col][k]
    const int tid = threadIdx.x;
    const int warp = tid / kWarp, lane = tid % kWarp;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // warp tile origin inside the block tile
    const u16* a16 = reinterpret_cast<const u16*>(a);
    const u16* b16 = reinterpret_cast<const u16*>(b);
    const i64 tiles_m = (m + BM - 1) / BM;
    const i64 tiles_n = (n + BN - 1) / BN;
    const i64 total = batch * tiles_m * tiles_n;
    for (i64 tile = blockIdx.x; tile < total; tile += gridDim.x) {
        const i64 bi = tile / (tiles_m * tiles_n);
        const i64 rest = tile % (tiles_m * tiles_n);
        const i64 row0 = (rest / tiles_n) * BM;
        const i64 col0 = (rest % tiles_n) * BN;
        const u16* ab = a16 + bi * m * k;
        const u16* bb = b16 + (b_batched ? bi * k * n : 0);
        float acc[2][4][4];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

        for (i64 k0 = 0; k0 < k; k0 += BK) {
            // A tile: 64 rows x 32 k. Each thread keeps one k column and
            // walks rows 4 apart (16 loads), so only one bound on k.
            {
                const int kl = tid % BK;
                const i64 kk = k0 + kl;
                const bool k_ok = kk < k;
                const int ml0 = tid / BK;
                const u16* src = ab + (row0 + ml0) * k + kk;
#pragma unroll 4
                for (int i = 0; i < BM / (THREADS / BK); ++i) {
                    const int ml = ml0 + i * (THREADS / BK);
                    as[ml][kl] = (k_ok && row0 + ml < m) ? src[(i64)i * (THREADS / BK) * k] : (u16)0;
                }
            }
            // B tile into [col][k].
            if (b_nk) {
                const int kl = tid % BK;
                const i64 kk = k0 + kl;
                const bool k_ok = kk < k;
                const int nl0 = tid / BK;
                const u16* src = bb + (col0 + nl0) * k + kk;
#pragma unroll 4
                for (int i = 0; i < BN / (THREADS / BK); ++i) {
                    const int nl = nl0 + i * (THREADS / BK);
                    bs[nl][kl] = (k_ok && col0 + nl < n) ? src[(i64)i * (THREADS / BK) * k] : (u16)0;
                }
            } else {
                const int nl = tid % BN;
                const bool n_ok = col0 + nl < n;
                const int kl0 = tid / BN;
                const u16* src = bb + (k0 + kl0) * n + col0 + nl;
#pragma unroll 4
                for (int i = 0; i < BK / (THREADS / BN); ++i) {
                    const int kl = kl0 + i * (THREADS / BN);
                    bs[nl][kl] = (n_ok && k0 + kl < k) ? src[(i64)i * (THREADS / BN) * n] : (u16)0;
                }
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < BK; ks += 16) {
                u32 af[2][4], bf[4][2];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    const int r = wm + mt * 16 + g;
                    af[mt][0] = *reinterpret_cast<const u32*>(&as[r][ks + 2 * t]);
                    af[mt][1] = *reinterpret_cast<const u32*>(&as[r + 8][ks + 2 * t]);
                    af[mt][2] = *reinterpret_cast<const u32*>(&as[r][ks + 2 * t + 8]);
                    af[mt][3] = *reinterpret_cast<const u32*>(&as[r + 8][ks + 2 * t + 8]);
                }
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) {
                    const int cidx = wn + nt * 8 + g;
                    bf[nt][0] = *reinterpret_cast<const u32*>(&bs[cidx][ks + 2 * t]);
                    bf[nt][1] = *reinterpret_cast<const u32*>(&bs[cidx][ks + 2 * t + 8]);
                }
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int nt = 0; nt < 4; ++nt) mma_m16n8k16<T>(acc[mt][nt], af[mt], bf[nt]);
            }
            __syncthreads();
        }
        T* cb = c + bi * m * n;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const i64 row = row0 + wm + mt * 16 + g + (r >= 2 ? 8 : 0);
                    const i64 col = col0 + wn + nt * 8 + 2 * t + (r & 1);
                    if (row < m && col < n) {
                        float v = acc[mt][nt][r];
                        if (bias != nullptr) v += to_f32(bias[col]);
                        cb[row * n + col] = from_f32<T>(v);
                    }
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(128)
    matmul_tc_f16(const f16* a, const f16* b, const f16* bias, f16* c, i64 batch, i64 m, i64 n, i64 k, int b_nk,
                  int b_batched) {
    matmul_tc_impl<f16>(a, b, bias, c, batch, m, n, k, b_nk, b_batched);
}
extern "C" __global__ void __launch_bounds__(128)
    matmul_tc_bf16(const bf16* a, const bf16* b, const bf16* bias, bf16* c, i64 batch, i64 m, i64 n, i64 k, int b_nk,
                   int b_batched) {
    matmul_tc_impl<bf16>(a, b, bias, c, batch, m, n, k, b_nk, b_batched);
}
