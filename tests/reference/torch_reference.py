"""Reference logits for the CNN parity test (tests/cnn_parity.rs, renal bench cnn --parity).

Builds torchvision's ResNet with a seeded random initialisation, gives every batch norm random
running statistics and affine parameters (so evaluation-mode normalisation is exercised), adds
the dense head under our names (head.fc0..fc4, head.out), and writes:
  OUT/weights.safetensors  the torchvision state dict (fc.* and num_batches_tracked included,
                           which the loader must ignore) plus the head
  OUT/input.f32            N x 3 x S x S float32 little-endian, uniform 0..1
  OUT/expected.json        {"logits": [N], "embedding": [N][16], "torch": version}
usage: torch_reference.py BACKBONE OUT [--side S] [--batch N] [--seed K]
"""
import argparse
import json
import pathlib

import torch
import torchvision
from safetensors.torch import save_file

WIDTHS = [256, 128, 64, 32, 16]


class Head(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        width = features
        for i, w in enumerate(WIDTHS):
            setattr(self, f"fc{i}", torch.nn.Linear(width, w))
            width = w
        self.out = torch.nn.Linear(width, 1)

    def forward(self, x):
        for i in range(len(WIDTHS)):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return self.out(x).squeeze(1), x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("backbone", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("out")
    ap.add_argument("--side", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    model = getattr(torchvision.models, a.backbone)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    features = model.fc.in_features
    model.fc = torch.nn.Identity()
    head = Head(features)
    state.update({f"head.{k}": v.contiguous() for k, v in head.state_dict().items()})
    model.eval()
    head.eval()
    x = torch.rand(a.batch, 3, a.side, a.side)
    with torch.no_grad():
        logits, embedding = head(model(x))
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "weights.safetensors"))
    x.numpy().astype("<f4").tofile(out / "input.f32")
    (out / "expected.json").write_text(json.dumps({
        "logits": logits.tolist(),
        "embedding": embedding.tolist(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }))


if __name__ == "__main__":
    main()
