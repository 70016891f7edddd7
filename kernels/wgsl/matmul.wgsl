// matmul.wgsl — C[b,M,N] = A[b,M,K] · B (+ bias[N]) for f32, f16, bf16 (DT);
// B is [b,K,N] (B_NK = false) or linear-layer weights [b,N,K] (B_NK = true),
// and broadcasts over the batch when its batch stride is 0.
//
// Work split: one workgroup of 256 threads per tile of C (64×64, or 4×256
// when SKINNY), computed by linear_tile.wgsl (slabs of A and B staged in
// workgroup memory as f32, f32 accumulation). The bias is added last and C
// is rounded once to DT. Tiles are numbered (batch, tile row, tile col) on
// a 2-D grid (x ≤ 65535), so the tile count is not bound by the
// per-dimension dispatch limit.
//
// Limits: 256 invocations and 12 KiB of workgroup memory (WebGPU defaults:
// 256, 16 KiB); u32 indices (ops/ caps tensors at 2^31 − 1 elements).
//
// @include linear_tile.wgsl
// @const DT: u32 = 0 | 1 | 2
// @const B_NK: bool = false | true
// @const HAS_BIAS: bool = false | true
// @const SKINNY: bool = false | true

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_m: u32,
    tiles_n: u32,
    num_tiles: u32,
    a_off: u32,
    b_off: u32,
    bias_off: u32,
    out_off: u32,
    // Elements between consecutive batches of B; 0 broadcasts B.
    b_batch_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

const B_K_FAST: bool = B_NK;
// First element of this workgroup's batch in A, B and C.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> out_base: u32;


fn tile_a(row: u32, k: u32) -> f32 {
    let i = a_base + row * p.k + k;
    return decode(a[widx(i)], i);
}

fn tile_b(col: u32, k: u32) -> f32 {
    var i: u32;
    if (B_NK) {
        i = b_base + col * p.k + k;
    } else {
        i = b_base + k * p.n + col;
    }
    return decode(b[widx(i)], i);
}

fn st_out(i: u32, v: f32) {
    if (DT == DT_F32) {
        atomicStore(&out[i], bitcast<u32>(v));
        return;
    }
    let sh = (i & 1u) << 4u;
    atomicAnd(&out[i >> 1u], ~(0xffffu << sh));
    atomicOr(&out[i >> 1u], encode16(v) << sh);
}

fn tile_store(row: u32, col: u32, acc: f32) {
    var v = acc;
    if (HAS_BIAS) {
        v += decode(bias[widx(p.bias_off + col)], p.bias_off + col);
    }
    st_out(out_base + row * p.n + col, v);
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= p.num_tiles) {
        return;
    }
    let per_batch = p.tiles_m * p.tiles_n;
    let batch = tile / per_batch;
    a_base = p.a_off + batch * p.m * p.k;
    b_base = p.b_off + batch * p.b_batch_stride;
    out_base = p.out_off + batch * p.m * p.n;
    linear_run(tile % per_batch, p.tiles_n, p.m, p.n, p.k, lid);
}
