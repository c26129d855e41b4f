"""An independent float64 reference, deliberately simple: explicit zero-padding and
zero-insertion in NumPy, nothing shared with the library's code path.

All functions take and return NHWC / HWIO float64 arrays; ``pads`` is
``((top, bottom), (left, right))``, computed here from TensorFlow's documented rules.
"""

import math

import numpy as np


def same_pads(in_size, k, stride, dilation):
    effective = (k - 1) * dilation + 1
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + effective - in_size, 0)
    return (total // 2, total - total // 2)


def pads_for(padding, input_hw, filter_hw, strides, dilations):
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return tuple(same_pads(input_hw[i], filter_hw[i], strides[i], dilations[i])
                     for i in range(2))
    return tuple(tuple(p) for p in padding)


def output_hw(input_hw, filter_hw, strides, dilations, pads):
    out = []
    for i in range(2):
        effective = (filter_hw[i] - 1) * dilations[i] + 1
        out.append((input_hw[i] + sum(pads[i]) - effective) // strides[i] + 1)
    return tuple(out)


def conv2d(x, w, strides, dilations, pads):
    """out[n, oh, ow, k] = Σ x_padded[n, oh·sh + r·dh, ow·sw + s·dw, c] · w[r, s, c, k]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    R, S, C, K = w.shape
    N = x.shape[0]
    OH, OW = output_hw(x.shape[1:3], (R, S), strides, dilations, pads)
    out = np.zeros((N, OH, OW, K))
    sh, sw = strides
    dh, dw = dilations
    for r in range(R):
        for s in range(S):
            patch = xp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh,
                       s * dw: s * dw + (OW - 1) * sw + 1: sw, :]
            out += np.einsum("nhwc,ck->nhwk", patch, w[r, s])
    return out


def conv2d_backprop_input(input_shape, w, dy, strides, dilations, pads):
    """The adjoint of conv2d in x: scatter each dy·w back onto the padded input."""
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    N, H, W, C = input_shape
    R, S, _, K = w.shape
    (pt, pb), (pl, pr) = pads
    sh, sw = strides
    dh, dw = dilations
    OH, OW = dy.shape[1:3]
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C))
    for r in range(R):
        for s in range(S):
            dxp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh,
                s * dw: s * dw + (OW - 1) * sw + 1: sw, :] += np.einsum("nhwk,ck->nhwc", dy, w[r, s])
    return dxp[:, pt: pt + H, pl: pl + W, :]


def conv2d_backprop_filter(x, filter_shape, dy, strides, dilations, pads):
    """dw[r, s, c, k] = Σ x_padded[n, oh·sh + r·dh, ow·sw + s·dw, c] · dy[n, oh, ow, k]."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    R, S, C, K = filter_shape
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    sh, sw = strides
    dh, dw = dilations
    OH, OW = dy.shape[1:3]
    out = np.zeros(filter_shape)
    for r in range(R):
        for s in range(S):
            patch = xp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh,
                       s * dw: s * dw + (OW - 1) * sw + 1: sw, :]
            out[r, s] = np.einsum("nhwc,nhwk->ck", patch, dy)
    return out


def bias_add_grad(dy, channel_axis):
    dy = np.asarray(dy, np.float64)
    axes = tuple(a for a in range(dy.ndim) if a != channel_axis % dy.ndim)
    return dy.sum(axis=axes)


# --- grouped and depthwise: each group's channels as an axis of its own ------------------

def _patches(x, filter_hw, strides, dilations, pads, out_hw):
    """(r, s) -> the input pixels tap (r, s) of every output reads: [N, OH, OW, C]."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    (sh, sw), (dh, dw), (OH, OW) = strides, dilations, out_hw
    return {(r, s): xp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh,
                       s * dw: s * dw + (OW - 1) * sw + 1: sw, :]
            for r in range(filter_hw[0]) for s in range(filter_hw[1])}


def grouped_conv2d(x, w, strides, dilations, pads):
    """Grouped: x [N, H, W, G·Cg], w [R, S, Cg, G·Kg];
    out[n, oh, ow, g, kg] = Σ x[n, ·, ·, g, c] · w[r, s, c, g, kg]."""
    w = np.asarray(w, np.float64)
    R, S, Cg, K = w.shape
    N, C = x.shape[0], x.shape[3]
    G = C // Cg
    out_hw = output_hw(x.shape[1:3], (R, S), strides, dilations, pads)
    out = np.zeros((N,) + out_hw + (G, K // G))
    for (r, s), patch in _patches(x, (R, S), strides, dilations, pads, out_hw).items():
        out += np.einsum("nhwgc,cgk->nhwgk", patch.reshape(patch.shape[:3] + (G, Cg)),
                         w[r, s].reshape(Cg, G, K // G))
    return out.reshape((N,) + out_hw + (K,))


def grouped_conv2d_backprop_input(input_shape, w, dy, strides, dilations, pads):
    """The adjoint of :func:`grouped_conv2d` in x, by scattering onto the padded input."""
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    N, H, W, C = input_shape
    R, S, Cg, K = w.shape
    G = C // Cg
    (pt, pb), (pl, pr) = pads
    (sh, sw), (dh, dw) = strides, dilations
    OH, OW = dy.shape[1:3]
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, G, Cg))
    dy_groups = dy.reshape(N, OH, OW, G, K // G)
    for r in range(R):
        for s in range(S):
            dxp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh, s * dw: s * dw + (OW - 1) * sw + 1: sw] \
                += np.einsum("nhwgk,cgk->nhwgc", dy_groups, w[r, s].reshape(Cg, G, K // G))
    return dxp[:, pt: pt + H, pl: pl + W].reshape(N, H, W, C)


def grouped_conv2d_backprop_filter(x, filter_shape, dy, strides, dilations, pads):
    """dw[r, s, c, g·Kg + kg] = Σ x[n, ·, ·, g·Cg + c] · dy[n, oh, ow, g·Kg + kg]."""
    dy = np.asarray(dy, np.float64)
    R, S, Cg, K = filter_shape
    G = x.shape[3] // Cg
    N, OH, OW = dy.shape[:3]
    out = np.zeros((R, S, Cg, G, K // G))
    dy_groups = dy.reshape(N, OH, OW, G, K // G)
    for (r, s), patch in _patches(x, (R, S), strides, dilations, pads, (OH, OW)).items():
        out[r, s] = np.einsum("nhwgc,nhwgk->cgk", patch.reshape(N, OH, OW, G, Cg), dy_groups)
    return out.reshape(filter_shape)


def depthwise_conv2d(x, w, strides, dilations, pads):
    """x [N, H, W, C], w [R, S, C, M] -> out[n, oh, ow, c·M + m] = Σ x[n, ·, ·, c] · w[r, s, c, m]."""
    w = np.asarray(w, np.float64)
    R, S, C, M = w.shape
    out_hw = output_hw(x.shape[1:3], (R, S), strides, dilations, pads)
    out = np.zeros((x.shape[0],) + out_hw + (C, M))
    for (r, s), patch in _patches(x, (R, S), strides, dilations, pads, out_hw).items():
        out += patch[..., :, None] * w[r, s]
    return out.reshape((x.shape[0],) + out_hw + (C * M,))


def depthwise_conv2d_backprop_input(input_shape, w, dy, strides, dilations, pads):
    w = np.asarray(w, np.float64)
    N, H, W, C = input_shape
    R, S, _, M = w.shape
    (pt, pb), (pl, pr) = pads
    (sh, sw), (dh, dw) = strides, dilations
    OH, OW = dy.shape[1:3]
    dy_cm = np.asarray(dy, np.float64).reshape(N, OH, OW, C, M)
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C))
    for r in range(R):
        for s in range(S):
            dxp[:, r * dh: r * dh + (OH - 1) * sh + 1: sh, s * dw: s * dw + (OW - 1) * sw + 1: sw] \
                += (dy_cm * w[r, s]).sum(axis=-1)
    return dxp[:, pt: pt + H, pl: pl + W]


def depthwise_conv2d_backprop_filter(x, filter_shape, dy, strides, dilations, pads):
    R, S, C, M = filter_shape
    N, OH, OW = dy.shape[:3]
    dy_cm = np.asarray(dy, np.float64).reshape(N, OH, OW, C, M)
    out = np.zeros(filter_shape)
    for (r, s), patch in _patches(x, (R, S), strides, dilations, pads, (OH, OW)).items():
        out[r, s] = np.einsum("nhwc,nhwcm->cm", patch, dy_cm)
    return out
