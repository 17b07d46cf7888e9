"""Caffe's LeNet trained with Caffe's own MNIST solver (``examples/mnist/lenet_solver.prototxt``), cached.

The schedule Nguyen, Yosinski & Clune (2015) fooled: SGD, base lr 0.01, momentum 0.9, weight decay
5e-4, the 'inv' policy ``lr = 0.01 * (1 + 1e-4 * iter) ** -0.75``, 10,000 iterations of batches of
64, biases at twice the learning rate (``lr_mult: 2``), Xavier-uniform weights and zero biases, pixels
scaled to [0, 1] (``scale: 0.00390625``), no augmentation. Here it runs on the shipped MNIST-5k
training split (4,000 images, so 160 passes over it) instead of the 60,000 of full MNIST.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from robustcnn.data import DatasetRef
from robustcnn.models.zoo import LeNet, cache_dir

SOLVER = {
    "base_lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "gamma": 1e-4,
    "power": 0.75,
    "max_iter": 10_000,
    "batch_size": 64,
    "bias_lr_mult": 2.0,
    "seed": 0,
    "data": "mnist5k",
}


def _xavier(net: nn.Module) -> None:
    """Caffe's 'xavier' filler: uniform in +-sqrt(3 / fan_in); biases 'constant' 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            nn.init.uniform_(m.weight, -math.sqrt(3 / fan_in), math.sqrt(3 / fan_in))
            nn.init.zeros_(m.bias)


def train_caffe_lenet(log=print) -> tuple[nn.Module, dict]:
    """Train (or load from the cache) the LeNet; returns the eval-mode network and its info."""
    key = hashlib.sha256(json.dumps(SOLVER, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "bench" / f"lenet-caffe-solver-{key}.pt"
    net = LeNet()
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["state_dict"])
        return net.eval(), blob["info"]
    s = SOLVER
    data = DatasetRef(s["data"]).load()
    torch.manual_seed(s["seed"])
    _xavier(net)
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD(
        [{"params": weights, "lr": s["base_lr"]}, {"params": biases, "lr": s["base_lr"] * s["bias_lr_mult"]}],
        lr=s["base_lr"],
        momentum=s["momentum"],
        weight_decay=s["weight_decay"],
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 + s["gamma"] * it) ** -s["power"])
    gen = torch.Generator().manual_seed(s["seed"])
    x, y = data.train.x, data.train.y
    order, at = torch.randperm(len(x), generator=gen), 0
    started = time.perf_counter()
    net.train()
    for it in range(s["max_iter"]):
        if at + s["batch_size"] > len(x):  # Caffe's data layer cycles through the (shuffled) database
            order, at = torch.randperm(len(x), generator=gen), 0
        idx = order[at : at + s["batch_size"]]
        at += s["batch_size"]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (it + 1) % 2000 == 0:
            log(f"caffe lenet: iteration {it + 1}/{s['max_iter']}, loss {loss.item():.4f}")
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(data.test.x[i : i + 500]) for i in range(0, len(data.test), 500)])
    prob = logits.softmax(1)
    info = {
        "solver": s,
        "test_accuracy": float((logits.argmax(1) == data.test.y).float().mean()),
        "test_mean_top_probability": float(prob.max(1).values.mean()),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": net.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    return net, info


if __name__ == "__main__":
    torch.set_num_threads(1)
    _, info = train_caffe_lenet()
    print(info)
