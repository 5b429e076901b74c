"""The one s3transfer setting the S3 store sets outside boto3's TransferConfig arguments.

``mediacache.store.s3`` bounds the parts read ahead in memory per multipart upload
(``max_in_memory_upload_chunks``, an attribute of s3transfer's TransferConfig that
boto3's subclass takes no argument for). If s3transfer stopped reading it, large
uploads would quietly hold ten parts in memory again: this fails first.
"""

from __future__ import annotations

import inspect

from s3transfer.manager import TransferConfig as S3TransferConfig
from s3transfer.manager import TransferManager

from mediacache.store import s3


def test_s3transfer_still_reads_the_in_memory_upload_chunks_setting():
    assert "max_in_memory_upload_chunks" in vars(S3TransferConfig())
    assert "self._config.max_in_memory_upload_chunks" in inspect.getsource(TransferManager)


def test_the_store_sets_it():
    assert isinstance(s3._TRANSFER, S3TransferConfig)
    assert s3._TRANSFER.max_in_memory_upload_chunks == 1
    assert s3._TRANSFER.multipart_chunksize == s3.PART_BYTES
