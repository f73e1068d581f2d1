"""Loading a CSV data set over HTTP from a loopback server, through the URL guard."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import DatasetError
from pipeline.netguard import UrlGuard
from pipeline.stages.dataset import LoadedDataset, load_dataset
from tests.support.http_server import LoopbackServer, Reply, loopback_server, redirect

CSV = "tenure,plan,Churned\n" + "".join(
    f"{i},{['basic', 'pro'][i % 2]},{'Yes' if i % 3 == 0 else 'No'}\n" for i in range(40)
)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server(
        {
            "/data/churn.csv": Reply(body=CSV, content_type="text/csv"),
            "/moved": redirect("/data/churn.csv"),
            "/blob/churn.csv": Reply(
                body="<!DOCTYPE html><html><body>GitHub page</body></html>",
                content_type="text/html",
            ),
            "/to-private": redirect("http://10.0.0.1/data.csv"),
        }
    ) as srv:
        yield srv


GUARD = UrlGuard(extra_allowed_networks=[ipaddress.ip_network("127.0.0.1/32")])


def load(
    url: str, tmp_path: Path, max_bytes: int = 1_000_000, guard: UrlGuard = GUARD
) -> LoadedDataset:
    return load_dataset(url, target="churned", guard=guard, max_bytes=max_bytes, workdir=tmp_path)


def test_csv_from_a_link(server: LoopbackServer, tmp_path: Path) -> None:
    loaded = load(server.url("/moved"), tmp_path)
    assert loaded.spec.target == "Churned"
    assert loaded.spec.name == "churn"
    assert loaded.source_description == f"{server.url('/moved')} (40 rows)"
    assert len(pd.read_csv(tmp_path / "data.csv")) == 37


def test_link_larger_than_the_limit(server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="larger than the 100 bytes limit"):
        load(server.url("/data/churn.csv"), tmp_path, max_bytes=100)


def test_web_page_instead_of_csv(server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"web page \(HTML\).*Raw button"):
        load(server.url("/blob/churn.csv"), tmp_path)


def test_missing_file(server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="answered HTTP 404"):
        load(server.url("/nope.csv"), tmp_path)


def test_private_links_are_refused_as_dataset_errors(
    server: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="TRAINBOT_ALLOW_PRIVATE_URLS") as caught:
        load(server.url("/data/churn.csv"), tmp_path, guard=UrlGuard())
    assert caught.value.stage == "dataset"
    assert server.requests == []
    with pytest.raises(DatasetError, match=r"redirected.*10\.0\.0\.1"):
        load(server.url("/to-private"), tmp_path)
