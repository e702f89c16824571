"""PyTorch eager baseline for `renal bench cnn`: the same network (torchvision ResNet without
its fc layer, our dense head) at 200x200, timed the same way (one warm-up, then the median of
REPEAT runs). Prints JSON: {"forward_s": median seconds per batch, "torch": version}.
usage: torch_bench.py BACKBONE BATCH DEVICE REPEAT [--threads N]
"""
import json
import statistics
import sys
import time

import torch
import torchvision

WIDTHS = [256, 128, 64, 32, 16]


def main():
    backbone, batch, device, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    threads = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--threads" else None
    if threads:
        torch.set_num_threads(threads)
    model = getattr(torchvision.models, backbone)(weights=None)
    features = model.fc.in_features
    model.fc = torch.nn.Identity()
    layers, width = [], features
    for w in WIDTHS:
        layers += [torch.nn.Linear(width, w), torch.nn.ReLU()]
        width = w
    layers.append(torch.nn.Linear(width, 1))
    net = torch.nn.Sequential(model, *layers).to(device).eval()
    x = torch.rand(batch, 3, 200, 200, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeat + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            y = net(x)
            y.sum().item()
            if device == "cuda":
                torch.cuda.synchronize()
            if i > 0:
                times.append(time.perf_counter() - t)
    print(json.dumps({"forward_s": statistics.median(times), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
