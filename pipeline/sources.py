"""Data sources that live behind another service (e.g. a file uploaded to Slack).

The pipeline does not know how to reach them; the surface that accepted the upload
registers a source under a prefix, and a job's dataset reads "<prefix>:<reference>".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ExternalData:
    content: bytes
    name: str  # a file name for messages, e.g. "customers.csv"


class ExternalSource(Protocol):
    prefix: str

    def fetch(
        self,
        reference: str,
        *,
        max_bytes: int,
        team_id: str | None = None,
        enterprise_id: str | None = None,
    ) -> ExternalData:
        """Download the data, as the workspace the job belongs to (a Slack upload is read
        with that workspace's token); raise pipeline.errors.DatasetError with a reason."""
        ...
