"""What a worker needs from the process it runs in: settings, the store, and the data folder's
file and upload-part storage. ``tunegate worker`` (and the worker ``serve`` embeds) opens a
``DataFolderHost`` of its own: a worker builds none of the API's objects (the model pool, the
event feed). Tests may hand it the API's service, which has the same four attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tunegate.domain import data_folder
from tunegate.domain.files import FileStorage
from tunegate.domain.uploads import UploadStorage
from tunegate.settings import Settings
from tunegate.store import open_store
from tunegate.store.base import Store


class Host(Protocol):
    settings: Settings
    store: Store
    storage: FileStorage
    upload_storage: UploadStorage


@dataclass
class DataFolderHost:
    settings: Settings
    store: Store
    storage: FileStorage
    upload_storage: UploadStorage

    @classmethod
    def open(cls, settings: Settings) -> DataFolderHost:
        """The store the settings name, with the data folder claimed for it (a folder holds
        one store's files: ``data_folder.claim`` refuses another's)."""
        store = open_store(settings.sqlalchemy_url)
        data_folder.claim(settings.data_dir, store.identity())
        return cls(settings, store, FileStorage(settings.files_dir),
                   UploadStorage(settings.uploads_dir))
