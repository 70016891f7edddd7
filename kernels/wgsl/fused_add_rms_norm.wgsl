// fused_add_rms_norm.wgsl — residual ← round_DT(x + residual);
// y = rms_norm(residual) · (weight + weight_offset), for f32, f16, bf16 (DT).
//
// Work split: as rms_norm.wgsl, one workgroup of 256 threads per row. Pass 1:
// each thread forms the sum for its columns, rounds it to DT (the contract:
// the rounded sum is what is stored and normalized), writes it to
// `residual` and accumulates its square in f32. A tree reduction gives the
// row's mean square; a storage barrier publishes the new residual to the
// whole workgroup. Pass 2: each thread reads the rounded sums and writes y.
// For 16-bit dtypes both passes work on whole words of the buffer they
// write (two columns, one plain atomic store), with read-modify-write
// atomics only on the edge words a row may share with its neighbours; the
// word partitions of `residual` and `out` differ when their offsets differ
// in parity, hence the barrier rather than thread-private reuse.
//
// Limits: 256 invocations, 1 KiB of workgroup memory; u32 indices.
//
// @const DT: u32 = 0 | 1 | 2

struct Params {
    rows: u32,
    hidden: u32,
    x_off: u32,
    res_off: u32,
    w_off: u32,
    out_off: u32,
    eps: f32,
    weight_offset: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> residual: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn ld_x(i: u32) -> f32 {
    return decode(x[widx(i)], i);
}

fn ld_w(i: u32) -> f32 {
    return decode(w[widx(i)], i);
}

fn ld_res(i: u32) -> f32 {
    return decode(atomicLoad(&residual[widx(i)]), i);
}

fn st_res(i: u32, v: f32) {
    if (DT == DT_F32) {
        atomicStore(&residual[i], bitcast<u32>(v));
        return;
    }
    let sh = (i & 1u) << 4u;
    atomicAnd(&residual[i >> 1u], ~(0xffffu << sh));
    atomicOr(&residual[i >> 1u], encode16(v) << sh);
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
    let rb = p.res_off + base;
    var sum = 0.0;
    if (DT == DT_F32) {
        for (var c = lid; c < p.hidden; c += WG) {
            let s = ld_x(p.x_off + base + c) + ld_res(rb + c);
            st_res(rb + c, s);
            sum += s * s;
        }
    } else {
        let last = (rb + p.hidden - 1u) >> 1u;
        for (var wi = (rb >> 1u) + lid; wi <= last; wi += WG) {
            let e0 = wi << 1u;
            if (e0 >= rb && e0 + 1u < rb + p.hidden) {
                let c = e0 - rb;
                let old = atomicLoad(&residual[wi]);
                let lo = encode16(ld_x(p.x_off + base + c) + decode(old, 0u));
                let hi = encode16(ld_x(p.x_off + base + c + 1u) + decode(old, 1u));
                atomicStore(&residual[wi], lo | (hi << 16u));
                let s0 = decode(lo, 0u);
                let s1 = decode(hi, 0u);
                sum += s0 * s0 + s1 * s1;
            } else {
                // An edge word: one element of this row, the other a neighbour's.
                let e = select(e0, e0 + 1u, e0 < rb);
                let s = round_dt(ld_x(p.x_off + base + e - rb) + ld_res(e));
                st_res(e, s);
                sum += s * s;
            }
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    // Every thread's residual writes are visible to the whole workgroup.
    storageBarrier();
    let sum_sq = partial[0];
    // The rare rescale below reads residual columns other threads wrote.
    storageBarrier();
    var scale = RmsRowScale(0, 1.0 / sqrt(sum_sq / f32(p.hidden) + p.eps));
    if (rms_needs_rescale(sum_sq, p.eps)) {
        // Rare (the f32 sum overflowed or underflowed): every thread rescans
        // the whole row itself, so no barrier sits in this branch.
        var amax = 0.0;
        for (var c = 0u; c < p.hidden; c++) {
            amax = max(amax, abs(ld_res(rb + c)));
        }
        var scaled = 0.0;
        if (amax > 0.0 && !is_nan_or_pos_inf(amax)) {
            let k = rms_rescale_shift(amax);
            for (var c = 0u; c < p.hidden; c++) {
                let v = ldexp(ld_res(rb + c), k);
                scaled += v * v;
            }
        }
        scale = rms_rescaled(scale, amax, scaled, p.hidden, p.eps);
    }
    let ob = p.out_off + base;
    if (DT == DT_F32) {
        for (var c = lid; c < p.hidden; c += WG) {
            st_out(ob + c, y(rb, c, scale));
        }
        return;
    }
    let last = (ob + p.hidden - 1u) >> 1u;
    for (var wi = (ob >> 1u) + lid; wi <= last; wi += WG) {
        let e0 = wi << 1u;
        if (e0 >= ob && e0 + 1u < ob + p.hidden) {
            let c = e0 - ob;
            let lo = encode16(y(rb, c, scale));
            let hi = encode16(y(rb, c + 1u, scale));
            atomicStore(&out[wi], lo | (hi << 16u));
        } else {
            let e = select(e0, e0 + 1u, e0 < ob);
            st_out(e, y(rb, e - ob, scale));
        }
    }
}

// Output column c, from the rounded sum stored in the residual row at `rb`.
fn y(rb: u32, c: u32, scale: RmsRowScale) -> f32 {
    return ldexp(ld_res(rb + c), scale.shift) * scale.inv * (ld_w(p.w_off + c) + p.weight_offset);
}
