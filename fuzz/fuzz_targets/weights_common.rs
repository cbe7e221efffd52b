//! Shared by the weights targets: runs one input through every public weights entry point
//! and checks what comes back is consistent.

use stylize::weights::{Tensor, load_vgg19_from_bytes, read_tensors_from_bytes};

/// Keys of the seeds' extra tensors (other dtypes, a transposed view, an empty tensor).
const EXTRA_KEYS: [&str; 6] = ["extra.t", "extra.f64", "extra.f16", "extra.bf16", "extra.i64", "extra.empty"];

fn check(tensor: &Tensor) {
    let numel = tensor.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    assert_eq!(numel, Some(tensor.data.len()), "shape {:?} vs {} values", tensor.shape, tensor.data.len());
}

pub fn run(data: &[u8]) {
    if let Ok(vgg) = load_vgg19_from_bytes(data) {
        for conv in &vgg.convs {
            assert_eq!(conv.weight.len(), conv.out_channels * conv.in_channels * 9);
            assert_eq!(conv.bias.len(), conv.out_channels);
            assert!(conv.weight.iter().chain(&conv.bias).all(|v| v.is_finite()));
        }
    }
    for key in EXTRA_KEYS {
        let keys = [key.to_string()];
        if let Ok(tensors) = read_tensors_from_bytes(data, &keys) {
            assert_eq!(tensors.len(), 1);
            tensors.values().for_each(check);
        }
    }
}
