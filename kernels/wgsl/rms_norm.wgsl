// rms_norm.wgsl — y = x / sqrt(mean(x²) + eps) · (weight + weight_offset)
// over the last dim, for f32, f16 and bf16 (DT).
//
// Work split: one workgroup of 256 threads per row. Each thread sums the
// squares of columns lid, lid + 256, ... in f32; a tree reduction in
// workgroup memory gives the row's sum; then each thread scales and writes
// its columns — for 16-bit dtypes whole output words (two columns, one
// plain atomic store), with read-modify-write atomics only on the two edge
// words a row may share with its neighbours. `weight + weight_offset` is
// formed in f32 and the result is rounded once to DT. Rows are numbered on
// a 2-D grid (x ≤ 65535), so any row count up to 65535² works.
//
// Limits: 256 invocations and 1 KiB of workgroup memory (WebGPU defaults);
// u32 indices (ops/ caps tensors at 2^31 − 1 elements).
//
// @const DT: u32 = 0 | 1 | 2

struct Params {
    rows: u32,
    hidden: u32,
    x_off: u32,
    w_off: u32,
    out_off: u32,
    eps: f32,
    weight_offset: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn ld_x(i: u32) -> f32 {
    return decode(x[widx(i)], i);
}

fn ld_w(i: u32) -> f32 {
    return decode(w[widx(i)], i);
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

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.hidden;
    var sum = 0.0;
    for (var c = lid; c < p.hidden; c += WG) {
        let v = ld_x(p.x_off + base + c);
        sum += v * v;
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let sum_sq = partial[0];
    var scale = RmsRowScale(0, 1.0 / sqrt(sum_sq / f32(p.hidden) + p.eps));
    if (rms_needs_rescale(sum_sq, p.eps)) {
        // Rare (the f32 sum overflowed or underflowed): every thread rescans
        // the whole row itself, so no barrier sits in this branch.
        var amax = 0.0;
        for (var c = 0u; c < p.hidden; c++) {
            amax = max(amax, abs(ld_x(p.x_off + base + c)));
        }
        var scaled = 0.0;
        if (amax > 0.0 && !is_nan_or_pos_inf(amax)) {
            let k = rms_rescale_shift(amax);
            for (var c = 0u; c < p.hidden; c++) {
                let v = ldexp(ld_x(p.x_off + base + c), k);
                scaled += v * v;
            }
        }
        scale = rms_rescaled(scale, amax, scaled, p.hidden, p.eps);
    }
    let ob = p.out_off + base;
    if (DT == DT_F32) {
        for (var c = lid; c < p.hidden; c += WG) {
            st_out(ob + c, y(base, c, scale));
        }
        return;
    }
    let last = (ob + p.hidden - 1u) >> 1u;
    for (var wi = (ob >> 1u) + lid; wi <= last; wi += WG) {
        let e0 = wi << 1u;
        if (e0 >= ob && e0 + 1u < ob + p.hidden) {
            let c = e0 - ob;
            let lo = encode16(y(base, c, scale));
            let hi = encode16(y(base, c + 1u, scale));
            atomicStore(&out[wi], lo | (hi << 16u));
        } else {
            // An edge word: one element of this row, the other a neighbour's.
            let e = select(e0, e0 + 1u, e0 < ob);
            st_out(e, y(base, e - ob, scale));
        }
    }
}

// Output column c of the row starting at element `base`.
fn y(base: u32, c: u32, scale: RmsRowScale) -> f32 {
    return ldexp(ld_x(p.x_off + base + c), scale.shift) * scale.inv * (ld_w(p.w_off + c) + p.weight_offset);
}
