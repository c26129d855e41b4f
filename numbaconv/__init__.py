"""numbaconv: TensorFlow's 2-D convolution ops and their gradients as Numba kernels.

Replace ``tf.nn.`` with ``numbaconv.`` and pass NumPy arrays; the results match
TensorFlow's (same shapes, padding arithmetic and numbers, to float rounding).
"""

from . import configs, threads

# Before anything can start Numba's OpenMP threads: see threads.shorten_openmp_spin.
threads.shorten_openmp_spin(configs.openmp_spin_count())

from .api import (bias_add_grad, call_for, conv2d, conv2d_backprop_filter,  # noqa: E402
                  conv2d_backprop_filter_v2, conv2d_backprop_input, conv2d_backprop_input_v2,
                  conv2d_transpose, depthwise_conv2d, depthwise_conv2d_backprop_filter,
                  depthwise_conv2d_backprop_input, explain)
from .geometry import ConvGeometry
from .schedule import Schedule

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "conv2d_backprop_input",
    "conv2d_backprop_filter",
    "conv2d_backprop_input_v2",
    "conv2d_backprop_filter_v2",
    "conv2d_transpose",
    "bias_add_grad",
    "depthwise_conv2d",
    "depthwise_conv2d_backprop_input",
    "depthwise_conv2d_backprop_filter",
    "explain",
    "call_for",
    "ConvGeometry",
    "Schedule",
]
