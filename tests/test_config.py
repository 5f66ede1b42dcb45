"""Connection settings: precedence, validation naming the field, pass-through to both clients."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.kafka.settings import KafkaSettings, load_settings


def test_flags_beat_environment_beat_file(tmp_path):
    config = tmp_path / "sc.yaml"
    config.write_text("kafka:\n  bootstrap_servers: file:1\n  topic_prefix: file.\n  sasl_username: fileuser\n")
    settings = load_settings({"topic_prefix": "flag.", "bootstrap_servers": None}, config,
                             environ={"KAFKA_BOOTSTRAP": "env:2"})
    assert settings.bootstrap_servers == "env:2"
    assert settings.topic_prefix == "flag."
    assert settings.sasl_username == "fileuser"


def test_config_file_named_by_environment(tmp_path):
    config = tmp_path / "sc.yaml"
    config.write_text("kafka:\n  bootstrap_servers: h:9\n")
    settings = load_settings(environ={"SHADOWCANARY_CONFIG": str(config)})
    assert settings.bootstrap_servers == "h:9"


@pytest.mark.parametrize("text, field", [
    ("kafka:\n  bootstrap_servers: nohostport\n", "bootstrap_servers"),
    ("kafka:\n  security_protocol: TLS\n", "security_protocol"),
    ("kafka:\n  bootsrap_servers: h:1\n", "bootsrap_servers"),
    ("kafka:\n  topic_prefix: 'bad prefix'\n", "topic_prefix"),
])
def test_bad_file_values_name_the_field_and_file(tmp_path, text, field):
    config = tmp_path / "sc.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=config, environ={})
    assert str(config) in str(info.value)
    assert field in str(info.value)


def test_unreadable_and_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file=tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_file=bad, environ={})


def test_security_settings_reach_the_client():
    settings = KafkaSettings(bootstrap_servers="a:1,b:2", security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="s3cr3t-pw",
                             librdkafka={"client.rack": "r1"})
    confluent = settings.confluent_config()
    assert confluent["security.protocol"] == "SASL_PLAINTEXT"
    assert confluent["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (confluent["sasl.username"], confluent["sasl.password"]) == ("u", "s3cr3t-pw")
    assert confluent["client.rack"] == "r1"
    assert "s3cr3t-pw" not in repr(settings)  # the password never shows in logs
