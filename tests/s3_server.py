"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1 at a free port (HTTP, not a mock)."""
import contextlib
import hashlib
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str = "shardsift-test"):
    """Yield (storage_options, s3fs filesystem) for a fresh server holding an empty bucket."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        opts = {"key": "testing", "secret": "testing",
                "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-west-2"}}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **opts)
        fs.mkdir(bucket)
        yield opts, fs
    finally:
        server.stop()


def upload_dir(fs, local: str, dest: str) -> None:
    import os

    for name in sorted(os.listdir(local)):
        fs.put_file(os.path.join(local, name), f"{dest}/{name}")


def s3_digests(fs, prefix: str) -> dict:
    """{relative key: sha256} of every object under prefix (like conftest.file_digests)."""
    prefix = prefix.rstrip("/")
    return {k[len(prefix) + 1:]: hashlib.sha256(fs.cat_file(k)).hexdigest() for k in sorted(fs.find(prefix))}
