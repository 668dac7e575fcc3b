"""Put on PYTHONPATH of an app started with SPACES_ZERO_GPU=true by the ZeroGPU tests.

`spaces` needs a CUDA build of torch for one thing only: its `spaces.zero.torch` submodule patches
torch's CUDA functions in the app process and moves tensors onto the GPU in the fork. With the CPU
build here, `import spaces` fails in spaces/zero/torch/static.py (torch.version.cuda is None). This
stands in for that one submodule with the same no-ops `spaces` already uses when torch is absent
(see spaces/zero/torch/__init__.py). Everything else is the real `spaces`: the decorator, the forked
worker, pickling, the device API client and its schedule / allow / release calls, the x-ip-token.
"""

import sys
import types

stand_in = types.ModuleType("spaces.zero.torch")
for name in ("enter_mode", "patch", "unpatch", "init", "move"):
    setattr(stand_in, name, lambda *args, **kwargs: None)
stand_in.pack = stand_in.size = lambda *args, **kwargs: 0
stand_in.is_in_bad_fork = lambda *args, **kwargs: False
sys.modules["spaces.zero.torch"] = stand_in
