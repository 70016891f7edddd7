//! Reference matmul: the definition, in f64, one output element at a time.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::error::Result;
use crate::ops::{BLayout, MatmulProblem};
use crate::tensor::HostTensor;

/// Dimensions and layout of a matmul evaluated on host values.
#[derive(Debug, Clone, Copy)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub b_layout: BLayout,
    pub b_batched: bool,
}

/// `C[b,i,j] = Σ_k A[b,i,k]·B[b,k,j] (+ bias[j])` in f64, row-major.
pub fn eval(shape: MatmulShape, a: &[f64], b: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let MatmulShape {
        batch,
        m,
        n,
        k,
        b_layout,
        b_batched,
    } = shape;
    let mut out = vec![0.0; batch * m * n];
    for batch_index in 0..batch {
        let a_matrix = &a[batch_index * m * k..][..m * k];
        let b_matrix = if b_batched {
            &b[batch_index * k * n..][..k * n]
        } else {
            &b[..k * n]
        };
        for i in 0..m {
            for j in 0..n {
                let mut sum = bias.map_or(0.0, |bias| bias[j]);
                for kk in 0..k {
                    let b_value = match b_layout {
                        BLayout::Kn => b_matrix[kk * n + j],
                        BLayout::Nk => b_matrix[j * k + kk],
                    };
                    sum += a_matrix[i * k + kk] * b_value;
                }
                out[(batch_index * m + i) * n + j] = sum;
            }
        }
    }
    out
}

pub fn run(problem: &MatmulProblem<'_>) -> Result<()> {
    let a = read_tensor("matmul", "a", problem.a)?.to_f64_vec();
    let b = read_tensor("matmul", "b", problem.b)?.to_f64_vec();
    let bias = match problem.bias {
        Some(bias) => Some(read_tensor("matmul", "bias", bias)?.to_f64_vec()),
        None => None,
    };
    let shape = MatmulShape {
        batch: problem.batch,
        m: problem.m,
        n: problem.n,
        k: problem.k,
        b_layout: problem.params.b_layout,
        b_batched: problem.b_batched,
    };
    let out = eval(shape, &a, &b, bias.as_deref());
    let out = HostTensor::from_f64(problem.out.dtype(), problem.out.shape(), &out)?;
    write_tensor("matmul", "out", problem.out, &out)
}
