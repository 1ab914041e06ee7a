"""The deployment guide's Qwen3 check without downloads (issue 4).

Builds the Qwen3-0.6B architecture from its configuration with seeded random
weights (initialised on the CPU, so every run has identical weights), moves it
to cuda:0 in bf16 and generates greedily from fixed token ids. Writes the
generated tokens and the logits of one forward pass to OUT (a torch file), so
a native run and a remoted run can be compared:

    python3 qwen3_check.py run OUT.pt
    python3 qwen3_check.py compare NATIVE.pt CLIENT.pt
    python3 qwen3_check.py profile     # 8 tokens under cProfile: where the
                                       # host time goes (native vs client)
"""
import sys
import time


def run(out):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        hidden_size=1024,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=3072,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        # Larger than the default 0.02 so the logits are far from uniform
        # and greedy decoding produces varied tokens.
        initializer_range=0.08,
    )
    torch.manual_seed(1234)
    model = Qwen3ForCausalLM(cfg).eval()
    model = model.to(device="cuda:0", dtype=torch.bfloat16)
    ids = (torch.arange(24, dtype=torch.long) * 7919 + 11) % cfg.vocab_size
    ids = ids.unsqueeze(0).to("cuda:0")
    with torch.no_grad():
        logits = model(ids).logits.float().cpu()
        t0 = time.time()
        gen = model.generate(ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)
        torch.cuda.synchronize()
        dt = time.time() - t0
    tokens = gen[0, ids.shape[1]:].tolist()
    torch.save({"tokens": tokens, "logits": logits}, out)
    free, total = torch.cuda.mem_get_info()
    print(f"distinct tokens {len(set(tokens))}/32, {dt / 32 * 1000:.1f} ms/token, mem_get_info total {total >> 20} MiB")
    print("tokens", tokens)


def profile():
    import cProfile
    import io
    import pstats

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                      vocab_size=151936, tie_word_embeddings=True, initializer_range=0.08)
    torch.manual_seed(1234)
    model = Qwen3ForCausalLM(cfg).eval().to(device="cuda:0", dtype=torch.bfloat16)
    ids = ((torch.arange(24) * 7919 + 11) % cfg.vocab_size).unsqueeze(0).to("cuda:0")
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm up
        torch.cuda.synchronize()
        prof = cProfile.Profile()
        t0 = time.time()
        prof.enable()
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        torch.cuda.synchronize()
        prof.disable()
        dt = time.time() - t0
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    print(f"{dt / 8 * 1000:.1f} ms/token under cProfile")
    print(out.getvalue())


def compare(a, b):
    import torch

    x, y = torch.load(a), torch.load(b)
    same = x["tokens"] == y["tokens"]
    diff = (x["logits"] - y["logits"]).abs().max().item()
    scale = x["logits"].abs().max().item()
    varied = len(set(x["tokens"])) >= 4
    # Within bf16 rounding: one bf16 step (8 significant bits) at the
    # largest logit. The same kernels on the same GPU normally give 0.
    ok = same and varied and diff <= scale * 2.0**-7
    print(f"tokens identical: {same}; distinct tokens: {len(set(x['tokens']))}; max |logit diff| {diff:.3g} (max |logit| {scale:.3g})")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2])
    elif sys.argv[1] == "profile":
        profile()
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
