//! Our ResNet-18 with the dense head against PyTorch: torchvision builds the same network with
//! a seeded random initialisation and random batch-norm statistics, exports its state dict as
//! safetensors (tests/reference/torch_reference.py, torch 2.13.0 and torchvision 0.28.0 from the
//! test venv), and computes logits and embeddings for a 2 x 3 x 200 x 200 batch. Loaded into our
//! network, the same weights must give the same outputs within 1e-4 absolute (float32
//! convolutions summed in a different order differ by about 1e-6 here). ResNet-50 is checked by
//! `renal bench cnn --parity` (scripts/gpu-check.sh runs it).

use renal_cnn::net::Backbone;
use renal_e2e::venv_bin;
use std::process::Command;

#[test]
fn resnet18_logits_match_pytorch() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/torch_reference.py");
    let out = Command::new(venv_bin("python"))
        .args([script, "resnet18", dir.path().to_str().unwrap(), "--side", "200", "--batch", "2", "--seed", "11"])
        .output()
        .expect("run the test venv's python (scripts/python-env.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = renal_cnn::parity::compare(dir.path(), Backbone::Resnet18, 200, tch::Device::Cpu).unwrap();
    println!(
        "ResNet-18 vs PyTorch: max |logit diff| {:.2e}, max |embedding diff| {:.2e}, largest |logit| {:.3}",
        p.logits, p.embedding, p.logit_scale
    );
    assert_eq!(p.images, 2);
    assert!(p.logit_scale > 1e-3, "degenerate reference: all logits near zero");
    assert!(p.logits <= 1e-4 && p.embedding <= 1e-4, "{p:?}");

    // The same file refused by a ResNet-34 (shapes and names differ), with the tensor named.
    let err = renal_cnn::parity::compare(dir.path(), Backbone::Resnet34, 200, tch::Device::Cpu).unwrap_err();
    assert!(err.contains("no tensor \"layer1.2."), "{err}");
}
