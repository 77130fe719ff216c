#!/usr/bin/env python3
"""Summarize `cargo bench --bench rewrite`: per-image medians and the ratios the targets name.

Reads criterion's estimates under target/criterion/ (written by the run just made) and prints a
Markdown table: median ns per image for the trie and the linear model at each rule count, the trie's
cost relative to 10 rules, its speed-up over the linear scan, and compile times.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
MIX = 16  # images per iteration in benches/rewrite.rs


def median_ns(group, name):
    path = ROOT / group / name / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def per_image():
    """Median ns of each `image/<label>` bench (10k rules), and their median."""
    folder = ROOT / "image"
    if not folder.exists():
        return {}
    rows = {}
    for bench in sorted(folder.iterdir()):
        estimates = bench / "new" / "estimates.json"
        if estimates.exists():
            rows[bench.name] = json.loads(estimates.read_text())["median"]["point_estimate"]
    return rows


def main():
    sizes = [10, 1000, 10000, 100000]
    trie = {n: median_ns("rewrite", f"trie/{n}") for n in sizes}
    linear = {n: median_ns("rewrite", f"linear/{n}") for n in sizes}
    compile_ = {n: median_ns("compile", str(n)) for n in sizes}
    if trie[10] is None:
        sys.exit(f"no results under {ROOT}: run `cargo bench --bench rewrite` first")
    print("| rules | trie ns/image | vs 10 rules | linear ns/image | linear / trie | compile ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        t = trie[n] / MIX if trie[n] else None
        lin = linear[n] / MIX if linear[n] else None
        row = [
            f"{n:,}",
            f"{t:.1f}" if t else "-",
            f"{trie[n] / trie[10]:.2f}x" if trie[n] else "-",
            f"{lin:.1f}" if lin else "-",
            f"{lin / t:.0f}x" if lin and t else "-",
            f"{compile_[n] / 1e6:.2f}" if compile_[n] else "-",
        ]
        print("| " + " | ".join(row) + " |")
    images = per_image()
    if images:
        ordered = sorted(images.values())
        middle = len(ordered) // 2
        median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        print()
        print("| image (10k rules) | median ns |")
        print("| --- | ---: |")
        for label, ns in sorted(images.items(), key=lambda item: item[1]):
            print(f"| {label} | {ns:.1f} |")
        print(f"| **median of {len(ordered)} images** | **{median:.1f}** |")


if __name__ == "__main__":
    main()
