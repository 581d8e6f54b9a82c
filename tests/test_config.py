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
     "x.grace_s = -5: expected a whole number of seconds from 60 to 86400"),
    ("zero grace", "[x]\nenabled = false\ngrace_s = 0\n[telegram]\nenabled = false\n",
     "x.grace_s = 0: expected a whole number of seconds from 60 to 86400"),
    ("zero reminder grace", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "reminder_grace_s = 0\n",
     "telegram.reminder_grace_s = 0: expected a whole number of seconds from 60 to 86400"),
    # One slow round would skip a slot or a reminder for good.
    ("one-second grace", "[x]\nenabled = false\ngrace_s = 1\n[telegram]\nenabled = false\n",
     "x.grace_s = 1: expected a whole number of seconds from 60 to 86400"),
    ("59-second reminder grace", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "reminder_grace_s = 59\n",
     "telegram.reminder_grace_s = 59: expected a whole number of seconds from 60 to 86400"),
    # Debian 13 moved the legacy names to tzdata-legacy: the file names the current one.
    ("legacy timezone", "[x]\nenabled = false\ntimezone = \"US/Eastern\"\n"
     "[telegram]\nenabled = false\n", 'x.timezone = "US/Eastern": a legacy name, which Debian '
     '13 no longer installs by default (it is in tzdata-legacy); expected its current name '
     '"America/New_York"'),
    ("legacy default timezone", "[x]\nenabled = false\n[telegram]\nenabled = false\n"
     "default_timezone = \"Japan\"\n", 'expected its current name "Asia/Tokyo"'),
    ("host's own zone", "[x]\nenabled = false\ntimezone = \"posixrules\"\n"
     "[telegram]\nenabled = false\n", 'x.timezone = "posixrules": expected an IANA'),
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
     "[telegram]\nenabled = false\n", "can render to 300 characters as X counts them"),
    # 162 code points, but CJK weighs 2 as X counts: 300 + "9,999,999.99" (12).
    ("template too long as X counts it", "[x]\nenabled = false\ntemplate = \""
     + "比特币价格" * 30 + "{price:,.2f}\"\n[telegram]\nenabled = false\n",
     "can render to 312 characters as X counts them"),
    ("negative budget", "[x]\nenabled = false\nmonthly_budget_usd = -1\n"
     "[telegram]\nenabled = false\n",
     "x.monthly_budget_usd = -1: expected an amount in US dollars from 0 to 100000"),
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


@pytest.mark.parametrize("url, kept, password, shown", [
    ("postgresql://u:p%40ss@h:5432/db", "postgresql://u@h:5432/db", "p@ss",
     "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=hunter2&sslmode=require",
     "postgresql://u@h/db?sslmode=require", "hunter2",
     "postgresql://u@h/db?password=***&sslmode=require"),
    # libpq: the parameter wins over the password before the host; sslpassword and
    # passfile stay for libpq, masked wherever the URL is shown.
    ("postgresql://u:x@h/db?sslpassword=s3&passfile=/etc/pg%20pass&password=q%26w",
     "postgresql://u@h/db?sslpassword=s3&passfile=/etc/pg%20pass", "q&w",
     "postgresql://u:***@h/db?sslpassword=***&passfile=***&password=***"),
    ("postgresql://u@h/db?options=-c%20a%3Db", "postgresql://u@h/db?options=-c%20a%3Db", None,
     "postgresql://u@h/db?options=-c%20a%3Db"),
])
def test_a_database_url_loses_its_password_and_shows_no_secret(
        url: str, kept: str, password: str | None, shown: str) -> None:
    from buzzbotd.config.database_url import masked, without_password
    assert without_password(url) == (kept, password)
    assert masked(url) == shown
    assert [s for s in ("p%40ss", "hunter2", "s3", "/etc", "q%26w") if s in masked(kept)] == []


def test_the_database_url_is_kept_and_logged_without_its_secrets(tmp_path: Path) -> None:
    """The daemon logs `describe()` at start ("database … open"); `status` shows
    the URL masked too (test_status)."""
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + "[x]\nenabled = false\n[telegram]\nenabled = false\n"
                    '[database]\nurl = "postgresql://bb@db.example/bb?password=hunter2'
                    '&sslpassword=ssl-secret"\n')
    settings = config.load(path, environ={})
    assert settings.database.password.reveal() == "hunter2"
    assert settings.database.url == "postgresql://bb@db.example/bb?sslpassword=ssl-secret"
    described = settings.database.describe(settings.daemon.database)
    assert described == "postgresql://bb@db.example/bb?sslpassword=***"


def test_a_url_template_is_counted_as_23_and_noted_as_dearer(tmp_path: Path) -> None:
    url = "https://example.com/" + "b" * 300          # 320 characters, 23 as X counts it
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + f'[x]\ntemplate = "BTC ${{price:,.2f}} {url}"\n'
                    'consumer_key = "k"\nconsumer_secret = "s"\naccess_token = "1-t"\n'
                    'access_token_secret = "t"\n[telegram]\nenabled = false\n')
    result = buzzbotd_process("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "note: x.template has a URL: X prices such a post higher" in result.stdout
    settings = config.load(path, environ={})
    assert (settings.x.monthly_budget_usd, settings.x.price_post_usd,
            settings.x.price_post_with_url_usd, settings.x.price_read_usd) == (
        0.0, 0.015, 0.20, 0.001)


def test_weighted_length_counts_as_x_does() -> None:
    from buzzbotd.template import weighted_length
    # X's docs ("Counting characters") and twitter-text-parser 3.0.0 agree on each.
    assert weighted_length("Bitcoin is at $67,890.12") == 24
    assert weighted_length("日本語") == 6                  # CJK: 2 each
    assert weighted_length("“quotes” – ‘dash’ ′") == 19    # U+2010–U+201F, U+2032: 1 each
    assert weighted_length("👍🏽 👨‍👩‍👧 🇩🇪") == 8             # an emoji sequence: 2 in all
    assert weighted_length("e\u0301") == 1                # NFC: é
    assert weighted_length("see https://example.com/" + "a" * 100) == 4 + 23


def test_tweet_dry_run_refuses_a_template_too_long_as_x_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(base(tmp_path) + '[x]\ntemplate = "' + "价格" * 70 + ' {price:,.2f}"\n'
                    'consumer_key = "k"\nconsumer_secret = "s"\naccess_token = "1-t"\n'
                    'access_token_secret = "t"\n[telegram]\nenabled = false\n')
    result = buzzbotd_process("tweet", "--dry-run", "--config", str(path))
    assert result.returncode == 78, result.stdout + result.stderr
    assert "can render to 293 characters as X counts them" in result.stderr, result.stderr


# -- [posts], [bluesky], [mastodon], telegram.channel (issue 23) ------------------------

def load_text(tmp_path: Path, body: str, environ: dict[str, str] | None = None
              ) -> config.Settings:
    path = tmp_path / "buzzbotd.toml"
    path.write_text(base(tmp_path) + body)
    return config.load(path, environ or {})


def problems_of(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(config.ConfigError) as e:
        load_text(tmp_path, body, environ)
    return str(e.value)


OFF = "[x]\nenabled = false\n[telegram]\nenabled = false\n"


def test_posts_holds_the_schedule_and_x_follows_it(tmp_path: Path) -> None:
    s = load_text(tmp_path, OFF + '[posts]\ntimes = ["09:30"]\ntimezone = "Europe/Berlin"\n'
                  'grace_s = 120\ntemplate = "BTC {price:.0f}"\n')
    assert [t.isoformat("minutes") for t in s.posts.times] == ["09:30"]
    assert (s.posts.timezone, s.posts.grace_s, s.posts.template) == (
        "Europe/Berlin", 120, "BTC {price:.0f}")
    assert (s.x.times, s.x.timezone, s.x.grace_s, s.x.template) == (
        s.posts.times, s.posts.timezone, s.posts.grace_s, s.posts.template)
    assert s.notes == ()


def test_the_old_x_spelling_works_with_one_note_and_both_at_once_is_an_error(
        tmp_path: Path) -> None:
    s = load_text(tmp_path, '[x]\nenabled = false\ngrace_s = 300\n[telegram]\nenabled = false\n')
    assert s.posts.grace_s == 300 == s.x.grace_s
    assert s.notes == ("x.grace_s is the old spelling of posts.grace_s; it still works, "
                       "write posts.grace_s instead",)
    path = tmp_path / "buzzbotd.toml"
    out = buzzbotd_process("--config", str(path), "check-config")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("old spelling") == 1
    text = problems_of(tmp_path, '[x]\nenabled = false\ntimes = ["08:00"]\n'
                       '[posts]\ntimes = ["09:00"]\n[telegram]\nenabled = false\n')
    assert "x.times: and posts.times are both set; expected only posts.times" in text


def test_enabled_networks_need_their_credentials_named_by_key(tmp_path: Path) -> None:
    text = problems_of(tmp_path, OFF + "[bluesky]\nenabled = true\n"
                       "[mastodon]\nenabled = true\n")
    for name in ("bluesky.handle", "bluesky.app_password", "mastodon.instance",
                 "mastodon.access_token"):
        assert f"{name}: is empty" in text
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "bluesky_app_password").write_text("abcd-efgh-ijkl-mnop\n")
    (creds / "mastodon_access_token").write_text("mastodon-token-value\n")
    s = load_text(tmp_path, OFF + '[bluesky]\nenabled = true\nhandle = "buzz.test"\n'
                  '[mastodon]\nenabled = true\ninstance = "https://mastodon.example/"\n'
                  'visibility = "unlisted"\n',
                  {"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.bluesky.app_password.reveal() == "abcd-efgh-ijkl-mnop"
    assert s.mastodon.instance == "https://mastodon.example"
    assert {"abcd-efgh-ijkl-mnop", "mastodon-token-value"} <= set(s.secrets())
    assert s.networks() == ["bluesky", "mastodon"]
    assert "abcd-efgh" not in repr(s) and "mastodon-token" not in repr(s)


def test_network_templates_and_visibility_and_channel_are_checked(tmp_path: Path) -> None:
    long_bluesky = "é" * 290 + " {price:,.2f}"        # 290 graphemes + the widest price
    text = problems_of(tmp_path, OFF + f'[bluesky]\ntemplate = "{long_bluesky}"\n'
                       '[mastodon]\nvisibility = "direct"\ntemplate = "{prise}"\n')
    assert "bluesky.template" in text and "graphemes" in text and "at most 300" in text
    assert 'mastodon.visibility = "direct": expected one of "public" | "unlisted" | "private"' \
        in text
    assert "mastodon.template" in text and "unknown field {prise}" in text
    # Longer than X's 280 is fine for Mastodon's 500.
    s = load_text(tmp_path, OFF + f'[mastodon]\ntemplate = "{"a" * 400} {{price}}"\n')
    assert s.template_of("mastodon").startswith("a" * 400)
    assert s.template_of("bluesky") == s.posts.template
    for good, kept in (('"@buzz_prices"', "@buzz_prices"), ("-1001234567890", "-1001234567890"),
                       ('""', "")):
        s = load_text(tmp_path, f"[x]\nenabled = false\n[telegram]\nenabled = false\n"
                      f"channel = {good}\n")
        assert s.telegram.channel == kept
    text = problems_of(tmp_path, '[x]\nenabled = false\n[telegram]\nenabled = false\n'
                       'channel = "t.me/buzz"\n')
    assert 'telegram.channel = "t.me/buzz": expected "" (no channel)' in text
