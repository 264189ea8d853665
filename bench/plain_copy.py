"""A plain boto3 table copy, the yardstick of ``copy_vs_script.py``.

What a user would write in an afternoon: a parallel Scan of ``--segments``
segments, one thread each, every page written with BatchWriteItem 25 items at a
time (UnprocessedItems sent again), botocore's defaults otherwise, and no call
timeout. It prints the items it copied.

    python bench/plain_copy.py --endpoint URL --region R --table T
        --destination-endpoint URL --destination-region R --destination-table T
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import boto3
from botocore.config import Config


def copy_segment(source: Any, destination: Any, table: str, target: str, segment: int,
                 segments: int, counts: list[int]) -> None:
    kwargs: dict[str, Any] = {"TableName": table, "Segment": segment,
                              "TotalSegments": segments}
    while True:
        page = source.scan(**kwargs)
        items = page.get("Items", [])
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]
            while requests:
                answer = destination.batch_write_item(RequestItems={target: requests})
                requests = answer.get("UnprocessedItems", {}).get(target, [])
        counts[segment] += len(items)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--destination-endpoint", required=True)
    parser.add_argument("--destination-region", required=True)
    parser.add_argument("--destination-table", required=True)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()
    no_timeout = Config(read_timeout=3600, connect_timeout=10,  # as long as it takes
                        max_pool_connections=args.segments + 2)
    source = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint,
                          config=no_timeout)
    destination = boto3.client("dynamodb", region_name=args.destination_region,
                               endpoint_url=args.destination_endpoint, config=no_timeout)
    counts = [0] * args.segments
    threads = [threading.Thread(target=copy_segment, args=(
        source, destination, args.table, args.destination_table, segment, args.segments,
        counts)) for segment in range(args.segments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"copied {sum(counts)} items")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
