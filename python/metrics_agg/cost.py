"""What the aggregator costs per source write, in dollars: the price table and the arithmetic.

`scripts/cost_model.py` measures the usage on the local stack (`Usage`); this module turns it
into figures per million source writes and into dollars with one price table (`PRICES`),
beside what the application's own write costs (`application_cost`). docs/cost.md explains
the model and shows the measured table.
"""

from __future__ import annotations

__all__ = [
    "PRICES",
    "Breakdown",
    "PerMillion",
    "Prices",
    "Usage",
    "application_cost",
    "per_million",
    "price",
]

from dataclasses import dataclass
from typing import Literal

Architecture = Literal["x86_64", "arm64"]
MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """On-demand list prices in US dollars, for one region on one date (see `sources`)."""

    region: str
    as_of: str
    appsync_per_million_operations: float  # queries and data modification operations
    dynamodb_per_million_write_units: float  # on-demand write request units (1 KB)
    dynamodb_per_million_read_units: float  # on-demand read request units (4 KB strong)
    lambda_per_million_requests: float
    lambda_per_gb_second_x86_64: float  # first pricing tier (6 billion GB-s a month)
    lambda_per_gb_second_arm64: float  # first pricing tier (7.5 billion GB-s a month)
    sqs_per_million_requests: float  # standard queue, after the free tier
    sources: tuple[tuple[str, str], ...]  # (price, where it comes from)

    def lambda_per_gb_second(self, arch: Architecture) -> float:
        return (
            self.lambda_per_gb_second_arm64 if arch == "arm64" else self.lambda_per_gb_second_x86_64
        )


PRICES = Prices(
    region="us-east-1",
    as_of="2026-12-06",
    appsync_per_million_operations=4.00,
    dynamodb_per_million_write_units=0.625,
    dynamodb_per_million_read_units=0.125,
    lambda_per_million_requests=0.20,
    lambda_per_gb_second_x86_64=0.0000166667,
    lambda_per_gb_second_arm64=0.0000133334,
    sqs_per_million_requests=0.40,
    sources=(
        (
            "AppSync",
            "https://aws.amazon.com/appsync/pricing/ (GraphQL query and data modification "
            "operations)",
        ),
        (
            "DynamoDB",
            "https://aws.amazon.com/dynamodb/pricing/on-demand/ (on-demand prices as cut on "
            "2024-11-01; the AWS News Blog post on DynamoDB on-demand, updated 2025-01-31)",
        ),
        ("Lambda", "https://aws.amazon.com/lambda/pricing/ (requests; duration, first tier)"),
        ("SQS", "https://aws.amazon.com/sqs/pricing/ (standard queue requests)"),
    ),
)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one measured run spent, in totals (all of it caused by `writes` source writes)."""

    writes: int
    invocations: int  # Lambda invocations: stream batches plus queue batches (rechecks)
    appsync_operations: int  # HTTP requests the aggregator sent to the GraphQL API
    source_rows_read: int
    source_read_units: float  # eventually consistent read request units
    metrics_rows_read: int
    metrics_read_units: float
    bucket_writes: int  # AggregatedMetrics puts, updates and deletes (incl. failed conditions)
    bucket_write_units: float  # base table write request units
    gsi_writes: int
    gsi_write_units: float
    lambda_seconds: float  # summed measured durations
    memory_mb: int
    sqs_requests: int
    fallbacks: int  # hours recounted in full because stored rows disagreed
    stream_invocations: int

    @property
    def gb_seconds(self) -> float:
        return self.lambda_seconds * self.memory_mb / 1024


@dataclass(frozen=True, slots=True)
class PerMillion:
    """`Usage` scaled to one million source writes (and fallbacks per stream invocation)."""

    invocations: float
    appsync_operations: float
    source_rows_read: float
    source_read_units: float
    metrics_rows_read: float
    metrics_read_units: float
    bucket_writes: float
    write_units: float  # base table plus global secondary indexes
    gsi_writes: float
    gb_seconds: float
    sqs_requests: float
    fallbacks_per_invocation: float


def per_million(usage: Usage) -> PerMillion:
    """Scale a run to one million source writes.

    Raises:
        ValueError: the run made no writes (nothing to divide by).
    """
    if usage.writes <= 0:
        raise ValueError("a run without source writes has no cost per write")
    k = MILLION / usage.writes
    return PerMillion(
        invocations=usage.invocations * k,
        appsync_operations=usage.appsync_operations * k,
        source_rows_read=usage.source_rows_read * k,
        source_read_units=usage.source_read_units * k,
        metrics_rows_read=usage.metrics_rows_read * k,
        metrics_read_units=usage.metrics_read_units * k,
        bucket_writes=usage.bucket_writes * k,
        write_units=(usage.bucket_write_units + usage.gsi_write_units) * k,
        gsi_writes=usage.gsi_writes * k,
        gb_seconds=usage.gb_seconds * k,
        sqs_requests=usage.sqs_requests * k,
        fallbacks_per_invocation=usage.fallbacks / max(1, usage.stream_invocations),
    )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Dollars per million source writes, by service."""

    appsync: float
    dynamodb_write: float
    dynamodb_read: float
    lambda_requests: float
    lambda_compute: float
    sqs: float

    @property
    def total(self) -> float:
        return (
            self.appsync
            + self.dynamodb_write
            + self.dynamodb_read
            + self.lambda_requests
            + self.lambda_compute
            + self.sqs
        )


def price(
    figures: PerMillion, prices: Prices = PRICES, *, arch: Architecture = "x86_64"
) -> Breakdown:
    """The dollars of `figures` (already per million writes) at `prices`."""
    return Breakdown(
        appsync=figures.appsync_operations / MILLION * prices.appsync_per_million_operations,
        dynamodb_write=figures.write_units / MILLION * prices.dynamodb_per_million_write_units,
        dynamodb_read=(figures.source_read_units + figures.metrics_read_units)
        / MILLION
        * prices.dynamodb_per_million_read_units,
        lambda_requests=figures.invocations / MILLION * prices.lambda_per_million_requests,
        lambda_compute=figures.gb_seconds * prices.lambda_per_gb_second(arch),
        sqs=figures.sqs_requests / MILLION * prices.sqs_per_million_requests,
    )


def application_cost(prices: Prices = PRICES, *, index_writes: int = 0) -> Breakdown:
    """What a million of the application's own writes cost: one AppSync mutation and one
    write unit each (an item under 1 KB), plus `index_writes` global secondary index writes
    each. The stream costs nothing more: Lambda's reads of a DynamoDB stream it is
    triggered by are not billed."""
    return Breakdown(
        appsync=prices.appsync_per_million_operations,
        dynamodb_write=(1 + index_writes) * prices.dynamodb_per_million_write_units,
        dynamodb_read=0.0,
        lambda_requests=0.0,
        lambda_compute=0.0,
        sqs=0.0,
    )
