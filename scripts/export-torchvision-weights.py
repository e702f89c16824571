"""Export torchvision ResNet weights as a safetensors file `renal train cnn --init-weights` reads.

    python3 scripts/export-torchvision-weights.py resnet50 resnet50-imagenet.safetensors

needs `pip install torch==2.13.0 torchvision==0.28.0 safetensors` and, for the ImageNet weights
(the default, IMAGENET1K_V2 for ResNet-50), access to download.pytorch.org on first use;
`--random` exports a seeded random initialisation instead (no download).

The file holds torchvision's state dict unchanged: the renal network uses the same parameter
names (conv1.weight, layer1.0.bn1.running_var, ...). fc.* and num_batches_tracked are kept and
ignored by the loader. Save a plain dict: torch.save of an OrderedDict does not load in libtorch,
which is one reason to use safetensors.
"""
import argparse

import torch
import torchvision
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("backbone", choices=["resnet18", "resnet34", "resnet50"])
ap.add_argument("out")
ap.add_argument("--random", action="store_true", help="seeded random weights instead of ImageNet")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
if a.random:
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.backbone)(weights=None)
else:
    model = getattr(torchvision.models, a.backbone)(weights="DEFAULT")
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.out)
print(f"{a.out}: {len(model.state_dict())} tensors of torchvision {a.backbone}")
