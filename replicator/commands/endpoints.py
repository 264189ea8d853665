"""Which endpoint, region and profile each side of the replication uses."""

from __future__ import annotations

from replicator.aws.clients import Endpoint
from replicator.config import Settings


def endpoint_for(settings: Settings, side: str) -> Endpoint:
    """The endpoint of one side of the replication: source, streams, destination,
    checkpoint or cloudwatch."""
    source = ("REPLICATOR_SOURCE_PROFILE", settings.source_profile)
    checkpoint = ("REPLICATOR_CHECKPOINT_PROFILE", settings.checkpoint_profile)
    if checkpoint[1] == source[1]:
        checkpoint = source  # derived from it, or set to the same
    service, region, url, (setting, profile) = {
        "source": ("dynamodb", settings.source_region, settings.source_endpoint, source),
        "streams": ("dynamodbstreams", settings.source_region,
                    settings.source_streams_endpoint, source),
        "destination": ("dynamodb", settings.destination_region,
                        settings.destination_endpoint,
                        ("REPLICATOR_DESTINATION_PROFILE", settings.destination_profile)),
        "checkpoint": ("dynamodb", settings.checkpoint_region, settings.checkpoint_endpoint,
                       checkpoint),
        "cloudwatch": ("cloudwatch", settings.cloudwatch_region, settings.cloudwatch_endpoint,
                       checkpoint),
    }[side]
    return Endpoint(service, str(region), url, profile, setting)
