"""
The torch factored method, the baseline of bench/spectrum.bench.ts: every singular value of
ΔW = s·B·A of each module of a PEFT adapter, without forming ΔW, the way one would write it
in PyTorch: B = Q_B·R_B and Aᵀ = Q_A·R_A (reduced QR, R only), then the r×r core
s·R_B·R_Aᵀ, whose singular values are those of ΔW.

The safetensors file is read with plain Python (an 8-byte little-endian header length, a
JSON header, then raw bytes), one positional read per module into a reused buffer (as
delta-audit reads it), and viewed with torch.frombuffer: no safetensors package needed.

Usage: python3 torch_factored_spectrum.py ADAPTER_DIR THREADS
Prints one JSON line: seconds (after `import torch`), modules, threads, the sum over modules
of σ₁ and of Σσ² (to check against delta-audit's numbers), peakRssBytes, cpuSeconds.
Exit 3 when torch cannot be imported (the bench then skips this phase).
"""
import json
import os
import re
import resource
import struct
import sys
import time

try:
    import torch
except ImportError as err:  # the bench prints this and skips the baseline
    print(f"torch not importable: {err}", file=sys.stderr)
    sys.exit(3)

FACTOR_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_-]+)?\.weight$")


def main() -> None:
    folder, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    scale = config["lora_alpha"] / config["r"]
    path = os.path.join(folder, "adapter_model.safetensors")
    fd = os.open(path, os.O_RDONLY)
    try:
        (header_len,) = struct.unpack("<Q", os.pread(fd, 8, 0))
        header = json.loads(os.pread(fd, header_len, 8))
        base = 8 + header_len
        modules: dict[str, dict[str, tuple[int, int, list[int]]]] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            m = FACTOR_KEY.match(key)
            if not m or info["dtype"] != "F32":
                raise SystemExit(f"unexpected tensor {key} ({info.get('dtype')})")
            start, end = info["data_offsets"]
            modules.setdefault(m.group(1), {})[m.group(2)] = (base + start, base + end, info["shape"])
        order = sorted(modules.items(), key=lambda kv: min(v[0] for v in kv[1].values()))
        largest = max(max(v[1] for v in f.values()) - min(v[0] for v in f.values()) for _, f in order)
        buffer = bytearray(largest)
        view = memoryview(buffer)
        sigma1 = 0.0
        energy = 0.0
        for _, f in order:
            start = min(v[0] for v in f.values())
            end = max(v[1] for v in f.values())
            got = os.preadv(fd, [view[: end - start]], start)
            if got != end - start:
                raise SystemExit(f"{path}: short read")
            raw = torch.frombuffer(buffer, dtype=torch.float32, count=(end - start) // 4)
            a0, a1, a_shape = f["lora_A"]
            b0, b1, b_shape = f["lora_B"]
            A = raw[(a0 - start) // 4 : (a1 - start) // 4].view(a_shape)  # [r, in]
            B = raw[(b0 - start) // 4 : (b1 - start) // 4].view(b_shape)  # [out, r]
            R_B = torch.linalg.qr(B, mode="r").R
            R_A = torch.linalg.qr(A.T, mode="r").R
            sigma = torch.linalg.svdvals(scale * (R_B @ R_A.T))
            sigma1 += float(sigma[0])
            energy += float((sigma.double() ** 2).sum())
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "modules": len(order),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "sumSigma1": sigma1,
                "sumSigma2": energy,
                "peakRssBytes": usage.ru_maxrss * 1024,
                "cpuSeconds": time.process_time() - cpu0,
            }
        )
    )


if __name__ == "__main__":
    main()
