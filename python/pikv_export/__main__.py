"""python -m pikv_export --model DIR --out FILE.pt2|FILE.pt --capacity N [--dtype D] [--device D] [--batch B]"""

import argparse
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m pikv_export",
        description="Export a transformers causal LM (a folder with config.json and weights, or a GGUF file "
                    "transformers can load) so that PiKVPress presses run inside it from C++: an AOTInductor "
                    "package (.pt2, pikv::ExportedModel) or a TorchScript file (.pt, pikv::ScriptedModel).")
    p.add_argument("--model", required=True, help="Hugging Face checkpoint folder, or a .gguf file")
    p.add_argument("--out", required=True, help="FILE.pt2 (AOTInductor) or FILE.pt (TorchScript)")
    p.add_argument("--capacity", required=True, type=int,
                   help="tokens the KV cache holds per request (context + question + answer)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu", help="cpu or cuda (the package runs on this device)")
    p.add_argument("--batch", default=1, type=int, help="rows per request the graph is exported for (default 1)")
    p.add_argument("--library", default=None, help="libpikv.so (default: $PIKV_LIBRARY or the repository's build)")
    args = p.parse_args(argv)

    from . import export  # imports torch: after --help
    if not (args.out.endswith(".pt2") or args.out.endswith(".pt")):
        p.error(f"--out must end in .pt2 (AOTInductor) or .pt (TorchScript), got '{args.out}'")
    if not 1 <= args.capacity <= (1 << 24):
        p.error(f"--capacity must be in [1, 16777216], got {args.capacity}")
    if not 1 <= args.batch <= 4096:
        p.error(f"--batch must be in [1, 4096], got {args.batch}")
    try:
        export.load_operator(args.library)
        t0 = time.time()
        print(f"pikv_export: loading {args.model} ...", file=sys.stderr)
        model = export.load_model(args.model, args.dtype, args.device)
        wrapped = export.attach(model, capacity=args.capacity, batch=args.batch)
        kind = "AOTInductor package" if args.out.endswith(".pt2") else "TorchScript file"
        print(f"pikv_export: exporting the {kind} (capacity {args.capacity}, {args.dtype} on {args.device}) ...",
              file=sys.stderr)
        if args.out.endswith(".pt2"):
            export.save_aoti(wrapped, args.out)
        else:
            export.save_torchscript(wrapped, args.out)
        print(f"pikv_export: wrote {args.out} in {time.time() - t0:.1f} s", file=sys.stderr)
    except export.ExportError as e:
        print(f"pikv_export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
