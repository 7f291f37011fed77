"""``napari-vip serve --host 127.0.0.1 --port 8765 [--device cuda] [--token-file F]``: the model server."""

from __future__ import annotations

import ipaddress
import sys

from ..core.errors import VipInputError
from ..models.device import DEVICES
from ..models.precision import PRECISIONS
from ..serve.token import TOKEN_ENV, check_server_token, read_token


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the models to remote viewers (HTTP + WebSocket, token, optional TLS)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default loopback); any other address needs a token")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--device", default="auto", choices=DEVICES, help="where every request runs")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="dtype every request's models run in (replaces the request's own): auto, fp32, bf16, fp16")
    p.add_argument("--token-file", default=None, metavar="F",
                   help=f"file whose first line is the token clients must send (or set {TOKEN_ENV})")
    p.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                   help="folder of model files (checkpoints, configs, learned prompts) requests may name; repeat "
                        "for several; without it requests may name no files")
    p.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM): serve https:// and wss://")
    p.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM)")
    p.add_argument("--max-array-mb", type=float, default=512, help="largest uploaded array")
    p.add_argument("--store-mb", type=float, default=2048, help="memory for uploaded images (LRU)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to bind a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise VipInputError(f"Refusing to serve on {host} without a token: anyone on the network could use the GPU. "
                            f"Give --token-file F or set {TOKEN_ENV}, or bind 127.0.0.1.")


def run(args) -> int:
    import uvicorn

    from ..serve.app import ServerConfig, create_app
    from ..serve.policy import ServerPolicy

    token = check_server_token(read_token(args.token_file))
    check_bind(args.host, token)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise VipInputError("TLS needs both --ssl-certfile and --ssl-keyfile.")
    mb = 2 ** 20
    config = ServerConfig(token=token, policy=ServerPolicy(args.device, list(args.models_dir),
                                                                 precision=args.precision),
                          max_array_bytes=int(args.max_array_mb * mb), store_bytes=int(args.store_mb * mb))
    app = create_app(config)
    scheme = "https" if args.ssl_certfile else "http"
    sys.stderr.write(f"napari-vip serving on {scheme}://{args.host}:{args.port} (device {app.state.device}, "
                     f"{'token required' if token else 'no token: loopback only'})\n")
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                ws_max_size=config.max_message_bytes, log_level=args.log_level)
    return 0
