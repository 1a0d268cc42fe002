"""Ray Data's Parquet footer-reader pool is sized to the question files of a chain, unless the user sized it."""
from __future__ import annotations

import os

import pytest
from ray.data._internal.datasource_v2.formats.parquet.footer_file_indexer import FooterFileIndexer

from pipeline.run import FOOTER_ENV, footer_readers


@pytest.mark.parametrize(("n_files", "actors"), [(1, 1), (64, 1), (65, 2), (640, 10), (100_000, 32)])
def test_one_reader_per_64_files_at_most_32(monkeypatch, n_files, actors):
    monkeypatch.delenv(FOOTER_ENV, raising=False)
    with footer_readers(n_files):
        # what Ray Data's reader reads when the dataset is created
        assert FooterFileIndexer(ignore_missing_paths=False)._num_actors == actors
    assert FOOTER_ENV not in os.environ


def test_a_users_setting_is_kept(monkeypatch):
    monkeypatch.setenv(FOOTER_ENV, "5")
    with footer_readers(1):
        assert FooterFileIndexer(ignore_missing_paths=False)._num_actors == 5
    assert os.environ[FOOTER_ENV] == "5"
