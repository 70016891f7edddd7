// nvfp4_matmul.wgsl — y[M,N] = x[M,K] · round_DT(dequant(W))ᵀ (+ bias) for
// an NVFP4 weight: weight_packed u8 [N, Kp/2] (E2M1 codes, element 2j in the
// low nibble of byte j), weight_scale E4M3 [N, Kp/16] (one scale per 16
// elements along K). Both are byte tensors read from u32 words. x, bias, y
// in DT.
//
// W[n,k] = e2m1(code) × m(scale byte), formed in f32 and rounded to DT (the
// contract of ops/nvfp4_matmul.rs). The block multiplier m — the exact E4M3
// decode times the global scale, or divided by it (compressed-tensors) — is
// formed on the host for all 256 scale bytes (`mult`, f32) so that it is
// bit-identical to the reference: WGSL division is not correctly rounded.
// Code 8 is +0 (ModelOpt, MINUS_ZERO = false) or −0 (compressed-tensors).
//
// Work split: linear_tile.wgsl's tiles (64×64, or 4×256 when SKINNY, for
// decode-sized M), 256 threads; the B loader decodes one element per load,
// ordered along K (the packed rows' contiguous dim).
//
// Limits: 6 storage buffers; 256 invocations, 12 KiB of workgroup memory;
// u32 indices.
//
// @include linear_tile.wgsl
// @const DT: u32 = 0 | 1 | 2
// @const MINUS_ZERO: bool = false | true
// @const HAS_BIAS: bool = false | true
// @const SKINNY: bool = false | true

struct Params {
    m: u32,
    n: u32,
    k: u32,
    k_padded: u32,
    tiles_n: u32,
    num_tiles: u32,
    x_off: u32,
    w_off: u32,
    s_off: u32,
    bias_off: u32,
    out_off: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> weight_packed: array<u32>;
@group(0) @binding(3) var<storage, read> weight_scale: array<u32>;
// Block multiplier of each E4M3 byte value (256 entries).
@group(0) @binding(4) var<storage, read> mult: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;

const B_K_FAST: bool = true;

// E2M1 magnitude of a 3-bit code: [0, 0.5, 1, 1.5, 2, 3, 4, 6].
fn e2m1_magnitude(c: u32) -> f32 {
    let e = c >> 1u;
    let half = f32(c & 1u) * 0.5;
    if (e == 0u) {
        return half;
    }
    return f32(1u << (e - 1u)) * (1.0 + half);
}

fn tile_a(row: u32, k: u32) -> f32 {
    let i = p.x_off + row * p.k + k;
    return decode(x[widx(i)], i);
}

fn tile_b(col: u32, k: u32) -> f32 {
    let bi = p.w_off + col * (p.k_padded / 2u) + k / 2u;
    let code = (byte_of(weight_packed[bi >> 2u], bi) >> ((k & 1u) << 2u)) & 0xfu;
    let si = p.s_off + col * (p.k_padded / 16u) + k / 16u;
    let m = mult[byte_of(weight_scale[si >> 2u], si)];
    var element = e2m1_magnitude(code & 7u);
    if ((code & 8u) != 0u) {
        if (MINUS_ZERO || element != 0.0) {
            element = -element;
        }
    }
    return round_dt(element * m);
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
    st_out(p.out_off + row * p.n + col, v);
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
    linear_run(tile, p.tiles_n, p.m, p.n, p.k, lid);
}
