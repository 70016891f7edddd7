// paged_attention: one decode step against a paged KV cache (vLLM layout).
// Sequence b's query sits at pos = context_len - 1; token t lives in block
// block_tables[b, t / block_size], slot t % block_size; the visible tokens,
// scale and softcap are attention.cu's. out = softmax(scores) . V; a
// sequence with no visible token writes 0. GQA: head h reads kv head
// h / (Hq / Hkv).
//
// Work split: the visible range of each sequence is cut into partitions of
// partition_size tokens (split-K for long contexts). paged_attention_<T>
// runs one block per (partition, query head, sequence) (y and z stride): its
// kWarps warps take tokens round-robin; per token the warp forms the dot
// product with lanes over D (lane owns dims lane, lane + kWarp, ...) and a
// warp sum, then updates its online softmax state (max, sum, accumulator).
// The warps' states are merged through shared memory. With one partition
// the block writes `out` itself; otherwise it writes its unnormalized
// accumulator, max and sum to `partials` [B][Hq][partitions][D + 2] (every
// block writes its slot, even when its token range is empty) and
// paged_attention_reduce_<T> (one block per (head, sequence)) merges the
// partitions and writes `out`.
//
// Limits: head_dim <= kMaxHeadDim (256; the host's `select` refuses more);
// blockDim.x = kWarps * kWarp; offsets i64. A block-table entry outside
// [0, num_blocks) is skipped rather than read (the host validates tables;
// this only keeps a corrupted device table from reading out of bounds).
#include "common.cuh"

constexpr int kMaxHeadDim = 256;
constexpr int kMaxDims = kMaxHeadDim / kWarp;  // accumulator dims per lane
constexpr int kWarps = 4;                      // warps per block

// Kernel parameters, passed by value. Mirrored by `PagedParams` in
// src/cuda/paged_attention.rs (same order, sizes checked on both sides).
struct PagedParams {
    const void* q;
    const void* k_cache;
    const void* v_cache;
    void* out;
    const int* block_tables;
    const int* context_lens;
    float* partials;  // null when partitions == 1
    i64 batch;
    int heads_q;
    int heads_kv;
    int head_dim;
    int block_size;
    int max_blocks;
    int num_blocks;
    int partitions;
    int partition_size;
    int window_left;   // -1: unbounded
    int window_right;  // -1: unbounded
    float scale;
    float softcap;  // 0: off
};
static_assert(sizeof(PagedParams) == 112, "PagedParams layout is shared with Rust");

__device__ __forceinline__ void visible_range(i64 len, int left, int right, i64* lo, i64* hi) {
    const i64 pos = len - 1;
    i64 l = left < 0 ? 0 : pos - left;
    l = l < 0 ? 0 : (l > len ? len : l);
    i64 h = right < 0 ? len : pos + right + 1;
    h = h > len ? len : (h < 0 ? 0 : h);
    *lo = l;
    *hi = h;
}

template <typename T>
__device__ __forceinline__ void paged_attention_impl(const PagedParams& p) {
    __shared__ float q_s[kMaxHeadDim];
    __shared__ float acc_s[kWarps][kMaxHeadDim];
    __shared__ float m_s[kWarps];
    __shared__ float l_s[kWarps];
    const int dim = p.head_dim;
    const int warp = threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    if (dim > kMaxHeadDim || blockDim.x != kWarps * kWarp) __trap();  // host bug
    const int group = p.heads_q / p.heads_kv;
    const T* q = static_cast<const T*>(p.q);
    const T* kc = static_cast<const T*>(p.k_cache);
    const T* vc = static_cast<const T*>(p.v_cache);
    T* out = static_cast<T*>(p.out);
    const int part = blockIdx.x;

    for (i64 b = blockIdx.z; b < p.batch; b += gridDim.z) {
        i64 lo, hi;
        visible_range(p.context_lens[b], p.window_left, p.window_right, &lo, &hi);
        const i64 start = lo + (i64)part * p.partition_size;
        const i64 end = (start + p.partition_size) < hi ? (start + p.partition_size) : hi;
        for (int h = blockIdx.y; h < p.heads_q; h += gridDim.y) {
            const int kvh = h / group;
            const i64 head_row = b * p.heads_q + h;
            for (int d = threadIdx.x; d < dim; d += blockDim.x) q_s[d] = to_f32(q[head_row * dim + d]);
            __syncthreads();

            float m_run = neg_inf(), l_run = 0.0f, acc[kMaxDims];
            bool bad = false;  // a NaN or +inf score: the row is NaN
#pragma unroll
            for (int c = 0; c < kMaxDims; ++c) acc[c] = 0.0f;
            for (i64 t = start + warp; t < end; t += kWarps) {
                const int block = p.block_tables[b * p.max_blocks + t / p.block_size];
                if (block < 0 || block >= p.num_blocks) continue;  // uniform over the warp
                const i64 off = (((i64)block * p.block_size + t % p.block_size) * p.heads_kv + kvh) * dim;
                float dot = 0.0f;
                for (int d = lane; d < dim; d += kWarp) dot = fmaf(q_s[d], to_f32(kc[off + d]), dot);
                float score = warp_sum(dot) * p.scale;
                if (p.softcap > 0.0f) score = p.softcap * tanhf(score / p.softcap);
                // score is warp-uniform (warp_sum), so these branches are too.
                if (nan_or_pos_inf(score)) {
                    bad = true;
                    continue;
                }
                if (score == neg_inf()) continue;  // weighs 0
                const float m_new = fmaxf(m_run, score);
                const float alpha = expf(m_run - m_new);  // 0 when m_run is -inf
                const float prob = expf(score - m_new);
                l_run = l_run * alpha + prob;
                m_run = m_new;
#pragma unroll
                for (int c = 0; c < kMaxDims; ++c) {
                    const int d = lane + c * kWarp;
                    if (d < dim) acc[c] = fmaf(prob, to_f32(vc[off + d]), acc[c] * alpha);
                }
            }
            // Merge the warps.
            if (lane == 0) {
                m_s[warp] = m_run;
                l_s[warp] = bad ? nan_f32() : l_run;
            }
#pragma unroll
            for (int c = 0; c < kMaxDims; ++c) {
                const int d = lane + c * kWarp;
                if (d < dim) acc_s[warp][d] = acc[c];
            }
            __syncthreads();
            float m_all = neg_inf();
#pragma unroll
            for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, m_s[w]);
            float l_all = 0.0f;
            float weight[kWarps];
#pragma unroll
            for (int w = 0; w < kWarps; ++w) {
                weight[w] = m_s[w] == neg_inf() ? 0.0f : expf(m_s[w] - m_all);
                l_all += l_s[w] * weight[w];
            }
            float* slot = p.partitions > 1 ? p.partials + (head_row * p.partitions + part) * (i64)(dim + 2) : nullptr;
            for (int d = threadIdx.x; d < dim; d += blockDim.x) {
                float o = 0.0f;
#pragma unroll
                for (int w = 0; w < kWarps; ++w) o += acc_s[w][d] * weight[w];
                if (slot != nullptr) {
                    slot[d] = o;
                } else {
                    out[head_row * dim + d] = from_f32<T>(l_all > 0.0f || is_nan_f32(l_all) ? o / l_all : 0.0f);
                }
            }
            if (slot != nullptr && threadIdx.x == 0) {
                slot[dim] = m_all;
                slot[dim + 1] = l_all;
            }
            __syncthreads();  // q_s, acc_s, m_s, l_s are read before the next head
        }
    }
}

template <typename T>
__device__ __forceinline__ void paged_attention_reduce_impl(const PagedParams& p) {
    const int dim = p.head_dim;
    T* out = static_cast<T*>(p.out);
    for (i64 b = blockIdx.y; b < p.batch; b += gridDim.y) {
        for (int h = blockIdx.x; h < p.heads_q; h += gridDim.x) {
            const i64 head_row = b * p.heads_q + h;
            const float* parts = p.partials + head_row * p.partitions * (i64)(dim + 2);
            float m_all = neg_inf();
            for (int part = 0; part < p.partitions; ++part) m_all = fmaxf(m_all, parts[part * (i64)(dim + 2) + dim]);
            for (int d = threadIdx.x; d < dim; d += blockDim.x) {
                // Every partition counts, even one with nothing visible: its
                // sum is 0, or NaN when it saw a NaN / +inf score, and a NaN
                // must reach the output (NaN · 0 is NaN).
                float o = 0.0f, l_all = 0.0f;
                for (int part = 0; part < p.partitions; ++part) {
                    const float* slot = parts + part * (i64)(dim + 2);
                    const float m = slot[dim];
                    const float weight = m == neg_inf() ? 0.0f : expf(m - m_all);
                    l_all += slot[dim + 1] * weight;
                    o += slot[d] * weight;
                }
                out[head_row * dim + d] = from_f32<T>(l_all > 0.0f || is_nan_f32(l_all) ? o / l_all : 0.0f);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_f32(PagedParams p) {
    paged_attention_impl<float>(p);
}
extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_f16(PagedParams p) {
    paged_attention_impl<f16>(p);
}
extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_bf16(PagedParams p) {
    paged_attention_impl<bf16>(p);
}
extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_reduce_f32(PagedParams p) {
    paged_attention_reduce_impl<float>(p);
}
extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_reduce_f16(PagedParams p) {
    paged_attention_reduce_impl<f16>(p);
}
extern "C" __global__ void __launch_bounds__(kWarps * kWarp) paged_attention_reduce_bf16(PagedParams p) {
    paged_attention_reduce_impl<bf16>(p);
}
