"""``customerio.analytics.client.Client``: analytics_cio's Client in customerio-cdp-analytics's positional order
(``Client(write_key, host, debug, max_queue_size, send, on_error, gzip, max_retries, sync_mode, timeout,
proxies, thread, upload_size, upload_interval)``) and with its defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import analytics_cio


class Client(analytics_cio.Client):
    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        debug: bool = False,
        max_queue_size: int = 10000,
        send: bool = True,
        on_error: Any = None,
        gzip: bool = False,
        max_retries: int = 10,
        sync_mode: bool = False,
        timeout: float = 15,
        proxies: Mapping[str, str] | None = None,
        thread: int = 1,
        upload_size: int = 100,
        upload_interval: float = 0.5,
    ) -> None:
        super().__init__(
            write_key=write_key, host=host or os.environ.get("ANALYTICS_CIO_CDP_HOST"), debug=debug,
            max_queue_size=max_queue_size, send=send, on_error=on_error, gzip=gzip, max_retries=max_retries,
            sync_mode=sync_mode, timeout=timeout, proxies=proxies, thread=thread, upload_size=upload_size,
            upload_interval=upload_interval,
        )
