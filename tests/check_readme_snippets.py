#!/usr/bin/env python3
"""Checks that every README code block marked `<!-- snippet: PATH -->` is
compiled code: its lines (indentation aside) appear, contiguous and in
order, in PATH, a file the build compiles."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
readme = (root / "README.md").read_text()
pattern = re.compile(r"<!-- snippet: (\S+) -->\s*```\w*\n(.*?)```", re.S)
failures, count = [], 0
for path, block in pattern.findall(readme):
    count += 1
    source = root / path
    if not source.exists():
        failures.append(f"{path}: no such file")
        continue
    want = [l.strip() for l in block.splitlines() if l.strip()]
    have = [l.strip() for l in source.read_text().splitlines() if l.strip()]
    if not any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1)):
        failures.append(f"{path}: README snippet not found verbatim:\n  " + "\n  ".join(want[:3]) + "\n  ...")
for f in failures:
    print("FAIL", f)
print(f"{count - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures or count == 0 else 0)
