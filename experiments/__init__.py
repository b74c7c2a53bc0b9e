import warnings

# Library warnings that say nothing about this run: torch 2.14 deprecates the torch.jit.script
# helpers torch_geometric uses at import time, and torch flags sparse CSR as beta at every conversion
# and warns once that building a CSR tensor skips its (costly) invariant checks.
# Set here, before torch_geometric is imported by any experiments entry point.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)
