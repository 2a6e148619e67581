"""What a worker needs from its host: settings, the store and the file storage. The CLI hands it
the API's service object, which has all of these; the worker names only this protocol, so it
never imports the API."""

from __future__ import annotations

from typing import Protocol

from tunegate.domain.files import FileStorage
from tunegate.domain.uploads import UploadStorage
from tunegate.settings import Settings
from tunegate.store.base import Store


class Services(Protocol):
    settings: Settings
    store: Store
    storage: FileStorage
    upload_storage: UploadStorage
