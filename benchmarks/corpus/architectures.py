"""Published CNN architectures in plain PyTorch, as edgec model factories.

torchvision 0.28 (the release for torch 2.13) cannot be imported beside the CPU build of
torch used here (its C++ operators fail to register), so the eight torchvision
classifiers are rebuilt from their published configurations: same layers, same channel
counts, same op patterns (ReLU6, HardSwish/HardSigmoid, SiLU + squeeze-excitation, channel
shuffle, grouped convolutions, Fire modules).

Weights: seeded random (Kaiming), then briefly fine-tuned (`FINETUNE`: a few dozen AdamW
steps) on a proxy task, which of the 16 scikit-image photos a random crop comes from, and
BatchNorm statistics re-estimated on photos at 224 px. Freshly initialised weights are not
a realistic subject for quantization: with BatchNorm renormalising every layer, a random
deep net amplifies any small perturbation through depth (1 % input noise moved the
input-dependent part of MobileNetV2's logits by 58 %, of MNASNet's by 65 %; a trained
PP-LCNet moves 0.3 %), and its logits are near-equal (top-1/top-2 margin 0.1). Int8 error
on such weights measures that chaos, not the quantizer (NNCF's default does as badly or
worse on them). The short fine-tune gives the nets input-dependent features and a
dominant class, as trained classifiers have; they are not ImageNet models.

`make(name)` returns the module; `corpus.model_path` exports it to ONNX once (input
``image`` [1, 3, 224, 224], output ``logits``).
"""

from __future__ import annotations

import torch
from torch import nn

SEED = 0
IMAGE = 224


def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: type | None = nn.ReLU):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, squeeze: int, act: type = nn.ReLU, gate: type = nn.Sigmoid):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(ch, squeeze, 1), nn.Conv2d(squeeze, ch, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3, MNASNet and EfficientNet's MBConv block."""

    def __init__(self, cin, cout, k, s, expanded, act=nn.ReLU6, se: int = 0, se_act=nn.ReLU, se_gate=nn.Sigmoid):
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBN(cin, expanded, 1, act=act))
        layers.append(ConvBN(expanded, expanded, k, s, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded, se, se_act, se_gate))
        layers.append(ConvBN(expanded, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, image):
        return self.head(torch.flatten(self.features(image).mean((2, 3)), 1))


def _mobilenet_v2() -> nn.Module:
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers: list[nn.Module] = [ConvBN(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for t, c, n, s in cfg:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, 3, s if i == 0 else 1, cin * t))
            cin = c
    layers.append(ConvBN(cin, 1280, 1, act=nn.ReLU6))
    return Classifier(nn.Sequential(*layers), nn.Linear(1280, 1000))


def _mobilenet_v3_small() -> nn.Module:
    re, hs = nn.ReLU, nn.Hardswish
    cfg = [(16, 3, 16, 16, True, re, 2), (16, 3, 72, 24, False, re, 2), (24, 3, 88, 24, False, re, 1),
           (24, 5, 96, 40, True, hs, 2), (40, 5, 240, 40, True, hs, 1), (40, 5, 240, 40, True, hs, 1),
           (40, 5, 120, 48, True, hs, 1), (48, 5, 144, 48, True, hs, 1), (48, 5, 288, 96, True, hs, 2),
           (96, 5, 576, 96, True, hs, 1), (96, 5, 576, 96, True, hs, 1)]
    layers: list[nn.Module] = [ConvBN(3, 16, 3, 2, act=hs)]
    for cin, k, exp, cout, se, act, s in cfg:
        layers.append(InvertedResidual(cin, cout, k, s, exp, act=act, se=_divisible(exp // 4) if se else 0,
                                       se_gate=nn.Hardsigmoid))
    layers.append(ConvBN(96, 576, 1, act=hs))
    head = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, 1000))
    return Classifier(nn.Sequential(*layers), head)


def _efficientnet_b0() -> nn.Module:
    cfg = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
           (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
    layers: list[nn.Module] = [ConvBN(3, 32, 3, 2, act=nn.SiLU)]
    for t, k, s, cin, cout, n in cfg:
        for i in range(n):
            c = cin if i == 0 else cout
            layers.append(InvertedResidual(c, cout, k, s if i == 0 else 1, c * t, act=nn.SiLU,
                                           se=max(1, c // 4), se_act=nn.SiLU))
    layers.append(ConvBN(320, 1280, 1, act=nn.SiLU))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


def _mnasnet0_5() -> nn.Module:
    d = [16, 8, 16, 24, 40, 48, 96, 160]  # torchvision's depths for alpha 0.5
    layers: list[nn.Module] = [ConvBN(3, d[0], 3, 2), ConvBN(d[0], d[0], 3, 1, groups=d[0]), ConvBN(d[0], d[1], 1, act=None)]
    stacks = [(d[1], d[2], 3, 2, 3, 3), (d[2], d[3], 5, 2, 3, 3), (d[3], d[4], 5, 2, 6, 3), (d[4], d[5], 3, 1, 6, 2),
              (d[5], d[6], 5, 2, 6, 4), (d[6], d[7], 3, 1, 6, 1)]
    for cin, cout, k, s, t, n in stacks:
        for i in range(n):
            c = cin if i == 0 else cout
            layers.append(InvertedResidual(c, cout, k, s if i == 0 else 1, c * t, act=nn.ReLU))
    layers.append(ConvBN(d[7], 1280, 1))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.body = nn.Sequential(ConvBN(cin, cout, 3, s), ConvBN(cout, cout, 3, 1, act=None))
        self.down = ConvBN(cin, cout, 1, s, act=None) if s != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.down(x))


def _resnet18() -> nn.Module:
    layers: list[nn.Module] = [ConvBN(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [BasicBlock(cin, cout, s), BasicBlock(cout, cout, 1)]
        cin = cout
    return Classifier(nn.Sequential(*layers), nn.Linear(512, 1000))


class XBlock(nn.Module):
    """RegNetX's residual bottleneck with grouped 3x3 (bottleneck ratio 1)."""

    def __init__(self, cin, cout, s, group_width):
        super().__init__()
        self.body = nn.Sequential(ConvBN(cin, cout, 1), ConvBN(cout, cout, 3, s, groups=cout // group_width),
                                  ConvBN(cout, cout, 1, act=None))
        self.down = ConvBN(cin, cout, 1, s, act=None) if s != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.down(x))


def _regnet_x_400mf() -> nn.Module:
    layers: list[nn.Module] = [ConvBN(3, 32, 3, 2)]
    cin = 32
    for width, depth in [(32, 1), (64, 2), (160, 7), (400, 12)]:
        for i in range(depth):
            layers.append(XBlock(cin, width, 2 if i == 0 else 1, 16))
            cin = width
    return Classifier(nn.Sequential(*layers), nn.Linear(400, 1000))


class ShuffleBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.s = s
        half = cout // 2
        if s > 1:
            self.left = nn.Sequential(ConvBN(cin, cin, 3, s, groups=cin, act=None), ConvBN(cin, half, 1))
        right_in = cin if s > 1 else half
        self.right = nn.Sequential(ConvBN(right_in, half, 1), ConvBN(half, half, 3, s, groups=half, act=None),
                                   ConvBN(half, half, 1))

    def forward(self, x):
        if self.s == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.right(b)), 1)
        else:
            out = torch.cat((self.left(x), self.right(x)), 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def _shufflenet_v2_x1_0() -> nn.Module:
    layers: list[nn.Module] = [ConvBN(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 24
    for cout, n in [(116, 4), (232, 8), (464, 4)]:
        layers += [ShuffleBlock(cin, cout, 2)] + [ShuffleBlock(cout, cout, 1) for _ in range(n - 1)]
        cin = cout
    layers.append(ConvBN(464, 1024, 1))
    return Classifier(nn.Sequential(*layers), nn.Linear(1024, 1000))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, e1, 1), nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(x)), torch.relu(self.e3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU())

    def forward(self, image):
        return torch.flatten(self.classifier(self.features(image)).mean((2, 3)), 1)


BUILDERS = {
    "mobilenet_v2": _mobilenet_v2, "mobilenet_v3_small": _mobilenet_v3_small, "resnet18": _resnet18,
    "efficientnet_b0": _efficientnet_b0, "shufflenet_v2_x1_0": _shufflenet_v2_x1_0, "squeezenet1_1": SqueezeNet,
    "mnasnet0_5": _mnasnet0_5, "regnet_x_400mf": _regnet_x_400mf,
}


# The proxy fine-tune: steps, batch, crop size (px), AdamW learning rate and weight decay.
FINETUNE = {"steps": 32, "batch": 16, "size": 64, "lr": 1e-3, "weight_decay": 1e-4}


def make(name: str, calibrate_bn: bool = True, finetune: bool = True) -> nn.Module:
    """The architecture ``name``: seeded weights, the proxy fine-tune, BatchNorm statistics from photos."""
    torch.manual_seed(SEED)
    net = BUILDERS[name]()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a fixed count: the same weights on any machine with the same kernels
    try:
        if finetune:
            _finetune(net, **FINETUNE)
        if calibrate_bn:
            _calibrate_bn(net)
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def _calibrate_bn(net: nn.Module) -> None:
    from .data import imagenet_batch

    photos = torch.from_numpy(imagenet_batch(16, IMAGE, offset=100))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    net.train()
    with torch.no_grad():
        net(photos)


def _finetune(net: nn.Module, steps: int, batch: int, size: int, lr: float, weight_decay: float) -> None:
    """Cross-entropy on which photo a crop comes from (classes 0-15 of the 1000 logits)."""
    from .data import labelled_crops

    x, y = labelled_crops(steps * batch // 2, size, seed=SEED)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    pick = torch.Generator().manual_seed(SEED)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=pick)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

