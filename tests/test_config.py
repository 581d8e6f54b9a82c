"""Configuration: every broken file is exit 78 naming the key, never a traceback.

The CLI's entry (`buzzbotd.cli.main`) runs in this process for each case, its
output captured; two cases run `python -m buzzbotd` as a real process, the proof
that what `main` returns is the exit status and that nothing else is printed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from buzzbotd import config
from tests.support.cli import buzzbotd_process

TOKEN = "123456:TEST-token_abc"
X_KEYS = {"consumer_key": "ck", "consumer_secret": "cs", "access_token": "at",
          "access_token_secret": "ats"}


def base(tmp_path: Path) -> str:
    return (f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
            f'lock_file = "{tmp_path}/run/buzzbotd.lock"\n')


# (name, TOML after the [daemon] table, text the error must contain)
BROKEN = [
    ("malformed TOML", "[x\nenabled = false\n", "not valid TOML"),
    ("wrong type bool", "[x]\nenabled = \"yes\"\n[telegram]\nenabled = false\n",
     'x.enabled = "yes": expected true or false'),
    ("typo key", "[x]\nenabled = false\ntimezon = \"UTC\"\n[telegram]\nenabled = false\n",
     'x.timezon: unknown key; did you mean "timezone"?'),
    ("unknown section", "[telegramm]\n[x]\nenabled = false\n[telegram]\nenabled = false\n",
     'telegramm: unknown section; did you mean "telegram"?'),
    ("bad time", "[x]\nenabled = false\ntimes = [\"08:00\", \"25:00\"]\n"
     "[telegram]\nenabled = false\n", 'x.times[1] = "25:00": expected a time of day'),
    ("time not a list", "[x]\nenabled = false\ntimes = \"08:00\"\n[telegram]\nenabled = false\n",
     'x.times = "08:00": expected a list of times'),
    ("duplicate time", "[x]\nenabled = false\ntimes = [\"08:00\", \"08:00\"]\n"
     "[telegram]\nenabled = false\n", "x.times[1] = \"08:00\": appears twice"),
    ("bad timezone", "[x]\nenabled = false\ntimezone = \"Mars/Olympus\"\n"
     "[telegram]\nenabled = false\n", 'x.timezone = "Mars/Olympus": expected an IANA'),
    ("bad default timezone", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "default_timezone = \"Europe/Berln\"\n",
     'telegram.default_timezone = "Europe/Berln": expected an IANA time zone name, e.g. "UTC", '
     '"Europe/Berlin"; did you mean "Europe/Berlin"?'),
    ("negative duration", "[x]\nenabled = false\ngrace_s = -5\n[telegram]\nenabled = false\n",
     "x.grace_s = -5: expected a whole number of seconds from 1 to 86400"),
    ("zero grace", "[x]\nenabled = false\ngrace_s = 0\n[telegram]\nenabled = false\n",
     "x.grace_s = 0: expected a whole number of seconds from 1 to 86400"),
    ("zero reminder grace", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "reminder_grace_s = 0\n",
     "telegram.reminder_grace_s = 0: expected a whole number of seconds from 1 to 86400"),
    ("huge template width", "[x]\nenabled = false\ntemplate = \"BTC {time:>999999999}\"\n"
     "[telegram]\nenabled = false\n", "x.template = \"BTC {time:>999999999}\": {time:>999999999} "
     "asks for a width or precision of 999999999; expected at most 280"),
    ("huge template precision", "[x]\nenabled = false\ntemplate = \"{price:,.99999999f}\"\n"
     "[telegram]\nenabled = false\n", "asks for a width or precision of 99999999"),
    ("nested template field", "[x]\nenabled = false\ntemplate = \"{time:>{price}}\"\n"
     "[telegram]\nenabled = false\n", "{time:>{price}} has a field inside its format spec"),
    ("zero timeout", "[price]\ntimeout_s = 0\n[x]\nenabled = false\n[telegram]\nenabled = false\n",
     "price.timeout_s = 0: expected a number of seconds"),
    ("non-URL api_base", "[x]\nenabled = false\napi_base = \"api.x.com\"\n"
     "[telegram]\nenabled = false\n", 'x.api_base = "api.x.com": expected an http:// or https://'),
    ("ftp price url", "[price]\nurl = \"ftp://example.org/p\"\n[x]\nenabled = false\n"
     "[telegram]\nenabled = false\n", 'price.url = "ftp://example.org/p": expected an http://'),
    ("missing token", "[x]\nenabled = false\n[telegram]\nenabled = true\n",
     "telegram.token: is empty; expected the bot token from @BotFather"),
    ("malformed token", "[x]\nenabled = false\n[telegram]\ntoken = \"not a token\"\n",
     "telegram.token: (<secret from"),
    ("missing X keys", "[x]\nenabled = true\n[telegram]\nenabled = false\n",
     "x.consumer_key: is empty; expected the X app's OAuth 1.0a credential"),
    ("admin ids as strings", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "admin_ids = [\"12345\"]\n", 'telegram.admin_ids[0] = "12345": expected a positive numeric'),
    ("nested unknown table", "[daemon.extra]\n", "daemon.extra: unknown key"),
    ("bad template field", "[x]\nenabled = false\ntemplate = \"BTC {prize}\"\n"
     "[telegram]\nenabled = false\n", "x.template = \"BTC {prize}\": unknown field {prize}"),
    ("template too long", "[x]\nenabled = false\ntemplate = \"" + "a" * 300 + "\"\n"
     "[telegram]\nenabled = false\n", "renders to 300 characters; expected at most 280"),
    ("bad format spec", "[x]\nenabled = false\ntemplate = \"{price:,.2q}\"\n"
     "[telegram]\nenabled = false\n", "x.template = \"{price:,.2q}\": not a valid format"),
]


def assert_broken_config_exits_78(tmp_path: Path, body: str, expected: str, run) -> None:
    """`check-config` and `run` on the broken file: 78, naming the key and the file."""
    path = tmp_path / "buzzbotd.toml"
    path.write_text(base(tmp_path) + body)
    for command in ("check-config", "run"):
        result = run(command, "--config", str(path))
        output = result.stderr + result.stdout
        assert result.returncode == 78, (command, output)
        assert expected in output, (command, output)
        assert str(path) in output, (command, output)
        assert "Traceback" not in output, (command, output)
    assert not (tmp_path / "state").exists(), "a config error must not touch the state"


@pytest.mark.parametrize("name,body,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_exits_78_naming_the_key(tmp_path: Path, cli, name: str, body: str,
                                               expected: str) -> None:
    assert_broken_config_exits_78(tmp_path, body, expected, cli)


@pytest.mark.parametrize("name,body,expected", [BROKEN[0], BROKEN[2]],
                         ids=[BROKEN[0][0], BROKEN[2][0]])
def test_the_process_exits_78_naming_the_key_without_a_traceback(
        tmp_path: Path, name: str, body: str, expected: str) -> None:
    """The exit-code proof: the same through `python -m buzzbotd` (a TOML error, a typo)."""
    assert_broken_config_exits_78(tmp_path, body, expected, buzzbotd_process)


def test_an_absurd_template_width_is_refused_without_rendering_it(tmp_path: Path) -> None:
    import tracemalloc
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + '[x]\nenabled = false\ntemplate = "{time:>99999999}"\n'
                    '[telegram]\nenabled = false\n')
    tracemalloc.start()
    try:
        with pytest.raises(config.ConfigError, match="x.template") as raised:
            config.load(path, environ={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"checking the template allocated {peak} bytes"
    assert "width or precision of 99999999" in str(raised.value)
    # Ordinary specs, a zero-padded one included, stay valid.
    path.write_text(base(tmp_path) + '[x]\nenabled = false\n'
                    'template = "{price:0>12,.2f} {change_24h:+07.2f}% {time:.5}"\n'
                    '[telegram]\nenabled = false\n')
    assert config.load(path, environ={}).x.template.startswith("{price:0>12")


def test_bad_log_level_and_every_problem_listed(tmp_path: Path, cli) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nlog_level = "loud"\n[x]\nenabled = "no"\ngrace_s = 1.5\n'
                    '[telegram]\nenabled = false\n')
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 78
    assert 'daemon.log_level = "loud": expected one of "debug" | "info"' in result.stderr
    assert 'x.enabled = "no"' in result.stderr and "x.grace_s = 1.5" in result.stderr


def test_missing_file_and_unreadable_credentials_dir(tmp_path: Path, cli) -> None:
    missing = tmp_path / "nope.toml"
    result = cli("check-config", "--config", str(missing))
    assert result.returncode == 78 and f"{missing}: no such file" in result.stderr
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + "[x]\nenabled = false\n")
    result = cli("run", "--config", str(path),
                      env={"CREDENTIALS_DIRECTORY": str(tmp_path / "no-creds")})
    assert result.returncode == 78
    assert "$CREDENTIALS_DIRECTORY = " in result.stderr
    assert "cannot read the credentials directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_directory_wins_and_secrets_are_never_printed(tmp_path: Path, cli) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "telegram_token").write_text("999:FROM-credential-file\n")
    for name, value in X_KEYS.items():
        (creds / f"x_{name}").write_text(f"secret-{value}-value")
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + f'[telegram]\ntoken = "{TOKEN}"\n[x]\nenabled = true\n')
    settings = config.load(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.telegram.token.reveal() == "999:FROM-credential-file"
    assert settings.x.access_token.reveal() == "secret-at-value"
    assert "FROM-credential" not in repr(settings) and "secret-" not in repr(settings)
    result = cli("check-config", "--config", str(path),
                      env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    assert f"token from {creds}/telegram_token" in result.stdout
    assert "FROM-credential" not in result.stdout + result.stderr
    assert "secret-" not in result.stdout + result.stderr
    # A token in the config file that looks wrong is reported without its value.
    path.write_text(base(tmp_path) + '[telegram]\ntoken = "hunter2 oops"\n[x]\nenabled = false\n')
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 78 and "hunter2" not in result.stderr


def test_config_option_before_or_after_and_environment(tmp_path: Path, cli) -> None:
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + "[x]\nenabled = false\n[telegram]\nenabled = false\n")
    assert cli("--config", str(path), "check-config").returncode == 0
    assert cli("check-config", "--config", str(path)).returncode == 0
    assert cli("check-config", env={"BUZZBOTD_CONFIG": str(path)}).returncode == 0
    other = tmp_path / "missing.toml"
    result = cli("--config", str(other), "check-config", env={"BUZZBOTD_CONFIG": str(path)})
    assert result.returncode == 78 and str(other) in result.stderr


def test_version_and_usage_errors(cli) -> None:
    from buzzbotd import __version__
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"buzzbotd {__version__}"
    result = cli("frobnicate")
    assert result.returncode == 1 and "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nstate_dir = "state"\n[x]\nenabled = false\n'
                    '[telegram]\nenabled = false\n')
    settings = config.load(path, environ={})
    assert settings.daemon.state_dir == tmp_path / "state"
    assert settings.x.times == tuple(sorted(settings.x.times))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.daemon.log_level = "debug"  # type: ignore[misc]
