"""CUDA backend: ``numba.cuda`` implicit-GEMM kernels for the three primitives and the bias
gradient (see :mod:`numbaconv.cuda.tiles`). numba-cuda is optional and imported only when
a call runs on CUDA; :mod:`numbaconv.cuda.runtime` says whether it can."""
