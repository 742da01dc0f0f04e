"""Fixtures for the curation tests: the sample pairs and a real MiniLM encoder with its own cache."""

from __future__ import annotations

import pytest

from retrieval.encoder import Encoder
from training.data.importers import import_file
from training.data.pairs import Pair

from .sample_data import SAMPLE


@pytest.fixture(scope="module")
def sample() -> list[Pair]:
    return import_file(SAMPLE).pairs


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    return Encoder(tmp_path_factory.mktemp("emb"))
