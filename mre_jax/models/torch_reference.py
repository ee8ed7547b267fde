"""ResEmoteNet in PyTorch, with the official state-dict keys.

This is the project's reference implementation: parity tests export its
weights, import them with :mod:`mre_jax.convert` and compare logits with
:mod:`mre_jax.models`, and benchmarks compare speeds. It is written from the
published architecture, takes the presets of :data:`mre_jax.models.MODEL_SPECS`
and reads NCHW images. Its parameter and buffer names (``conv1.weight``,
``bn1.running_var``, ``se.fc.0.weight``, ``res_block1.shortcut.0.weight``,
``fc4.bias`` ...) are those of the official ResEmoteNet checkpoints.

Only code that wants PyTorch imports this module; the rest of the package runs
without it.
"""

from __future__ import annotations

from mre_jax import models
from mre_jax.errors import UserError

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError as e:
  raise UserError("mre_jax.models.torch_reference needs PyTorch; install it "
                  "with pip install 'mre_jax[torch]'") from e


class SqueezeExcite(nn.Module):
  """Channel attention: scales channels by sigmoid(MLP(global mean))."""

  def __init__(self, channels: int, reduction: int):
    super().__init__()
    hidden = channels // reduction
    self.avg_pool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Sequential(
        nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
        nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c = x.shape[:2]
    s = self.fc(self.avg_pool(x).view(n, c))
    return x * s.view(n, c, 1, 1)


class ResidualBlock(nn.Module):
  """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus 1x1 conv+BN skip."""

  def __init__(self, in_channels: int, channels: int, stride: int = 2):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
    self.bn1 = nn.BatchNorm2d(channels)
    self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
    self.bn2 = nn.BatchNorm2d(channels)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_channels != channels:
      self.shortcut = nn.Sequential(
          nn.Conv2d(in_channels, channels, 1, stride=stride),
          nn.BatchNorm2d(channels))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + self.shortcut(x))


class ResEmoteNet(nn.Module):
  """ResEmoteNet with base width ``width`` (64 for the published teacher).

  Input: float images (N, C, H, W), already normalised. Output: logits
  (N, num_classes).
  """

  def __init__(self, width: int = 64, se_reduction: int = 16,
               num_classes: int = 7, in_channels: int = 3):
    super().__init__()
    w = width
    self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1)
    self.bn1 = nn.BatchNorm2d(w)
    self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
    self.bn2 = nn.BatchNorm2d(2 * w)
    self.conv3 = nn.Conv2d(2 * w, 4 * w, 3, padding=1)
    self.bn3 = nn.BatchNorm2d(4 * w)
    self.se = SqueezeExcite(4 * w, se_reduction)
    self.res_block1 = ResidualBlock(4 * w, 8 * w, stride=2)
    self.res_block2 = ResidualBlock(8 * w, 16 * w, stride=2)
    self.res_block3 = ResidualBlock(16 * w, 32 * w, stride=2)
    self.pool = nn.AdaptiveAvgPool2d(1)
    self.fc1 = nn.Linear(32 * w, 16 * w)
    self.fc2 = nn.Linear(16 * w, 8 * w)
    self.fc3 = nn.Linear(8 * w, 4 * w)
    self.fc4 = nn.Linear(4 * w, num_classes)
    self.dropout1 = nn.Dropout(0.2)
    self.dropout2 = nn.Dropout(0.5)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    stem = ((self.conv1, self.bn1), (self.conv2, self.bn2),
            (self.conv3, self.bn3))
    for i, (conv, bn) in enumerate(stem):
      x = F.max_pool2d(F.relu(bn(conv(x))), 2)
      if i < 2:
        x = self.dropout1(x)
    x = self.se(x)
    x = self.res_block3(self.res_block2(self.res_block1(x)))
    x = torch.flatten(self.pool(x), 1)
    for fc in (self.fc1, self.fc2, self.fc3):
      x = self.dropout2(F.relu(fc(x)))
    return self.fc4(x)


def get_model(name: str, num_classes: int = 7,
              width: int | None = None) -> ResEmoteNet:
  """The PyTorch twin of :func:`mre_jax.models.get_model` (same presets)."""
  spec = models.get_model(name, num_classes=num_classes, width=width)
  return ResEmoteNet(width=spec.width, se_reduction=spec.se_reduction,
                     num_classes=num_classes)
