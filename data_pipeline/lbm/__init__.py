"""Private building blocks of the LBM permeability solver (public API: data_pipeline.permeability).

- ``lattice``: D2Q9 / D3Q19 stencils, built in the dtype of the run.
- ``topology``: periodic percolation (connected components with winding), the active pore space,
  the sparse fluid-only neighbour table (bounce-back encoded in the table).
- ``numba_backend``: fused pull-stream + TRT collision kernel for the CPU (generated, unrolled).
- ``torch_backend``: the same algorithm in PyTorch (CUDA, or CPU for cross-checks).
"""
