"""Reference architectures and their training script (see ``models/train.py``)."""

from .zoo import lenet5, lenet_300_100, vgg19

__all__ = ["lenet5", "lenet_300_100", "vgg19"]
