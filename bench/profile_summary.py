"""Where a profiled drain's time went, by kind of work: py-spy's raw stacks summed.

Each sample is put in the first kind its stack matches, in this order: start-up
(imports, opening clients); botocore's model walk parsing answers; its model walk
serializing requests; the wire codec (msgspec); the rest of the SDK's work on a
call (hooks, endpoint, signing, HTTP), by operation; the replicator's own code
(records, queues, trackers, metrics); anything else (the event loop).

    .venv/bin/python bench/profile_summary.py STACKS.txt [STACKS.txt ...]

``hot_path.py --profile DIR`` prints it for its profiled drain.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: The kinds of work, in the order a sample is matched against them.
KINDS = (
    "start-up: imports, opening clients",
    "botocore: parsing answers (model walk)",
    "botocore: serializing requests (model walk)",
    "codec: msgspec parsing and encoding",
    "SDK, per call (GetRecords): hooks, endpoint, signing, HTTP",
    "SDK, per call (BatchWriteItem): hooks, endpoint, signing, HTTP",
    "SDK, per call (other calls: leases, DescribeStream)",
    "replicator: records, queues, trackers, metrics",
    "event loop, other",
)
SDK = ("botocore", "aiobotocore", "aiohttp")


def kind_of(frames: list[str]) -> str:
    """The kind of work of one sample's stack (outermost frame first)."""
    stack = ";".join(frames)
    if "_find_and_load" in stack or "ClientCreatorContext" in stack:
        return KINDS[0]
    if "botocore/parsers.py" in stack:
        return KINDS[1]
    if "botocore/serialize.py" in stack or "botocore/validate.py" in stack:
        return KINDS[2]
    if "replicator/aws/codec.py" in stack or "msgspec" in stack:
        return KINDS[3]
    if any(name in frame for frame in frames for name in SDK):
        if "get_records" in stack:
            return KINDS[4]
        if "batch_write" in stack:
            return KINDS[5]
        return KINDS[6]
    if any("(replicator/" in frame for frame in frames[-3:]):
        return KINDS[7]
    return KINDS[8]


def stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """Each stack of a file of py-spy's raw stacks (outermost frame first), and its
    samples."""
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            yield stack.split(";"), int(number)


def summary(path: Path) -> tuple[int, Counter[str]]:
    """(samples, samples of each kind) of a file of py-spy's raw stacks."""
    kinds: Counter[str] = Counter()
    samples = 0
    for frames, number in stacks(path):
        samples += number
        kinds[kind_of(frames)] += number
    return samples, kinds


def describe(path: Path) -> str:
    samples, kinds = summary(path)
    if not samples:
        return f"  {path}: no samples"
    lines = [f"  {path}: {samples:,} samples"]
    lines += [f"    {100 * kinds[kind] / samples:5.1f}%  {kind}" for kind in KINDS if kinds[kind]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__.strip().split("\n\n")[-2].strip(), file=sys.stderr)
        return 2
    for path in paths:
        print(describe(Path(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
