//! Every level this CPU runs (portable, AVX2, AVX-512), kernel by kernel,
//! against plain scalar math: exact for conversions, a few ulp elsewhere.

use half::{bf16, f16};

use super::{DotTile, Elem, GemmTile, Kernels, available_levels};

/// A small deterministic generator (xorshift64*), values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn tables() -> Vec<Kernels> {
    let levels = available_levels();
    assert!(!levels.is_empty());
    levels
        .into_iter()
        .map(|l| Kernels::for_level(l).expect("detected level builds"))
        .collect()
}

fn close(got: f32, want: f64, tol: f64, what: &str) {
    assert!(
        (got as f64 - want).abs() <= tol * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn gemm_tile_matches_scalar() {
    let mut rng = Rng(7);
    for kt in tables() {
        for &(m, n, kc, acc) in &[
            (kt.mr, kt.nr, 37, false),
            (1, 1, 1, false),
            (kt.mr - 1, kt.nr - 3, 5, true),
            (2, kt.nr, 0, true),
            (kt.mr, 1, 64, true),
        ] {
            let (a_rs, a_cs, b_rs, c_rs) = (kc + 3, 1, kt.nr + 5, n + 2);
            let a = rng.vec(m * a_rs + kc + 1);
            let b = rng.vec(kc * b_rs + kt.nr);
            let c0 = rng.vec(m * c_rs);
            let mut c = c0.clone();
            kt.gemm_tile(GemmTile {
                kc,
                a: &a,
                a_rs,
                a_cs,
                b: &b,
                b_rs,
                c: &mut c,
                c_rs,
                m,
                n,
                accumulate: acc,
            });
            for i in 0..m {
                for j in 0..c_rs {
                    let idx = i * c_rs + j;
                    if j >= n {
                        assert_eq!(c[idx], c0[idx], "{:?}: wrote outside the tile", kt.level);
                        continue;
                    }
                    let mut want: f64 = if acc { c0[idx] as f64 } else { 0.0 };
                    for k in 0..kc {
                        want += a[i * a_rs + k * a_cs] as f64 * b[k * b_rs + j] as f64;
                    }
                    close(
                        c[idx],
                        want,
                        1e-5,
                        &format!("{:?} gemm ({i},{j})", kt.level),
                    );
                }
            }
        }
    }
}

fn dot_case<E: Elem>(kt: &Kernels, rng: &mut Rng) {
    let ek = E::table(kt);
    for &(m, n, k, gemv) in &[
        (ek.dot_mr(), ek.dot_nr(), 131, false),
        (1, 1, 3, false),
        (1, ek.gemv_nr(), 257, true),
        (1, 3, 16, true),
    ] {
        let (x_rs, w_rs, out_rs) = (k + 1, k + 2, n + 1);
        let x = rng.vec(m * x_rs);
        let w: Vec<E> = rng.vec(n * w_rs).into_iter().map(E::from_f32).collect();
        let mut out = vec![f32::NAN; m * out_rs];
        let tile = DotTile {
            k,
            x: &x,
            x_rs,
            w: &w,
            w_rs,
            out: &mut out,
            out_rs,
            m,
            n,
        };
        if gemv {
            ek.gemv_dot(tile)
        } else {
            ek.dot_tile(tile)
        }
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|r| x[i * x_rs + r] as f64 * w[j * w_rs + r].to_f32() as f64)
                    .sum();
                close(
                    out[i * out_rs + j],
                    want,
                    1e-5,
                    &format!("{:?} dot", kt.level),
                );
            }
        }
    }
}

#[test]
fn dot_tiles_match_scalar() {
    let mut rng = Rng(11);
    for kt in tables() {
        dot_case::<f32>(&kt, &mut rng);
        dot_case::<f16>(&kt, &mut rng);
        dot_case::<bf16>(&kt, &mut rng);
    }
}

fn gemv_kn_case<E: Elem>(kt: &Kernels, rng: &mut Rng) {
    let ek = E::table(kt);
    for &(k, n) in &[(33, 200), (1, 7), (5, 64)] {
        let x = rng.vec(k);
        let b: Vec<E> = rng.vec(k * n).into_iter().map(E::from_f32).collect();
        let mut out = vec![0.0; n];
        ek.gemv_kn(&x, &b, n, &mut out);
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|r| x[r] as f64 * b[r * n + j].to_f32() as f64)
                .sum();
            close(out[j], want, 1e-5, &format!("{:?} gemv_kn", kt.level));
        }
    }
}

#[test]
fn gemv_kn_matches_scalar() {
    let mut rng = Rng(13);
    for kt in tables() {
        gemv_kn_case::<f32>(&kt, &mut rng);
        gemv_kn_case::<f16>(&kt, &mut rng);
        gemv_kn_case::<bf16>(&kt, &mut rng);
    }
}

/// Awkward values: ties, subnormals, overflow, infinities, NaN.
fn special_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        65504.0,
        65520.0,
        1e6,
        -1e-8,
        5.96e-8,
        2.9e-8,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
        3.0e38,
        -3.4e38,
    ];
    // Exact bf16 / f16 ties and their neighbours.
    for bits in [
        0x3f80_8000u32,
        0x3f81_8000,
        0x3f80_8001,
        0x3f80_1000,
        0x3f80_3000,
    ] {
        v.push(f32::from_bits(bits));
    }
    let mut rng = Rng(3);
    v.extend(rng.vec(45).into_iter().map(|x| x * 1000.0));
    v
}

fn conversion_case<E: Elem>(kt: &Kernels) {
    let ek = E::table(kt);
    let src = special_values();
    let mut narrow = vec![E::from_f32(0.0); src.len()];
    ek.narrow(&src, &[], &mut narrow);
    for (x, y) in src.iter().zip(&narrow) {
        let want = E::from_f32(*x);
        assert_eq!(
            bytemuck::bytes_of(y),
            bytemuck::bytes_of(&want),
            "{:?} narrow {x}",
            kt.level
        );
    }
    let mut wide = vec![0.0f32; src.len()];
    ek.widen(&narrow, &mut wide);
    for (y, w) in narrow.iter().zip(&wide) {
        assert_eq!(y.to_f32().to_bits(), w.to_bits(), "{:?} widen", kt.level);
    }
    // narrow with an addend
    let add = vec![0.25f32; src.len()];
    ek.narrow(&src, &add, &mut narrow);
    for ((x, a), y) in src.iter().zip(&add).zip(&narrow) {
        let want = E::from_f32(x + a);
        assert_eq!(bytemuck::bytes_of(y), bytemuck::bytes_of(&want));
    }
}

#[test]
fn conversions_are_exact() {
    for kt in tables() {
        conversion_case::<f32>(&kt);
        conversion_case::<f16>(&kt);
        conversion_case::<bf16>(&kt);
    }
}

fn norm_case<E: Elem>(kt: &Kernels, rng: &mut Rng) {
    let ek = E::table(kt);
    for n in [1, 7, 64, 100, 1031] {
        let x: Vec<E> = rng.vec(n).into_iter().map(E::from_f32).collect();
        let w: Vec<E> = rng.vec(n).into_iter().map(E::from_f32).collect();
        let want: f64 = x.iter().map(|v| (v.to_f32() as f64).powi(2)).sum();
        close(ek.sum_squares(&x), want, 1e-5, "sum_squares");
        for stream in [false, true] {
            let mut out = vec![E::from_f32(0.0); n + 1];
            // Offset by one element so the streamed part must align itself.
            ek.scale_mul(&x, &w, &mut out[1..], 0.75, 1.0, stream);
            for i in 0..n {
                let want = x[i].to_f32() as f64 * 0.75 * (w[i].to_f32() as f64 + 1.0);
                let tol = 2.0 * E::DTYPE.unit_roundoff() + 1e-6;
                close(out[i + 1].to_f32(), want, tol, "scale_mul");
            }
        }
        let mut res: Vec<E> = rng.vec(n).into_iter().map(E::from_f32).collect();
        let before = res.clone();
        let ss = ek.add_round_sum_squares(&x, &mut res);
        let mut want_ss = 0.0f64;
        for i in 0..n {
            let r = E::from_f32(x[i].to_f32() + before[i].to_f32());
            assert_eq!(bytemuck::bytes_of(&res[i]), bytemuck::bytes_of(&r));
            want_ss += (r.to_f32() as f64).powi(2);
        }
        close(ss, want_ss, 1e-5, "add_round_sum_squares");
    }
}

#[test]
fn norm_kernels_match_scalar() {
    let mut rng = Rng(17);
    for kt in tables() {
        norm_case::<f32>(&kt, &mut rng);
        norm_case::<f16>(&kt, &mut rng);
        norm_case::<bf16>(&kt, &mut rng);
    }
}

#[test]
fn softmax_kernels_match_scalar() {
    for kt in tables() {
        // exp over its whole range, including underflow and −inf.
        let xs: Vec<f32> = (-2000..=800)
            .map(|i| i as f32 * 0.1 + 0.013)
            .chain([f32::NEG_INFINITY, -1e30, 0.0])
            .collect();
        let mut e = xs.clone();
        let sum = kt.exp_sub_sum(&mut e, 0.0);
        let mut want_sum = 0.0f64;
        for (x, got) in xs.iter().zip(&e) {
            let want = (*x as f64).exp();
            want_sum += want;
            if *x < -87.3 {
                assert!(*got == 0.0 || (*got as f64) < 1e-37, "exp({x}) = {got}");
            } else {
                assert!(
                    (*got as f64 - want).abs() <= 4e-7 * want,
                    "{:?} exp({x}) = {got}, want {want}",
                    kt.level
                );
            }
        }
        close(sum, want_sum, 1e-5, "exp sum");
        assert_eq!(kt.row_max(&xs), xs.iter().copied().fold(f32::MIN, f32::max));
        assert_eq!(kt.row_max(&[]), f32::NEG_INFINITY);
        // softcap: cap·tanh(scale·x / cap)
        let xs: Vec<f32> = (-300..300).map(|i| i as f32 * 0.37 + 0.001).collect();
        let mut y = xs.clone();
        kt.scale_softcap(&mut y, 0.5, 30.0);
        for (x, got) in xs.iter().zip(&y) {
            let want = 30.0 * (0.5 * *x as f64 / 30.0).tanh();
            assert!(
                (*got as f64 - want).abs() <= 2e-6 * 30.0,
                "{:?} softcap({x}) = {got}, want {want}",
                kt.level
            );
        }
        // Relative accuracy across scales: caps from 1e-30 to 2^31 (the
        // quotient form of tanh cancelled to 0 for tiny arguments).
        for cap in [1e-30f32, 1e-3, 1.0, 1e6, 2f32.powi(31), 1e30] {
            let mut y = xs.clone();
            kt.scale_softcap(&mut y, 0.5, cap);
            for (x, got) in xs.iter().zip(&y) {
                let want = cap as f64 * (0.5 * *x as f64 / cap as f64).tanh();
                assert!(
                    (*got as f64 - want).abs() <= 1e-6 * want.abs() + 1e-45,
                    "{:?} softcap {cap} ({x}) = {got}, want {want}",
                    kt.level
                );
            }
        }
        // NaN stays NaN through exp and softcap (before, the clamp in exp
        // turned it into e^-87.3), in the body and in the tail.
        let mut e = vec![0.5f32; 37];
        e[3] = f32::NAN;
        e[36] = f32::NAN;
        kt.exp_sub_sum(&mut e, 0.0);
        assert!(
            e[3].is_nan() && e[36].is_nan(),
            "{:?} exp(NaN): {e:?}",
            kt.level
        );
        let mut y = vec![0.5f32; 37];
        y[5] = f32::NAN;
        y[35] = f32::NAN;
        kt.scale_softcap(&mut y, 1.0, 5.0);
        assert!(
            y[5].is_nan() && y[35].is_nan(),
            "{:?} softcap(NaN): {y:?}",
            kt.level
        );
        let mut y = xs.clone();
        kt.scale_row(&mut y, 3.0);
        for (x, got) in xs.iter().zip(&y) {
            assert_eq!(*got, x * 3.0);
        }
    }
}
