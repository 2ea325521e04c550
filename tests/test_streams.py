"""Stream records of the local server: Lambda's DynamoDB record shape, images, order."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from metrics_agg.local.server import LocalClient, LocalStack

ARN = re.compile(
    r"arn:aws:dynamodb:local:000000000000:table/(?P<table>[A-Za-z]+-local-NONE)/stream/\S+"
)


def test_create_update_delete_records_carry_the_right_images(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    item = local_client.create(
        "FeedbackItem",
        id="f1",
        accountId="a",
        isInvalid=False,
        scorecardId=None,
        initialAnswerValue="Yes",
        editedAt="2024-05-01T10:00:00.000Z",
    )
    local_client.update("FeedbackItem", "f1", finalAnswerValue="No", editedAt=None)
    local_client.delete("FeedbackItem", "f1")
    local_client.create("Item", id="other-table", accountId="a")
    ins, mod, rem = local_stack.store.read_stream("FeedbackItem", None, 10)
    assert [r["eventName"] for r in (ins, mod, rem)] == ["INSERT", "MODIFY", "REMOVE"]
    for r in (ins, mod, rem):
        assert r["eventVersion"] == "1.1" and r["eventSource"] == "aws:dynamodb"
        assert r["awsRegion"] == "local" and len(r["eventID"]) == 32
        m = ARN.fullmatch(r["eventSourceARN"])
        assert m and m["table"] == "FeedbackItem-local-NONE"
        ddb = r["dynamodb"]
        assert ddb["Keys"] == {"id": {"S": "f1"}}
        assert ddb["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(ddb["ApproximateCreationDateTime"], int) and ddb["SizeBytes"] > 0
        assert re.fullmatch(r"\d{21}", ddb["SequenceNumber"])
    new = ins["dynamodb"]["NewImage"]
    assert "OldImage" not in ins["dynamodb"]
    assert new["isInvalid"] == {"BOOL": False} and "scoreId" not in new
    assert new["scorecardId"] == {"NULL": True}  # explicit null on create: a NULL attribute
    assert new["editedAt"] == {"S": "2024-05-01T10:00:00.000Z"}
    assert new["createdAt"] == {"S": item["createdAt"]}
    assert mod["dynamodb"]["OldImage"] == new
    assert mod["dynamodb"]["NewImage"]["finalAnswerValue"] == {"S": "No"}
    assert "editedAt" not in mod["dynamodb"]["NewImage"]  # update with null removes it
    assert rem["dynamodb"]["OldImage"] == mod["dynamodb"]["NewImage"]
    assert "NewImage" not in rem["dynamodb"]
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in (ins, mod, rem)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_read_stream_resumes_after_a_position_per_table(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    for n in range(5):
        local_client.create("Task", id=f"t{n}", accountId="a")
        local_client.create("Item", id=f"i{n}", accountId="a")
    store = local_stack.store
    first = store.read_stream("Task-local-NONE", None, 2)
    rest = store.read_stream("Task", first[-1]["dynamodb"]["SequenceNumber"], 100)
    ids = [r["dynamodb"]["Keys"]["id"]["S"] for r in first + rest]
    assert ids == [f"t{n}" for n in range(5)]
    assert store.stream_end("Task") == int(rest[-1]["dynamodb"]["SequenceNumber"])
    assert store.read_stream("Task", rest[-1]["dynamodb"]["SequenceNumber"], 10) == []


def test_failed_conditional_write_appends_no_stream_record(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    local_client.create("Task", id="t", accountId="a")
    _, body = local_client.post('mutation { createTask(input: {id: "t", accountId: "a"}) { id } }')
    assert body["errors"][0]["errorType"] == "DynamoDB:ConditionalCheckFailedException"
    assert len(local_stack.store.read_stream("Task", None, 10)) == 1


def test_stream_records_survive_a_restart(
    make_local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    db = tmp_path / "durable.sqlite3"
    first = make_local_stack(db)
    with LocalClient(first.endpoint, first.api_key) as api:
        api.create("Procedure", id="p", accountId="a")
    before = first.store.read_stream("Procedure", None, 10)
    first.stop()
    second = make_local_stack(db)
    assert second.store.read_stream("Procedure", None, 10) == before
