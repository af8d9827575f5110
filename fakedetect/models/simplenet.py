"""The course's SimpleNet: a small CNN for 3x256x256 faces, 2 logits (real, fake)."""
import torch
from torch import nn


class SimpleNet(nn.Module):
    """The course's small CNN for 3x256x256 input: 16,901,762 parameters, 2 logits (real, fake)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 7)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 7)
        self.conv3 = nn.Conv2d(16, 24, 7)
        self.fc1 = nn.Linear(24 * 26 * 26, 1024)
        self.fc2 = nn.Linear(1024, 256)
        self.fc3 = nn.Linear(256, 2)

    def forward(self, image):
        features = self.pool(torch.relu(self.conv1(image)))
        features = self.pool(torch.relu(self.conv2(features)))
        features = self.pool(torch.relu(self.conv3(features)))
        features = torch.flatten(features, 1)
        features = torch.relu(self.fc1(features))
        features = torch.relu(self.fc2(features))
        return self.fc3(features)
