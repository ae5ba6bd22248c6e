"""Builders for the reference models of the pruning literature.

- LeNet-300-100 (LeCun et al. 1998): 784-300-100-10, 266,610 parameters.
- LeNet-5, the Caffe variant used by Han et al. 2015: conv 20@5x5, max-pool, conv 50@5x5,
  max-pool, fc 500, fc 10 — 431,080 parameters. (Caffe's net has no non-linearity after the
  convolutions; we put a ReLU there, which changes no parameter count and trains faster.)
- VGG19 (Simonyan & Zisserman 2014) as ``keras.applications.VGG19(weights=None)``,
  143,667,240 parameters. Weights are never downloaded.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["lenet_300_100", "lenet5", "vgg19"]


def lenet_300_100(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """LeNet-300-100: two hidden fully-connected layers of 300 and 100 ReLU units."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Flatten(name="flatten"),
        layers.Dense(300, activation="relu", name="fc1"),
        layers.Dense(100, activation="relu", name="fc2"),
        layers.Dense(classes, activation="softmax", name="fc3"),
    ], name="lenet_300_100")


def lenet5(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """LeNet-5 as in Caffe's MNIST example (the network Han et al. prune 12x)."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(20, 5, activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(50, 5, activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(500, activation="relu", name="fc1"),
        layers.Dense(classes, activation="softmax", name="fc2"),
    ], name="lenet5")


def vgg19(input_shape=(224, 224, 3), classes: int = 1000) -> keras.Model:
    """VGG19 with random weights (``weights=None``: nothing is downloaded)."""
    return keras.applications.VGG19(weights=None, input_shape=input_shape, classes=classes)
