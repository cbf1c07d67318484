"""Published checkpoints by name: download from a local HTTP server, verify git blob ids, cache, reject bad files."""
import http.server
import threading
from pathlib import Path

import pytest

from ramit import hub
from ramit.errors import CheckpointNotFoundError
from ramit.fileio import DiskFullError, OutputError

GOOD = 'RAMiT-slimLLE_LLE'     # served as published
CORRUPT = 'RAMiT-slimSR_X2'    # served with one byte changed
TRUNCATED = 'RAMiT-slimSR_X3'  # Content-Length announces more than is sent, then the connection closes


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ../shared weights under /pretrained/<file>, with a corrupted and an interrupted one."""

    weights: Path = Path()
    requests: list = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """Serve a file of ``weights`` (a changed or cut one for CORRUPT and TRUNCATED), or 404."""
        name = self.path.rsplit('/', 1)[-1]
        Handler.requests.append(name)
        path = self.weights / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if name == f'{CORRUPT}.pth':
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if name == f'{TRUNCATED}.pth':
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        """Quiet: no request log on stderr."""


@pytest.fixture
def server(reference_dir, tmp_path, monkeypatch) -> type:
    """A 127.0.0.1 server on an ephemeral port; RAMIT_URL_BASE and RAMIT_CACHE point at it and tmp_path."""
    Handler.weights = reference_dir / 'weights'
    Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    monkeypatch.setenv('RAMIT_URL_BASE', f'http://127.0.0.1:{httpd.server_address[1]}/pretrained')
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'cache'))
    yield Handler
    httpd.shutdown()
    httpd.server_close()


def test_table_has_the_15_published_files():
    assert len(hub.PUBLISHED) == 15
    m = hub.PUBLISHED['RAMiT-1_CDN']
    assert (m.file, m.variant, m.task, m.scale) == ('RAMiT-1_CDN.pth', 'RAMiT-1', 'dn', 1)
    assert hub.PUBLISHED['RAMiT_GDN'].task == 'graydn' and hub.PUBLISHED['RAMiT-slimSR_X4'].scale == 4
    assert hub.lookup('ramit-1_x2.PTH') is hub.PUBLISHED['RAMiT-1_X2'] and hub.lookup('RAMiT-2_X2') is None


def test_blob_ids_of_shared_weights_match_the_table(reference_dir):
    for path in sorted((reference_dir / 'weights').glob('*.pth')):
        assert hub.git_blob_id(path) == hub.lookup(path.name).blob_id, path.name


def test_download_once_then_reuse(server, tmp_path, umask_022):
    model = hub.PUBLISHED[GOOD]
    assert not hub.is_cached(model)
    path = hub.download(model, progress=False)
    assert path == tmp_path / 'cache' / model.file and hub.is_cached(model)
    assert path.stat().st_mode & 0o777 == 0o644
    assert hub.resolve_weights(GOOD, progress=False) == (path, model)
    assert server.requests == [model.file]  # the second call used the cache
    assert sorted(p.name for p in path.parent.iterdir()) == [model.file]


def test_corrupted_download_is_deleted_and_reported(server, tmp_path):
    model = hub.PUBLISHED[CORRUPT]
    with pytest.raises(hub.HubError, match=rf'{model.file}: downloaded file \(\d+ bytes\) has git blob id .* '
                                           rf'expected {model.blob_id} \(interrupted or altered download\); '
                                           'deleted, not used'):
        hub.download(model, progress=False)
    assert list((tmp_path / 'cache').iterdir()) == []


def test_interrupted_download_is_deleted_and_reported(server, tmp_path):
    # The server announces the full length, sends half and closes: torch.hub ends the transfer quietly, the
    # blob id check catches it.
    with pytest.raises(hub.HubError, match=r'\(\d+ bytes\) has git blob id .* \(interrupted or altered download\)'):
        hub.download(hub.PUBLISHED[TRUNCATED], progress=False)
    assert list((tmp_path / 'cache').iterdir()) == []


def test_missing_file_on_server(server, tmp_path):
    with pytest.raises(hub.HubError, match=r'HTTP 404.*nothing was cached'):
        hub.download(hub.PUBLISHED['RAMiT_DR'], progress=False)
    assert list((tmp_path / 'cache').iterdir()) == []


def test_tampered_cache_file_is_replaced(server, tmp_path, capsys):
    model = hub.PUBLISHED[GOOD]
    path = hub.download(model, progress=False)
    path.write_bytes(path.read_bytes()[:-1] + b'x')
    assert not hub.is_cached(model)
    assert hub.download(model, progress=False) == path and hub.is_cached(model)
    assert 'wrong git blob id; deleted, downloading again' in capsys.readouterr().out
    assert server.requests == [model.file, model.file]


def test_resolve_weights_local_file_and_unknown_name(reference_dir, tmp_path):
    local = reference_dir / 'weights' / 'RAMiT-1_CDN.pth'
    assert hub.resolve_weights(local) == (local, hub.PUBLISHED['RAMiT-1_CDN'])
    other = tmp_path / 'mine.pth'
    other.write_bytes(b'')
    assert hub.resolve_weights(other) == (other, None)
    with pytest.raises(CheckpointNotFoundError, match=r'--weights RAMiT-9_X2: no such file, and not a published model'):
        hub.resolve_weights('RAMiT-9_X2')


def test_unwritable_or_full_cache_is_one_line_and_keeps_nothing(server, tmp_path, monkeypatch):
    model = hub.PUBLISHED[GOOD]
    (tmp_path / 'file').write_text('not a folder')
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'file' / 'cache'))
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'file' / 'cache'}: cannot be written \(Not a directory"):
        hub.download(model, progress=False)
    assert server.requests == []

    import errno
    import torch.hub

    def disk_full(url: str, dst: str, progress: bool = True) -> None:
        """A download that fills the disk half-way."""
        with open(dst, 'wb') as f:
            f.write(b'part of it')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', disk_full)
    with pytest.raises(DiskFullError, match=rf"^{tmp_path / 'cache' / model.file}: cannot be written \(No space left"):
        hub.download(model, progress=False)
    assert list((tmp_path / 'cache').iterdir()) == []


UNREACHABLE = 'http://127.0.0.1:9/x'  # the discard port: nothing listens there, the connection is refused at once


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """RAMIT_URL_BASE at an address that refuses connections, RAMIT_CACHE an empty tmp folder (returned)."""
    monkeypatch.setenv('RAMIT_URL_BASE', UNREACHABLE)
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def test_a_failed_download_tells_where_to_put_the_file_by_hand(offline):
    with pytest.raises(hub.HubError) as err:
        hub.resolve_weights('RAMiT-1_X2', progress=False)
    message = str(err.value)
    assert message.startswith(f'{UNREACHABLE}/RAMiT-1_X2.pth: download failed (')
    assert f'nothing was cached; fetch it elsewhere and put it into {offline} under its name' in message
    assert f'or set RAMIT_URL_BASE to a mirror of {UNREACHABLE}' in message
    assert '\n' not in message and err.value.exit_code == 1
    assert list(offline.iterdir()) == []  # no partial file


def fake_model(tmp_path: Path, content: bytes) -> hub.PublishedModel:
    """A published model whose blob id is that of ``content`` (written beside the cache, not into it)."""
    source = tmp_path / 'source.pth'
    source.write_bytes(content)
    return hub.PublishedModel('Fake_X2', hub.git_blob_id(source), 'RAMiT-1', 'sr', 2)


def test_a_file_dropped_into_the_cache_is_picked_up_and_verified(offline, tmp_path, monkeypatch):
    model = fake_model(tmp_path, b'the published bytes')
    monkeypatch.setattr(hub, 'PUBLISHED', {model.name: model})
    assert hub.lookup('fake_x2.pth') is model
    offline.mkdir()
    (offline / 'Fake_X2.pth').write_bytes(b'the published bytes')
    assert hub.resolve_weights('Fake_X2', progress=False) == (offline / 'Fake_X2.pth', model)  # no download
    # Other bytes under that name fail the check: deleted, then a download is tried (and fails here).
    (offline / 'Fake_X2.pth').write_bytes(b'something else')
    with pytest.raises(hub.HubError, match=f'^{UNREACHABLE}/Fake_X2.pth: download failed'):
        hub.resolve_weights('Fake_X2', progress=False)
    assert list(offline.iterdir()) == []


@pytest.mark.parametrize('spec, message', [
    ('RAMiT-1_X2.pth', '--weights RAMiT-1_X2.pth: no such file (to download the published model, give its name: '
                       'RAMiT-1_X2)'),
    ('./x', '--weights ./x: no such file'),
    ('a/b.pth', '--weights a/b.pth: no such file'),
    ('~/no/such/RAMiT-1_CDN.pt', '--weights ~/no/such/RAMiT-1_CDN.pt: no such file'),
    ('folder', '--weights folder: is a folder; give a checkpoint file or a published model name'),
])
def test_a_path_that_does_not_exist_is_never_a_download(spec, message, offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'folder').mkdir()

    def no_download(*args, **kwargs) -> None:
        """Fail the test if a download starts."""
        raise AssertionError('a download was started')

    monkeypatch.setattr(hub, '_fetch', no_download)
    with pytest.raises(CheckpointNotFoundError) as err:
        hub.check_weights_name(spec)
    assert str(err.value) == message
    with pytest.raises(CheckpointNotFoundError) as err:
        hub.resolve_weights(spec, progress=False)
    assert str(err.value) == message
    assert not offline.exists()  # not even the cache folder was made
    with pytest.raises(CheckpointNotFoundError, match=f'^{spec}: '):
        hub.check_weights_name(spec, option='')  # a positional argument: named by its value alone


def test_a_cache_that_is_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch, capsys):
    from ramit_cli.main import main

    (tmp_path / 'afile').write_text('mine')
    monkeypatch.setenv('RAMIT_CACHE', str(tmp_path / 'afile'))
    assert main(['models'], prog='ramit') == 2
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err == (f"ramit models: error: RAMIT_CACHE={tmp_path / 'afile'}: is a file; the cache must be a "
                            'folder (set RAMIT_CACHE to one; it is created when first needed)\n')
    assert (tmp_path / 'afile').read_text() == 'mine'
