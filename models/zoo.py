"""Builders for the reference models of the pruning literature.

- LeNet-300-100 (LeCun et al. 1998): 784-300-100-10, 266,610 parameters.
- LeNet-5, the Caffe variant used by Han et al. 2015: conv 20@5x5, max-pool, conv 50@5x5,
  max-pool, fc 500, fc 10 — 431,080 parameters. (Caffe's net has no non-linearity after the
  convolutions; we put a ReLU there, which changes no parameter count and trains faster.)
- ``vgg_small_bn``: a small VGG-style CNN for MNIST: three blocks of two 3x3 convolutions with
  BatchNormalization and ReLU (16, 32, 64 filters), max-pooling after each block, global
  average pooling, fc 10 — 73,114 parameters. The structured-pruning benchmark's plain CNN.
- ``resnet_small``: a small ResNet for MNIST (He et al. 2016 basic blocks): a 16-filter stem,
  two blocks at 16 filters with identity shortcuts, one block at 32 with a strided 1x1 projection
  shortcut, one more at 32 with an identity shortcut, global average pooling, fc 10 (43,418 parameters). Every
  convolution is followed by BatchNormalization.
- VGG19 (Simonyan & Zisserman 2014) as ``keras.applications.VGG19(weights=None)``,
  143,667,240 parameters. Weights are never downloaded.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["lenet_300_100", "lenet5", "vgg_small_bn", "resnet_small", "vgg19"]


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


def vgg_small_bn(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """Three VGG blocks (2 x [3x3 conv, BatchNorm, ReLU], max-pool) of 16/32/64 filters, GAP, fc."""
    stack = [keras.Input(input_shape)]
    for b, filters in enumerate((16, 32, 64), start=1):
        for c in (1, 2):
            stack += [layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}"),
                      layers.BatchNormalization(name=f"block{b}_bn{c}"),
                      layers.ReLU(name=f"block{b}_relu{c}")]
        stack.append(layers.MaxPooling2D(2, name=f"block{b}_pool"))
    stack += [layers.GlobalAveragePooling2D(name="gap"), layers.Dense(classes, activation="softmax", name="fc")]
    return keras.Sequential(stack, name="vgg_small_bn")


def _basic_block(x, filters, stride, name):
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        x = layers.BatchNormalization(name=f"{name}_proj_bn")(x)
    y = layers.Add(name=f"{name}_add")([x, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet_small(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """Stem 16, blocks [16 identity, 16 identity, 32 projection (stride 2), 32 identity], GAP, fc."""
    inp = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, (filters, stride) in enumerate(((16, 1), (16, 1), (32, 2), (32, 1)), start=1):
        x = _basic_block(x, filters, stride, f"block{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="resnet_small")


def vgg19(input_shape=(224, 224, 3), classes: int = 1000) -> keras.Model:
    """VGG19 with random weights (``weights=None``: nothing is downloaded)."""
    return keras.applications.VGG19(weights=None, input_shape=input_shape, classes=classes)
