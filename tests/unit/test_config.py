"""The settings table and what is generated from it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from corral.config import SETTINGS, Config, ConfigError, build_config, settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_settings_page_is_generated_from_the_table() -> None:
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown(), (
        "regenerate with: python -m corral.config > docs/settings.md"
    )


def test_precedence_defaults_environment_overrides() -> None:
    assert build_config().threads == 1
    assert build_config({"CORRAL_THREADS": "3"}).threads == 3
    assert build_config({"CORRAL_THREADS": "3"}, {"threads": "5"}).threads == 5


def test_config_file_values_rank_below_the_environment() -> None:
    assert build_config(None, None, {"threads": 2}).threads == 2
    assert build_config({"CORRAL_THREADS": "3"}, None, {"threads": 2}).threads == 3
    assert build_config(None, {"threads": 4}, {"threads": 2}).threads == 4
    # Hooks are skipped for the environment, not for a file.
    assert build_config({"CORRAL_POST_FORK": "x"}, None, {"post_fork": print}).post_fork is print
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        build_config(None, None, {"nope": 1})
    with pytest.raises(ConfigError, match="cannot name another config file"):
        build_config(None, None, {"config": "other.py"})


def test_threads_imply_the_thread_worker_and_gunicorn_names_are_understood() -> None:
    assert build_config(None, {"threads": 4}).worker_class == "thread"
    assert build_config(None, {"worker_class": "gthread"}).worker_class == "thread"
    assert build_config(None, {"worker_class": "sync"}).worker_class == "sync"
    assert build_config(None, {"umask": "022"}).umask == 0o22
    assert build_config(None, {"umask": "0o117"}).umask == 0o117
    assert build_config(None, {"user": 1000, "group": "www-data"}).user == "1000"


def test_every_setting_has_a_flag_and_help() -> None:
    for setting in SETTINGS:
        # Hooks are functions: only a config file can give them; so is the app's name
        # (wsgi_app), which the command line gives as its argument, and a dict that
        # gunicorn gives no flag either (secure_scheme_headers).
        assert (
            setting.is_hook
            or setting.name in ("wsgi_app", "secure_scheme_headers")
            or (setting.flags and setting.flags[-1].startswith("--"))
        )
        assert setting.help.endswith(".")
        # The default itself passes the setting's own validation.
        assert setting.type(setting.default) == setting.default


def test_forwarded_allow_ips_variable_replaces_the_default_as_in_gunicorn() -> None:
    assert build_config().forwarded_allow_ips == ["127.0.0.1", "::1"]
    variable = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1"}
    assert build_config(variable).forwarded_allow_ips == ["10.0.0.0/8", "192.0.2.1"]
    # Below a config file, corral's own variable and the command line.
    from_file = {"forwarded_allow_ips": "*"}
    assert build_config(variable, None, from_file).forwarded_allow_ips == ["*"]
    both = {**variable, "CORRAL_FORWARDED_ALLOW_IPS": "::1"}
    assert build_config(both).forwarded_allow_ips == ["::1"]
    assert build_config(variable, {"forwarded_allow_ips": ""}).forwarded_allow_ips == []
    with pytest.raises(ConfigError, match=r"^FORWARDED_ALLOW_IPS: 'x' is not an IP address"):
        build_config({"FORWARDED_ALLOW_IPS": "x"})


def test_secure_scheme_headers_from_the_environment() -> None:
    variable = {"CORRAL_SECURE_SCHEME_HEADERS": "X-Scheme=https, X-Forwarded-Ssl=on"}
    assert build_config(variable).secure_scheme_headers == {
        "X-SCHEME": "https",
        "X-FORWARDED-SSL": "on",
    }
    assert build_config({"CORRAL_SECURE_SCHEME_HEADERS": ""}).secure_scheme_headers == {}
    with pytest.raises(ConfigError, match="'X-Scheme' is not NAME=value"):
        build_config({"CORRAL_SECURE_SCHEME_HEADERS": "X-Scheme"})
    with pytest.raises(ConfigError, match="'X Scheme' is not a header name"):
        build_config({"CORRAL_SECURE_SCHEME_HEADERS": "X Scheme=https"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threads": 0}, "--threads: must be at least 1"),
        ({"no_such_setting": 1}, "unknown setting 'no_such_setting'"),
        ({"threads": 2, "process_per_request": 2}, "choose one concurrency model"),
        ({"worker_class": "gevent", "threads": 4}, "gevent runs coroutines; drop --threads"),
        ({"workers": 2, "process_per_request": 2}, "cannot run inside --workers"),
        ({"worker_class": "tornado"}, "--worker-class: 'tornado': must be sync"),
        ({"umask": "0o1000"}, "--umask: must be between"),
        ({"log_level": "loud"}, "--log-level: must be one of"),
        ({"proxy_allow_ips": "10.0.0.0/33"}, "--proxy-allow-from: '10.0.0.0/33' is not an IP"),
        ({"forwarded_allow_ips": "a.example"}, "--forwarded-allow-ips: 'a.example' is not"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(None, overrides)


def test_config_is_read_only() -> None:
    config = build_config()
    with pytest.raises(AttributeError):
        config.threads = 4


def test_a_commands_own_defaults_rank_below_everything_else() -> None:
    defaults = {"bind": ["127.0.0.1:5000"], "threads": 2, "keep_alive": 9}
    config = build_config(None, None, None, defaults)
    assert (config.bind, config.threads, config.keep_alive) == (["127.0.0.1:5000"], 2, 9.0)
    config = build_config(
        {"CORRAL_THREADS": "3"}, {"keep_alive": 4}, {"bind": ["unix:/run/app.sock"]}, defaults
    )
    assert (config.bind, config.threads, config.keep_alive) == (["unix:/run/app.sock"], 3, 4.0)


def test_config_has_one_attribute_per_setting_typed_as_its_converter_returns() -> None:
    names = [field.name for field in dataclasses.fields(Config)]
    assert names == [setting.name for setting in SETTINGS]
    hints = typing.get_type_hints(Config)
    for setting in SETTINGS:
        returned = typing.get_type_hints(setting.type)["return"]
        assert hints[setting.name] == returned, setting.name


def test_config_is_frozen_and_derived_copies_keep_the_rest() -> None:
    config = build_config(None, {"threads": 4})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threads = 8  # type: ignore[misc]
    derived = dataclasses.replace(config, workers=3)
    assert (derived.workers, derived.threads, config.workers) == (3, 4, 0)


def test_tls_versions_in_corrals_and_gunicorns_spellings() -> None:
    import ssl

    for given in ("TLSv1.2", "1.2", "TLSv1_2", ssl.PROTOCOL_TLSv1_2, ssl.PROTOCOL_TLS_SERVER, 2):
        assert build_config(None, {"ssl_version": given}).ssl_version == "TLSv1.2", given
    for given in ("TLSv1.3", "1.3", ssl.TLSVersion.TLSv1_3):
        assert build_config(None, {"ssl_version": given}).ssl_version == "TLSv1.3", given
    for given in ("TLSv1", "TLSv1_1", ssl.TLSVersion.TLSv1_1, 3):
        with pytest.raises(ConfigError, match=r"--ssl-version: .*RFC 8996"):
            build_config(None, {"ssl_version": given})
    with pytest.raises(ConfigError, match=r"must be TLSv1\.2 or TLSv1\.3"):
        build_config(None, {"ssl_version": "SSLv2-please"})


def test_client_certificate_requirements_by_number_and_name() -> None:
    for given, expected in (("none", 0), (1, 1), ("2", 2), ("CERT_REQUIRED", 2)):
        assert build_config(None, {"cert_reqs": given}).cert_reqs == expected
    with pytest.raises(ConfigError, match="--cert-reqs: 3: must be none"):
        build_config(None, {"cert_reqs": 3})


def test_tls_files_must_be_readable_and_tls_is_on_with_a_certificate(
    tmp_path: Path,
) -> None:
    certificate = tmp_path / "cert.pem"
    certificate.write_text("PEM\n")
    assert not build_config().is_ssl
    assert build_config(None, {"certfile": str(certificate)}).is_ssl
    # As in gunicorn, whose example configuration defines the hook for plain HTTP.
    assert not build_config(None, None, {"ssl_context": lambda conf, factory: None}).is_ssl
    with pytest.raises(ConfigError, match=f"--ca-certs: cannot read {tmp_path}/no.pem: no such"):
        build_config(None, {"ca_certs": str(tmp_path / "no.pem")})
    with pytest.raises(ConfigError, match=f"CORRAL_CERTFILE: cannot read {tmp_path}: not a file"):
        build_config({"CORRAL_CERTFILE": str(tmp_path)})
    with pytest.raises(ConfigError, match="--keyfile needs --certfile"):
        build_config(None, {"keyfile": str(certificate)})


def test_stats_is_off_by_default_and_a_port_alone_listens_on_loopback() -> None:
    assert build_config().stats is None
    assert build_config(overrides={"stats": "9100"}).stats == "127.0.0.1:9100"
    assert build_config(overrides={"stats": "0.0.0.0:9100"}).stats == "0.0.0.0:9100"
    assert build_config(overrides={"stats": "[::1]:9100"}).stats == "[::1]:9100"
    for bad in ("nine", "127.0.0.1:", "host:99999", ":9100"):
        with pytest.raises(ConfigError, match="--stats"):
            build_config(overrides={"stats": bad})
