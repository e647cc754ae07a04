"""zhasr: Whisper adapted to Chinese call-center speech, and kept adapted."""

import logging

# transformers imports torchao wherever it is installed (gptqmodel brings it). On a machine without CUDA
# torchao warns that its CUDA kernels do not load, and torch's pytree calls its enum registrations
# deprecated: noise at the start of every command, not faults.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
