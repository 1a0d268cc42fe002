"""Ray Data's Parquet footer-reader pool is a small one for a run's question files, unless the user sized it."""
from __future__ import annotations

import os

from ray.data._internal.datasource_v2.formats.parquet.footer_file_indexer import FooterFileIndexer

from pipeline.run import FOOTER_ENV, FOOTER_READERS, limit_footer_readers


def readers() -> int:
    """The pool size Ray Data's Parquet reader reads when a dataset is created."""
    return FooterFileIndexer(ignore_missing_paths=False)._num_actors


def test_a_run_reads_footers_on_a_small_pool(monkeypatch):
    monkeypatch.delenv(FOOTER_ENV, raising=False)
    assert readers() == 32  # Ray Data's own default
    limit_footer_readers()
    assert os.environ[FOOTER_ENV] == str(FOOTER_READERS) and readers() == FOOTER_READERS == 2


def test_a_users_setting_is_kept(monkeypatch):
    monkeypatch.setenv(FOOTER_ENV, "5")
    limit_footer_readers()
    assert readers() == 5
