"""Configuration: defaults, the TOML file, VFD_* overrides and errors naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vfd.config import load_config
from vfd.errors import ErrorCode, VfdError

EXAMPLE = Path(__file__).parents[1] / "systemd" / "vfd.toml.example"


def test_config_state_dir_puts_everything_under_it(tmp_path: Path) -> None:
    cfg = load_config(state_dir=tmp_path, env={})
    assert cfg.database_url == f"sqlite:///{tmp_path}/vfd.db"
    assert cfg.mount_point == tmp_path / "mnt"
    assert cfg.api_socket == tmp_path / "run" / "vfd.sock"
    assert cfg.mountd_socket == tmp_path / "run" / "mountd.sock"
    assert cfg.hosts == {"local": tmp_path / "hosts" / "local"}
    assert cfg.config_file is None


def test_config_state_dir_from_environment(tmp_path: Path) -> None:
    cfg = load_config(env={"VFD_STATE_DIR": str(tmp_path)})
    assert cfg.state_dir == tmp_path


def test_config_example_file_parses_to_system_defaults() -> None:
    cfg = load_config(config_file=EXAMPLE, env={})
    assert cfg.api_socket == Path("/run/vfd/vfd.sock")
    assert cfg.hosts == {"local": Path("/var/lib/vfd/hosts/local")}
    assert cfg.fuse.entry_timeout == 1.0
    assert cfg.fuse.poll == 0.00005
    assert cfg.fuse.fast_path == "auto"


def test_config_fuse_fast_path_from_file_and_environment(tmp_path: Path) -> None:
    """``fuse.fast_path`` is "auto" unless the file or ``VFD_FUSE_FAST_PATH`` says "off";
    the environment wins, and keeps the file's other [fuse] keys."""
    assert load_config(state_dir=tmp_path, env={}).fuse.fast_path == "auto"
    (tmp_path / "vfd.toml").write_text('[fuse]\nfast_path = "off"\npoll = 0\n')
    assert load_config(state_dir=tmp_path, env={}).fuse.fast_path == "off"
    cfg = load_config(state_dir=tmp_path, env={"VFD_FUSE_FAST_PATH": "auto"})
    assert (cfg.fuse.fast_path, cfg.fuse.poll) == ("auto", 0.0)
    with pytest.raises(VfdError) as info:
        load_config(state_dir=tmp_path, env={"VFD_FUSE_FAST_PATH": "yes"})
    assert "VFD_FUSE_FAST_PATH" in info.value.message and "fuse.fast_path" in info.value.message


def test_config_fuse_poll_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text("[fuse]\npoll = 0\n")
    assert load_config(state_dir=tmp_path, env={}).fuse.poll == 0.0


def test_config_state_dir_reads_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text(
        'default_host = "nfs"\n[hosts]\nnfs = "/srv/nfs"\n[default_policy]\nmax_vfolder_count = 3\n'
    )
    cfg = load_config(state_dir=tmp_path, env={})
    assert cfg.default_host == "nfs"
    assert cfg.host_path("nfs") == Path("/srv/nfs")
    assert cfg.default_policy.max_vfolder_count == 3


def test_config_environment_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text('database_url = "sqlite:////a.db"\n')
    cfg = load_config(
        state_dir=tmp_path,
        env={"VFD_DATABASE_URL": "postgresql://x@h/db", "VFD_HOSTS": "local=/a,b=/b"},
    )
    assert cfg.database_url == "postgresql://x@h/db"
    assert cfg.hosts == {"local": Path("/a"), "b": Path("/b")}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus = 1\n", "bogus"),
        ("mount_point = 'relative/path'\n", "mount_point"),
        ("default_uid = -1\n", "default_uid"),
        ("default_uid = 'x'\n", "default_uid"),
        ("log_level = 'loud'\n", "log_level"),
        ("[hosts]\nlocal = 3\n", "hosts.local"),
        ("[hosts]\n'a b' = '/x'\n", "hosts.a b"),
        ("hosts = {}\n", "hosts"),
        ("[hosts]\nnfs = { path = '/n', shared = 'yes' }\n", "hosts.nfs.shared"),
        ("[hosts]\nnfs = { path = '/n', size = 3 }\n", "hosts.nfs.size"),
        ("[hosts]\nnfs = { shared = true }\n", "hosts.nfs"),
        ("default_host = 'nowhere'\n", "default_host"),
        ("[default_policy]\nmax_vfolder_count = -2\n", "default_policy.max_vfolder_count"),
        ("[default_policy]\nallowed_hosts = ['mars']\n", "default_policy.allowed_hosts"),
        ("[default_policy]\nwhat = 1\n", "default_policy.what"),
        ("[fuse]\nentry_timeout = 'soon'\n", "fuse.entry_timeout"),
        ("[fuse]\npoll = -1\n", "fuse.poll"),
        ("[fuse]\nfast_path = 'on'\n", "fuse.fast_path"),
        ("[fuse]\nfast_path = 1\n", "fuse.fast_path"),
    ],
)
def test_config_bad_file_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VfdError) as info:
        load_config(config_file=path, env={})
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert key in info.value.message
    assert str(path) in info.value.message


def test_config_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("this is = = not toml")
    with pytest.raises(VfdError) as info:
        load_config(config_file=path, env={})
    assert str(path) in info.value.message and "TOML" in info.value.message


def test_config_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VfdError, match="does not exist"):
        load_config(config_file=tmp_path / "nope.toml", env={})


def test_config_bad_environment_value_names_variable(tmp_path: Path) -> None:
    with pytest.raises(VfdError, match="VFD_DEFAULT_UID"):
        load_config(state_dir=tmp_path, env={"VFD_DEFAULT_UID": "-5"})
    with pytest.raises(VfdError, match="VFD_HOSTS"):
        load_config(state_dir=tmp_path, env={"VFD_HOSTS": "noequals"})


def test_config_unknown_host_lookup_lists_known(tmp_path: Path) -> None:
    cfg = load_config(state_dir=tmp_path, env={})
    with pytest.raises(VfdError) as info:
        cfg.host_path("mars")
    assert info.value.code is ErrorCode.HOST_NOT_FOUND
    assert "local" in info.value.message


def test_config_plugin_sections_are_kept_for_their_plugins(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text(
        '[plugins.my_scheduler]\nweight = 2\nmode = "fair"\n[plugins.other]\n'
    )
    cfg = load_config(state_dir=tmp_path, env={})
    assert cfg.plugins == {"my_scheduler": {"weight": 2, "mode": "fair"}, "other": {}}


def test_config_workers_default_and_from_file(tmp_path: Path) -> None:
    assert load_config(state_dir=tmp_path, env={}).workers.files == 16
    (tmp_path / "vfd.toml").write_text("[workers]\nfiles = 2\ndocker = 1\n")
    workers = load_config(state_dir=tmp_path, env={}).workers
    assert (workers.files, workers.docker, workers.store) == (2, 1, 8)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("plugins = 3\n", "plugins"),
        ("[plugins]\nname = 1\n", "plugins.name"),
        ("[workers]\nfile = 2\n", "workers.file"),
        ("[workers]\nfiles = 0\n", "workers.files"),
        ("[workers]\nstore = true\n", "workers.store"),
        ("[plugin.x]\na = 1\n", "plugin"),  # a typo in vfd's own keys is still an error
    ],
)
def test_config_bad_plugins_and_workers_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VfdError) as info:
        load_config(config_file=path, env={})
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert key in info.value.message and str(path) in info.value.message


def test_config_limits_default_and_from_file(tmp_path: Path) -> None:
    limits = load_config(state_dir=tmp_path, env={}).limits
    assert (limits.peer_connections, limits.backlog, limits.user_files) == (256, 4096, None)
    assert load_config(config_file=EXAMPLE, env={}).limits == limits  # the example shows them
    (tmp_path / "vfd.toml").write_text(
        "[limits]\nuser_files = 3\nheader_timeout = 2\nbody_timeout = 0.5\nbacklog = 128\n"
    )
    limits = load_config(state_dir=tmp_path, env={}).limits
    assert (limits.user_files, limits.header_timeout, limits.body_timeout) == (3, 2.0, 0.5)
    assert limits.backlog == 128


@pytest.mark.parametrize(
    "text",
    [
        "limits = 1\n",
        "[limits]\nuser_file = 2\n",
        "[limits]\nuser_files = 0\n",
        "[limits]\nheader_timeout = 0\n",
        "[limits]\nbody_timeout = true\n",
        "[limits]\nkeepalive_timeout = 1.5\n",
        "[limits]\nbacklog = 70000\n",
    ],
)
def test_config_bad_limits_name_the_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VfdError) as info:
        load_config(config_file=path, env={})
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "limits" in info.value.message and str(path) in info.value.message


def test_config_shared_hosts_from_the_table_form(tmp_path: Path) -> None:
    """``name = "/path"`` is the node's own storage; ``{ path, shared = true }`` is shared;
    hosts from ``VFD_HOSTS`` are the node's own."""
    path = tmp_path / "vfd.toml"
    path.write_text(
        "[hosts]\nlocal = '/srv/local'\nnfs = { path = '/mnt/nfs', shared = true }\n"
        "scratch = { path = '/srv/scratch' }\n"
    )
    cfg = load_config(config_file=path, env={})
    assert cfg.hosts == {
        "local": Path("/srv/local"),
        "nfs": Path("/mnt/nfs"),
        "scratch": Path("/srv/scratch"),
    }
    assert cfg.shared_hosts == frozenset({"nfs"})
    from_env = load_config(config_file=path, env={"VFD_HOSTS": "local=/a,nfs=/b"})
    assert from_env.shared_hosts == frozenset()
