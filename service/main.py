"""``zhasr serve``: one uvicorn process on ``serve.host:serve.port``."""

from __future__ import annotations

import logging

from zhasr.context import StageContext


def run(ctx: StageContext) -> None:
    import transformers
    import uvicorn

    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.logging.set_verbosity_error()  # its per-generate() notices would bury the service's own lines
    keys = ctx.root / ctx.params.serve.keys_file
    if not keys.is_file():
        logging.getLogger("zhasr.serve").warning("no keys file at %s: every request gets 401 until "
                                                 "`zhasr serve-keys add NAME` makes one", keys)
    uvicorn.run(create_app(ctx), host=ctx.params.serve.host, port=ctx.params.serve.port, log_level="info",
                timeout_graceful_shutdown=10)
