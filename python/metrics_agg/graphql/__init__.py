"""The GraphQL data plane, client side (docs/design.md §2, §8).

schema.graphql   the API subset (Amplify names); also served by the local server
documents/       operation documents; codegen.py turns both into the generated
schema.py        sgqlc types        (GENERATED, do not edit)
operations.py    sgqlc operations   (GENERATED, do not edit)
auth.py          API key / SigV4 (botocore, imported lazily)
transport.py     GraphQLClient: pooled HTTP, retries, error mapping
api.py           list_source_reads, list_stored_buckets, write_buckets (reads.py,
                 stored.py, writes.py; _slices.py builds and pages aliased lists)
"""

from __future__ import annotations

__all__ = ["SCHEMA_PATH"]

from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.graphql"
