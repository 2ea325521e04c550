"""The Plexus Python client's AggregatedMetrics documents, copied unchanged.

Source: AnthusAI/Plexus (MIT License, Copyright (c) 2024 Anthus AI Solutions),
plexus/dashboard/api/models/aggregated_metrics.py at commit
14a7611dbfb8c8c60856706d18c673cc6384eaed: the selection of `AggregatedMetrics.fields()`,
the two queries of `list_by_time_range` and the two mutations of `create_or_update`, with
the same `%` substitution of the field list the client applies. Used by
tests/test_plexus_compat.py to run them, as the client sends them, against the local
server.
"""

# ruff: noqa: UP031  (the client's own %-formatting, kept as upstream writes it)
# fmt: off

FIELDS = """
            accountId
            compositeKey
            scorecardId
            scoreId
            recordType
            timeRangeStart
            timeRangeEnd
            numberOfMinutes
            count
            cost
            decisionCount
            externalAiApiCount
            cachedAiApiCount
            errorCount
            metadata
            complete
            createdAt
            updatedAt
        """

# list_by_time_range, with record_type: the byAccountRecordType index
LIST_BY_RECORD_TYPE = """
            query ListAggregatedMetricsByAccountRecordType(
                $accountId: String!,
                $recordType: String!,
                $startTime: String!,
                $endTime: String!,
                $nextToken: String
            ) {
                listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart(
                    accountId: $accountId,
                    recordTypeTimeRangeStart: {
                        between: [
                            { recordType: $recordType, timeRangeStart: $startTime }
                            { recordType: $recordType, timeRangeStart: $endTime }
                        ]
                    },
                    limit: 1000,
                    nextToken: $nextToken
                ) {
                    items {
                        %s
                    }
                    nextToken
                }
            }
            """ % FIELDS

# list_by_time_range, without record_type: the byAccountTimeRangeRecord index
LIST_BY_TIME_RANGE = """
            query ListAggregatedMetricsByTimeRange(
                $accountId: String!,
                $startTime: AWSDateTime!,
                $nextToken: String
            ) {
                listAggregatedMetricsByAccountIdAndTimeRangeStartAndRecordType(
                    accountId: $accountId,
                    timeRangeStartRecordType: { ge: { timeRangeStart: $startTime } },
                    limit: 1000,
                    nextToken: $nextToken
                ) {
                    items {
                        %s
                    }
                    nextToken
                }
            }
            """ % FIELDS

# create_or_update: the update it tries first, then the create
UPDATE_MUTATION = """
        mutation UpdateAggregatedMetrics($input: UpdateAggregatedMetricsInput!) {
            updateAggregatedMetrics(input: $input) {
                %s
            }
        }
        """ % FIELDS

CREATE_MUTATION = """
                mutation CreateAggregatedMetrics($input: CreateAggregatedMetricsInput!) {
                    createAggregatedMetrics(input: $input) {
                        %s
                    }
                }
                """ % FIELDS
