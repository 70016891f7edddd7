// attention: variable-length prefill attention, flash style (online softmax,
// the score matrix is never stored). Per sequence s, query row i, key j:
// score = scale * q_i.k_j, optionally softcapped c*tanh(score/c); key j is
// visible iff lo(pos) <= j < hi(pos) with pos = i + sk - sq (bottom-right
// alignment) and the window (causal folded in by the host as right = 0);
// out_i = softmax(visible scores) . V, lse_i = max + log(sum) (natural log).
// A row with no visible key writes 0 and lse = -inf. GQA: query head h reads
// kv head h / (Hq / Hkv).
//
// Work split: block (x, y, z) = (tile of q_tile query rows, query head,
// sequence); y and z stride, so any head count / batch fits the grid; blocks
// past a sequence's last tile exit. 4 warps per block, each owning q_tile/4
// rows (<= kMaxRows). The block's visible key range (monotone in pos) is
// walked in tiles of kv_tile (<= kWarp) keys staged in shared memory as f32
// (K rows padded by one float so lanes reading different keys hit different
// banks). Per tile and row: lane j scores key j (full dot product over D from
// shared memory), the warp takes the tile max, rescales its running sum and
// accumulator (lane owns dims lane, lane + kWarp, ...), and adds p_j * V_j
// with p_j broadcast by shuffles. Scores, max, sums and the accumulator stay
// in f32; probabilities are not rounded to the storage type.
//
// Limits: head_dim <= kMaxHeadDim (256; the host's `select` refuses more);
// dynamic shared memory (q_tile*D + kv_tile*(2D+1)) floats, <= 48 KiB for
// the host's tile choice (16 x 32 up to D = 128, 8 x 16 up to 256); token
// and element offsets are i64; window bounds are i32 (the host maps larger
// windows to "unbounded", which is equivalent).
#include "common.cuh"

constexpr int kMaxHeadDim = 256;
constexpr int kMaxRows = 4;                      // query rows per warp
constexpr int kMaxDims = kMaxHeadDim / kWarp;    // accumulator dims per lane

// Kernel parameters, passed by value. Mirrored by `AttentionParams` in
// src/cuda/attention.rs (same order, sizes checked on both sides).
struct AttentionParams {
    const void* q;
    const void* k;
    const void* v;
    void* out;
    float* lse;  // null: not requested
    const int* cu_seqlens_q;
    const int* cu_seqlens_k;
    i64 batch;
    i64 total_q;
    int heads_q;
    int heads_kv;
    int head_dim;
    int q_tile;
    int kv_tile;
    int window_left;   // -1: unbounded
    int window_right;  // -1: unbounded
    float scale;
    float softcap;  // 0: off
    int pad;
};
static_assert(sizeof(AttentionParams) == 112, "AttentionParams layout is shared with Rust");

// First visible key for the query at `pos` (clamped to [0, sk]).
__device__ __forceinline__ i64 visible_lo(i64 pos, i64 sk, int left) {
    i64 lo = left < 0 ? 0 : pos - left;
    lo = lo < 0 ? 0 : lo;
    return lo > sk ? sk : lo;
}
// One past the last visible key (clamped to [0, sk]).
__device__ __forceinline__ i64 visible_hi(i64 pos, i64 sk, int right) {
    i64 hi = right < 0 ? sk : pos + right + 1;
    hi = hi > sk ? sk : hi;
    return hi < 0 ? 0 : hi;
}

template <typename T>
__device__ __forceinline__ void attention_impl(const AttentionParams& p) {
    extern __shared__ float smem[];
    const int dim = p.head_dim;
    float* q_s = smem;                              // [q_tile][dim]
    float* k_s = q_s + p.q_tile * dim;              // [kv_tile][dim + 1]
    float* v_s = k_s + p.kv_tile * (dim + 1);       // [kv_tile][dim]
    const int warp = threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int warps = blockDim.x / kWarp;
    const int rows_per_warp = p.q_tile / warps;
    if (rows_per_warp > kMaxRows || dim > kMaxHeadDim || p.kv_tile > kWarp) __trap();  // host bug
    const int group = p.heads_q / p.heads_kv;
    const T* q = static_cast<const T*>(p.q);
    const T* k = static_cast<const T*>(p.k);
    const T* v = static_cast<const T*>(p.v);
    T* out = static_cast<T*>(p.out);

    for (i64 s = blockIdx.z; s < p.batch; s += gridDim.z) {
        const i64 q_start = p.cu_seqlens_q[s];
        const i64 sq = p.cu_seqlens_q[s + 1] - q_start;
        const i64 k_start = p.cu_seqlens_k[s];
        const i64 sk = p.cu_seqlens_k[s + 1] - k_start;
        const i64 i0 = (i64)blockIdx.x * p.q_tile;
        if (i0 >= sq) continue;  // uniform over the block
        const i64 rows_here = (sq - i0) < p.q_tile ? (sq - i0) : p.q_tile;
        for (int h = blockIdx.y; h < p.heads_q; h += gridDim.y) {
            const int kvh = h / group;
            for (int e = threadIdx.x; e < p.q_tile * dim; e += blockDim.x) {
                const int r = e / dim, d = e % dim;
                q_s[e] = r < rows_here ? to_f32(q[((q_start + i0 + r) * p.heads_q + h) * (i64)dim + d]) : 0.0f;
            }
            float m_run[kMaxRows], l_run[kMaxRows], acc[kMaxRows][kMaxDims];
            bool bad[kMaxRows];  // a NaN or +inf score: the row is NaN
#pragma unroll
            for (int r = 0; r < kMaxRows; ++r) {
                m_run[r] = neg_inf();
                l_run[r] = 0.0f;
                bad[r] = false;
#pragma unroll
                for (int c = 0; c < kMaxDims; ++c) acc[r][c] = 0.0f;
            }
            // lo and hi are non-decreasing in pos: the block needs keys
            // [lo(first row), hi(last row)).
            const i64 key_lo = visible_lo(i0 + sk - sq, sk, p.window_left);
            const i64 key_hi = visible_hi(i0 + rows_here - 1 + sk - sq, sk, p.window_right);
            __syncthreads();  // q_s is written
            for (i64 j0 = key_lo; j0 < key_hi; j0 += p.kv_tile) {
                const int n_keys = (int)((key_hi - j0) < p.kv_tile ? (key_hi - j0) : p.kv_tile);
                for (int e = threadIdx.x; e < n_keys * dim; e += blockDim.x) {
                    const int jj = e / dim, d = e % dim;
                    const i64 off = ((k_start + j0 + jj) * p.heads_kv + kvh) * (i64)dim + d;
                    k_s[jj * (dim + 1) + d] = to_f32(k[off]);
                    v_s[jj * dim + d] = to_f32(v[off]);
                }
                __syncthreads();
#pragma unroll
                for (int r = 0; r < kMaxRows; ++r) {
                    const int row = warp * rows_per_warp + r;
                    if (r >= rows_per_warp || row >= rows_here) continue;  // uniform over the warp
                    const i64 pos = i0 + row + sk - sq;
                    const i64 lo = visible_lo(pos, sk, p.window_left);
                    const i64 hi = visible_hi(pos, sk, p.window_right);
                    const i64 j = j0 + lane;
                    float score = neg_inf();
                    if (lane < n_keys && j >= lo && j < hi) {
                        const float* qr = q_s + row * dim;
                        const float* kr = k_s + lane * (dim + 1);
                        float dot = 0.0f;
                        for (int d = 0; d < dim; ++d) dot = fmaf(qr[d], kr[d], dot);
                        score = dot * p.scale;
                        if (p.softcap > 0.0f) score = p.softcap * tanhf(score / p.softcap);
                    }
                    // fmaxf drops NaN: note a NaN / +inf score (warp-uniform
                    // through the max) and keep it out of the softmax.
                    if (warp_max(nan_or_pos_inf(score) ? 1.0f : 0.0f) > 0.0f) bad[r] = true;
                    if (nan_or_pos_inf(score)) score = neg_inf();
                    const float m_new = fmaxf(m_run[r], warp_max(score));
                    if (m_new == neg_inf()) continue;  // nothing visible yet (uniform)
                    const float alpha = expf(m_run[r] - m_new);  // 0 when m_run is -inf
                    // −0 marks a masked (or −inf) key: skipped below. An
                    // underflowed weight of a visible key is +0 and still
                    // multiplies its value (0 · NaN is NaN, as in the reference).
                    const float prob = score == neg_inf() ? -0.0f : expf(score - m_new);
                    l_run[r] = l_run[r] * alpha + warp_sum(prob);
                    m_run[r] = m_new;
#pragma unroll
                    for (int c = 0; c < kMaxDims; ++c) acc[r][c] *= alpha;
                    for (int jj = 0; jj < n_keys; ++jj) {
                        const float pj = __shfl_sync(kFullMask, prob, jj);
                        if (__float_as_uint(pj) == 0x80000000u) continue;  // masked; same on every lane
                        const float* vr = v_s + jj * dim;
#pragma unroll
                        for (int c = 0; c < kMaxDims; ++c) {
                            const int d = lane + c * kWarp;
                            if (d < dim) acc[r][c] = fmaf(pj, vr[d], acc[r][c]);
                        }
                    }
                }
                __syncthreads();  // k_s / v_s are read
            }
#pragma unroll
            for (int r = 0; r < kMaxRows; ++r) {
                const int row = warp * rows_per_warp + r;
                if (r >= rows_per_warp || row >= rows_here) continue;
                const i64 token = q_start + i0 + row;
                const float inv = bad[r] ? nan_f32() : (l_run[r] > 0.0f ? 1.0f / l_run[r] : 0.0f);
                T* orow = out + (token * p.heads_q + h) * (i64)dim;
#pragma unroll
                for (int c = 0; c < kMaxDims; ++c) {
                    const int d = lane + c * kWarp;
                    if (d < dim) orow[d] = from_f32<T>(acc[r][c] * inv);
                }
                if (p.lse != nullptr && lane == 0) {
                    p.lse[(i64)h * p.total_q + token] =
                        bad[r] ? nan_f32() : (l_run[r] > 0.0f ? m_run[r] + logf(l_run[r]) : neg_inf());
                }
            }
            __syncthreads();  // q_s is read before the next head overwrites it
        }
    }
}

extern "C" __global__ void __launch_bounds__(4 * kWarp) attention_f32(AttentionParams p) { attention_impl<float>(p); }
extern "C" __global__ void __launch_bounds__(4 * kWarp) attention_f16(AttentionParams p) { attention_impl<f16>(p); }
extern "C" __global__ void __launch_bounds__(4 * kWarp) attention_bf16(AttentionParams p) { attention_impl<bf16>(p); }
