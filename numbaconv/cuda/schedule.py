"""The CUDA implicit-GEMM family's knobs, their legality, candidates and a default (its
kernels: :mod:`numbaconv.cuda.tiles`; its launch: :mod:`numbaconv.cuda.launch`).

Every primitive runs as one GEMM over its geometry (see :mod:`numbaconv.cuda.tiles`):

=================  ====================  =================  ======================
primitive          GEMM rows (M)         GEMM columns (N)   reduction
=================  ====================  =================  ======================
forward            N·OH·OW output pixels K output channels  R·S·C
backward_data      N·H·W input pixels    C input channels   R·S·K
backward_filter    R·S·C filter taps     K output channels  N·OH·OW (split-K)
=================  ====================  =================  ======================

- ``block_tile`` (BM, BN): the output tile one thread block owns.
- ``thread_tile`` (TM, TN): the accumulators one thread keeps in registers (a
  ``cuda.local.array`` of constant shape); threads per block = (BM/TM)·(BN/TN).
- ``block_k``: the reduction step staged through shared memory per iteration.
- ``split_k``: backward-filter only: the reduction is cut into this many chunks, each
  summed by its own blocks; fixed by the shape, never by the device, so results do not
  depend on the GPU.
- ``reduction``: how split-K partial sums meet: ``"two_pass"`` (each chunk writes its own
  partial filter, a second kernel adds them in a fixed order: deterministic) or
  ``"atomic"`` (atomic adds into a zeroed result: less memory, order not fixed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from ..geometry import ConvGeometry
from ..schedule import Schedule

REDUCTIONS = ("two_pass", "atomic")
#: numba.cuda has no API for more than 48 KB of shared memory per block (numba-cuda#94).
SHARED_BYTES_LIMIT = 48 * 1024
MAX_THREADS = 1024
#: Blocks wanted per launch: two waves on a 132-SM H100. A constant, not the device's SM
#: count, so that split-K (which changes rounding) does not depend on the GPU.
TARGET_BLOCKS = 264
#: Shared-memory rows are padded by one element so that the transposed stores of the
#: operand tiles do not all hit one bank.
SHARED_PAD = 1


@dataclass(frozen=True)
class CudaSchedule(Schedule):
    """How one primitive's CUDA kernel runs (see the module docstring for each knob)."""

    algorithm: ClassVar[str] = "implicit_gemm"
    block_tile: tuple = field(default=(64, 64))
    thread_tile: tuple = field(default=(4, 4))
    block_k: int = 8
    split_k: int = 1
    reduction: str = "two_pass"

    def __post_init__(self):
        self._require_pair("block_tile")
        self._require_pair("thread_tile")
        self._require_positive("block_k", "split_k")
        self._require_one_of("reduction", REDUCTIONS)
        (bm, bn), (tm, tn) = self.block_tile, self.thread_tile
        if bm % tm or bn % tn:
            raise ValueError(f"thread_tile {self.thread_tile} must divide block_tile "
                             f"{self.block_tile}")

    @property
    def threads(self) -> int:
        (bm, bn), (tm, tn) = self.block_tile, self.thread_tile
        return (bm // tm) * (bn // tn)

    def shared_bytes(self, itemsize: int) -> int:
        """Static shared memory of one block: the two operand tiles."""
        bm, bn = self.block_tile
        return self.block_k * (bm + SHARED_PAD + bn + SHARED_PAD) * itemsize

    def __str__(self) -> str:
        (bm, bn), (tm, tn) = self.block_tile, self.thread_tile
        text = f"cuda block {bm}x{bn}, thread {tm}x{tn} ({self.threads} threads), bk {self.block_k}"
        if self.split_k > 1:
            text += f", split_k {self.split_k} ({self.reduction})"
        return text


def gemm_shape(primitive: str, g: ConvGeometry) -> tuple[int, int, int]:
    """(rows, columns, reduction) of the primitive's implicit GEMM, one per group (a
    grouped convolution is ``g.groups`` GEMMs side by side in the columns)."""
    taps = g.filter_height * g.filter_width
    pixels = g.batch * g.out_height * g.out_width
    if primitive == "forward":
        return pixels, g.out_channels_per_group, taps * g.in_channels_per_group
    if primitive == "backward_data":
        return (g.batch * g.in_height * g.in_width, g.in_channels_per_group,
                taps * g.out_channels_per_group)
    return taps * g.in_channels_per_group, g.out_channels_per_group, pixels


def column_blocks(g: ConvGeometry, columns: int, block_columns: int) -> int:
    """Blocks along the columns: each group's own, so that no block spans two groups."""
    return g.groups * -(-columns // block_columns)


def block_count(g: ConvGeometry, rows: int, columns: int, block_tile) -> int:
    """Thread blocks of one split: row blocks × every group's column blocks."""
    return -(-rows // block_tile[0]) * column_blocks(g, columns, block_tile[1])


def grid(primitive: str, g: ConvGeometry, schedule: CudaSchedule) -> tuple[int, int, int]:
    rows, columns, _ = gemm_shape(primitive, g)
    bm, bn = schedule.block_tile
    return (-(-rows // bm), column_blocks(g, columns, bn), schedule.split_k)


def reduction_chunk(primitive: str, g: ConvGeometry, schedule: CudaSchedule) -> int:
    """Reduction elements per split, a multiple of ``block_k``."""
    _, _, depth = gemm_shape(primitive, g)
    chunk = -(-depth // schedule.split_k)
    return -(-chunk // schedule.block_k) * schedule.block_k


def illegal_reason(primitive: str, g: ConvGeometry, schedule: CudaSchedule,
                   itemsize: int = 4) -> str | None:
    """Why ``schedule`` cannot run ``primitive`` on ``g``, or None when it can (the
    resource checks that need the compiler live in :mod:`numbaconv.cuda.resources`)."""
    if schedule.threads > MAX_THREADS:
        return f"{schedule.threads} threads per block, over the limit of {MAX_THREADS}"
    if schedule.shared_bytes(itemsize) > SHARED_BYTES_LIMIT:
        return (f"{schedule.shared_bytes(itemsize)} bytes of shared memory, over the "
                f"{SHARED_BYTES_LIMIT} bytes numba.cuda can give a block")
    if schedule.split_k > 1:
        if primitive != "backward_filter":
            return "split_k applies to backward_filter only"
        _, _, depth = gemm_shape(primitive, g)
        if (schedule.split_k - 1) * reduction_chunk(primitive, g, schedule) >= depth:
            return f"split_k {schedule.split_k} leaves a split with no work"
    if schedule.reduction == "atomic" and primitive != "backward_filter":
        return "atomic reduction applies to backward_filter only"
    return None


#: Tiles the default rule picks from, largest first (CUTLASS's SIMT menu, scaled down).
DEFAULT_TILES = (((128, 128), (8, 8)), ((128, 64), (8, 4)), ((64, 128), (4, 8)),
                 ((64, 64), (4, 4)), ((64, 32), (4, 4)), ((32, 32), (4, 4)),
                 ((16, 16), (4, 4)))


def split_for(primitive: str, g: ConvGeometry, block_tile, thread_tile, block_k: int = 8,
              itemsize: int = 4) -> int:
    """Split-K for backward-filter: enough splits to make TARGET_BLOCKS blocks, while each
    split still streams at least 64 reduction steps; 1 for the other primitives."""
    if primitive != "backward_filter":
        return 1
    rows, columns, depth = gemm_shape(primitive, g)
    blocks = block_count(g, rows, columns, block_tile)
    splits = max(1, min(depth // (block_k * 64), -(-TARGET_BLOCKS // blocks), 64))
    while splits > 1 and illegal_reason(primitive, g, CudaSchedule(
            block_tile, thread_tile, block_k, split_k=splits), itemsize):
        splits -= 1
    return splits


def default_schedule(primitive: str, g: ConvGeometry, itemsize: int = 4) -> CudaSchedule:
    """The largest tile that still gives TARGET_BLOCKS blocks (else the smallest), and for
    backward-filter, split-K to make up the blocks its small output cannot supply."""
    rows, columns, _ = gemm_shape(primitive, g)
    # float64 accumulators take two registers each: keep thread tiles at 4×4 or less.
    tiles = [t for t in DEFAULT_TILES if itemsize == 4 or t[1][0] * t[1][1] <= 16]
    block, thread = tiles[-1]
    for candidate_block, candidate_thread in tiles:
        blocks = block_count(g, rows, columns, candidate_block)
        # backward-filter makes up missing blocks by split-K: its tile need only fit.
        enough = (candidate_block[0] <= rows and candidate_block[1] <= columns
                  if primitive == "backward_filter" else blocks >= TARGET_BLOCKS)
        if enough:
            block, thread = candidate_block, candidate_thread
            break
    return CudaSchedule(block, thread, split_k=split_for(primitive, g, block, thread,
                                                         itemsize=itemsize))


def fit(schedule: CudaSchedule, primitive: str, g: ConvGeometry, itemsize: int) -> CudaSchedule:
    """The split-K for ``g`` (the only knob the shape decides)."""
    if primitive != "backward_filter":
        return schedule
    return dataclasses.replace(schedule, split_k=split_for(
        primitive, g, schedule.block_tile, schedule.thread_tile, schedule.block_k, itemsize))


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    """Every tile × block_k of the search space's section, split-K from the geometry (for
    backward-filter also each split_k × reduction of the default tile). Resource pruning
    (spills, on the real compiler) is the tuner's."""
    found = []
    for block_m, block_n, thread_m, thread_n in section.get("tiles", []):
        for block_k in section.get("block_k", [8]):
            block, thread = (block_m, block_n), (thread_m, thread_n)
            found.append(CudaSchedule(block, thread, block_k, split_for(
                primitive, g, block, thread, block_k, itemsize)))
    if primitive == "backward_filter":
        default = default_schedule(primitive, g, itemsize)
        for split_k in section.get("split_k", []):
            for reduction in section.get("reduction", ["two_pass"]):
                found.append(CudaSchedule(default.block_tile, default.thread_tile,
                                          default.block_k, split_k, reduction))
    return found


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: CudaSchedule,
                    itemsize: int) -> int:
    """Device memory beyond operands and result: the partial filters of a two-pass split-K."""
    if primitive == "backward_filter" and schedule.split_k > 1 and schedule.reduction == "two_pass":
        rows, columns, _ = gemm_shape(primitive, g)
        return schedule.split_k * rows * columns * g.groups * itemsize
    return 0
