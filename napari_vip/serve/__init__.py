"""The Engine behind an authenticated network server, and the client that reaches it.

``wire`` encodes the worker's typed requests and results (msgpack + raw array bytes, an explicit registry of
types); ``scheduler`` shares one Engine fairly between clients; ``app`` is the ASGI application; ``remote_client``
has the public API of :class:`~napari_vip.worker.client.WorkerClient`.  Depends on worker, models and core.
"""
