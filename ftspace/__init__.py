"""ftspace: fine-tune an LLM with Unsloth LoRA/QLoRA, from a browser, a CLI or an agent.

On a shared app (a Hugging Face Space, or FTSPACE_MULTIUSER=1) the server's own Hub credentials are never a
visitor's: before anything imports huggingface_hub (which reads this once), implicit tokens are turned off for
this process and every child it starts (training workers, ZeroGPU forks, offload helpers), and the server's
HF_TOKEN leaves the environment they inherit. Every Hub call then carries the visitor's token, or none.
"""

import os as _os

from ftspace.env import multi_user as _multi_user

if _multi_user():
    _os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        _os.environ.pop(_name, None)
