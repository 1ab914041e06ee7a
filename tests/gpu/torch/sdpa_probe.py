"""Which attention backend makes Qwen3 decode slow through the client?

Builds the same Qwen3-0.6B architecture as qwen3_check.py and, for each set
of allowed scaled_dot_product_attention backends, times 8 greedy tokens
(after a warm-up) and prints one line per configuration:

    python3 sdpa_probe.py            # CONFIG ms/token (or the error)
    python3 sdpa_probe.py spin SECS  # decode in a loop (for stack sampling)
"""
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import Qwen3Config, Qwen3ForCausalLM

CONFIGS = {
    "default": None,
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "math": [SDPBackend.MATH],
}


def model():
    cfg = Qwen3Config(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                      vocab_size=151936, tie_word_embeddings=True, initializer_range=0.08)
    torch.manual_seed(1234)
    m = Qwen3ForCausalLM(cfg).eval().to(device="cuda:0", dtype=torch.bfloat16)
    ids = ((torch.arange(24) * 7919 + 11) % cfg.vocab_size).unsqueeze(0).to("cuda:0")
    return m, ids


def per_token(m, ids, n=8):
    m.generate(ids, max_new_tokens=2, do_sample=False)
    torch.cuda.synchronize()
    t0 = time.time()
    m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    torch.cuda.synchronize()
    return (time.time() - t0) / n * 1000


def main():
    m, ids = model()
    # The backend PyTorch picks for a decode step's shapes (GQA: 16 query
    # heads over 8 key/value heads).
    q = torch.randn(1, 16, 1, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, 40, 128, device="cuda", dtype=torch.bfloat16)
    try:
        choice = torch._fused_sdp_choice(q, k, k, enable_gqa=True)
        print(f"fused sdp choice for a decode step: {SDPBackend(choice).name}")
    except Exception as e:  # noqa: BLE001 - report whatever the probe hits
        print(f"fused sdp choice: {type(e).__name__}: {e}")
    print(f"flash available: {torch.backends.cuda.is_flash_attention_available()}, "
          f"cudnn sdp enabled: {torch.backends.cuda.cudnn_sdp_enabled()}")
    with torch.no_grad():
        for name, allowed in CONFIGS.items():
            try:
                if allowed is None:
                    ms = per_token(m, ids)
                else:
                    with sdpa_kernel(allowed):
                        ms = per_token(m, ids)
                print(f"{name} {ms:.1f} ms/token")
            except Exception as e:  # noqa: BLE001
                print(f"{name} error {type(e).__name__}: {str(e).splitlines()[0][:120]}")


def spin(secs):
    """Decodes for `secs` seconds with the default backends, each round from
    a longer prompt so attention keeps meeting new sequence lengths (as a
    real decode does; repeating one length would hit cached plans)."""
    m, ids = model()
    end = time.time() + secs
    n = 0
    with torch.no_grad():
        while time.time() < end:
            p = torch.cat([ids] * (2 + n), dim=1)
            m.generate(p, max_new_tokens=16, min_new_tokens=16, do_sample=False)
            n += 1
    torch.cuda.synchronize()
    print(f"{n} rounds")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "spin":
        spin(float(sys.argv[2]))
    else:
        main()
